//! The capture side: device ring → 48 kHz mono → noise suppression → level → Opus →
//! [`EncodedFrame`]s for the network.
//!
//! [`CaptureProcessor`] is the pure core (samples in, frames out); [`CaptureWorker`] is one
//! step of the worker loop over a device ring, usable with a stepped clock in tests;
//! [`Capture`] runs the worker on a thread and is the handle the client keeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};
use crate::audio::denoise::Denoiser;
use crate::audio::device::{CaptureGuard, CaptureStream, DeviceFormat, StreamCounters};
use crate::audio::error::AudioError;
use crate::audio::frame::EncodedFrame;
use crate::audio::level::{self, VoiceDetector};
use crate::audio::resample::ToEngine;
use crate::audio::{FRAME_SAMPLES, MAX_OPUS_PACKET};

/// How capture behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureConfig {
    /// RNNoise on the microphone (on by default).
    pub noise_suppression: bool,
    /// Encoder settings (VOIP, 24 kb/s VBR, DTX on, FEC off by default).
    pub encoder: OpusEncoderConfig,
    /// Frames queued for the network at most: 25 = 500 ms. When full, new frames are
    /// dropped and counted: audio that late is useless in a conversation.
    pub frame_queue: usize,
    /// First timestamp on the 48 kHz clock (any value; it wraps).
    pub first_timestamp: u32,
    /// How long the worker sleeps when its ring is empty.
    pub poll_interval: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            noise_suppression: true,
            encoder: OpusEncoderConfig::default(),
            frame_queue: 25,
            first_timestamp: 0,
            poll_interval: Duration::from_millis(4),
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
    /// Frames dropped because the network queue was full.
    pub frames_dropped: AtomicU64,
    /// Encode time of the last frame, µs (noise suppression included).
    pub encode_us_last: AtomicU64,
    /// Worst encode time seen, µs.
    pub encode_us_max: AtomicU64,
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
    /// The frame to send: `None` when muted or in DTX silence.
    pub encoded: Option<EncodedFrame>,
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
                let frame = EncodedFrame {
                    seq: self.seq,
                    timestamp_48k,
                    level: level::dbov_to_level(level_dbov),
                    voice,
                    opus: self.packet[..n].to_vec(),
                };
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

/// The capture worker's state: one [`CaptureWorker::step`] drains the device ring.
pub struct CaptureWorker {
    ring: rtrb::Consumer<f32>,
    processor: CaptureProcessor,
    frames_tx: SyncSender<EncodedFrame>,
    muted: Arc<AtomicBool>,
    stats: Arc<CaptureStats>,
    scratch: Vec<f32>,
}

/// What a step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Did some work (call again soon).
    Worked,
    /// Nothing was waiting.
    Idle,
    /// The frame receiver is gone: stop.
    Disconnected,
}

impl CaptureWorker {
    /// Builds a worker over a device ring. Returns it with the frame receiver, the mute
    /// flag and the stats it updates.
    pub fn new(
        ring: rtrb::Consumer<f32>,
        format: DeviceFormat,
        config: &CaptureConfig,
    ) -> Result<(Self, Receiver<EncodedFrame>), AudioError> {
        // Bounded: see `CaptureConfig::frame_queue` for the size and the full policy.
        let (frames_tx, frames_rx) = std::sync::mpsc::sync_channel(config.frame_queue.max(1));
        let scratch = Vec::with_capacity(ring.buffer().capacity());
        Ok((
            CaptureWorker {
                ring,
                processor: CaptureProcessor::new(format, config)?,
                frames_tx,
                muted: Arc::new(AtomicBool::new(false)),
                stats: Arc::new(CaptureStats::default()),
                scratch,
            },
            frames_rx,
        ))
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

    /// Drains the ring, processes every complete frame and queues what is to be sent.
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
                Some(encoded) => match self.frames_tx.try_send(encoded) {
                    Ok(()) => {
                        s.frames_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Full(_)) => {
                        s.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return Ok(StepOutcome::Disconnected),
                },
            }
        }
        Ok(StepOutcome::Worked)
    }
}

/// A running capture: device + worker thread. Drop to stop both.
pub struct Capture {
    muted: Arc<AtomicBool>,
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), AudioError>>>,
    guard: Option<CaptureGuard>,
}

impl Capture {
    /// Starts capturing from `stream`. Frames arrive on the returned receiver; the worker
    /// stops when the receiver is dropped, when this handle is dropped, or when a file
    /// input ends.
    pub fn start(
        stream: CaptureStream,
        config: CaptureConfig,
    ) -> Result<(Capture, Receiver<EncodedFrame>), AudioError> {
        let format = stream.format;
        let (ring, guard) = stream.into_parts();
        let (mut worker, frames_rx) = CaptureWorker::new(ring, format, &config)?;
        let muted = worker.muted();
        let stats = worker.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let device: Arc<StreamCounters> = guard.counters.clone();
        let stop_flag = stop.clone();
        let poll = config.poll_interval;
        let thread = std::thread::Builder::new()
            .name("hallway-capture".into())
            .spawn(move || -> Result<(), AudioError> {
                while !stop_flag.load(Ordering::Relaxed) {
                    match worker.step()? {
                        StepOutcome::Worked => {}
                        StepOutcome::Disconnected => return Ok(()),
                        StepOutcome::Idle => {
                            let ended = device.finished.load(Ordering::SeqCst);
                            if (ended || worker.input_closed()) && worker.ring.is_empty() {
                                return Ok(());
                            }
                            std::thread::sleep(poll);
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e| AudioError::io("starting the capture thread", e))?;
        Ok((
            Capture {
                muted,
                stats,
                stop,
                thread: Some(thread),
                guard: Some(guard),
            },
            frames_rx,
        ))
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
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join();
        self.guard.take();
    }
}
