//! The one device interface: every backend (cpal, WAV, Ogg Opus, tone, null) becomes a
//! ring of interleaved `f32` at the device's format plus a guard that keeps it running.
//!
//! Capture: backend ─▶ [`CaptureStream::ring`] (rtrb consumer) ─▶ capture worker.
//! Playback: playout worker ─▶ [`PlaybackStream::ring`] (rtrb producer) ─▶ backend.
//!
//! For cpal the other end of the ring is the device callback. For files, tones and null a
//! pump thread stands in for the device: paced in real time, or as fast as the ring allows
//! (tests and offline tools).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::audio::cpal_backend;
use crate::audio::error::{AudioError, DeviceError};
use crate::audio::files::{self, AudioSink, AudioSource, NullSink, NullSource, ToneSource};
pub use crate::audio::stream::{
    CaptureGuard, CaptureStream, DeviceFormat, PlaybackGuard, PlaybackStream, StreamCounters, Wake,
};
use crate::audio::stream::{Keepalive, ring_capacity};

/// Where capture comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum InputDevice {
    /// The system's default input (cpal).
    Default,
    /// A cpal input device by name (as listed by `hallway devices`).
    Cpal(String),
    /// A WAV file.
    Wav(PathBuf),
    /// An Ogg Opus file.
    OggOpus(PathBuf),
    /// A sine tone.
    Tone {
        /// Frequency.
        freq_hz: f32,
        /// Peak amplitude, 0..1.
        amplitude: f32,
    },
    /// Silence.
    Null,
}

/// Where playback goes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputDevice {
    /// The system's default output (cpal).
    Default,
    /// A cpal output device by name.
    Cpal(String),
    /// Record to a WAV file.
    Wav(PathBuf),
    /// Record to an Ogg Opus file.
    OggOpus(PathBuf),
    /// Discard.
    Null,
}

fn file_spec(s: &str) -> Option<(bool, PathBuf)> {
    if let Some(p) = s.strip_prefix("wav:") {
        return Some((true, PathBuf::from(p)));
    }
    if let Some(p) = s.strip_prefix("ogg:") {
        return Some((false, PathBuf::from(p)));
    }
    let lower = s.to_ascii_lowercase();
    if lower.ends_with(".wav") {
        Some((true, PathBuf::from(s)))
    } else if lower.ends_with(".ogg") || lower.ends_with(".opus") {
        Some((false, PathBuf::from(s)))
    } else {
        None
    }
}

impl FromStr for InputDevice {
    type Err = DeviceError;

    /// `default`, `null`, `tone`, `tone:HZ`, `wav:PATH`, `ogg:PATH`, `PATH.wav`,
    /// `PATH.ogg`/`.opus`, `cpal:NAME`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "" | "default" => return Ok(InputDevice::Default),
            "null" | "none" => return Ok(InputDevice::Null),
            "tone" => {
                return Ok(InputDevice::Tone {
                    freq_hz: 440.0,
                    amplitude: 0.3,
                });
            }
            _ => {}
        }
        if let Some(hz) = s.strip_prefix("tone:") {
            let freq_hz: f32 = hz
                .parse()
                .map_err(|_| DeviceError::BadSpec(s.to_string()))?;
            if !(1.0..=20_000.0).contains(&freq_hz) {
                return Err(DeviceError::BadSpec(s.to_string()));
            }
            return Ok(InputDevice::Tone {
                freq_hz,
                amplitude: 0.3,
            });
        }
        if let Some(name) = s.strip_prefix("cpal:") {
            return Ok(InputDevice::Cpal(name.to_string()));
        }
        match file_spec(s) {
            Some((true, p)) => Ok(InputDevice::Wav(p)),
            Some((false, p)) => Ok(InputDevice::OggOpus(p)),
            None => Err(DeviceError::BadSpec(s.to_string())),
        }
    }
}

impl FromStr for OutputDevice {
    type Err = DeviceError;

    /// `default`, `null`, `wav:PATH`, `ogg:PATH`, `PATH.wav`, `PATH.ogg`/`.opus`,
    /// `cpal:NAME`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "" | "default" => return Ok(OutputDevice::Default),
            "null" | "none" => return Ok(OutputDevice::Null),
            _ => {}
        }
        if let Some(name) = s.strip_prefix("cpal:") {
            return Ok(OutputDevice::Cpal(name.to_string()));
        }
        match file_spec(s) {
            Some((true, p)) => Ok(OutputDevice::Wav(p)),
            Some((false, p)) => Ok(OutputDevice::OggOpus(p)),
            None => Err(DeviceError::BadSpec(s.to_string())),
        }
    }
}

