//! The playout side: packets from the network → a jitter buffer per speaker → Opus decode
//! or concealment → mix with per-speaker and master volume and a limiter → device ring.
//!
//! [`PlayoutCore`] is pure (commands and ticks in, mixed frames out); [`PlayoutWorker`] is
//! one step of the loop over a device ring with an injectable [`Clock`]; [`Playout`] runs
//! it on a thread and is the handle the network layer and UI use.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::audio::clock::{Clock, SystemClock};
use crate::audio::codec::OpusDecoder;
use crate::audio::error::AudioError;
use crate::audio::jitter::{
    JitterBuffer, JitterConfig, JitterCounters, JitterOutput, LatencyProfile,
};
use crate::audio::level::{self, SILENCE_DBOV};
use crate::audio::mixer::Mixer;
use crate::audio::replay::{Playback, ReplayCommand, ReplayProgress};
use crate::audio::resample::FromEngine;
use crate::audio::stream::{DeviceFormat, PlaybackGuard, PlaybackStream, StreamCounters};
use crate::audio::stretch::{Stretcher, stretchable};
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::protocol::AudioFrame;

/// Messages the playout worker receives (from the network thread and the UI).
#[derive(Debug)]
pub enum PlayoutCommand {
    /// One received audio frame (its speaker stamped by the server).
    Packet(AudioFrame),
    /// The speaker left the stage or the room: drop its state.
    SpeakerLeft(u32),
    /// Per-speaker volume (1.0 = unchanged, 0 = muted locally).
    SetSpeakerVolume(u32, f32),
    /// Volume of everything.
    SetMasterVolume(f32),
    /// Favour low delay (on stage) or smoothness (in the audience).
    SetLatency(LatencyProfile),
    /// Play this replay (#15), mixed with any speakers, instead of any other. Made ready
    /// (its decoders and stretcher allocated) by the sender, not on this thread.
    StartReplay(Box<Playback>),
    /// Seek, speed up, pause or stop the replay playing. (`Play` comes as `StartReplay`.)
    Replay(ReplayCommand),
}

/// How playout behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayoutConfig {
    /// Jitter buffer tuning for every speaker.
    pub jitter: JitterConfig,
    /// Commands queued at most: 256 ≈ 13 speakers × 50 frames/s × 0.4 s. When full,
    /// audio packets are dropped and counted (the jitter buffer conceals them); control
    /// commands wait for room.
    pub command_queue: usize,
    /// Audio kept queued for the device, ms. The worker tops the ring up to this.
    pub device_fill_ms: u32,
    /// The longest the worker sleeps. The device wakes it when it needs the next frame
    /// ([`PlayoutWorker::wait`]) and a stop wakes it too, so this only bounds how long a
    /// device that stopped playing without a word leaves it asleep.
    pub poll_interval: Duration,
}

impl Default for PlayoutConfig {
    fn default() -> Self {
        PlayoutConfig {
            jitter: LatencyProfile::Low.jitter_config(),
            command_queue: 256,
            device_fill_ms: 30,
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// One speaker as the UI sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerStats {
    /// Server-stamped id.
    pub speaker_id: u32,
    /// Level of what we played for them in the last tick, dBov.
    pub level_dbov: f32,
    /// Speaking indicator: their voice flag, on a frame we just played.
    pub speaking: bool,
    /// Latency their jitter buffer adds now, ms.
    pub jitter_delay_ms: f32,
    /// What it aims for, ms.
    pub target_delay_ms: f32,
    /// Local volume.
    pub volume: f32,
    /// Jitter buffer counters (concealed, late, ...).
    pub counters: JitterCounters,
    /// Frames played faster (catching up) and slower (building delay up), pitch kept.
    pub frames_faster: u64,
    pub frames_slower: u64,
}

/// A snapshot of playout for the UI.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlayoutStats {
    /// Every current speaker, by id.
    pub speakers: Vec<SpeakerStats>,
    /// Level of the mix, dBov.
    pub mix_level_dbov: f32,
    /// The limiter's gain (1.0 = idle).
    pub limiter_gain: f32,
    /// Ticks (20 ms frames) produced.
    pub ticks: u64,
    /// Decode + mix time of the last tick, µs.
    pub decode_us_last: u64,
    /// Worst decode + mix time, µs.
    pub decode_us_max: u64,
    /// Device callbacks that ran short and played silence.
    pub device_underruns: u64,
    /// Packets dropped because the command queue was full.
    pub dropped_packets: u64,
    /// Frames the worker could not place because the device ring was full.
    pub ring_overruns: u64,
    /// Master volume.
    pub master_volume: f32,
    /// The replay being played, if one is.
    pub replay: Option<ReplayProgress>,
}

struct Speaker {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    /// Plays the decoded frames at the catch-up rate when behind (exactly as they are
    /// otherwise); what it holds is part of the delay.
    stretcher: Stretcher,
    /// Playing faster, slower or as is; hysteresis between the thresholds.
    pace: Pace,
    /// Frames played at each stretched pace.
    frames_faster: u64,
    frames_slower: u64,
    volume: f32,
    /// The last decoded frame (the stretcher's input).
    decoded: Vec<f32>,
    /// What this speaker plays in this tick (the stretcher's output).
    frame: Vec<f32>,
    level_dbov: f32,
    speaking: bool,
}

/// How fast playout plays to catch up with its target after a burst (a stall's backlog
/// arriving at once): 25 % faster, with pitch kept, is barely noticed, and takes back a
/// 500 ms backlog in 2 s. Quiet and unvoiced stretches go faster still.
pub const CATCH_UP_RATE: f32 = 1.25;
/// Rate in quiet or unvoiced frames while catching up (changes nobody hears).
pub const CATCH_UP_RATE_QUIET: f32 = 1.35;
/// How fast playout plays to build delay up when its target rises (the listener moved to
/// the audience, or the network got worse): 20 % slower with pitch kept, a stretch nobody
/// minds, raises the delay by 200 ms in a second, with no gap.
pub const SLOW_DOWN_RATE: f32 = 0.8;
/// Start catching up (slowing down) this far behind (ahead of) the target, in samples:
/// 1.5 frames. Between packets the walk sits 0..1 frame behind, so this is never reached
/// by the tick's own phase.
const CATCH_UP_FROM: i64 = 1_440;
/// Stop once back within this (samples): half a frame.
const CATCH_UP_UNTIL: i64 = 480;

/// How fast a speaker's audio is played against real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    Steady,
    /// Behind the target: [`CATCH_UP_RATE`].
    CatchingUp,
    /// Ahead of the target: [`SLOW_DOWN_RATE`].
    SlowingDown,
}

