//! The capture side: device ring → 48 kHz mono → noise suppression → level → Opus →
//! [`AudioFrame`]s handed to a [`FrameSink`] (the network, in the client).
//!
//! [`CaptureProcessor`] is the pure core (samples in, frames out); [`CaptureWorker`] is one
//! step of the worker loop over a device ring, usable with a stepped clock in tests;
//! [`Capture`] runs the worker on a thread and is the handle the client keeps. The thread
//! sleeps until the device has written a frame's worth (the device end wakes it, see
//! [`Wake`](crate::audio::device::Wake)), and while the microphone is closed it sleeps
//! outright.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};
use crate::audio::denoise::Denoiser;
use crate::audio::error::AudioError;
use crate::audio::level::{self, VoiceDetector};
use crate::audio::resample::ToEngine;
use crate::audio::stream::{CaptureGuard, CaptureStream, DeviceFormat, StreamCounters};
use crate::audio::{FRAME_SAMPLES, MAX_OPUS_PACKET};
use crate::protocol::{AudioFrame, AudioHeader};

/// How capture behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureConfig {
    /// RNNoise on the microphone (on by default).
    pub noise_suppression: bool,
    /// Encoder settings (VOIP, 24 kb/s VBR, DTX on, FEC off by default).
    pub encoder: OpusEncoderConfig,
    /// First timestamp on the 48 kHz clock (any value; it wraps).
    pub first_timestamp: u32,
    /// The longest the worker sleeps: it is woken when a frame's worth has arrived, so
    /// this bounds only how soon a device that stopped without a word is noticed.
    pub max_sleep: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            noise_suppression: true,
            encoder: OpusEncoderConfig::default(),
            first_timestamp: 0,
            max_sleep: Duration::from_millis(500),
        }
    }
}

/// Live capture numbers for the UI (atomics: read any time, from any thread).
#[derive(Debug, Default)]
pub struct CaptureStats {
    level_centi_dbov: AtomicI32,
    voice: AtomicBool,
    talking_while_muted: AtomicBool,
    /// Frames measured (every 20 ms, muted or not).
    pub frames: AtomicU64,
    /// Frames handed to the network.
    pub frames_sent: AtomicU64,
    /// Frames not sent because the encoder said silence (DTX).
    pub frames_dtx: AtomicU64,
    /// Frames the sink could not take (the network is behind, or there was no room to
    /// send to).
    pub frames_dropped: AtomicU64,
    /// Encode time of the last frame, µs (noise suppression included).
    pub encode_us_last: AtomicU64,
    /// Worst encode time seen, µs.
    pub encode_us_max: AtomicU64,
    /// Times the worker thread woke up (about one per frame while open, none closed).
    pub wakeups: AtomicU64,
}

impl CaptureStats {
    /// Level of the last frame in dBov (-127 = silence).
    pub fn level_dbov(&self) -> f32 {
        self.level_centi_dbov.load(Ordering::Relaxed) as f32 / 100.0
    }
    /// The voice detector fired on the last frame (with hangover).
    pub fn voice(&self) -> bool {
        self.voice.load(Ordering::Relaxed)
    }
    /// Muted but voice detected: the UI can say "you are talking while muted".
    pub fn talking_while_muted(&self) -> bool {
        self.talking_while_muted.load(Ordering::Relaxed)
    }
}

/// One processed 20 ms frame.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureFrame {
    /// Level after noise suppression, dBov.
    pub level_dbov: f32,
    /// Voice detected.
    pub voice: bool,
    /// The frame to send (speaker 0: the server stamps who): `None` when muted or in DTX
    /// silence.
    pub encoded: Option<AudioFrame>,
    /// Time spent denoising and encoding.
    pub process_time: Duration,
}

/// The pure capture core: device samples in, frames out.
pub struct CaptureProcessor {
    to_engine: ToEngine,
    denoiser: Option<Denoiser>,
    vad: VoiceDetector,
    encoder: OpusEncoder,
    pcm_48k: Vec<f32>,
    frame: Vec<f32>,
    packet: Vec<u8>,
    seq: u32,
    timestamp_48k: u32,
}

