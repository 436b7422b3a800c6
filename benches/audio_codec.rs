//! Per-20 ms-frame costs: capture encode (with and without noise suppression), decode,
//! a 10-speaker mix, and a replay's playback (#15) at 1×, 1.5× and 2× with its seeks.
//! Divide by 20 ms for the fraction of real time on one core.
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

/// Three speakers' tracks as the server keeps them (one Ogg Opus file each, one packet a
/// page), each speaking in turn through a 60 s room, and their index.
fn replay_of_three() -> (hallway::protocol::replay::ReplayInfo, Vec<(u32, Vec<u8>)>) {
    use hallway::protocol::User;
    use hallway::protocol::replay::{ReplayInfo, ReplayTrack};
    use ogg::{PacketWriteEndInfo, PacketWriter};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/speech");
    let mut tracks = Vec::new();
    let mut index = Vec::new();
    for (k, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let clip =
            read_all(&mut WavSource::open(&dir.join(format!("{name}.wav"))).unwrap()).unwrap();
        let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let mut writer = PacketWriter::new(Vec::new());
        for head in [&b"OpusHead"[..], &b"OpusTags"[..]] {
            writer
                .write_packet(head.to_vec(), 1, PacketWriteEndInfo::EndPage, 0)
                .unwrap();
        }
        // The clip over and over for 20 s, from the speaker's own clock's start.
        let frames = clip.chunks_exact(FRAME_SAMPLES).cycle().take(1_000);
        for (n, frame) in frames.enumerate() {
            let packet = enc.encode_vec(frame).unwrap();
            let end = (n as u64 + 1) * FRAME_SAMPLES as u64;
            writer
                .write_packet(packet, 1, PacketWriteEndInfo::EndPage, end)
                .unwrap();
        }
        let user = User {
            id: k as u32 + 1,
            handle: name.into(),
            name: name.into(),
        };
        index.push(ReplayTrack {
            user,
            first_ms: 1_000 + 20_000 * k as u64,
            packets: 1_000,
            bytes: 0,
        });
        tracks.push((k as u32 + 1, writer.into_inner()));
    }
    let info = ReplayInfo {
        id: "bench".into(),
        title: "bench".into(),
        host: index[0].user.clone(),
        started_at_ms: 1_000,
        last_ms: None,
        ended_at_ms: Some(61_000),
        incomplete: false,
        why_incomplete: None,
        tracks: index,
    };
    (info, tracks)
}

/// Playing a replay (#15): one 20 ms frame of the playout's replay playback (decode as the
/// timeline needs, stretch to the speed, into the frame) at 1×, 1.5× and 2×, and a seek.
fn replay(c: &mut Criterion) {
    use hallway::audio::replay::{Playback, ReplayCommand, Timeline};
    let (info, tracks) = replay_of_three();
    let timeline = std::sync::Arc::new(Timeline::parse(&info, tracks.clone()).unwrap());
    let mut frame = vec![0.0f32; FRAME_SAMPLES];
    for speed in [1.0f32, 1.5, 2.0] {
        let mut playback = Playback::new(timeline.clone()).unwrap();
        playback.command(ReplayCommand::Speed(speed)).unwrap();
        c.bench_function(&format!("replay_frame_{speed}x"), |b| {
            b.iter(|| {
                playback.play(&mut frame);
                if playback.progress().ended {
                    // Round again: an ended replay holds, paused, until told.
                    playback.command(ReplayCommand::Seek { ms: 0 }).unwrap();
                    playback.command(ReplayCommand::Pause(false)).unwrap();
                }
                black_box(&frame);
            })
        });
    }
    let mut playback = Playback::new(timeline.clone()).unwrap();
    let mut at = 0u64;
    c.bench_function("replay_seek_and_first_frame", |b| {
        b.iter(|| {
            at = (at + 15_000) % 60_000;
            playback.command(ReplayCommand::Seek { ms: at }).unwrap();
            playback.play(&mut frame);
            black_box(&frame);
        })
    });
    c.bench_function("replay_parse_60s_3_tracks", |b| {
        b.iter(|| black_box(Timeline::parse(&info, tracks.clone()).unwrap()))
    });
}

criterion_group!(benches, bench, replay);
criterion_main!(benches);
