//! Pre-encoded audio: a file encoded once into 20 ms Opus frames, then replayed in real time
//! by demo bots and `hallway play`. Encoding ahead keeps the sending loop to a timer and a
//! socket write, and a file is read whole, so a bad file fails before anyone hears anything.

use std::path::Path;
use std::time::Duration;

use crate::audio::files::{open_source, read_all};
use crate::audio::{AudioError, CaptureConfig, CaptureProcessor};
use crate::net::LiveSession;
use crate::protocol::{AudioFrame, AudioHeader};

/// A whole file as 20 ms frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    pub name: String,
    /// One slot per 20 ms: a frame as the capture side made it (sequence and clock are
    /// restamped at each send), or None in silence (DTX), when nothing is sent.
    pub frames: Vec<Option<AudioFrame>>,
}

/// One 20 ms frame.
pub const FRAME: Duration = Duration::from_millis(20);

impl Clip {
    /// Reads and encodes a WAV or Ogg Opus file (any rate and channel count). Noise
    /// suppression stays off: files are what their authors meant them to be.
    pub fn from_file(path: &Path) -> Result<Self, AudioError> {
        let mut source = open_source(path)?;
        let format = source.format();
        let samples = read_all(source.as_mut())?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::encode(name, format, &samples)
    }

    /// Encodes a WAV file held in memory (the demo's clips are built into the binary).
    pub fn from_wav_bytes(name: &str, bytes: &[u8]) -> Result<Self, AudioError> {
        let bad = |e: hound::Error| AudioError::Format(format!("built-in clip {name}: {e}"));
        let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(bad)?;
        let spec = reader.spec();
        let format = crate::audio::DeviceFormat {
            sample_rate: spec.sample_rate,
            channels: spec.channels,
        };
        let samples = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 16) => reader
                .samples::<i16>()
                .map(|s| s.map(|s| f32::from(s) / 32_768.0))
                .collect::<Result<Vec<f32>, _>>()
                .map_err(bad)?,
            (hound::SampleFormat::Float, 32) => reader
                .samples::<f32>()
                .collect::<Result<Vec<f32>, _>>()
                .map_err(bad)?,
            _ => {
                return Err(AudioError::Format(format!(
                    "built-in clip {name}: not 16-bit or float WAV"
                )));
            }
        };
        Self::encode(name.to_string(), format, &samples)
    }

    fn encode(
        name: String,
        format: crate::audio::DeviceFormat,
        samples: &[f32],
    ) -> Result<Self, AudioError> {
        let config = CaptureConfig {
            noise_suppression: false,
            ..CaptureConfig::default()
        };
        let mut processor = CaptureProcessor::new(format, &config)?;
        processor.push(samples)?;
        let mut frames = Vec::new();
        while let Some(frame) = processor.next_frame(false)? {
            frames.push(frame.encoded);
        }
        Ok(Self { name, frames })
    }

    /// How long the clip plays.
    pub fn duration(&self) -> Duration {
        FRAME * self.frames.len() as u32
    }
}

/// Numbers a speaker keeps across frames: the next sequence number and the sample clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sender {
    pub sequence: u32,
    pub timestamp_48k: u32,
}

impl Sender {
    /// Sends one slot of a clip (nothing in silence) and advances the clock.
    pub fn send(&mut self, live: &LiveSession, slot: Option<&AudioFrame>) {
        if let Some(frame) = self.stamp(slot) {
            live.send_audio(&frame);
        }
    }

    /// The slot as this sender sends it next (None in silence); advances the clock.
    fn stamp(&mut self, slot: Option<&AudioFrame>) -> Option<AudioFrame> {
        let timestamp_48k = self.timestamp_48k;
        self.timestamp_48k = self
            .timestamp_48k
            .wrapping_add(crate::audio::FRAME_SAMPLES as u32);
        let frame = slot?.with_header(AudioHeader {
            speaker_id: 0,
            sequence: self.sequence,
            timestamp_48k,
            ..slot?.header
        });
        self.sequence = self.sequence.wrapping_add(1);
        Some(frame)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_speech_clip_encodes_to_one_frame_per_20_ms() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech/alice.wav");
        let clip = Clip::from_file(&path).unwrap();
        let spec = hound::WavReader::open(&path).unwrap().spec();
        let samples = hound::WavReader::open(&path).unwrap().duration() as usize;
        assert_eq!(spec.sample_rate, 48_000);
        assert_eq!(clip.frames.len(), samples / 960);
        let voiced = clip
            .frames
            .iter()
            .flatten()
            .filter(|f| f.header.voice)
            .count();
        assert!(
            voiced > clip.frames.len() / 3,
            "speech should be mostly voiced: {voiced}/{}",
            clip.frames.len()
        );
        assert!(clip.frames.iter().flatten().all(|f| f.opus().len() <= 1275));
    }

    #[test]
    fn a_missing_or_foreign_file_is_a_clear_error() {
        let err = Clip::from_file(Path::new("/nonexistent/x.wav"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.wav"), "{err}");
        let err = Clip::from_file(Path::new("Cargo.toml"))
            .unwrap_err()
            .to_string();
        assert!(!err.is_empty());
    }
}
