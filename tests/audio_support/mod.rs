//! Helpers shared by the audio integration tests: clips, signals, alignment.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use hallway::audio::files::{AudioSource, WavSource, read_all};

pub fn speech_clip(name: &str) -> Vec<f32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/speech")
        .join(format!("{name}.wav"));
    let mut src = WavSource::open(&path).expect("speech clip (see assets/README.md)");
    assert_eq!(src.format(), hallway::audio::DeviceFormat::ENGINE);
    read_all(&mut src).unwrap()
}

pub const CLIPS: [&str; 4] = ["alice", "bob", "carol", "dave"];

pub fn sine(freq: f32, amp: f32, rate: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| amp * (i as f32 * std::f32::consts::TAU * freq / rate as f32).sin())
        .collect()
}

/// Normalised correlation of `a[i]` with `b[i + lag]` over the overlap.
pub fn correlation_at(a: &[f32], b: &[f32], lag: usize) -> f64 {
    let n = a.len().min(b.len().saturating_sub(lag));
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let x = f64::from(a[i]);
        let y = f64::from(b[i + lag]);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// The lag (0..max_lag) where `b` best matches `a`, and that correlation.
pub fn best_lag(a: &[f32], b: &[f32], max_lag: usize) -> (usize, f64) {
    (0..max_lag)
        .map(|lag| (lag, correlation_at(a, b, lag)))
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
}
