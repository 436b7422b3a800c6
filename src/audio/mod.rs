//! The audio engine: devices, real-time rings, capture and playout workers, Opus, jitter
//! buffers, mixing and resampling. No tokio and no UI in here.
//!
//! # Shape
//!
//! ```text
//! device input (cpal callback | file/tone pump) ─rtrb─▶ capture worker (woken per frame)
//!     resample → denoise → level → Opus ─▶ AudioFrame ─▶ FrameSink (the live session)
//! net layer ─▶ AudioFrame in a PlayoutCommand channel ─▶ playout worker
//!     jitter buffer per speaker → Opus decode/PLC → stretch → mix + limiter → resample ─rtrb─▶ device output
//! ```
//!
//! `hallway record` takes another path: received frames go to the [`recorder`], which
//! places them by their senders' clocks rather than by when they came.
//!
//! A frame has one shape from microphone to speaker: [`AudioFrame`](crate::protocol::AudioFrame),
//! the wire's own type (speaker, sequence, timestamp, level, voice flag and the Opus
//! bytes, in one shared buffer). Capture builds it, the socket sends its bytes, the server
//! restamps the speaker, and the jitter buffer and recorder keep it until it is decoded.
//!
//! Every device end (a cpal callback, or a pump thread standing in for a device) and the
//! worker across its ring share a [`stream`]: the format, counters, and the
//! [`Wake`](stream::Wake) by which the device wakes the worker once per frame. Workers
//! sleep otherwise: capture until a frame's worth has been recorded (and outright while
//! the microphone is closed, in the audience), playout until the device needs the next
//! frame.
//!
//! Inside the engine audio is 48 kHz mono `f32` in 20 ms frames ([`FRAME_SAMPLES`]).
//! The rings between a device and a worker carry interleaved `f32` at the device's own
//! format ([`DeviceFormat`]); the workers convert.
//!
//! The pure cores ([`JitterBuffer`], [`Mixer`], [`level`], [`CaptureProcessor`],
//! [`PlayoutCore`]) take values and return values and are tested with a fake clock; the
//! workers are thin loops around them. [`stretch`] (pitch-preserving time stretching) is
//! such a core too: the playout plays each speaker through one, 25 % faster while it is
//! behind its target after a stall, and exactly as decoded otherwise.

pub mod capture;
pub mod clock;
pub mod codec;
pub mod cpal_backend;
pub mod denoise;
pub mod device;
pub mod error;
pub mod files;
pub mod jitter;
pub mod level;
pub mod mixer;
pub mod oggopus;
pub mod playout;
pub mod recorder;
pub mod replay;
pub mod resample;
pub mod stream;
pub mod stretch;

pub use capture::{
    Capture, CaptureConfig, CaptureFrame, CaptureProcessor, CaptureStats, CaptureWorker, FrameSink,
    Handoff, StepOutcome, channel_sink,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{OpusDecoder, OpusEncoder, OpusEncoderConfig};
pub use cpal_backend::{CpalOptions, DeviceInfo, DeviceList, list_devices};
pub use device::{
    CaptureStream, DeviceFormat, InputDevice, OutputDevice, Pacing, PlaybackStream, open_input,
    open_output,
};
pub use error::{AudioError, DeviceError};
pub use files::{AudioSink, AudioSource, create_sink, open_source};
pub use jitter::{JitterBuffer, JitterConfig, JitterOutput, LatencyProfile};
pub use mixer::Mixer;
pub use playout::{
    Playout, PlayoutCommand, PlayoutConfig, PlayoutCore, PlayoutSender, PlayoutStats,
    PlayoutWorker, SpeakerStats,
};
pub use recorder::{
    Recorder, RecorderConfig, RecorderSender, RecorderStats, RecorderThread, TrackSinks,
};

/// The engine's internal sample rate (Opus's native rate).
pub const SAMPLE_RATE: u32 = 48_000;
/// One frame is 20 ms: the Opus packet size and the jitter buffer's slot size.
pub const FRAME_MS: u32 = 20;
/// Samples in one 20 ms mono frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Largest Opus packet we ever send or accept (RFC 6716 limit for one frame).
pub const MAX_OPUS_PACKET: usize = 1275;