/// How a file, tone or null device is clocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Like a sound card: one 20 ms period of audio every 20 ms.
    RealTime,
    /// As fast as the ring allows (tests, offline conversion). Nothing is dropped: the pump
    /// waits for space instead.
    AsFastAsPossible,
}

/// Opens an input. "No sound card" is [`DeviceError::NoDevice`]: callers should say so
/// and carry on with `InputDevice::Null`.
pub fn open_input(device: &InputDevice, pacing: Pacing) -> Result<CaptureStream, AudioError> {
    match device {
        InputDevice::Default => Ok(cpal_backend::open_input(None, None)?),
        InputDevice::Cpal(name) => Ok(cpal_backend::open_input(Some(name), None)?),
        InputDevice::Wav(path) | InputDevice::OggOpus(path) => {
            let source = files::open_source(path)?;
            Ok(pump_source(
                source,
                pacing,
                format!("file {}", path.display()),
            ))
        }
        InputDevice::Tone { freq_hz, amplitude } => Ok(pump_source(
            Box::new(ToneSource::new(DeviceFormat::ENGINE, *freq_hz, *amplitude)),
            pacing,
            format!("tone {freq_hz} Hz"),
        )),
        InputDevice::Null => Ok(pump_source(
            Box::new(NullSource::new(DeviceFormat::ENGINE)),
            pacing,
            "null".into(),
        )),
    }
}

/// Opens an output. Files are written at 48 kHz mono.
pub fn open_output(device: &OutputDevice, pacing: Pacing) -> Result<PlaybackStream, AudioError> {
    match device {
        OutputDevice::Default => Ok(cpal_backend::open_output(None, None)?),
        OutputDevice::Cpal(name) => Ok(cpal_backend::open_output(Some(name), None)?),
        OutputDevice::Wav(path) | OutputDevice::OggOpus(path) => {
            let sink = files::create_sink(path, DeviceFormat::ENGINE)?;
            Ok(pump_sink(sink, pacing, format!("file {}", path.display())))
        }
        OutputDevice::Null => Ok(pump_sink(
            Box::new(NullSink::new(DeviceFormat::ENGINE)),
            pacing,
            "null".into(),
        )),
    }
}

/// Wakes the worker across the ring when dropped: the pump thread has ended.
struct WakeOnExit(Arc<StreamCounters>);

impl Drop for WakeOnExit {
    fn drop(&mut self) {
        self.0.wake.wake();
    }
}

/// A pump's period: like a sound card that moves 20 ms a period (ALSA and PulseAudio run
/// 5–25 ms). One frame a period wakes the workers once per frame, not twice.
const PUMP_PERIOD_MS: u32 = 20;

