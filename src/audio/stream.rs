//! What a device end and the worker across its ring share: the ring's format, the
//! counters and wake-up the device end updates from its callback or pump, and the guards
//! that keep a device running. Backends ([`cpal_backend`](crate::audio::cpal_backend), the
//! pumps in [`device`](crate::audio::device)) and workers import this; nothing here
//! imports a backend, so the two never import each other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crate::audio::SAMPLE_RATE;
use crate::audio::error::AudioError;

/// A device's sample rate and channel count (samples are always interleaved `f32` here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFormat {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

impl DeviceFormat {
    /// The engine's own format: 48 kHz mono.
    pub const ENGINE: DeviceFormat = DeviceFormat {
        sample_rate: SAMPLE_RATE,
        channels: 1,
    };

    /// Rejects formats the engine cannot convert.
    pub fn validate(&self) -> Result<(), AudioError> {
        if !(8_000..=384_000).contains(&self.sample_rate) {
            return Err(AudioError::Format(format!(
                "sample rate {} Hz (supported: 8000..=384000)",
                self.sample_rate
            )));
        }
        if !(1..=32).contains(&self.channels) {
            return Err(AudioError::Format(format!(
                "{} channels (supported: 1..=32)",
                self.channels
            )));
        }
        Ok(())
    }

    /// Interleaved samples in `ms` milliseconds.
    pub fn samples_in_ms(&self, ms: u32) -> usize {
        (self.sample_rate as usize * ms as usize / 1000) * usize::from(self.channels)
    }
}

/// How a device end wakes the worker on the other side of its ring, so the worker sleeps
/// until there is a frame to process (capture) or room for one (playback) instead of
/// polling. The worker says how many samples in total it waits for the device to move
/// ([`Wake::wait_until`]); the device end, after each period, wakes it once that many have
/// been moved ([`Wake::written`]). That is an atomic load per
/// callback and, once per wait, a compare-exchange and an unpark (one futex wake, which
/// never blocks or allocates): fit for a real-time callback.
#[derive(Debug)]
pub struct Wake {
    /// The worker thread (the first to wait).
    worker: OnceLock<Thread>,
    /// Total samples written at which to wake the worker; `u64::MAX` while none waits.
    at_samples: AtomicU64,
}

impl Default for Wake {
    fn default() -> Self {
        Wake {
            worker: OnceLock::new(),
            at_samples: AtomicU64::new(u64::MAX),
        }
    }
}

impl Wake {
    /// The device end has moved (written, or played) `total` samples since it started.
    pub fn written(&self, total: u64) {
        // The count was just added to; this fence pairs with the one in `wait_until`:
        // either the worker sees the new count and does not sleep, or this sees its
        // target and wakes it (a store then a load on each side needs SeqCst fences).
        fence(Ordering::SeqCst);
        let at = self.at_samples.load(Ordering::Acquire);
        if total >= at
            && self
                .at_samples
                .compare_exchange(at, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            && let Some(worker) = self.worker.get()
        {
            worker.unpark();
        }
    }

    /// Sleeps until `total` samples have been moved (`written_now` reads the count),
    /// [`Wake::wake`] is called, or `timeout` passes. Always called from the same thread:
    /// the first thread to wait is the one woken from then on.
    pub fn wait_until(&self, total: u64, written_now: impl Fn() -> u64, timeout: Duration) {
        self.worker.get_or_init(std::thread::current);
        self.at_samples.store(total, Ordering::Release);
        fence(Ordering::SeqCst);
        // Written meanwhile: the device end may have missed the new target. (If it did
        // not, its unpark only makes the next park return at once.)
        if written_now() < total {
            std::thread::park_timeout(timeout);
        }
        self.at_samples.store(u64::MAX, Ordering::Release);
    }

    /// Wakes the worker now (a stop, or the device reopened).
    pub fn wake(&self) {
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
    }
}

/// Counters a device end updates from its callback or pump (atomics only).
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Capture: samples dropped because the ring was full (the worker fell behind).
    pub overrun_samples: AtomicU64,
    /// Playback: callbacks that found the ring short and played (partly) silence.
    pub underruns: AtomicU64,
    /// Callbacks (or pump steps) run.
    pub callbacks: AtomicU64,
    /// Samples moved through the ring by the device end.
    pub samples: AtomicU64,
    /// Errors the backend reported from its thread.
    pub errors: AtomicU64,
    /// A file source reached its end (nothing more will come).
    pub finished: AtomicBool,
    /// Wakes the worker when a frame's worth has been captured, or played.
    pub wake: Wake,
    /// A paused input pump reads nothing and sleeps (see [`CaptureGuard::set_open`]).
    pub paused: AtomicBool,
}