impl Pace {
    /// The pace for being `behind` the target (samples; negative: ahead), from `self`.
    fn next(self, behind: Option<i64>) -> Pace {
        let Some(b) = behind else {
            return Pace::Steady;
        };
        match self {
            Pace::CatchingUp if b > CATCH_UP_UNTIL => Pace::CatchingUp,
            Pace::SlowingDown if b < -CATCH_UP_UNTIL => Pace::SlowingDown,
            _ if b >= CATCH_UP_FROM => Pace::CatchingUp,
            _ if b <= -CATCH_UP_FROM => Pace::SlowingDown,
            _ => Pace::Steady,
        }
    }
}
/// Input the stretcher wants ahead of what it plays when stretching: a frame at the
/// catch-up rate plus a splice's search and overlap.
const STRETCH_LOOKAHEAD: usize = 2_200;

impl Speaker {
    /// Fills `frame` with this speaker's next 20 ms: slots from the jitter buffer, decoded,
    /// through the stretcher, faster while playout is behind its target.
    fn play(&mut self, now_us: u64) {
        // Behind by the jitter buffer's reckoning plus what the stretcher still holds.
        let behind = self
            .jitter
            .lateness_samples(now_us)
            .map(|l| l + self.stretcher.buffered() as i64);
        self.pace = self.pace.next(behind);
        let catching_up = self.pace == Pace::CatchingUp;
        let mut speaking = false;
        let mut fed = 0;
        // One frame of input at least; when catching up, as much lookahead as is already
        // here (reading ahead must never cost a concealment).
        while self.stretcher.buffered() < FRAME_SAMPLES
            || (catching_up
                && self.stretcher.buffered() < STRETCH_LOOKAHEAD
                && self.jitter.next_is_ready())
        {
            let out = self.jitter.tick(now_us);
            let result = match &out {
                JitterOutput::Packet(frame) => self.decoder.decode(frame.opus(), &mut self.decoded),
                JitterOutput::Conceal => self.decoder.conceal(&mut self.decoded),
                JitterOutput::Silence => {
                    self.decoded.fill(0.0);
                    Ok(())
                }
            };
            if result.is_err() {
                self.decoded.fill(0.0);
            }
            speaking |= matches!(&out, JitterOutput::Packet(f) if f.header.voice);
            self.stretcher.push(&self.decoded);
            fed += 1;
            if fed >= 3 {
                break;
            }
        }
        match self.pace {
            Pace::Steady => {}
            Pace::CatchingUp => self.frames_faster += 1,
            Pace::SlowingDown => self.frames_slower += 1,
        }
        let rate = match self.pace {
            Pace::Steady => 1.0,
            Pace::SlowingDown => SLOW_DOWN_RATE,
            Pace::CatchingUp if stretchable(&self.decoded) => CATCH_UP_RATE_QUIET,
            Pace::CatchingUp => CATCH_UP_RATE,
        };
        let got = self.stretcher.pull(&mut self.frame, rate);
        self.frame[got..].fill(0.0);
        self.speaking = speaking;
        self.level_dbov = level::frame_dbov(&self.frame);
    }
}

