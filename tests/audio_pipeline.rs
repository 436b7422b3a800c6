//! The whole engine in one process with a stepped clock: capture ring → capture worker
//! (resample, denoise, level, Opus) → frames → playout worker (jitter buffer, decode, mix)
//! → playback ring → WAV file. The output must be the input, delayed by exactly the delay
//! the parts add.
#![allow(clippy::unwrap_used)]

mod audio_support;

use std::sync::Arc;

use hallway::audio::device::StreamCounters;
use hallway::audio::files::{AudioSink, WavSink, WavSource, read_all};
use hallway::audio::{
    CaptureConfig, CaptureWorker, DeviceFormat, FRAME_SAMPLES, ManualClock, PlayoutConfig,
    PlayoutWorker, channel_sink,
};

struct Run {
    output: Vec<f32>,
    capture_delay: usize,
    jitter_delay_ms: f32,
    concealed: u64,
}

fn run_pipeline(input: &[f32], noise_suppression: bool, muted_from: Option<usize>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (mut cap_tx, cap_rx) = rtrb::RingBuffer::<f32>::new(9600);
    let config = CaptureConfig {
        noise_suppression,
        ..CaptureConfig::default()
    };
    let (frame_sink, frames_rx) = channel_sink(25);
    let mut capture =
        CaptureWorker::new(cap_rx, DeviceFormat::ENGINE, &config, frame_sink).unwrap();
    let muted = capture.muted();

    let clock = ManualClock::new();
    let (play_tx, mut play_rx) = rtrb::RingBuffer::<f32>::new(9600);
    let playout_config = PlayoutConfig {
        device_fill_ms: 20,
        ..PlayoutConfig::default()
    };
    let (mut playout, sender) = PlayoutWorker::new(
        play_tx,
        DeviceFormat::ENGINE,
        Arc::new(StreamCounters::default()),
        &playout_config,
        Arc::new(clock.clone()),
    )
    .unwrap();

    let out_path = dir.path().join("out.wav");
    let mut sink = WavSink::create(&out_path, DeviceFormat::ENGINE).unwrap();
    let mut jitter_delay_ms = 0.0;
    for (k, chunk) in input.chunks(FRAME_SAMPLES).enumerate() {
        if muted_from == Some(k) {
            muted.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // The "device" delivers 20 ms...
        let w = cap_tx.write_chunk_uninit(chunk.len()).unwrap();
        w.fill_from_iter(chunk.iter().copied());
        capture.step().unwrap();
        // ...the "network" delivers frames at once...
        while let Ok(f) = frames_rx.try_recv() {
            assert!(sender.push(f.stamped(42)));
        }
        // ...the playout worker tops up the device ring, and the "device" plays 20 ms.
        playout.step().unwrap();
        let n = play_rx.slots();
        let r = play_rx.read_chunk(n).unwrap();
        let (a, b) = r.as_slices();
        sink.write(a).unwrap();
        sink.write(b).unwrap();
        r.commit_all();
        if let Some(s) = playout.core().stats().speakers.first() {
            jitter_delay_ms = s.jitter_delay_ms;
        }
        clock.advance_ms(20);
    }
    sink.finish().unwrap();
    let stats = playout.core().stats();
    let concealed = stats.speakers.first().map_or(0, |s| s.counters.concealed);
    let output = read_all(&mut WavSource::open(&out_path).unwrap()).unwrap();
    Run {
        output,
        capture_delay: capture.delay_samples(),
        jitter_delay_ms,
        concealed,
    }
}

#[test]
fn output_is_the_input_after_the_expected_delay() {
    let input = audio_support::speech_clip("alice");
    let run = run_pipeline(&input, false, None);
    // Frames arrive the instant they are made, so the jitter buffer holds each for exactly
    // one 20 ms tick; the rest is Opus lookahead.
    assert!(
        (20.0..21.0).contains(&run.jitter_delay_ms),
        "{}",
        run.jitter_delay_ms
    );
    let expected = FRAME_SAMPLES + run.capture_delay;
    let (lag, best) = audio_support::best_lag(&input, &run.output, 4000);
    // Within a few samples: SILK's filters shift the phase slightly beyond the lookahead.
    assert!(
        lag.abs_diff(expected) <= 5,
        "lag {lag}, expected {expected}"
    );
    assert!(best >= 0.9, "correlation {best:.3}");
    assert_eq!(run.concealed, 0);
    assert_eq!(
        run.output.len(),
        input.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES
    );
}

#[test]
fn with_noise_suppression_speech_still_comes_through_at_the_expected_delay() {
    let input = audio_support::speech_clip("bob");
    let run = run_pipeline(&input, true, None);
    let expected = FRAME_SAMPLES + run.capture_delay;
    let (lag, best) = audio_support::best_lag(&input, &run.output, 4000);
    assert!(
        lag.abs_diff(expected) <= 5,
        "lag {lag}, expected {expected}"
    );
    assert!(best >= 0.8, "correlation {best:.3}");
}

#[test]
fn muted_capture_sends_nothing() {
    let input = audio_support::speech_clip("carol");
    let run = run_pipeline(&input, false, Some(50));
    // After mute (frame 50), one frame of playout delay and at most 5 frames of
    // concealment fading out the last word, the output is digital silence.
    let tail = &run.output[(57 * FRAME_SAMPLES)..];
    assert!(tail.iter().all(|&s| s == 0.0));
    assert!(run.output[..50 * FRAME_SAMPLES].iter().any(|&s| s != 0.0));
}