impl CaptureProcessor {
    /// A processor for device input in `format`.
    pub fn new(format: DeviceFormat, config: &CaptureConfig) -> Result<Self, AudioError> {
        Ok(CaptureProcessor {
            to_engine: ToEngine::new(format)?,
            denoiser: config.noise_suppression.then(Denoiser::new),
            vad: VoiceDetector::default(),
            encoder: OpusEncoder::new(config.encoder)?,
            pcm_48k: Vec::with_capacity(FRAME_SAMPLES * 16),
            frame: vec![0.0; FRAME_SAMPLES],
            packet: vec![0; MAX_OPUS_PACKET],
            seq: 0,
            timestamp_48k: config.first_timestamp,
        })
    }

    /// Samples of delay between device input and decoded output, at 48 kHz: resampler,
    /// noise suppression and codec lookahead.
    pub fn delay_samples(&self) -> usize {
        self.to_engine.delay_samples()
            + self
                .denoiser
                .as_ref()
                .map_or(0, |_| Denoiser::DELAY_SAMPLES)
            + self.encoder.lookahead()
    }

    /// The microphone was closed for `closed`: what it held is stale, and the clock moves
    /// on by that much (whole frames), as it does through silence, so a receiver sees a
    /// pause rather than speech continuing where it stopped.
    pub fn skip(&mut self, closed: Duration) {
        self.pcm_48k.clear();
        let frames = closed.as_micros() * u128::from(crate::audio::SAMPLE_RATE)
            / 1_000_000
            / FRAME_SAMPLES as u128;
        let samples = (frames as u64).wrapping_mul(FRAME_SAMPLES as u64) as u32;
        self.timestamp_48k = self.timestamp_48k.wrapping_add(samples);
    }

    /// Adds interleaved device samples.
    pub fn push(&mut self, device_samples: &[f32]) -> Result<(), AudioError> {
        self.to_engine.push(device_samples, &mut self.pcm_48k)
    }

    /// Processes the next complete 20 ms frame, if there is one.
    pub fn next_frame(&mut self, muted: bool) -> Result<Option<CaptureFrame>, AudioError> {
        if self.pcm_48k.len() < FRAME_SAMPLES {
            return Ok(None);
        }
        let started = Instant::now();
        self.frame.copy_from_slice(&self.pcm_48k[..FRAME_SAMPLES]);
        self.pcm_48k.drain(..FRAME_SAMPLES);
        let vad_p = self.denoiser.as_mut().map(|d| d.process(&mut self.frame));
        let level_dbov = level::frame_dbov(&self.frame);
        let voice = self.vad.update(level_dbov, vad_p);
        let timestamp_48k = self.timestamp_48k;
        // The timeline advances for every frame, sent or not: receivers tell silence from
        // loss by timestamp jumps without sequence gaps.
        self.timestamp_48k = self.timestamp_48k.wrapping_add(FRAME_SAMPLES as u32);
        let encoded = if muted {
            None
        } else {
            let n = self.encoder.encode(&self.frame, &mut self.packet)?;
            if n <= 2 {
                None // DTX: nothing worth sending
            } else {
                let header = AudioHeader {
                    speaker_id: 0,
                    sequence: self.seq,
                    timestamp_48k,
                    level: level::dbov_to_level(level_dbov),
                    voice,
                };
                let frame = AudioFrame::new(header, &self.packet[..n])
                    .map_err(|e| AudioError::Format(format!("encoded frame: {e}")))?;
                self.seq = self.seq.wrapping_add(1);
                Some(frame)
            }
        };
        Ok(Some(CaptureFrame {
            level_dbov,
            voice,
            encoded,
            process_time: started.elapsed(),
        }))
    }
}

/// What became of a frame handed to a [`FrameSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// On its way.
    Sent,
    /// Not taken: the network is behind, or there is no room to send to. Counted in
    /// [`CaptureStats::frames_dropped`]; late speech is useless in a conversation.
    Dropped,
    /// Nobody will take frames any more: the worker stops.
    Closed,
}

/// Where the capture worker hands each frame. Called on the worker's thread, never in a
/// device callback; it must not block.
pub type FrameSink = Box<dyn FnMut(AudioFrame) -> Handoff + Send>;