/// How much of what was played a clip keeps (#15).
pub const CLIP_SECONDS: usize = 30;

/// The last [`CLIP_SECONDS`] of the mix as played (before the device's resampling), 48 kHz
/// mono 16-bit: 2.9 MB, written over in a circle. The worker adds each frame it plays;
/// a clip copies it out.
pub struct ClipRing {
    samples: Vec<i16>,
    next: usize,
    filled: usize,
}

impl Default for ClipRing {
    fn default() -> Self {
        Self {
            samples: vec![0; CLIP_SECONDS * SAMPLE_RATE as usize],
            next: 0,
            filled: 0,
        }
    }
}

impl ClipRing {
    /// Adds one played frame.
    pub fn push(&mut self, mix: &[f32]) {
        let len = self.samples.len();
        for &s in mix {
            self.samples[self.next] = (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
            self.next = (self.next + 1) % len;
        }
        self.filled = (self.filled + mix.len()).min(len);
    }

    /// What was played, oldest first (less than 30 s when less was): two plain copies.
    pub fn snapshot(&self) -> Vec<i16> {
        let len = self.samples.len();
        let start = (self.next + len - self.filled) % len;
        let mut out = Vec::with_capacity(self.filled);
        if start + self.filled <= len {
            out.extend_from_slice(&self.samples[start..start + self.filled]);
        } else {
            out.extend_from_slice(&self.samples[start..]);
            out.extend_from_slice(&self.samples[..self.filled - (len - start)]);
        }
        out
    }

    /// Forgets what was played (a new room starts a new clip).
    pub fn clear(&mut self) {
        self.filled = 0;
    }
}

/// The pure playout core.
pub struct PlayoutCore {
    speakers: BTreeMap<u32, Speaker>,
    /// Volumes set before (or between) a speaker's packets survive its arrival.
    volumes: BTreeMap<u32, f32>,
    jitter_config: JitterConfig,
    mixer: Mixer,
    master_volume: f32,
    mix: Vec<f32>,
    ticks: u64,
    decode_us_last: u64,
    decode_us_max: u64,
    /// A replay being played, and its frame of this tick.
    replay: Option<Playback>,
    replay_frame: Vec<f32>,
}

impl PlayoutCore {
    /// An empty room.
    pub fn new(jitter_config: JitterConfig) -> Self {
        PlayoutCore {
            speakers: BTreeMap::new(),
            volumes: BTreeMap::new(),
            jitter_config,
            mixer: Mixer::new(),
            master_volume: 1.0,
            mix: vec![0.0; FRAME_SAMPLES],
            ticks: 0,
            decode_us_last: 0,
            decode_us_max: 0,
            replay: None,
            replay_frame: vec![0.0; FRAME_SAMPLES],
        }
    }

    /// Applies one command received at `now_us`.
    pub fn handle(&mut self, command: PlayoutCommand, now_us: u64) -> Result<(), AudioError> {
        match command {
            PlayoutCommand::Packet(frame) => {
                let speaker_id = frame.header.speaker_id;
                let speaker = match self.speakers.entry(speaker_id) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => e.insert(Speaker {
                        jitter: JitterBuffer::new(self.jitter_config),
                        decoder: OpusDecoder::new()?,
                        stretcher: Stretcher::new(),
                        pace: Pace::Steady,
                        frames_faster: 0,
                        frames_slower: 0,
                        volume: self.volumes.get(&speaker_id).copied().unwrap_or(1.0),
                        decoded: vec![0.0; FRAME_SAMPLES],
                        frame: vec![0.0; FRAME_SAMPLES],
                        level_dbov: SILENCE_DBOV,
                        speaking: false,
                    }),
                };
                speaker.jitter.push(frame, now_us);
            }
            PlayoutCommand::SpeakerLeft(id) => {
                self.speakers.remove(&id);
            }
            PlayoutCommand::SetSpeakerVolume(id, v) => {
                let v = if v.is_finite() {
                    v.clamp(0.0, 4.0)
                } else {
                    1.0
                };
                self.volumes.insert(id, v);
                if let Some(s) = self.speakers.get_mut(&id) {
                    s.volume = v;
                }
            }
            PlayoutCommand::SetMasterVolume(v) => {
                self.master_volume = if v.is_finite() {
                    v.clamp(0.0, 4.0)
                } else {
                    1.0
                };
            }
            PlayoutCommand::StartReplay(playback) => self.replay = Some(*playback),
            PlayoutCommand::Replay(ReplayCommand::Stop) => self.replay = None,
            PlayoutCommand::Replay(command) => {
                if let Some(replay) = &mut self.replay
                    && let Err(e) = replay.command(command)
                {
                    // The decoder failing stops the replay, never the live audio.
                    tracing::warn!("the replay stopped: {e}");
                    self.replay = None;
                }
            }
            PlayoutCommand::SetLatency(profile) => {
                self.jitter_config = profile.jitter_config();
                for speaker in self.speakers.values_mut() {
                    speaker.jitter.set_config(self.jitter_config, now_us);
                }
            }
        }
        Ok(())
    }