/// Keeps a device end alive; dropping it stops the device.
pub(crate) enum Keepalive {
    Cpal(cpal::Stream),
    Pump {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<Result<(), AudioError>>>,
    },
}

impl Keepalive {
    /// Stops a pump thread and returns its result (cpal streams just stop).
    fn stop(&mut self) -> Result<(), AudioError> {
        match self {
            Keepalive::Cpal(_) => Ok(()),
            Keepalive::Pump { stop, thread } => {
                stop.store(true, Ordering::SeqCst);
                if let Some(thread) = thread {
                    // A paused pump sleeps until woken.
                    thread.thread().unpark();
                }
                match thread.take().map(JoinHandle::join) {
                    Some(Ok(result)) => result,
                    Some(Err(_)) => Err(AudioError::Format("device pump thread panicked".into())),
                    None => Ok(()),
                }
            }
        }
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A running input device: read interleaved samples at `format` from `ring`.
pub struct CaptureStream {
    /// The device's format.
    pub format: DeviceFormat,
    /// Samples from the device.
    pub ring: rtrb::Consumer<f32>,
    /// Overruns and progress, shared with the device end.
    pub counters: Arc<StreamCounters>,
    /// Human-readable device description.
    pub description: String,
    pub(crate) keepalive: Keepalive,
}

impl std::fmt::Debug for CaptureStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureStream")
            .field("format", &self.format)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl CaptureStream {
    /// Splits off the guard (keep it alive as long as the ring is read).
    pub fn into_parts(self) -> (rtrb::Consumer<f32>, CaptureGuard) {
        (
            self.ring,
            CaptureGuard {
                keepalive: self.keepalive,
                counters: self.counters,
            },
        )
    }
}

/// Keeps an input device running; drop to stop it.
pub struct CaptureGuard {
    keepalive: Keepalive,
    /// The device end's counters.
    pub counters: Arc<StreamCounters>,
}

impl CaptureGuard {
    /// Opens (runs) or closes (pauses) the device: a listener's microphone stays closed,
    /// so nothing records them and no thread wakes for it. A sound card that cannot pause
    /// keeps running (its samples are thrown away by the worker).
    pub fn set_open(&self, open: bool) {
        self.counters.paused.store(!open, Ordering::SeqCst);
        match &self.keepalive {
            Keepalive::Cpal(stream) => {
                use cpal::traits::StreamTrait;
                let result = if open { stream.play() } else { stream.pause() };
                if let Err(e) = result {
                    tracing::warn!(
                        "cannot {} the microphone: {e}",
                        if open { "resume" } else { "pause" }
                    );
                }
            }
            Keepalive::Pump { thread, .. } => {
                if let Some(thread) = thread {
                    thread.thread().unpark();
                }
            }
        }
    }
}

/// A running output device: write interleaved samples at `format` into `ring`.
pub struct PlaybackStream {
    /// The device's format.
    pub format: DeviceFormat,
    /// Samples to the device.
    pub ring: rtrb::Producer<f32>,
    /// Underruns and progress, shared with the device end.
    pub counters: Arc<StreamCounters>,
    /// Human-readable device description.
    pub description: String,
    pub(crate) keepalive: Keepalive,
}

impl std::fmt::Debug for PlaybackStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackStream")
            .field("format", &self.format)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl PlaybackStream {
    /// Splits off the guard (keep it alive as long as the ring is written).
    pub fn into_parts(self) -> (rtrb::Producer<f32>, PlaybackGuard) {
        (
            self.ring,
            PlaybackGuard {
                keepalive: self.keepalive,
                counters: self.counters,
            },
        )
    }
}

/// Keeps an output device running; drop (or [`PlaybackGuard::finish`]) to stop it.
pub struct PlaybackGuard {
    keepalive: Keepalive,
    /// The device end's counters.
    pub counters: Arc<StreamCounters>,
}

impl PlaybackGuard {
    /// Stops the device after it has written what is in the ring, and finalises a file
    /// (WAV header, Ogg end of stream), reporting any error.
    pub fn finish(mut self) -> Result<(), AudioError> {
        self.keepalive.stop()
    }
}

/// Ring capacity for a device: 200 ms. Far above any sane device period, so a full ring
/// means the other side is stuck, and the policy at the full end applies (see callers).
pub(crate) fn ring_capacity(format: DeviceFormat) -> usize {
    format.samples_in_ms(200).max(1024)
}