/// A sink into a bounded channel of `capacity` frames, for tests, benches and tools that
/// read frames themselves. Full: the frame is dropped (and counted by the worker); the
/// receiver dropped: the worker stops.
pub fn channel_sink(capacity: usize) -> (FrameSink, Receiver<AudioFrame>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let sink: FrameSink = Box::new(move |frame| match tx.try_send(frame) {
        Ok(()) => Handoff::Sent,
        Err(TrySendError::Full(_)) => Handoff::Dropped,
        Err(TrySendError::Disconnected(_)) => Handoff::Closed,
    });
    (sink, rx)
}

/// The capture worker's state: one [`CaptureWorker::step`] drains the device ring.
pub struct CaptureWorker {
    ring: rtrb::Consumer<f32>,
    format: DeviceFormat,
    processor: CaptureProcessor,
    sink: FrameSink,
    muted: Arc<AtomicBool>,
    stats: Arc<CaptureStats>,
    scratch: Vec<f32>,
    /// Samples read from the ring since the start.
    read_samples: u64,
}

/// What a step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Did some work (call again soon).
    Worked,
    /// Nothing was waiting.
    Idle,
    /// The sink is closed: stop.
    Disconnected,
}

impl CaptureWorker {
    /// Builds a worker over a device ring that hands its frames to `sink`.
    pub fn new(
        ring: rtrb::Consumer<f32>,
        format: DeviceFormat,
        config: &CaptureConfig,
        sink: FrameSink,
    ) -> Result<Self, AudioError> {
        let scratch = Vec::with_capacity(ring.buffer().capacity());
        Ok(CaptureWorker {
            ring,
            format,
            processor: CaptureProcessor::new(format, config)?,
            sink,
            muted: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(CaptureStats::default()),
            scratch,
            read_samples: 0,
        })
    }

    /// The mute flag (shared).
    pub fn muted(&self) -> Arc<AtomicBool> {
        self.muted.clone()
    }

    /// The stats (shared).
    pub fn stats(&self) -> Arc<CaptureStats> {
        self.stats.clone()
    }

    /// Delay of the processing chain, samples at 48 kHz.
    pub fn delay_samples(&self) -> usize {
        self.processor.delay_samples()
    }

    /// The device end of the ring is gone (device stopped or its thread ended).
    pub fn input_closed(&self) -> bool {
        self.ring.is_abandoned()
    }

    /// Samples read from the ring so far.
    pub fn read_samples(&self) -> u64 {
        self.read_samples
    }

    /// Device samples (interleaved) still to come before the next frame is complete, at
    /// least a millisecond's worth: what the worker sleeps for.
    pub fn samples_until_frame(&self) -> u64 {
        let short_48k = FRAME_SAMPLES.saturating_sub(self.processor.pcm_48k.len()) as u64;
        let rate = u64::from(self.format.sample_rate.max(1));
        let frames = (short_48k * rate).div_ceil(u64::from(crate::audio::SAMPLE_RATE));
        let device = frames * u64::from(self.format.channels.max(1));
        device.max(self.format.samples_in_ms(1) as u64)
    }

    /// The microphone reopens after `closed`: throws away what the ring holds (recorded
    /// before it opened) and moves the clock on (see [`CaptureProcessor::skip`]).
    pub fn reopen(&mut self, closed: Duration) {
        self.discard();
        self.processor.skip(closed);
    }

    /// Throws away what the ring holds.
    fn discard(&mut self) {
        let n = self.ring.slots();
        if let Ok(chunk) = self.ring.read_chunk(n) {
            chunk.commit_all();
        }
        self.read_samples += n as u64;
    }