    /// Produces the 20 ms frame starting at `now_us`: every speaker's jitter buffer is
    /// asked what to play, decoded, and mixed.
    pub fn tick(&mut self, now_us: u64) -> &[f32] {
        let started = Instant::now();
        self.mix.fill(0.0);
        for speaker in self.speakers.values_mut() {
            speaker.play(now_us);
            Mixer::accumulate(&mut self.mix, &speaker.frame, speaker.volume);
        }
        if let Some(replay) = &mut self.replay {
            replay.play(&mut self.replay_frame);
            Mixer::accumulate(&mut self.mix, &self.replay_frame, 1.0);
        }
        self.mixer.finish(&mut self.mix, self.master_volume);
        self.ticks += 1;
        self.decode_us_last = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.decode_us_max = self.decode_us_max.max(self.decode_us_last);
        &self.mix
    }

    /// The last mixed frame.
    pub fn mix(&self) -> &[f32] {
        &self.mix
    }

    /// A snapshot for the UI.
    pub fn stats(&self) -> PlayoutStats {
        PlayoutStats {
            speakers: self
                .speakers
                .iter()
                .map(|(&id, s)| SpeakerStats {
                    speaker_id: id,
                    level_dbov: s.level_dbov,
                    speaking: s.speaking,
                    jitter_delay_ms: s.jitter.delay_ms() + s.stretcher.buffered() as f32 / 48.0,
                    target_delay_ms: s.jitter.target_delay_ms(),
                    volume: s.volume,
                    counters: s.jitter.counters(),
                    frames_faster: s.frames_faster,
                    frames_slower: s.frames_slower,
                })
                .collect(),
            mix_level_dbov: level::frame_dbov(&self.mix),
            limiter_gain: self.mixer.gain(),
            ticks: self.ticks,
            decode_us_last: self.decode_us_last,
            decode_us_max: self.decode_us_max,
            master_volume: self.master_volume,
            replay: self.replay.as_ref().map(Playback::progress),
            ..PlayoutStats::default()
        }
    }
}

/// Cheap to clone: what the network thread and the UI hold to talk to playout.
#[derive(Clone)]
pub struct PlayoutSender {
    /// Commands with the time they were sent: a packet's arrival is when the network
    /// handed it over, not when the worker next woke (it sleeps up to a frame).
    tx: SyncSender<(PlayoutCommand, u64)>,
    clock: Arc<dyn Clock>,
    dropped: Arc<AtomicU64>,
    stats: Arc<Mutex<PlayoutStats>>,
    /// The device's counters: their wake-up rouses a sleeping worker.
    device: Arc<StreamCounters>,
    clip: Arc<Mutex<ClipRing>>,
}

impl PlayoutSender {
    /// The last [`CLIP_SECONDS`] of what was played (48 kHz mono), oldest first.
    pub fn clip(&self) -> Vec<i16> {
        self.clip.lock().map(|c| c.snapshot()).unwrap_or_default()
    }

    /// Forgets what was played so far: a clip holds one room's audio only.
    pub fn clear_clip(&self) {
        if let Ok(mut clip) = self.clip.lock() {
            clip.clear();
        }
    }

