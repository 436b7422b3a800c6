//! Format conversion between a device (any rate, any channel count, interleaved) and the
//! engine (48 kHz mono): downmix/upmix by hand, rate conversion with rubato.
//!
//! Both converters allocate only when built; `push` reuses their buffers and appends to a
//! caller's Vec (which should have capacity reserved), so workers stay allocation-free in
//! steady state. At 48 kHz no resampler is built and samples pass through bit-exactly.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters, WindowFunction};

use crate::audio::SAMPLE_RATE;
use crate::audio::error::AudioError;
use crate::audio::stream::DeviceFormat;

/// Sinc length 64: under a millisecond of delay, and plenty for speech (the anti-alias
/// band edge still sits above 20 kHz at 44.1 kHz).
fn make_resampler(from_hz: u32, to_hz: u32, chunk: usize) -> Result<Async<f32>, AudioError> {
    let params = SincInterpolationParameters::new(64, WindowFunction::BlackmanHarris2);
    Async::<f32>::new_sinc(
        f64::from(to_hz) / f64::from(from_hz),
        1.1,
        &params,
        chunk,
        1,
        FixedAsync::Input,
    )
    .map_err(|e| AudioError::Resample(e.to_string()))
}

struct Stage {
    resampler: Async<f32>,
    chunk: usize,
    pending: Vec<f32>,
    out: Vec<f32>,
}

impl Stage {
    fn new(from_hz: u32, to_hz: u32, chunk: usize) -> Result<Self, AudioError> {
        let resampler = make_resampler(from_hz, to_hz, chunk)?;
        let out = vec![0.0; resampler.output_frames_max()];
        Ok(Stage {
            resampler,
            chunk,
            pending: Vec::with_capacity(chunk),
            out,
        })
    }

    /// Feeds one mono sample; when a chunk is complete, converts it and hands the output
    /// to `emit`.
    fn push(&mut self, s: f32, emit: &mut impl FnMut(&[f32])) -> Result<(), AudioError> {
        self.pending.push(s);
        if self.pending.len() < self.chunk {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
        let input = InterleavedSlice::new(&self.pending, 1, self.chunk).map_err(|e| err(&e))?;
        let cap = self.out.len();
        let mut output = InterleavedSlice::new_mut(&mut self.out, 1, cap).map_err(|e| err(&e))?;
        let (_, written) = self
            .resampler
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| err(&e))?;
        self.pending.clear();
        emit(&self.out[..written]);
        Ok(())
    }

    fn delay(&self) -> usize {
        self.resampler.output_delay()
    }
}

/// Device format → 48 kHz mono (capture side).
pub struct ToEngine {
    channels: usize,
    stage: Option<Stage>,
}

impl ToEngine {
    /// A converter for input arriving in `format`.
    pub fn new(format: DeviceFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let stage = if format.sample_rate == SAMPLE_RATE {
            None
        } else {
            // 10 ms chunks: small enough to add little delay, large enough to be efficient.
            let chunk = (format.sample_rate as usize / 100).max(16);
            Some(Stage::new(format.sample_rate, SAMPLE_RATE, chunk)?)
        };
        Ok(ToEngine {
            channels: usize::from(format.channels),
            stage,
        })
    }

    /// Converts interleaved device samples (a whole number of frames; a trailing partial
    /// frame is ignored) and appends 48 kHz mono to `out`.
    pub fn push(&mut self, interleaved: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let scale = 1.0 / self.channels as f32;
        for frame in interleaved.chunks_exact(self.channels) {
            let mono = if self.channels == 1 {
                frame[0]
            } else {
                frame.iter().sum::<f32>() * scale
            };
            match &mut self.stage {
                None => out.push(mono),
                Some(stage) => stage.push(mono, &mut |chunk| out.extend_from_slice(chunk))?,
            }
        }
        Ok(())
    }

    /// Samples (at 48 kHz) of delay this converter adds.
    pub fn delay_samples(&self) -> usize {
        self.stage.as_ref().map_or(0, Stage::delay)
    }
}

/// 48 kHz mono → device format (playback side). Mono is copied to every channel.
pub struct FromEngine {
    channels: usize,
    stage: Option<Stage>,
}

impl FromEngine {
    /// A converter for output going to a device in `format`.
    pub fn new(format: DeviceFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let stage = if format.sample_rate == SAMPLE_RATE {
            None
        } else {
            Some(Stage::new(SAMPLE_RATE, format.sample_rate, 480)?)
        };
        Ok(FromEngine {
            channels: usize::from(format.channels),
            stage,
        })
    }

    /// Converts 48 kHz mono and appends interleaved device samples to `out`.
    pub fn push(&mut self, mono: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let channels = self.channels;
        let mut emit = |chunk: &[f32]| {
            for &s in chunk {
                for _ in 0..channels {
                    out.push(s);
                }
            }
        };
        match &mut self.stage {
            None => emit(mono),
            Some(stage) => {
                for &s in mono {
                    stage.push(s, &mut emit)?;
                }
            }
        }
        Ok(())
    }

    /// Samples (at the device rate) of delay this converter adds.
    pub fn delay_samples(&self) -> usize {
        self.stage.as_ref().map_or(0, Stage::delay)
    }
}