    /// Drains the ring, processes every complete frame and hands it to the sink.
    pub fn step(&mut self) -> Result<StepOutcome, AudioError> {
        let n = self.ring.slots();
        if n == 0 {
            return Ok(StepOutcome::Idle);
        }
        self.scratch.clear();
        if let Ok(chunk) = self.ring.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            self.scratch.extend_from_slice(a);
            self.scratch.extend_from_slice(b);
            chunk.commit_all();
        }
        self.read_samples += n as u64;
        self.processor.push(&self.scratch)?;
        let muted = self.muted.load(Ordering::Relaxed);
        while let Some(frame) = self.processor.next_frame(muted)? {
            let s = &self.stats;
            s.frames.fetch_add(1, Ordering::Relaxed);
            s.level_centi_dbov
                .store((frame.level_dbov * 100.0) as i32, Ordering::Relaxed);
            s.voice.store(frame.voice, Ordering::Relaxed);
            s.talking_while_muted
                .store(muted && frame.voice, Ordering::Relaxed);
            let us = u64::try_from(frame.process_time.as_micros()).unwrap_or(u64::MAX);
            s.encode_us_last.store(us, Ordering::Relaxed);
            s.encode_us_max.fetch_max(us, Ordering::Relaxed);
            match frame.encoded {
                None if !muted => {
                    s.frames_dtx.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
                Some(encoded) => match (self.sink)(encoded) {
                    Handoff::Sent => {
                        s.frames_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Handoff::Dropped => {
                        s.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Handoff::Closed => return Ok(StepOutcome::Disconnected),
                },
            }
        }
        Ok(StepOutcome::Worked)
    }
}

/// A running capture: device + worker thread. Drop to stop both.
pub struct Capture {
    muted: Arc<AtomicBool>,
    open: Arc<AtomicBool>,
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), AudioError>>>,
    guard: Option<CaptureGuard>,
}

impl Capture {
    /// Starts capturing from `stream`, open, handing frames to `sink`. The worker stops
    /// when the sink is closed, when this handle is dropped, or when a file input ends.
    pub fn start(
        stream: CaptureStream,
        config: CaptureConfig,
        sink: FrameSink,
    ) -> Result<Capture, AudioError> {
        let format = stream.format;
        let (ring, guard) = stream.into_parts();
        let mut worker = CaptureWorker::new(ring, format, &config, sink)?;
        let muted = worker.muted();
        let stats = worker.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicBool::new(true));
        let device: Arc<StreamCounters> = guard.counters.clone();
        let (stop_flag, open_flag) = (stop.clone(), open.clone());
        let max_sleep = config.max_sleep;
        let thread = std::thread::Builder::new()
            .name("hallway-capture".into())
            .spawn(move || -> Result<(), AudioError> {
                // Since when the microphone has been closed (None: open).
                let mut closed_since: Option<Instant> = None;
                while !stop_flag.load(Ordering::SeqCst) {
                    worker.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                    let is_open = open_flag.load(Ordering::SeqCst);
                    if !is_open {
                        // Closed: sleep until reopened or stopped.
                        closed_since.get_or_insert_with(Instant::now);
                        std::thread::park_timeout(max_sleep);
                        continue;
                    }
                    if let Some(since) = closed_since.take() {
                        worker.reopen(since.elapsed());
                    }
                    if worker.step()? == StepOutcome::Disconnected {
                        return Ok(());
                    }
                    let ended = device.finished.load(Ordering::SeqCst);
                    if (ended || worker.input_closed()) && worker.ring.is_empty() {
                        return Ok(());
                    }
                    let written = || device.samples.load(Ordering::Relaxed);
                    let until = worker.read_samples() + worker.samples_until_frame();
                    device.wake.wait_until(until, written, max_sleep);
                }
                Ok(())
            })
            .map_err(|e| AudioError::io("starting the capture thread", e))?;
        Ok(Capture {
            muted,
            open,
            stats,
            stop,
            thread: Some(thread),
            guard: Some(guard),
        })
    }

    /// Opens or closes the microphone: closed, the device is paused (where it can be),
    /// nothing is captured or measured, and the worker sleeps. The client keeps it closed
    /// while its user is in the audience.
    pub fn set_open(&self, open: bool) {
        if self.open.swap(open, Ordering::SeqCst) == open {
            return;
        }
        if let Some(guard) = &self.guard {
            guard.set_open(open);
            // The worker may be asleep waiting for samples that will not come (closed) or
            // for the reopening.
            guard.counters.wake.wake();
        }
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        if !open {
            self.stats
                .level_centi_dbov
                .store(-12_700, Ordering::Relaxed);
            self.stats.voice.store(false, Ordering::Relaxed);
            self.stats
                .talking_while_muted
                .store(false, Ordering::Relaxed);
        }
    }