    /// Hands over one received frame; never blocks (dropped and counted when full).
    /// Returns false once playout has stopped.
    pub fn push(&self, frame: AudioFrame) -> bool {
        match self
            .tx
            .try_send((PlayoutCommand::Packet(frame), self.clock.now_us()))
        {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// A control command: waits for room in the queue (they are few). A full queue means
    /// the worker is asleep behind a stalled device: it is woken to drain it first.
    fn send(&self, command: PlayoutCommand) {
        let item = (command, self.clock.now_us());
        if let Err(TrySendError::Full(item)) = self.tx.try_send(item) {
            self.device.wake.wake();
            let _ = self.tx.send(item);
        }
    }

    /// The speaker left: forget them.
    pub fn speaker_left(&self, speaker_id: u32) {
        self.send(PlayoutCommand::SpeakerLeft(speaker_id));
    }

    /// Local volume for one speaker (0..4, 1 = as sent).
    pub fn set_speaker_volume(&self, speaker_id: u32, volume: f32) {
        self.send(PlayoutCommand::SetSpeakerVolume(speaker_id, volume));
    }

    /// Volume of everything (0..4).
    pub fn set_master_volume(&self, volume: f32) {
        self.send(PlayoutCommand::SetMasterVolume(volume));
    }

    /// Low delay (on stage) or smoothness (in the audience), for every speaker.
    pub fn set_latency(&self, profile: LatencyProfile) {
        self.send(PlayoutCommand::SetLatency(profile));
    }

    /// Plays, seeks, speeds up, pauses or stops a replay. A replay to play is made ready
    /// here, on the caller's thread, so the worker never allocates for it.
    pub fn replay(&self, command: ReplayCommand) {
        match command {
            ReplayCommand::Play(timeline) => match Playback::new(timeline) {
                Ok(playback) => self.send(PlayoutCommand::StartReplay(Box::new(playback))),
                Err(e) => tracing::warn!("cannot play the replay: {e}"),
            },
            command => self.send(PlayoutCommand::Replay(command)),
        }
    }

    /// The latest snapshot (updated every tick).
    pub fn stats(&self) -> PlayoutStats {
        let mut s = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        s.dropped_packets = self.dropped.load(Ordering::Relaxed);
        s
    }
}

/// The playout worker's state: [`PlayoutWorker::step`] runs one iteration.
pub struct PlayoutWorker {
    core: PlayoutCore,
    commands: Receiver<(PlayoutCommand, u64)>,
    ring: rtrb::Producer<f32>,
    from_engine: FromEngine,
    device_buf: Vec<f32>,
    fill_target: usize,
    clock: Arc<dyn Clock>,
    stats: Arc<Mutex<PlayoutStats>>,
    device: Arc<StreamCounters>,
    ring_overruns: u64,
    disconnected: bool,
    clip: Arc<Mutex<ClipRing>>,
}

impl PlayoutWorker {
    /// Builds a worker writing to `ring` (a device in `format`), with its command sender.
    pub fn new(
        ring: rtrb::Producer<f32>,
        format: DeviceFormat,
        device: Arc<StreamCounters>,
        config: &PlayoutConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, PlayoutSender), AudioError> {
        // Bounded: see `PlayoutConfig::command_queue` for the size and the full policy.
        let (tx, rx) = std::sync::mpsc::sync_channel(config.command_queue.max(1));
        let stats = Arc::new(Mutex::new(PlayoutStats::default()));
        let fill_target = format.samples_in_ms(config.device_fill_ms).max(1);
        let device_for_sender = device.clone();
        let clip = Arc::new(Mutex::new(ClipRing::default()));
        Ok((
            PlayoutWorker {
                core: PlayoutCore::new(config.jitter),
                commands: rx,
                ring,
                from_engine: FromEngine::new(format)?,
                device_buf: Vec::with_capacity(format.samples_in_ms(40) + 64),
                fill_target,
                clock: clock.clone(),
                stats: stats.clone(),
                device,
                ring_overruns: 0,
                disconnected: false,
                clip: clip.clone(),
            },
            PlayoutSender {
                tx,
                clock,
                dropped: Arc::new(AtomicU64::new(0)),
                stats,
                device: device_for_sender,
                clip,
            },
        ))
    }

    /// One iteration: take commands, then top the device ring up to its fill target.
    /// Returns false when every sender is gone and the worker should stop.
    pub fn step(&mut self) -> Result<bool, AudioError> {
        loop {
            match self.commands.try_recv() {
                Ok((cmd, sent_us)) => self.core.handle(cmd, sent_us)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.disconnected = true;
                    break;
                }
            }
        }
        let capacity = self.ring.buffer().capacity();
        // One frame per wake-up, decided when it is needed: a frame decided a period early
        // would miss the packets of that period (measured: handing the audience's device
        // two frames a wake cost 0.3 PESQ and 0.3 % of speech on mobile).
        while capacity - self.ring.slots() < self.fill_target {
            self.core.tick(self.clock.now_us());
            // Never waits: while a clip is being copied out (a few milliseconds, once), the
            // frames played meanwhile are not kept, and the device is still fed.
            if let Ok(mut clip) = self.clip.try_lock() {
                clip.push(self.core.mix());
            }
            self.device_buf.clear();
            self.from_engine
                .push(self.core.mix(), &mut self.device_buf)?;
            let room = self.ring.slots().min(self.device_buf.len());
            if let Ok(chunk) = self.ring.write_chunk_uninit(room) {
                chunk.fill_from_iter(self.device_buf[..room].iter().copied());
            }
            if room < self.device_buf.len() {
                self.ring_overruns += 1;
                break;
            }
        }
        if let Ok(mut s) = self.stats.try_lock() {
            let mut snapshot = self.core.stats();
            snapshot.device_underruns = self.device.underruns.load(Ordering::Relaxed);
            snapshot.ring_overruns = self.ring_overruns;
            snapshot.dropped_packets = s.dropped_packets;
            *s = snapshot;
        }
        Ok(!self.disconnected)
    }

    /// Sleeps until the device has played the ring below its fill target (the next
    /// frame is needed: the device end wakes the worker, see
    /// [`Wake`](crate::audio::device::Wake)), or `timeout` passes. One wake-up per frame,
    /// not a poll every few milliseconds. A packet arriving does not wake the worker: it
    /// is stamped when handed over, and played when its slot comes.
    pub fn wait(&self, timeout: Duration) {
        let played = || self.device.samples.load(Ordering::Relaxed);
        // The count before the fill: a period played in between then makes the wake
        // early (harmless), never a period late.
        let played_now = played();
        let filled = self.ring.buffer().capacity() - self.ring.slots();
        // Once the ring is below the target: at least one more sample played.
        let until = played_now + filled.saturating_sub(self.fill_target) as u64 + 1;
        self.device.wake.wait_until(until, played, timeout);
    }

    /// The core, for inspection in tests.
    pub fn core(&self) -> &PlayoutCore {
        &self.core
    }
}

/// A running playout: worker thread + device. Drop to stop both.
pub struct Playout {
    sender: PlayoutSender,
    thread: Option<JoinHandle<Result<(), AudioError>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    guard: Option<PlaybackGuard>,
}

impl Playout {
    /// Starts playout into `stream` on the real clock.
    pub fn start(stream: PlaybackStream, config: PlayoutConfig) -> Result<Playout, AudioError> {
        Self::start_with_clock(stream, config, Arc::new(SystemClock::new()))
    }