/// Runs `source` into a ring from a thread that acts as the device.
pub fn pump_source(
    mut source: Box<dyn AudioSource>,
    pacing: Pacing,
    description: String,
) -> CaptureStream {
    let format = source.format();
    // Policy when full: real-time pacing drops and counts like a sound card would;
    // as-fast-as-possible waits for the worker (offline use must not lose audio).
    let (mut tx, rx) = rtrb::RingBuffer::new(ring_capacity(format));
    let counters = Arc::new(StreamCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (counters.clone(), stop.clone());
    let step = format
        .samples_in_ms(PUMP_PERIOD_MS)
        .max(usize::from(format.channels));
    let thread = std::thread::Builder::new()
        .name("hallway-input-pump".into())
        .spawn(move || -> Result<(), AudioError> {
            // However the pump ends (end of file, an error, a stop), the worker hears of it
            // now rather than at its next timeout.
            let _wake_on_exit = WakeOnExit(c.clone());
            let mut buf = vec![0.0f32; step];
            let mut start = Instant::now();
            let mut steps: u32 = 0;
            while !s.load(Ordering::Relaxed) {
                if c.paused.load(Ordering::SeqCst) {
                    // Closed: read nothing until reopened (or stopped), then keep time
                    // from there rather than catch up.
                    std::thread::park_timeout(Duration::from_secs(1));
                    start = Instant::now();
                    steps = 0;
                    continue;
                }
                let n = source.read(&mut buf)?;
                if n == 0 {
                    c.finished.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                let mut chunk = &buf[..n];
                // What reached the ring: the worker counts what it reads against this.
                let mut into_ring = 0u64;
                while !chunk.is_empty() {
                    let room = tx.slots().min(chunk.len());
                    if let Ok(w) = tx.write_chunk_uninit(room) {
                        w.fill_from_iter(chunk[..room].iter().copied());
                        into_ring += room as u64;
                    }
                    chunk = &chunk[room..];
                    if chunk.is_empty() {
                        break;
                    }
                    match pacing {
                        Pacing::RealTime => {
                            c.overrun_samples
                                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            break;
                        }
                        Pacing::AsFastAsPossible => {
                            if s.load(Ordering::Relaxed) || tx.is_abandoned() {
                                return Ok(());
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                c.callbacks.fetch_add(1, Ordering::Relaxed);
                let written = c.samples.fetch_add(into_ring, Ordering::Relaxed) + into_ring;
                c.wake.written(written);
                steps += 1;
                if pacing == Pacing::RealTime {
                    let due = start + Duration::from_millis(PUMP_PERIOD_MS.into()) * steps;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
                if tx.is_abandoned() {
                    return Ok(());
                }
            }
            Ok(())
        });
    let keepalive = match thread {
        Ok(t) => Keepalive::Pump {
            stop,
            thread: Some(t),
        },
        Err(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            counters.finished.store(true, Ordering::SeqCst);
            Keepalive::Pump { stop, thread: None }
        }
    };
    CaptureStream {
        format,
        ring: rx,
        counters,
        description,
        keepalive,
    }
}

/// Drains a ring into `sink` from a thread that acts as the device.
pub fn pump_sink(
    mut sink: Box<dyn AudioSink>,
    pacing: Pacing,
    description: String,
) -> PlaybackStream {
    let format = sink.format();
    // Policy when full: the playout worker only writes what fits (it waits for room), so
    // the ring never overflows; a stuck device shows up as a full ring, not lost memory.
    let (tx, mut rx) = rtrb::RingBuffer::new(ring_capacity(format));
    let counters = Arc::new(StreamCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (counters.clone(), stop.clone());
    let step = format
        .samples_in_ms(PUMP_PERIOD_MS)
        .max(usize::from(format.channels));
    let label = description.clone();
    let thread = std::thread::Builder::new()
        .name("hallway-output-pump".into())
        .spawn(move || -> Result<(), AudioError> {
            let mut buf = vec![0.0f32; step];
            let start = Instant::now();
            if pacing == Pacing::RealTime {
                // Sample n leaves the ring at start + n / rate: with the sender's
                // `timestamp 0 sent` line, benches measure mouth-to-ear.
                let unix_us = crate::audio::clock::unix_us();
                tracing::info!(unix_us, "output started: {label}");
            }
            let mut steps: u32 = 0;
            let result = loop {
                let stopping = s.load(Ordering::SeqCst);
                let available = rx.slots();
                let n = match pacing {
                    Pacing::RealTime if !stopping => step,
                    _ => available.min(step),
                };
                let got = available.min(n);
                if let Ok(chunk) = rx.read_chunk(got) {
                    let (a, b) = chunk.as_slices();
                    buf[..a.len()].copy_from_slice(a);
                    buf[a.len()..got].copy_from_slice(b);
                    chunk.commit_all();
                }
                if got < n {
                    // Like a sound card: what did not arrive in time is silence.
                    buf[got..n].fill(0.0);
                    c.underruns.fetch_add(1, Ordering::Relaxed);
                }
                if n > 0
                    && let Err(e) = sink.write(&buf[..n])
                {
                    break Err(e);
                }
                c.callbacks.fetch_add(1, Ordering::Relaxed);
                let moved = c.samples.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                c.wake.written(moved);
                if stopping && rx.is_empty() {
                    break Ok(());
                }
                match pacing {
                    Pacing::RealTime => {
                        steps += 1;
                        let due = start + Duration::from_millis(PUMP_PERIOD_MS.into()) * steps;
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                    Pacing::AsFastAsPossible => {
                        if n == 0 {
                            if rx.is_abandoned() {
                                s.store(true, Ordering::SeqCst);
                            } else {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }
            };
            let finished = sink.finish();
            result.and(finished)
        });
    let keepalive = match thread {
        Ok(t) => Keepalive::Pump {
            stop,
            thread: Some(t),
        },
        Err(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            Keepalive::Pump { stop, thread: None }
        }
    };
    PlaybackStream {
        format,
        ring: tx,
        counters,
        description,
        keepalive,
    }
}