    /// Mutes or unmutes: muted sends nothing but keeps measuring the level.
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// The shared mute flag, for whoever owns the mute key.
    pub fn muted_flag(&self) -> Arc<AtomicBool> {
        self.muted.clone()
    }

    /// Live stats.
    pub fn stats(&self) -> Arc<CaptureStats> {
        self.stats.clone()
    }

    /// Samples the device had to drop because the worker fell behind.
    pub fn device_overruns(&self) -> u64 {
        self.guard
            .as_ref()
            .map_or(0, |g| g.counters.overrun_samples.load(Ordering::Relaxed))
    }

    /// Waits for the worker to end by itself (file input finished, receiver dropped).
    pub fn wait(mut self) -> Result<(), AudioError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), AudioError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(AudioError::Format("capture thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        let _ = self.join();
        self.guard.take();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audio::device::{InputDevice, Pacing, open_input};

    fn tone_capture() -> (Capture, Receiver<AudioFrame>) {
        let device = InputDevice::Tone {
            freq_hz: 440.0,
            amplitude: 0.3,
        };
        let stream = open_input(&device, Pacing::RealTime).unwrap();
        let (sink, frames) = channel_sink(500);
        let config = CaptureConfig {
            noise_suppression: false,
            ..CaptureConfig::default()
        };
        (Capture::start(stream, config, sink).unwrap(), frames)
    }

    /// Waits for `n` frames (at most 5 s): the test does not depend on the machine's speed.
    fn take(frames: &Receiver<AudioFrame>, n: usize) -> Vec<AudioFrame> {
        (0..n)
            .map_while(|_| frames.recv_timeout(Duration::from_secs(5)).ok())
            .collect()
    }

    #[test]
    fn the_worker_wakes_once_a_frame_when_the_device_says_so_not_by_polling() {
        let (capture, frames) = tone_capture();
        let got = take(&frames, 50);
        assert_eq!(got.len(), 50);
        // One packet per 20 ms, in order, from the sender's clock.
        for (k, f) in got.iter().enumerate() {
            assert_eq!(f.header.sequence, k as u32);
            assert_eq!(f.header.timestamp_48k, (k * FRAME_SAMPLES) as u32);
            assert!(f.header.voice || k < 5, "frame {k} of a loud tone");
        }
        let stats = capture.stats();
        let frames_done = stats.frames.load(Ordering::Relaxed);
        let wakeups = stats.wakeups.load(Ordering::Relaxed);
        // Polling every 4 ms would have woken 5 times a frame.
        assert!(
            wakeups <= frames_done * 2 + 5,
            "{wakeups} wake-ups for {frames_done} frames"
        );
        assert_eq!(stats.frames_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_closed_microphone_captures_nothing_and_its_worker_sleeps() {
        let (capture, frames) = tone_capture();
        let before = take(&frames, 5);
        assert_eq!(before.len(), 5);
        capture.set_open(false);
        // Whatever was in flight when it closed.
        let mut last = before[4].header;
        while let Ok(f) = frames.recv_timeout(Duration::from_millis(200)) {
            last = f.header;
        }
        let stats = capture.stats();
        let (measured, woke) = (
            stats.frames.load(Ordering::Relaxed),
            stats.wakeups.load(Ordering::Relaxed),
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            frames.try_recv().is_err(),
            "a closed microphone sent a frame"
        );
        assert_eq!(
            stats.frames.load(Ordering::Relaxed),
            measured,
            "it measured"
        );
        assert!(
            stats.wakeups.load(Ordering::Relaxed) <= woke + 1,
            "it polled"
        );
        assert_eq!(stats.level_dbov(), -127.0, "the meter shows a closed mic");
        // Reopened, it captures again, carrying on its own sequence; its clock moved on by
        // the half second it was closed, so a recorder sees a pause, not speech run on.
        capture.set_open(true);
        let again = take(&frames, 5);
        assert_eq!(again.len(), 5);
        assert!(
            again
                .windows(2)
                .all(|w| w[1].header.sequence == w[0].header.sequence + 1)
        );
        assert_eq!(again[0].header.sequence, last.sequence + 1);
        let gap = again[0]
            .header
            .timestamp_48k
            .wrapping_sub(last.timestamp_48k);
        assert!(gap >= 300 * 48, "the clock moved only {gap} samples");
    }
}
