//! Mixing speakers: per-speaker gain, master gain, and a soft limiter so that many loud
//! speakers never wrap around or hard-clip.

use crate::audio::SAMPLE_RATE;

/// Sums speakers into one frame and limits the result.
///
/// Invariant: after [`Mixer::finish`] every sample is finite and within
/// `-threshold..=threshold`, whatever went in, so converting to integers can never wrap.
#[derive(Debug, Clone)]
pub struct Mixer {
    threshold: f32,
    release_coef: f32,
    /// The limiter's current gain (1.0 = not limiting).
    gain: f32,
}

impl Mixer {
    /// A limiter that holds peaks to -1 dBFS and releases over about 80 ms.
    pub fn new() -> Self {
        Self::with_threshold(0.891)
    }

    /// A limiter holding peaks to `threshold` (linear, 0 < threshold ≤ 1).
    pub fn with_threshold(threshold: f32) -> Self {
        let threshold = if threshold.is_finite() {
            threshold.clamp(0.01, 1.0)
        } else {
            1.0
        };
        let release_s = 0.08;
        Mixer {
            threshold,
            release_coef: 1.0 - (-1.0 / (release_s * SAMPLE_RATE as f32)).exp(),
            gain: 1.0,
        }
    }

    /// Adds `input * gain` into `out` (sample by sample, up to the shorter length).
    pub fn accumulate(out: &mut [f32], input: &[f32], gain: f32) {
        let gain = if gain.is_finite() { gain.max(0.0) } else { 0.0 };
        if gain == 0.0 {
            return;
        }
        for (o, &i) in out.iter_mut().zip(input) {
            // A non-finite decoder output must not poison the whole mix.
            if i.is_finite() {
                *o += i * gain;
            }
        }
    }

    /// Applies the master gain and the limiter to a summed frame in place.
    ///
    /// Attack is instant (the gain drops on the very sample that would exceed the
    /// threshold, so nothing overshoots); release is exponential, so the limiter does not
    /// pump on every syllable.
    pub fn finish(&mut self, out: &mut [f32], master_gain: f32) {
        let master = if master_gain.is_finite() {
            master_gain.max(0.0)
        } else {
            0.0
        };
        for s in out.iter_mut() {
            let x = if s.is_finite() { *s * master } else { 0.0 };
            let a = x.abs();
            let needed = if a > self.threshold {
                self.threshold / a
            } else {
                1.0
            };
            if needed < self.gain {
                self.gain = needed;
            } else {
                self.gain += (needed - self.gain) * self.release_coef;
            }
            // The gain may sit above `needed` for one sample only if rounding says so;
            // the clamp keeps the invariant exact.
            *s = (x * self.gain).clamp(-self.threshold, self.threshold);
        }
    }

    /// The limiter's current gain (1.0 when idle), for stats and tests.
    pub fn gain(&self) -> f32 {
        self.gain
    }
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

/// Converts an engine sample to 16-bit PCM, saturating (never wrapping).
pub fn f32_to_i16(s: f32) -> i16 {
    if !s.is_finite() {
        return 0;
    }
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Converts 16-bit PCM to an engine sample; exact inverse of [`f32_to_i16`] on its range.
pub fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audio::FRAME_SAMPLES;

    fn sine(freq: f32, amp: f32, phase: f32) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .map(|i| amp * (phase + i as f32 * 2.0 * std::f32::consts::PI * freq / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn quiet_single_speaker_passes_unchanged() {
        let mut m = Mixer::new();
        let src = sine(300.0, 0.3, 0.0);
        let mut out = vec![0.0; FRAME_SAMPLES];
        Mixer::accumulate(&mut out, &src, 1.0);
        m.finish(&mut out, 1.0);
        for (a, b) in out.iter().zip(&src) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(m.gain(), 1.0);
    }

    #[test]
    fn many_loud_speakers_never_exceed_threshold_or_wrap() {
        let mut m = Mixer::new();
        for frame in 0..50 {
            let mut out = vec![0.0; FRAME_SAMPLES];
            for sp in 0..13 {
                let src = sine(100.0 + 37.0 * sp as f32, 1.0, frame as f32 + sp as f32);
                Mixer::accumulate(&mut out, &src, 2.0);
            }
            m.finish(&mut out, 1.0);
            for &s in &out {
                assert!(s.abs() <= 0.891 + 1e-6, "{s}");
                // Same sign as an unlimited sum would have: no wrap-around.
            }
            let pcm: Vec<i16> = out.iter().map(|&s| f32_to_i16(s)).collect();
            assert!(pcm.iter().all(|&p| p.unsigned_abs() <= 29_200));
        }
        assert!(m.gain() < 0.5, "limiter should be working hard");
    }

    #[test]
    fn limiter_keeps_sign_of_loud_input() {
        let mut m = Mixer::new();
        let mut out = vec![0.0; FRAME_SAMPLES];
        Mixer::accumulate(&mut out, &vec![5.0; FRAME_SAMPLES], 1.0);
        Mixer::accumulate(&mut out, &vec![-0.1; FRAME_SAMPLES], 1.0);
        m.finish(&mut out, 1.0);
        assert!(out.iter().all(|&s| s > 0.0 && s <= 0.891 + 1e-6));
    }

    #[test]
    fn per_speaker_volume_scales_its_contribution() {
        let mut m = Mixer::new();
        let a = sine(200.0, 0.2, 0.0);
        let b = sine(500.0, 0.2, 0.0);
        let mut out = vec![0.0; FRAME_SAMPLES];
        Mixer::accumulate(&mut out, &a, 0.5);
        Mixer::accumulate(&mut out, &b, 0.0);
        m.finish(&mut out, 1.0);
        for (o, x) in out.iter().zip(&a) {
            assert!((o - 0.5 * x).abs() < 1e-6);
        }
        // Master volume multiplies everything.
        let mut out2 = vec![0.0; FRAME_SAMPLES];
        Mixer::accumulate(&mut out2, &a, 1.0);
        m.finish(&mut out2, 0.25);
        for (o, x) in out2.iter().zip(&a) {
            assert!((o - 0.25 * x).abs() < 1e-6);
        }
    }

    #[test]
    fn nan_and_infinite_inputs_are_silenced() {
        let mut m = Mixer::new();
        let mut out = vec![0.0; 8];
        Mixer::accumulate(&mut out, &[f32::NAN, f32::INFINITY, 0.1, 0.1], 1.0);
        Mixer::accumulate(&mut out, &[0.1; 4], f32::NAN);
        m.finish(&mut out, f32::INFINITY);
        assert!(out.iter().all(|s| s.is_finite()));
    }

    #[test]
    fn pcm_conversion_saturates_and_round_trips() {
        assert_eq!(f32_to_i16(2.0), 32767);
        assert_eq!(f32_to_i16(-2.0), -32768);
        assert_eq!(f32_to_i16(f32::NAN), 0);
        for v in [-32768i16, -1, 0, 1, 12345, 32767] {
            assert_eq!(f32_to_i16(i16_to_f32(v)), v);
        }
    }
}
