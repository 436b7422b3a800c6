//! Noise suppression with nnnoiseless (RNNoise): 20 ms engine frames in, cleaned frames
//! and a voice probability out.

use nnnoiseless::DenoiseState;

use crate::audio::FRAME_SAMPLES;

const HALF: usize = DenoiseState::FRAME_SIZE;

/// Wraps one RNNoise state. RNNoise works on 10 ms (480 sample) frames of samples in the
/// 16-bit range, so each engine frame is two calls with scaling around them.
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    input: [f32; HALF],
    output: [f32; HALF],
}

impl std::fmt::Debug for Denoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Denoiser").finish_non_exhaustive()
    }
}

impl Denoiser {
    /// RNNoise's output lags its input by one 10 ms frame (its analysis window overlaps the
    /// previous frame).
    pub const DELAY_SAMPLES: usize = HALF;

    /// A fresh state (about 100 kB, allocated once).
    pub fn new() -> Self {
        Denoiser {
            state: DenoiseState::new(),
            input: [0.0; HALF],
            output: [0.0; HALF],
        }
    }

    /// Cleans one 20 ms frame in place; returns the higher of the two halves' voice
    /// probabilities (0..1).
    pub fn process(&mut self, frame: &mut [f32]) -> f32 {
        debug_assert_eq!(frame.len(), FRAME_SAMPLES);
        let mut vad: f32 = 0.0;
        for half in frame.chunks_exact_mut(HALF) {
            for (dst, &src) in self.input.iter_mut().zip(half.iter()) {
                *dst = if src.is_finite() {
                    src.clamp(-1.0, 1.0) * 32768.0
                } else {
                    0.0
                };
            }
            let p = self.state.process_frame(&mut self.output, &self.input);
            vad = vad.max(p);
            for (dst, &src) in half.iter_mut().zip(self.output.iter()) {
                *dst = src / 32768.0;
            }
        }
        vad
    }
}

impl Default for Denoiser {
    fn default() -> Self {
        Self::new()
    }
}
