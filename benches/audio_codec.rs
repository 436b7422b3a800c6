//! Per-20 ms-frame costs: capture encode (with and without noise suppression), decode,
//! and a 10-speaker mix. Divide by 20 ms for the fraction of real time on one core.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use hallway::audio::files::{WavSource, read_all};
use hallway::audio::{
    CaptureConfig, CaptureProcessor, DeviceFormat, FRAME_SAMPLES, Mixer, OpusDecoder, OpusEncoder,
    OpusEncoderConfig,
};

fn speech() -> Vec<f32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/speech/alice.wav");
    read_all(&mut WavSource::open(&path).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let clip = speech();
    let frames: Vec<&[f32]> = clip.chunks_exact(FRAME_SAMPLES).collect();

    for ns in [false, true] {
        let name = if ns {
            "capture_frame_denoise_level_encode"
        } else {
            "capture_frame_level_encode_no_ns"
        };
        let config = CaptureConfig {
            noise_suppression: ns,
            ..CaptureConfig::default()
        };
        let mut p = CaptureProcessor::new(DeviceFormat::ENGINE, &config).unwrap();
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                p.push(frames[i % frames.len()]).unwrap();
                i += 1;
                black_box(p.next_frame(false).unwrap())
            })
        });
    }

    let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| enc.encode_vec(f).unwrap())
        .filter(|p| p.len() > 2)
        .collect();
    let mut dec = OpusDecoder::new().unwrap();
    let mut out = vec![0.0f32; FRAME_SAMPLES];
    let mut i = 0;
    c.bench_function("decode_frame", |b| {
        b.iter(|| {
            dec.decode(&packets[i % packets.len()], &mut out).unwrap();
            i += 1;
            black_box(&out);
        })
    });

    let speakers: Vec<&[f32]> = (0..10).map(|k| frames[(k * 17) % frames.len()]).collect();
    let mut mixer = Mixer::new();
    let mut mix = vec![0.0f32; FRAME_SAMPLES];
    c.bench_function("mix_10_speakers", |b| {
        b.iter(|| {
            mix.fill(0.0);
            for s in &speakers {
                Mixer::accumulate(&mut mix, s, 0.8);
            }
            mixer.finish(&mut mix, 1.0);
            black_box(&mix);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