    /// Starts playout with a given clock.
    pub fn start_with_clock(
        stream: PlaybackStream,
        config: PlayoutConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Playout, AudioError> {
        let format = stream.format;
        let (ring, guard) = stream.into_parts();
        let (mut worker, sender) =
            PlayoutWorker::new(ring, format, guard.counters.clone(), &config, clock)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        let poll = config.poll_interval;
        let thread = std::thread::Builder::new()
            .name("hallway-playout".into())
            .spawn(move || -> Result<(), AudioError> {
                while !stop_flag.load(Ordering::Relaxed) && worker.step()? {
                    // Woken when the device needs the next frame; `poll_interval` is the
                    // longest the worker sleeps regardless (how soon a stop is seen).
                    worker.wait(poll);
                }
                Ok(())
            })
            .map_err(|e| AudioError::io("starting the playout thread", e))?;
        Ok(Playout {
            sender,
            thread: Some(thread),
            stop,
            guard: Some(guard),
        })
    }

    /// A sender for the network thread and the UI.
    pub fn sender(&self) -> PlayoutSender {
        self.sender.clone()
    }

    /// Latest stats.
    pub fn stats(&self) -> PlayoutStats {
        self.sender.stats()
    }

    /// Stops the worker and closes the device, reporting errors.
    pub fn finish(mut self) -> Result<(), AudioError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AudioError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        let worker = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(AudioError::Format("playout thread panicked".into())),
            None => Ok(()),
        };
        let device = match self.guard.take() {
            Some(g) => g.finish(),
            None => Ok(()),
        };
        worker.and(device)
    }
}

impl Drop for Playout {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_clip_holds_the_last_thirty_seconds_in_order() {
        let mut ring = super::ClipRing::default();
        assert!(ring.snapshot().is_empty());
        let frame = |v: f32| vec![v; crate::audio::FRAME_SAMPLES];
        ring.push(&frame(0.5));
        assert_eq!(ring.snapshot().len(), crate::audio::FRAME_SAMPLES);
        // 31 s of frames, each a step louder: the clip is the last 30 s, oldest first.
        let frames = 31 * 50;
        for i in 0..frames {
            ring.push(&frame(i as f32 / frames as f32));
        }
        let clip = ring.snapshot();
        assert_eq!(
            clip.len(),
            super::CLIP_SECONDS * crate::audio::SAMPLE_RATE as usize
        );
        assert!(clip.windows(2).all(|w| w[0] <= w[1]), "in order");
        let last = (((frames - 1) as f32 / frames as f32) * f32::from(i16::MAX)) as i16;
        assert_eq!(*clip.last().unwrap(), last);
        // Loud input is clipped, not wrapped.
        ring.push(&frame(7.0));
        assert_eq!(*ring.snapshot().last().unwrap(), i16::MAX);
    }

