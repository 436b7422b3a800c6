//! Pull sources and push sinks that are not sound cards: WAV files, a tone generator and
//! null. (Ogg Opus lives in `oggopus`.) `device` turns them into ring-fed streams; tools
//! and tests can also use them directly.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::audio::error::AudioError;
use crate::audio::mixer::f32_to_i16;
use crate::audio::oggopus::{OggOpusSink, OggOpusSource};
use crate::audio::stream::DeviceFormat;

/// Something audio can be read from, at its own format.
pub trait AudioSource: Send {
    /// Rate and channel count of what `read` returns.
    fn format(&self) -> DeviceFormat;
    /// Fills `out` with interleaved samples (whole frames); returns how many samples were
    /// written, 0 at the end.
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError>;
}

/// Something audio can be written to, at its own format.
pub trait AudioSink: Send {
    /// Rate and channel count `write` expects.
    fn format(&self) -> DeviceFormat;
    /// Writes interleaved samples (whole frames).
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError>;
    /// Flushes and closes the file (headers, end of stream). Called once at the end.
    fn finish(&mut self) -> Result<(), AudioError>;
}

/// Opens a source by file extension (.wav, .ogg, .opus).
pub fn open_source(path: &Path) -> Result<Box<dyn AudioSource>, AudioError> {
    match extension(path).as_str() {
        "wav" => Ok(Box::new(WavSource::open(path)?)),
        "ogg" | "opus" | "oga" => Ok(Box::new(OggOpusSource::open(path)?)),
        _ => Err(AudioError::UnsupportedFile(path.to_path_buf())),
    }
}

/// Creates a sink by file extension (.wav, .ogg, .opus); `format` is what will be written.
pub fn create_sink(path: &Path, format: DeviceFormat) -> Result<Box<dyn AudioSink>, AudioError> {
    match extension(path).as_str() {
        "wav" => Ok(Box::new(WavSink::create(path, format)?)),
        "ogg" | "opus" | "oga" => Ok(Box::new(OggOpusSink::create(path, format)?)),
        _ => Err(AudioError::UnsupportedFile(path.to_path_buf())),
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Reads PCM (8/16/24/32-bit) or 32-bit float WAV.
pub struct WavSource {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    format: DeviceFormat,
    int_scale: f32,
    float: bool,
}

impl WavSource {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        let wav_err = |e: hound::Error| AudioError::Wav {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let reader = hound::WavReader::open(path).map_err(wav_err)?;
        let spec = reader.spec();
        let format = DeviceFormat {
            sample_rate: spec.sample_rate,
            channels: spec.channels,
        };
        format.validate().map_err(|e| AudioError::Wav {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let float = spec.sample_format == hound::SampleFormat::Float;
        if float && spec.bits_per_sample != 32
            || !float && !(8..=32).contains(&spec.bits_per_sample)
        {
            return Err(AudioError::Wav {
                path: path.to_path_buf(),
                message: format!("unsupported sample size {} bits", spec.bits_per_sample),
            });
        }
        let int_scale = 1.0 / (1u64 << (spec.bits_per_sample.max(1) - 1)) as f32;
        Ok(WavSource {
            path: path.to_path_buf(),
            reader,
            format,
            int_scale,
            float,
        })
    }
}

impl AudioSource for WavSource {
    fn format(&self) -> DeviceFormat {
        self.format
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let whole = out.len() - out.len() % usize::from(self.format.channels);
        let mut n = 0;
        let path = &self.path;
        let err = |e: hound::Error| AudioError::Wav {
            path: path.clone(),
            message: e.to_string(),
        };
        if self.float {
            for (slot, s) in out[..whole].iter_mut().zip(self.reader.samples::<f32>()) {
                *slot = s.map_err(err)?;
                n += 1;
            }
        } else {
            let scale = self.int_scale;
            for (slot, s) in out[..whole].iter_mut().zip(self.reader.samples::<i32>()) {
                *slot = s.map_err(err)? as f32 * scale;
                n += 1;
            }
        }
        Ok(n - n % usize::from(self.format.channels))
    }
}

/// Writes 16-bit PCM WAV (what every tool reads).
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    format: DeviceFormat,
}

impl WavSink {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path, format: DeviceFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let spec = hound::WavSpec {
            channels: format.channels,
            sample_rate: format.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| AudioError::Wav {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(WavSink {
            path: path.to_path_buf(),
            writer: Some(writer),
            format,
        })
    }
}

impl AudioSink for WavSink {
    fn format(&self) -> DeviceFormat {
        self.format
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        for &s in samples {
            writer
                .write_sample(f32_to_i16(s))
                .map_err(|e| AudioError::Wav {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        if let Some(writer) = self.writer.take() {
            writer.finalize().map_err(|e| AudioError::Wav {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        // Best effort: a sink dropped without `finish` still gets a valid header.
        let _ = self.finish();
    }
}

/// An endless sine tone (for checking a setup, and as a test signal).
pub struct ToneSource {
    format: DeviceFormat,
    freq_hz: f32,
    amplitude: f32,
    phase: f64,
}

impl ToneSource {
    /// A sine at `freq_hz` with peak `amplitude` (0..1) in `format`.
    pub fn new(format: DeviceFormat, freq_hz: f32, amplitude: f32) -> Self {
        ToneSource {
            format,
            freq_hz,
            amplitude: amplitude.clamp(0.0, 1.0),
            phase: 0.0,
        }
    }
}

impl AudioSource for ToneSource {
    fn format(&self) -> DeviceFormat {
        self.format
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let ch = usize::from(self.format.channels.max(1));
        let step = f64::from(self.freq_hz) / f64::from(self.format.sample_rate.max(1));
        let whole = out.len() - out.len() % ch;
        for frame in out[..whole].chunks_exact_mut(ch) {
            let s = self.amplitude * (self.phase * std::f64::consts::TAU).sin() as f32;
            frame.fill(s);
            self.phase = (self.phase + step).fract();
        }
        Ok(whole)
    }
}

/// Endless digital silence.
pub struct NullSource {
    format: DeviceFormat,
}

impl NullSource {
    /// Silence in `format`.
    pub fn new(format: DeviceFormat) -> Self {
        NullSource { format }
    }
}

impl AudioSource for NullSource {
    fn format(&self) -> DeviceFormat {
        self.format
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let ch = usize::from(self.format.channels.max(1));
        let whole = out.len() - out.len() % ch;
        out[..whole].fill(0.0);
        Ok(whole)
    }
}

/// Discards everything.
pub struct NullSink {
    format: DeviceFormat,
}

impl NullSink {
    /// A sink accepting `format`.
    pub fn new(format: DeviceFormat) -> Self {
        NullSink { format }
    }
}

impl AudioSink for NullSink {
    fn format(&self) -> DeviceFormat {
        self.format
    }

    fn write(&mut self, _samples: &[f32]) -> Result<(), AudioError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}

/// Reads a whole source into memory (tools and tests).
pub fn read_all(source: &mut dyn AudioSource) -> Result<Vec<f32>, AudioError> {
    let mut all = Vec::new();
    let mut buf = vec![0.0f32; 4800 * usize::from(source.format().channels.max(1))];
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            return Ok(all);
        }
        all.extend_from_slice(&buf[..n]);
    }
}
