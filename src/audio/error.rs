//! The engine's error types: one for devices (open/list), one for everything else.

use std::path::PathBuf;

/// Why a device could not be listed, opened or run.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No device of that direction exists; the normal case on a machine without a sound card.
    #[error(
        "no audio {direction} device found (no sound card?); Hallway keeps working without \
         audio; pick a file or `null` device instead (e.g. --{direction} null)"
    )]
    NoDevice {
        /// "input" or "output".
        direction: &'static str,
    },
    /// A device was asked for by name and no device has that name.
    #[error("no audio {direction} device named {name:?}; run `hallway devices` to list the names")]
    NotFound {
        /// "input" or "output".
        direction: &'static str,
        /// The name that was asked for.
        name: String,
    },
    /// The audio backend (ALSA via cpal) refused: its message is kept as text.
    #[error("audio device error ({context}): {message}")]
    Backend {
        /// What we were doing.
        context: &'static str,
        /// The backend's message.
        message: String,
    },
    /// The device only offers a sample format we do not convert.
    #[error("audio device uses sample format {0}, which Hallway does not support")]
    UnsupportedFormat(String),
    /// A device spec string (`wav:PATH`, `tone:440`, ...) could not be parsed.
    #[error(
        "bad audio device {0:?}: use default, null, tone[:HZ], wav:PATH, ogg:PATH, or cpal:NAME"
    )]
    BadSpec(String),
}

/// Everything else that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A device problem.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The Opus library refused an operation.
    #[error("Opus {context} failed: {message}")]
    Opus {
        /// What we were doing (encode, decode, create encoder...).
        context: &'static str,
        /// libopus's message.
        message: String,
    },
    /// A WAV file could not be read or written.
    #[error("WAV file {path}: {message}; check that it is a readable PCM or float WAV")]
    Wav {
        /// The file.
        path: PathBuf,
        /// hound's message.
        message: String,
    },
    /// An Ogg Opus file could not be read or written.
    #[error("Ogg Opus file {path}: {message}")]
    OggOpus {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A file extension we cannot record to or play from.
    #[error("unsupported audio file {0}: use a .wav, .ogg or .opus file")]
    UnsupportedFile(PathBuf),
    /// Plain I/O (creating a file, spawning a thread).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The resampler could not be built or run (only for impossible rates).
    #[error("resampler: {0}")]
    Resample(String),
    /// A device format the engine cannot use (0 Hz, 0 channels...).
    #[error("invalid audio format: {0}")]
    Format(String),
}

impl AudioError {
    pub(crate) fn opus(context: &'static str, err: opus::Error) -> Self {
        AudioError::Opus {
            context,
            message: err.to_string(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AudioError::Io {
            context: context.into(),
            source,
        }
    }
}