    use super::*;
    use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};

    const MS: u64 = 1000;

    /// Speaker 1's `k`th frame, loud and voiced.
    pub(super) fn frame(k: usize, opus: &[u8]) -> AudioFrame {
        let header = crate::protocol::AudioHeader {
            speaker_id: 1,
            sequence: k as u32,
            timestamp_48k: (k * FRAME_SAMPLES) as u32,
            level: 20,
            voice: true,
        };
        AudioFrame::new(header, opus).unwrap()
    }

    /// `n` frames of a steady 220 Hz tone with a slow vibrato, as Opus packets.
    fn packets(n: usize) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        (0..n)
            .map(|k| {
                let frame: Vec<f32> = (0..FRAME_SAMPLES)
                    .map(|i| {
                        // 220 Hz ± 20 Hz at 3 rad/s: the phase is the frequency's integral.
                        let t = (k * FRAME_SAMPLES + i) as f64 / 48_000.0;
                        let phase = 220.0 * t - 20.0 / 3.0 * (t * 3.0).cos();
                        0.25 * (std::f64::consts::TAU * phase).sin() as f32
                    })
                    .collect();
                encoder.encode_vec(&frame).unwrap()
            })
            .collect()
    }

    /// Plays `packets` arriving at `arrival_ms(k)` (frame k sent at k × 20 ms); returns
    /// every output frame and the core.
    fn play(
        config: JitterConfig,
        packets: &[Vec<u8>],
        arrival_ms: impl Fn(usize) -> u64,
        until_ms: u64,
    ) -> (Vec<Vec<f32>>, PlayoutCore) {
        let mut core = PlayoutCore::new(config);
        let mut order: Vec<usize> = (0..packets.len()).collect();
        order.sort_by_key(|&k| arrival_ms(k));
        let mut next = 0;
        let mut out = Vec::new();
        let mut now = 7 * MS;
        while now <= until_ms * MS {
            while next < order.len() && arrival_ms(order[next]) * MS <= now {
                let k = order[next];
                let command = PlayoutCommand::Packet(frame(k, &packets[k]));
                core.handle(command, arrival_ms(k) * MS).unwrap();
                next += 1;
            }
            out.push(core.tick(now).to_vec());
            now += 20 * MS;
        }
        (out, core)
    }

    fn counters(core: &PlayoutCore) -> JitterCounters {
        core.stats().speakers[0].counters
    }

    #[test]
    fn arrivals_within_the_target_play_exactly_the_decoded_stream() {
        let sent = packets(200);
        // ±8 ms of jitter around 30 ms: inside the target, nothing to catch up.
        let (out, core) = play(
            LatencyProfile::Smooth.jitter_config(),
            &sent,
            |k| k as u64 * 20 + 30 + (k as u64 * 7919 % 17),
            4_300,
        );
        let mut decoder = OpusDecoder::new().unwrap();
        let mut want = vec![0.0; FRAME_SAMPLES];
        let expected: Vec<Vec<f32>> = sent
            .iter()
            .map(|p| {
                decoder.decode(p, &mut want).unwrap();
                want.clone()
            })
            .collect();
        let start = out
            .iter()
            .position(|f| f.iter().any(|s| *s != 0.0))
            .unwrap();
        for (k, frame) in expected.iter().enumerate().take(190) {
            assert_eq!(&out[start + k], frame, "frame {k} differs");
        }
        // Nothing was skipped or held: only the stream's end was concealed (its last
        // frames say voice, so the buffer conceals a few before going silent).
        let c = counters(&core);
        assert_eq!((c.skipped, c.held, c.late), (0, 0, 0), "{c:?}");
    }

    #[test]
    fn after_a_stall_the_backlog_is_played_faster_not_dropped() {
        let sent = packets(400);
        // Frames sent during 2,000..2,400 ms are held by a stall and arrive at 2,430.
        let arrival = |k: usize| {
            let sent = k as u64 * 20;
            if (2_000..2_400).contains(&sent) {
                2_430
            } else {
                sent + 30
            }
        };
        let (out, core) = play(LatencyProfile::Low.jitter_config(), &sent, arrival, 8_500);
        let c = counters(&core);
        // Every frame was played: none dropped as late, none skipped.
        assert_eq!(c.played, 400, "{c:?}");
        assert_eq!((c.late, c.skipped), (0, 0), "{c:?}");
        // The stall cost a short concealment, not a lasting delay: 2 s after the burst the
        // delay is back within a frame or two of the target.
        let stats = core.stats().speakers[0].clone();
        assert!(
            stats.jitter_delay_ms < stats.target_delay_ms + 40.0,
            "{} ms behind a {} ms target",
            stats.jitter_delay_ms,
            stats.target_delay_ms
        );
        // The output ran continuously to the end of the stream: the last sent frame came
        // out well before 8.5 s, though the stall added 400 ms.
        let last_sound = out
            .iter()
            .rposition(|f| f.iter().any(|s| s.abs() > 0.01))
            .unwrap();
        assert!(
            last_sound * 20 < 8_300,
            "sound until {} ms",
            last_sound * 20
        );
    }

    #[test]
    fn moving_between_stage_and_audience_moves_the_delay_by_stretching_without_a_gap() {
        let sent = packets(500);
        let mut core = PlayoutCore::new(LatencyProfile::Low.jitter_config());
        let mut out = Vec::new();
        let mut delays = Vec::new();
        let mut before_the_end = None;
        let mut now = 7 * MS;
        let mut next = 0;
        while now <= 10_500 * MS {
            // To the audience at 2 s, back on stage at 6 s.
            if now / MS / 20 == 100 {
                core.handle(PlayoutCommand::SetLatency(LatencyProfile::Smooth), now)
                    .unwrap();
            }
            if now / MS / 20 == 300 {
                core.handle(PlayoutCommand::SetLatency(LatencyProfile::Low), now)
                    .unwrap();
            }
            // Steady arrivals, 30 ms after sending.
            while next < sent.len() && (next as u64 * 20 + 30) * MS <= now {
                let command = PlayoutCommand::Packet(frame(next, &sent[next]));
                core.handle(command, (next as u64 * 20 + 30) * MS).unwrap();
                next += 1;
            }
            out.push(core.tick(now).to_vec());
            delays.push(
                core.stats()
                    .speakers
                    .first()
                    .map_or(0.0, |s| s.jitter_delay_ms),
            );
            if now / MS / 20 == 450 {
                before_the_end = Some(counters(&core));
            }
            now += 20 * MS;
        }
        let delay_at = |ms: usize| delays[ms / 20];
        assert!(delay_at(1_900) < 60.0, "stage: {}", delay_at(1_900));
        // In the audience the delay covers a retransmission timeout within 2 s...
        assert!(delay_at(4_500) >= 200.0, "audience: {}", delay_at(4_500));
        // ...and back on stage it comes down again within 2 s.
        assert!(delay_at(8_500) < 60.0, "stage again: {}", delay_at(8_500));
        // Every frame played, stretched: none skipped, held or dropped, and nothing
        // concealed before the stream's end (its last frames say voice, so the end is).
        let c = counters(&core);
        assert_eq!(c.played, 500, "{c:?}");
        assert_eq!((c.skipped, c.held, c.late), (0, 0, 0), "{c:?}");
        let c = before_the_end.unwrap();
        assert_eq!(c.concealed, 0, "{c:?}");
        // And no gap: from the first sound to the last, every frame has sound in it.
        let first = out
            .iter()
            .position(|f| f.iter().any(|s| s.abs() > 0.01))
            .unwrap();
        let last = out
            .iter()
            .rposition(|f| f.iter().any(|s| s.abs() > 0.01))
            .unwrap();
        for (k, frame) in out.iter().enumerate().take(last).skip(first) {
            let peak = frame.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            assert!(
                peak > 0.1,
                "frame {k} ({} ms) is a gap: peak {peak}",
                k * 20
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod drift_tests {
    use super::*;
    use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};

    /// A speaker whose clock runs `ppm` fast (negative: slow) against ours talks for
    /// `minutes`, in 10 s spurts with 2 s pauses (DTX); returns the core at the end and
    /// the largest delay seen in the last minute.
    fn long_room(ppm: f64, minutes: u64) -> (PlayoutCore, f32) {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let tone: Vec<f32> = (0..FRAME_SAMPLES)
            .map(|i| 0.2 * (std::f32::consts::TAU * 200.0 * i as f32 / 48_000.0).sin())
            .collect();
        let packet = encoder.encode_vec(&tone).unwrap();
        let mut core = PlayoutCore::new(LatencyProfile::Smooth.jitter_config());
        let frames = minutes * 60 * 50;
        let mut seq = 0u32;
        let mut worst_last_minute = 0.0f32;
        let mut now_us = 7_000u64;
        let mut k = 0u64;
        while k < frames {
            // Frame k leaves the sender at k × 20 ms of *its* clock: on ours, scaled by the
            // drift; it arrives 30 ms later.
            let sent_us = (k as f64 * 20_000.0 / (1.0 + ppm * 1e-6)) as u64;
            let arrival = sent_us + 30_000;
            while arrival > now_us {
                core.tick(now_us);
                if now_us > (minutes - 1) * 60_000_000 {
                    worst_last_minute =
                        worst_last_minute.max(core.stats().speakers[0].jitter_delay_ms);
                }
                now_us += 20_000;
            }
            // 10 s of talk, then 2 s of DTX silence (nothing sent, timestamps run on).
            if k % 600 < 500 {
                let header = crate::protocol::AudioHeader {
                    speaker_id: 1,
                    sequence: seq,
                    timestamp_48k: (k * FRAME_SAMPLES as u64) as u32,
                    level: 20,
                    voice: true,
                };
                let command = PlayoutCommand::Packet(AudioFrame::new(header, &packet).unwrap());
                core.handle(command, arrival).unwrap();
                seq = seq.wrapping_add(1);
            }
            k += 1;
        }
        (core, worst_last_minute)
    }

    #[test]
    fn an_hour_of_clock_drift_either_way_neither_grows_the_delay_nor_loses_speech() {
        for ppm in [300.0, -300.0] {
            // 300 ppm over an hour is 1.08 s of drift: far beyond any buffer.
            let (core, worst) = long_room(ppm, 60);
            let c = core.stats().speakers[0].counters;
            assert!(
                worst < 120.0,
                "{ppm} ppm: {worst} ms of delay after an hour"
            );
            // Nothing thrown away for lateness; the slow clock's extra time is absorbed
            // in the pauses (held frames of silence), the fast one's by playing faster.
            assert_eq!(c.late, 0, "{ppm} ppm: {c:?}");
            assert!(c.played >= 149_000, "{ppm} ppm: {c:?}");
        }
    }
}
