//! Level metering: dBov of a frame, the RFC 6464 level byte, and a simple voice detector.
//!
//! dBov here is the RMS level relative to a full-scale square wave (RMS 1.0), so a
//! full-scale sine reads about -3 dBov, and digital silence reads the floor, -127 dBov.

/// The quietest level we report: RFC 6464 cannot express anything lower.
pub const SILENCE_DBOV: f32 = -127.0;

/// RMS level of `samples` in dBov, clamped to `-127.0..=0.0`.
pub fn frame_dbov(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return SILENCE_DBOV;
    }
    let sum_sq: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let mean_sq = sum_sq / samples.len() as f64;
    if mean_sq <= 0.0 || !mean_sq.is_finite() {
        return SILENCE_DBOV;
    }
    let db = 10.0 * mean_sq.log10();
    (db as f32).clamp(SILENCE_DBOV, 0.0)
}

/// The wire's level byte: -dBov rounded and clamped to 0..=127 (0 loudest, 127 silence).
pub fn dbov_to_level(dbov: f32) -> u8 {
    if !dbov.is_finite() {
        return 127;
    }
    (-dbov).round().clamp(0.0, 127.0) as u8
}

/// Back from the wire's level byte to dBov.
pub fn level_to_dbov(level: u8) -> f32 {
    -f32::from(level.min(127))
}

/// Decides "someone is talking" for one 20 ms frame at a time.
///
/// With noise suppression on, RNNoise's voice probability is the better signal; without it
/// we fall back to a level threshold. Either way a hangover keeps the flag up across the
/// short pauses between words so speaking indicators do not flicker.
#[derive(Debug, Clone)]
pub struct VoiceDetector {
    threshold_dbov: f32,
    hangover_frames: u32,
    frames_left: u32,
}

impl VoiceDetector {
    /// `threshold_dbov`: level above which a frame counts as voice without a probability;
    /// `hangover_frames`: frames the flag stays up after the last voiced frame.
    pub fn new(threshold_dbov: f32, hangover_frames: u32) -> Self {
        VoiceDetector {
            threshold_dbov,
            hangover_frames,
            frames_left: 0,
        }
    }

    /// Feeds one frame's level and, if known, a voice probability (0..1).
    pub fn update(&mut self, dbov: f32, voice_probability: Option<f32>) -> bool {
        // Quiet frames are never voice, whatever the model says: RNNoise can report
        // high probabilities for faint residue after suppression.
        let loud_enough = dbov > self.threshold_dbov;
        let voiced = match voice_probability {
            Some(p) => p >= 0.5 && dbov > self.threshold_dbov - 10.0,
            None => loud_enough,
        };
        if voiced {
            self.frames_left = self.hangover_frames;
            true
        } else if self.frames_left > 0 {
            self.frames_left -= 1;
            true
        } else {
            false
        }
    }
}

impl Default for VoiceDetector {
    /// -45 dBov and 10 frames (200 ms) of hangover.
    fn default() -> Self {
        VoiceDetector::new(-45.0, 10)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sine(amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn full_scale_sine_is_minus_three_dbov() {
        let db = frame_dbov(&sine(1.0, 960));
        assert!((db + 3.01).abs() < 0.1, "{db}");
        assert_eq!(dbov_to_level(db), 3);
    }

    #[test]
    fn silence_and_garbage_read_the_floor() {
        assert_eq!(frame_dbov(&[0.0; 960]), SILENCE_DBOV);
        assert_eq!(frame_dbov(&[]), SILENCE_DBOV);
        assert_eq!(frame_dbov(&[f32::NAN; 4]), SILENCE_DBOV);
        assert_eq!(dbov_to_level(f32::NAN), 127);
        assert_eq!(dbov_to_level(-300.0), 127);
        assert_eq!(dbov_to_level(10.0), 0);
    }

    #[test]
    fn twenty_db_quieter_reads_twenty_more() {
        let loud = frame_dbov(&sine(0.5, 960));
        let quiet = frame_dbov(&sine(0.05, 960));
        assert!((loud - quiet - 20.0).abs() < 0.1);
        assert_eq!(level_to_dbov(dbov_to_level(loud)), -(loud.round().abs()));
    }

    #[test]
    fn voice_flag_has_hangover_then_drops() {
        let mut vad = VoiceDetector::new(-45.0, 3);
        assert!(vad.update(-20.0, None));
        assert!(vad.update(-90.0, None));
        assert!(vad.update(-90.0, None));
        assert!(vad.update(-90.0, None));
        assert!(!vad.update(-90.0, None));
        // A confident model on a silent frame is not voice.
        assert!(!vad.update(-100.0, Some(0.99)));
        assert!(vad.update(-50.0, Some(0.9)));
    }
}
