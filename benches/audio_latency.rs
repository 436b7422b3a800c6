//! Pipeline latency from the capture ring to the playback ring, in real time with real
//! threads: an emulated capture device pushes 10 ms chunks (silence with a tone burst every
//! 500 ms), the capture worker encodes, frames go straight to the playout worker (the
//! network hop is zero), and the time each burst's onset appears in the playback ring is
//! compared with the time it entered the capture ring. Device buffers are not included.
//!
//! Run: `cargo bench --bench audio_latency` (about 30 s). Prints p50/p90/p99/max.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hallway::audio::device::StreamCounters;
use hallway::audio::{
    CaptureConfig, CaptureWorker, DeviceFormat, PlayoutConfig, PlayoutWorker, StepOutcome,
    SystemClock, channel_sink,
};

/// A full run; `cargo test --all-targets` runs this file without `--bench`, and then it
/// is a 2 s smoke run that only checks the pipeline works.
const SECONDS: u64 = 30;
const SMOKE_SECONDS: u64 = 2;
const BURST_EVERY_MS: u64 = 500;

/// How often the bench's loop looks at its emulated devices.
const DEVICE_LOOK: Duration = Duration::from_millis(4);

fn main() {
    let ns = std::env::args().any(|a| a == "--ns");
    let seconds = if std::env::args().any(|a| a == "--bench") {
        SECONDS
    } else {
        SMOKE_SECONDS
    };
    let (mut cap_tx, cap_rx) = rtrb::RingBuffer::<f32>::new(9600);
    let config = CaptureConfig {
        noise_suppression: ns,
        ..CaptureConfig::default()
    };
    // The emulated device below does not wake the worker as a real one does (`Wake`):
    // polling every 2 ms stands in for that wake-up, at most 2 ms late.
    let poll = Duration::from_millis(2);
    let (frame_sink, frames_rx) = channel_sink(25);
    let mut capture =
        CaptureWorker::new(cap_rx, DeviceFormat::ENGINE, &config, frame_sink).unwrap();
    let (onset_tx, onset_rx) = mpsc::channel::<Instant>();
    let start = Instant::now();

    // Emulated capture device: 10 ms per callback, on schedule.
    let device = std::thread::spawn(move || {
        let mut k: u64 = 0;
        while k * 10 < seconds * 1000 {
            let due = start + Duration::from_millis(k * 10);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let t_ms = k * 10;
            let in_burst = t_ms % BURST_EVERY_MS < 100 && t_ms > 200;
            let chunk: Vec<f32> = (0..480)
                .map(|i| {
                    if in_burst {
                        let n = (t_ms * 48 + i) as f32;
                        0.5 * (n * std::f32::consts::TAU * 440.0 / 48_000.0).sin()
                    } else {
                        0.0
                    }
                })
                .collect();
            if let Ok(w) = cap_tx.write_chunk_uninit(480) {
                w.fill_from_iter(chunk);
            }
            if in_burst && t_ms.is_multiple_of(BURST_EVERY_MS) {
                onset_tx.send(Instant::now()).unwrap();
            }
            k += 1;
        }
    });

    // Capture worker thread (same loop as `Capture`).
    let capture_thread = std::thread::spawn(move || {
        loop {
            match capture.step().unwrap() {
                StepOutcome::Disconnected => return,
                StepOutcome::Worked => {}
                StepOutcome::Idle if capture.input_closed() => return,
                StepOutcome::Idle => std::thread::sleep(poll),
            }
        }
    });

    // Playout worker + emulated output device + onset detection, one thread.
    let (play_tx, mut play_rx) = rtrb::RingBuffer::<f32>::new(9600);
    let pconfig = PlayoutConfig::default();
    let (mut playout, sender) = PlayoutWorker::new(
        play_tx,
        DeviceFormat::ENGINE,
        Arc::new(StreamCounters::default()),
        &pconfig,
        Arc::new(SystemClock::new()),
    )
    .unwrap();
    let mut scanned = 0usize;
    let mut consumed_total = 0u64;
    let mut quiet_run = 0usize;
    let mut arrivals = Vec::new();
    let out_start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) + Duration::from_millis(500) {
        while let Ok(f) = frames_rx.try_recv() {
            sender.push(f.stamped(1));
        }
        playout.step().unwrap();
        let now = Instant::now();
        let avail = play_rx.slots();
        let chunk = play_rx.read_chunk(avail).unwrap();
        let (a, b) = chunk.as_slices();
        for &s in a.iter().chain(b.iter()).skip(scanned) {
            if s.abs() > 0.05 {
                if quiet_run > 48 * 200 {
                    arrivals.push(now);
                }
                quiet_run = 0;
            } else {
                quiet_run += 1;
            }
        }
        // The emulated device consumes 48 samples per ms, in 10 ms periods.
        let due = (out_start.elapsed().as_millis() as u64 / 10) * 480;
        let consume = (due.saturating_sub(consumed_total) as usize).min(avail);
        chunk.commit(consume);
        consumed_total += consume as u64;
        scanned = avail - consume;
        // The emulated device needs looking at every few ms (its 10 ms periods); the
        // playout worker itself would sleep until the next frame is needed.
        std::thread::sleep(DEVICE_LOOK);
    }
    drop(frames_rx);
    device.join().unwrap();
    capture_thread.join().unwrap();
    let onsets: Vec<Instant> = onset_rx.try_iter().collect();

    let mut lat_ms: Vec<f64> = Vec::new();
    for on in &onsets {
        if let Some(arr) = arrivals.iter().find(|&&a| a > *on) {
            let ms = arr.duration_since(*on).as_secs_f64() * 1000.0;
            if ms < 400.0 {
                lat_ms.push(ms);
            }
        }
    }
    lat_ms.sort_by(f64::total_cmp);
    let q = |p: f64| lat_ms[((p * lat_ms.len() as f64).ceil() as usize).clamp(1, lat_ms.len()) - 1];
    println!(
        "capture ring -> playback ring latency (noise suppression {}): n={} of {} bursts, p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        if ns { "on" } else { "off" },
        lat_ms.len(),
        onsets.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        lat_ms[lat_ms.len() - 1]
    );
}
