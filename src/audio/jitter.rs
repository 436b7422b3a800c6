//! The per-speaker jitter buffer: a pure core fed with (packet, arrival time) and asked once
//! per 20 ms tick what to play. No clock of its own, no decoder, no I/O.
//!
//! # Model
//!
//! Every packet carries its position on the sender's 48 kHz clock. We measure each
//! packet's *transit* (arrival time minus sender time); the smallest transit in a sliding
//! window is the network's base delay, and how much later than that packets arrive is the
//! jitter. The target delay is a high quantile of the recent jitter plus a margin, clamped
//! to `min_delay_ms..=max_delay_ms`: it starts small, grows when stalls show up in the
//! window and shrinks back once they have left it (calm).
//!
//! **Stalls are remembered.** On TCP a lost packet holds everything behind it for a
//! retransmission timeout, and a bad link does that again and again. The window forgets a
//! stall within seconds, so the next one would be a hole again. With `stall_memory_ms` set
//! (the audience's profile, [`LatencyProfile::Smooth`]), the largest jitter seen keeps the
//! target at least that high until no stall has come for that long: after the first stall,
//! the next ones of the same size play whole, at the cost of latency the audience does not
//! notice. The stage ([`LatencyProfile::Low`]) forgets at once and keeps its lower cap: a
//! conversation needs quick turns more than it needs every stall covered.
//!
//! Packet `ts` is due at `ts + base transit + target`. Playout walks the sender's timeline
//! one frame per tick; when the walk drifts from the due position by more than a frame it
//! skips a frame (too much latency) or holds one (too little), preferring quiet frames.
//! A stall therefore costs concealment while it lasts; packets that arrive after their slot
//! has been played are dropped as late, so a stall never leaves lasting latency behind.
//!
//! **The first stall.** Nothing warns of a path's first stall, and on TCP the first lost
//! segment holds the stream for a retransmission timeout, at least 200 ms on Linux. The
//! audience does not converse, so it starts out as if it had seen one such stall
//! (`initial_stall_ms`, [`TCP_RTO_MIN_MS`]): the first loss plays whole too. Like any
//! remembered stall, the assumption is forgotten after `stall_memory_ms` without a stall,
//! and the target comes down on a path that proved clean.
//!
//! **With a stretcher** (`stretch`, as the playout runs it) the buffer leaves catching up to
//! its caller: [`JitterBuffer::lateness_samples`] says how far behind the walk is, and the
//! playout plays faster (pitch kept) until it is back, instead of skipping frames, or
//! slower when the target has risen, instead of inserting gaps. Only far behind (or
//! ahead: 10 frames) is a quiet frame thrown away (or a pause lengthened). After a stall, the backlog that arrives
//! at once is played rather than dropped as late, up to `max_delay_ms` of it: a stall
//! costs a moment of concealment and a couple of seconds of slightly faster speech, not
//! words.
//!
//! Sequence numbers tell silence from loss: a missing slot followed by the next sequence
//! number is a DTX gap (play silence); a jump in sequence numbers is loss (conceal).

use std::collections::{BTreeMap, VecDeque};

use crate::audio::FRAME_SAMPLES;
use crate::protocol::AudioFrame;

const FRAME: i64 = FRAME_SAMPLES as i64;

/// Tuning of one jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// The delay never goes below this (covers the arrival phase within a tick).
    pub min_delay_ms: u32,
    /// The delay never goes above this, however bad the network.
    pub max_delay_ms: u32,
    /// Added on top of the measured jitter quantile.
    pub margin_ms: u32,
    /// How many recent packets the jitter estimate looks at (150 = 3 s of speech).
    pub window_packets: usize,
    /// Which quantile of the recent jitter the delay must cover (0.95 = 95 %).
    pub quantile: f32,
    /// After the last packet, at most this many frames are concealed before silence.
    pub max_conceal_frames: u32,
    /// Packets held at most; when full the oldest is dropped and counted (1 s is already
    /// far more latency than anyone wants in a conversation).
    pub capacity_packets: usize,
    /// How long the largest stall seen keeps the target up (0: only while it is in the
    /// window). See "Stalls are remembered" above.
    pub stall_memory_ms: u32,
    /// Only stalls that come again within this long are remembered (0: every stall). A
    /// stall now and then is better concealed than covered with delay all the time.
    pub stall_recur_ms: u32,
    /// A stall assumed before any is seen, remembered like one (0: none). See "The first
    /// stall" above.
    pub initial_stall_ms: u32,
    /// The caller catches up by playing faster (the playout's stretcher, see
    /// [`JitterBuffer::lateness_samples`]): the buffer then skips only quiet frames, and
    /// only when far behind. Without it the buffer sheds latency itself, a quiet frame at
    /// a time.
    pub stretch: bool,
}

impl Default for JitterConfig {
    /// The stage's tuning, shedding latency by itself (a buffer used without a stretcher).
    fn default() -> Self {
        JitterConfig {
            stretch: false,
            ..LatencyProfile::Low.jitter_config()
        }
    }
}

/// Linux's smallest TCP retransmission timeout (`TCP_RTO_MIN`): the least a lost segment
/// holds a TCP stream when no duplicate acknowledgements come to speed its resend up.
pub const TCP_RTO_MIN_MS: u32 = 200;

/// What playout favours: low delay for people on the stage, who converse, or smoothness
/// for the audience, who only listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatencyProfile {
    /// Quick turns: the target follows the last 3 s and stays under 300 ms; a rare stall
    /// is concealed.
    #[default]
    Low,
    /// No holes: the target covers every stall of the last minute, up to 600 ms, and
    /// starts out covering one retransmission timeout.
    Smooth,
}

impl LatencyProfile {
    /// The jitter buffer tuning of this profile.
    pub fn jitter_config(self) -> JitterConfig {
        let low = JitterConfig {
            min_delay_ms: 10,
            max_delay_ms: 300,
            margin_ms: 5,
            window_packets: 150,
            quantile: 0.95,
            max_conceal_frames: 5,
            capacity_packets: 50,
            // Stalls that recur every few seconds (a lossy mobile link) are covered, up to
            // the cap; a rare one is a short gap.
            stall_memory_ms: 10_000,
            stall_recur_ms: 5_000,
            initial_stall_ms: 0,
            stretch: true,
        };
        match self {
            Self::Low => low,
            Self::Smooth => JitterConfig {
                max_delay_ms: 600,
                // A little more than the largest stall: its packets then arrive in time.
                margin_ms: 20,
                // 600 ms of target plus the burst that follows a stall.
                capacity_packets: 100,
                stall_memory_ms: 60_000,
                stall_recur_ms: 0,
                initial_stall_ms: TCP_RTO_MIN_MS,
                ..low
            },
        }
    }
}

/// What to play for this speaker in this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitterOutput {
    /// Decode this frame's Opus packet.
    Packet(AudioFrame),
    /// Run packet-loss concealment (a gap inside speech).
    Conceal,
    /// Play nothing from this speaker.
    Silence,
}

/// Counters since the buffer was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterCounters {
    /// Packets accepted.
    pub received: u64,
    /// Packets played.
    pub played: u64,
    /// Frames concealed (PLC) because audio was missing inside speech.
    pub concealed: u64,
    /// Packets that arrived after their slot had been played (dropped).
    pub late: u64,
    /// Sequence numbers missing between consecutive played packets (lost in the network,
    /// dropped by the server, or dropped here as late or skipped).
    pub seq_gaps: u64,
    /// Frames skipped to bring latency down.
    pub skipped: u64,
    /// Frames inserted (held) to raise the delay.
    pub held: u64,
    /// Packets dropped because the buffer was full.
    pub overflow: u64,
    /// Duplicate packets ignored.
    pub duplicate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a talk spurt's first packet to become due.
    Idle,
    /// Walking the timeline; `next` is the extended timestamp of the next slot.
    Playing { next: i64 },
}

/// One speaker's jitter buffer. See the module docs for the model.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    packets: BTreeMap<i64, AudioFrame>,
    /// Transit times (µs) of recent packets, oldest first.
    transits_us: VecDeque<i64>,
    /// Scratch space for the quantile, kept to avoid reallocating per packet.
    scratch: Vec<i64>,
    base_transit_us: i64,
    target_delay_us: i64,
    last_ext_ts: Option<i64>,
    state: State,
    last_played_seq: Option<u32>,
    last_voice: bool,
    last_level: u8,
    missing_run: u32,
    /// Delay of the last packet played, relative to the fastest recent packet (µs).
    delay_us: i64,
    /// The largest jitter of the stalls remembered (µs), and when the last one was seen
    /// (arrival µs).
    stall_us: i64,
    stall_seen_us: i64,
    /// The newest packet was part of a stall; when the last stall began; whether this one
    /// is remembered (it recurred soon enough, see `stall_recur_ms`).
    in_stall: bool,
    stall_began_us: Option<i64>,
    stall_counts: bool,
    /// When the newest packet arrived (µs); None before the first.
    last_arrival_us: Option<i64>,
    counters: JitterCounters,
}

/// With a stretcher, a quiet frame is skipped (or held) only this many frames behind (or
/// ahead of) the target.
const FAR_BEHIND_FRAMES: i64 = 10;

/// Sender timestamps are extended to i64 starting here, so wrapping never goes negative.
const EXT_ORIGIN: i64 = 1 << 40;
/// A timestamp this far behind the playout position means the sender restarted.
const RESTART_BEHIND_SAMPLES: i64 = 48_000;
/// A transit this far from the base means the sender's clock restarted.
const RESTART_TRANSIT_US: i64 = 2_000_000;

fn samples_to_us(samples: i64) -> i64 {
    // 1 sample at 48 kHz = 125/6 µs.
    samples * 125 / 6
}

fn us_to_samples(us: i64) -> i64 {
    (us * 6).div_euclid(125)
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> Self {
        let window = config.window_packets.max(1);
        JitterBuffer {
            config,
            packets: BTreeMap::new(),
            transits_us: VecDeque::with_capacity(window),
            scratch: Vec::with_capacity(window),
            base_transit_us: 0,
            target_delay_us: i64::from(config.min_delay_ms) * 1000,
            last_ext_ts: None,
            state: State::Idle,
            last_played_seq: None,
            last_voice: false,
            last_level: 127,
            missing_run: 0,
            delay_us: 0,
            stall_us: 0,
            stall_seen_us: 0,
            in_stall: false,
            stall_began_us: None,
            stall_counts: false,
            last_arrival_us: None,
            counters: JitterCounters::default(),
        }
    }

    /// Changes the tuning on the fly (the listener stepped on stage, or off it). The target
    /// moves at once; playout follows it a frame at a time, shedding latency on quiet frames.
    pub fn set_config(&mut self, config: JitterConfig, now_us: u64) {
        self.config = config;
        // The new policy decides afresh which stalls to cover.
        self.stall_us = 0;
        self.stall_counts = false;
        self.in_stall = false;
        if self.last_arrival_us.is_some() {
            // Now, not at the last packet: a speaker silent for a minute must not find
            // the assumed stall already forgotten when they speak again.
            let now_us = i64::try_from(now_us).unwrap_or(i64::MAX / 2);
            self.assume_stall(now_us);
            self.update_target(now_us);
        }
    }

    /// Remembers the stall this profile assumes before it has seen one (see "The first
    /// stall" above).
    fn assume_stall(&mut self, now_us: i64) {
        if self.config.initial_stall_ms > 0 {
            self.stall_us = self
                .stall_us
                .max(i64::from(self.config.initial_stall_ms) * 1000);
            self.stall_seen_us = now_us;
        }
    }

    /// Forgets the stream (keeps counters): the next packet starts a new timeline.
    pub fn reset(&mut self) {
        self.packets.clear();
        self.transits_us.clear();
        self.last_ext_ts = None;
        self.state = State::Idle;
        self.last_played_seq = None;
        self.last_voice = false;
        self.missing_run = 0;
        self.target_delay_us = i64::from(self.config.min_delay_ms) * 1000;
    }

    fn extend(&self, ts: u32) -> i64 {
        match self.last_ext_ts {
            None => EXT_ORIGIN + i64::from(ts),
            Some(last) => {
                // Interpret the difference as signed: timestamps wrap every ~24.8 h.
                let diff = ts.wrapping_sub(last as u32) as i32;
                last + i64::from(diff)
            }
        }
    }

    /// Accepts one frame that arrived at `arrival_us` (on the same clock as `tick`).
    pub fn push(&mut self, frame: AudioFrame, arrival_us: u64) {
        let timestamp_48k = frame.header.timestamp_48k;
        let arrival_us = i64::try_from(arrival_us).unwrap_or(i64::MAX / 2);
        let mut ext = self.extend(timestamp_48k);
        let transit = arrival_us - samples_to_us(ext);
        let restarted = match self.state {
            State::Playing { next } => ext < next - RESTART_BEHIND_SAMPLES,
            State::Idle => false,
        } || (!self.transits_us.is_empty()
            && (transit - self.base_transit_us).abs() > RESTART_TRANSIT_US);
        if restarted {
            self.reset();
            ext = self.extend(timestamp_48k);
        }
        let transit = arrival_us - samples_to_us(ext);
        self.last_ext_ts = Some(self.last_ext_ts.map_or(ext, |l| l.max(ext)));
        self.counters.received += 1;
        self.observe_transit(transit, arrival_us);

        if let State::Playing { next } = self.state
            && ext < next
        {
            self.counters.late += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.counters.duplicate += 1;
            return;
        }
        self.packets.insert(ext, frame);
        while self.packets.len() > self.config.capacity_packets.max(1) {
            self.packets.pop_first();
            self.counters.overflow += 1;
        }
    }

    fn observe_transit(&mut self, transit_us: i64, arrival_us: i64) {
        if self.last_arrival_us.is_none() {
            self.assume_stall(arrival_us);
        }
        self.last_arrival_us = Some(arrival_us);
        let window = self.config.window_packets.max(1);
        if self.transits_us.len() == window {
            self.transits_us.pop_front();
        }
        self.transits_us.push_back(transit_us);
        self.base_transit_us = self.transits_us.iter().copied().min().unwrap_or(transit_us);
        self.scratch.clear();
        self.scratch
            .extend(self.transits_us.iter().map(|t| t - self.base_transit_us));
        self.scratch.sort_unstable();
        self.update_target(arrival_us);
    }

    /// The target from the window's quantile and the stall remembered, at `now_us`.
    fn update_target(&mut self, now_us: i64) {
        let margin = i64::from(self.config.margin_ms) * 1000;
        let window = match self.scratch.len() {
            0 => 0,
            n => {
                let q = f64::from(self.config.quantile.clamp(0.0, 1.0));
                let idx = ((q * n as f64).ceil() as usize)
                    .saturating_sub(1)
                    .min(n - 1);
                self.scratch[idx]
            }
        };
        let memory_us = i64::from(self.config.stall_memory_ms) * 1000;
        if memory_us > 0 {
            // The newest packet's jitter, if it is a stall (more than the window's quantile
            // says to expect), is remembered; a memory no stall has refreshed for
            // `stall_memory_ms` is forgotten.
            let newest = self
                .transits_us
                .back()
                .map_or(0, |t| t - self.base_transit_us);
            if now_us - self.stall_seen_us > memory_us {
                self.stall_us = 0;
            }
            // Any stall that counts keeps the memory fresh: while stalls keep coming, the
            // target covers the largest of them.
            let is_stall = newest > window + margin;
            if is_stall && !self.in_stall {
                let recur_us = i64::from(self.config.stall_recur_ms) * 1000;
                self.stall_counts = recur_us == 0
                    || self
                        .stall_began_us
                        .is_some_and(|began| now_us - began <= recur_us);
                self.stall_began_us = Some(now_us);
            }
            self.in_stall = is_stall;
            if is_stall && self.stall_counts {
                self.stall_us = self.stall_us.max(newest);
                self.stall_seen_us = now_us;
            }
        }
        let target = window.max(self.stall_us) + margin;
        self.target_delay_us = target.clamp(
            i64::from(self.config.min_delay_ms) * 1000,
            i64::from(self.config.max_delay_ms.max(self.config.min_delay_ms)) * 1000,
        );
    }

    /// The sender timestamp (extended) whose play time has come at `now_us`.
    fn due_ext(&self, now_us: i64) -> i64 {
        us_to_samples(now_us - self.base_transit_us - self.target_delay_us)
    }

    fn is_quiet(&self, ext: i64) -> bool {
        self.packets
            .get(&ext)
            .is_none_or(|p| !p.header.voice || p.header.level >= 50)
    }

    fn gap_output(&mut self) -> JitterOutput {
        if self.last_voice && self.missing_run <= self.config.max_conceal_frames {
            self.counters.concealed += 1;
            JitterOutput::Conceal
        } else {
            JitterOutput::Silence
        }
    }

    /// Decides what this speaker plays in the 20 ms tick starting at `now_us`.
    pub fn tick(&mut self, now_us: u64) -> JitterOutput {
        let now_us = i64::try_from(now_us).unwrap_or(i64::MAX / 2);
        if self.transits_us.is_empty() {
            return JitterOutput::Silence;
        }
        let due = self.due_ext(now_us);
        let mut next = match self.state {
            State::Playing { next } => next,
            State::Idle => {
                // Slots whose time has passed are not worth playing late: drop them. With a
                // stretcher, a stall's backlog up to `max_delay_ms` late is played (faster)
                // instead: speech is not thrown away for being late.
                let keep_from = if self.config.stretch {
                    due - us_to_samples(i64::from(self.config.max_delay_ms) * 1000)
                } else {
                    due
                };
                while let Some((&ext, _)) = self.packets.first_key_value() {
                    if ext + FRAME <= keep_from {
                        self.packets.pop_first();
                        self.counters.late += 1;
                    } else {
                        break;
                    }
                }
                match self.packets.first_key_value() {
                    Some((&first, _)) if first <= due => {
                        // Anchored on the oldest slot still worth playing.
                        self.missing_run = 0;
                        first
                    }
                    _ => return JitterOutput::Silence,
                }
            }
        };

        let lateness = due - next;
        // With a stretcher the caller catches up by playing faster; only far behind is a
        // quiet frame (a pause, DTX) thrown away.
        let skip = if self.config.stretch {
            lateness >= FAR_BEHIND_FRAMES * FRAME && self.is_quiet(next)
        } else {
            lateness >= FRAME * 3 / 2 && (lateness >= 3 * FRAME || self.is_quiet(next))
        };
        if skip {
            // Too much delay: skip one slot.
            if self.packets.remove(&next).is_some() {
                self.counters.skipped += 1;
            }
            next += FRAME;
        } else if if self.config.stretch {
            // The caller plays slower to build delay up; only far ahead is a pause made
            // longer.
            lateness <= -FAR_BEHIND_FRAMES * FRAME && self.is_quiet(next)
        } else {
            lateness < -FRAME / 2 && (lateness < -2 * FRAME || self.is_quiet(next))
        } {
            // Too little delay: hold one slot.
            self.counters.held += 1;
            self.state = State::Playing { next };
            return self.gap_output();
        }

        // Anything older than the slot we are about to play is late.
        while let Some((&ext, _)) = self.packets.first_key_value() {
            if ext < next {
                self.packets.pop_first();
                self.counters.late += 1;
            } else {
                break;
            }
        }

        if let Some(p) = self.packets.remove(&next) {
            self.state = State::Playing { next: next + FRAME };
            self.delay_us = now_us - self.base_transit_us - samples_to_us(next);
            let h = p.header;
            if let Some(last) = self.last_played_seq {
                let gap = h.sequence.wrapping_sub(last).wrapping_sub(1);
                // A huge "gap" is a reordered or restarted sequence, not loss.
                if gap < 1 << 16 {
                    self.counters.seq_gaps += u64::from(gap);
                }
            }
            self.last_played_seq = Some(h.sequence);
            self.last_voice = h.voice;
            self.last_level = h.level;
            self.missing_run = 0;
            self.counters.played += 1;
            return JitterOutput::Packet(p);
        }

        // The slot is empty.
        if lateness < 0 {
            // Not due yet and not here yet: wait rather than give the slot away.
            self.state = State::Playing { next };
            return if self.last_voice {
                self.gap_output()
            } else {
                JitterOutput::Silence
            };
        }
        self.missing_run += 1;
        self.last_level = 127;
        let following = self
            .packets
            .first_key_value()
            .map(|(_, p)| p.header.sequence);
        let expected_seq = self.last_played_seq.map(|s| s.wrapping_add(1));
        match following {
            Some(seq) if Some(seq) == expected_seq => {
                // DTX: the sender was silent here; nothing was lost.
                self.last_voice = false;
                self.state = State::Playing { next: next + FRAME };
                JitterOutput::Silence
            }
            Some(_) => {
                self.state = State::Playing { next: next + FRAME };
                self.counters.concealed += 1;
                JitterOutput::Conceal
            }
            None => {
                let out = self.gap_output();
                if self.missing_run > self.config.max_conceal_frames {
                    // Nothing buffered for a while: silence or a stall. Re-anchor on the
                    // next packet at the then current target delay.
                    self.state = State::Idle;
                    self.last_voice = false;
                } else {
                    self.state = State::Playing { next: next + FRAME };
                }
                out
            }
        }
    }

    /// How far behind its due position the next slot is at `now_us`, in 48 kHz samples
    /// (positive: more delay than the target, play faster); None between talk spurts.
    pub fn lateness_samples(&self, now_us: u64) -> Option<i64> {
        let now_us = i64::try_from(now_us).unwrap_or(i64::MAX / 2);
        match self.state {
            State::Playing { next } if !self.transits_us.is_empty() => {
                Some(self.due_ext(now_us) - next)
            }
            _ => None,
        }
    }

    /// Whether the next slot's packet is here (so reading ahead costs no concealment).
    pub fn next_is_ready(&self) -> bool {
        match self.state {
            State::Playing { next } => self.packets.contains_key(&next),
            State::Idle => false,
        }
    }

    /// The delay the buffer aims for right now.
    pub fn target_delay_ms(&self) -> f32 {
        self.target_delay_us as f32 / 1000.0
    }

    /// How much later than the fastest recent packet the last played packet was played:
    /// the latency this buffer adds.
    pub fn delay_ms(&self) -> f32 {
        self.delay_us as f32 / 1000.0
    }

    /// Packets waiting to be played.
    pub fn buffered_packets(&self) -> usize {
        self.packets.len()
    }

    /// Level byte of the frame played last (127 after gaps).
    pub fn last_level(&self) -> u8 {
        self.last_level
    }

    /// Voice flag of the frame played last.
    pub fn last_voice(&self) -> bool {
        self.last_voice
    }

    /// Counters since creation.
    pub fn counters(&self) -> JitterCounters {
        self.counters
    }

    /// True while walking a talk spurt (false between spurts).
    pub fn is_playing(&self) -> bool {
        matches!(self.state, State::Playing { .. })
    }
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new(JitterConfig::default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::AudioHeader;

    const MS: u64 = 1000;

    /// A frame from speaker 1.
    fn frame(sequence: u32, timestamp_48k: u32, level: u8, voice: bool, opus: &[u8]) -> AudioFrame {
        let header = AudioHeader {
            speaker_id: 1,
            sequence,
            timestamp_48k,
            level,
            voice,
        };
        AudioFrame::new(header, opus).unwrap()
    }

    /// Simulates one sender and one receiver with a fake clock.
    /// `net_delay_ms(k)` gives the arrival time of frame k (sent at k*20 ms), or None if the
    /// frame is not sent (DTX). Receiver ticks every 20 ms at a 7 ms phase.
    struct Sim {
        jb: JitterBuffer,
        /// (arrival_us, seq, ts, voice, frame index)
        pending: Vec<(u64, u32, u32, bool, u32)>,
        outputs: Vec<(u64, JitterOutput)>,
        delays: Vec<(u64, f32, f32)>,
        /// The next tick's time and the next packet to deliver: `run_until` goes on from
        /// where the last call stopped.
        t_us: u64,
        next_packet: usize,
    }

    impl Sim {
        /// A buffer with `config`, used alone (no stretcher: it sheds latency itself).
        fn with(config: JitterConfig, frames: u32, arrival: impl Fn(u32) -> Option<u64>) -> Self {
            let mut sim = Self::new(frames, 0, arrival);
            sim.jb = JitterBuffer::new(JitterConfig {
                stretch: false,
                ..config
            });
            sim
        }

        fn new(frames: u32, ts_base: u32, arrival: impl Fn(u32) -> Option<u64>) -> Self {
            let mut pending = Vec::new();
            let mut seq = 7u32;
            for k in 0..frames {
                if let Some(at_ms) = arrival(k) {
                    let ts = ts_base.wrapping_add(k * 960);
                    pending.push((at_ms * MS, seq, ts, true, k));
                    seq = seq.wrapping_add(1);
                }
            }
            // The encoder fades out before a stream ends, so the last frames are not voice.
            let n = pending.len();
            for p in pending.iter_mut().skip(n.saturating_sub(5)) {
                p.3 = false;
            }
            pending.sort_by_key(|p| p.0);
            Sim {
                jb: JitterBuffer::default(),
                pending,
                outputs: Vec::new(),
                delays: Vec::new(),
                t_us: 7 * MS,
                next_packet: 0,
            }
        }

        fn run_until(&mut self, end_ms: u64) {
            let mut t = self.t_us;
            let mut i = self.next_packet;
            while t <= end_ms * MS {
                while i < self.pending.len() && self.pending[i].0 <= t {
                    let (at, seq, ts, voice, k) = self.pending[i];
                    // Speech has short pauses between words: every 10th frame is quiet.
                    let level = if k % 10 == 9 { 60 } else { 10 };
                    self.jb
                        .push(frame(seq, ts, level, voice, &k.to_le_bytes()), at);
                    i += 1;
                }
                let out = self.jb.tick(t);
                if matches!(out, JitterOutput::Packet(_)) {
                    self.delays
                        .push((t, self.jb.delay_ms(), self.jb.target_delay_ms()));
                }
                self.outputs.push((t, out));
                t += 20 * MS;
            }
            self.t_us = t;
            self.next_packet = i;
        }

        fn played_frames(&self) -> Vec<u32> {
            self.outputs
                .iter()
                .filter_map(|(_, o)| match o {
                    JitterOutput::Packet(f) => {
                        Some(u32::from_le_bytes(f.opus()[..4].try_into().unwrap()))
                    }
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn steady_arrival_plays_everything_in_order_at_min_delay() {
        let mut sim = Sim::new(250, 0, |k| Some(u64::from(k) * 20 + 30));
        sim.run_until(5200);
        let played = sim.played_frames();
        assert_eq!(played, (0..250).collect::<Vec<_>>());
        let c = sim.jb.counters();
        assert_eq!(
            (c.concealed, c.late, c.seq_gaps, c.skipped, c.held),
            (0, 0, 0, 0, 0)
        );
        for &(_, delay, target) in &sim.delays {
            assert_eq!(target, 10.0);
            assert!((10.0..30.0).contains(&delay), "delay {delay}");
        }
    }

    #[test]
    fn timestamps_wrapping_around_u32_are_seamless() {
        let base = u32::MAX - 960 * 20;
        let mut sim = Sim::new(100, base, |k| Some(u64::from(k) * 20 + 30));
        sim.run_until(2200);
        assert_eq!(sim.played_frames(), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn stall_then_burst_recovers_within_a_second_without_lasting_latency() {
        // Frames sent during 2000..2200 ms are held by a TCP stall and all arrive at 2230.
        let mut sim = Sim::new(500, 1234, |k| {
            let sent = u64::from(k) * 20;
            Some(if (2000..2200).contains(&sent) {
                2230
            } else {
                sent + 30
            })
        });
        sim.run_until(10_100);
        let c = sim.jb.counters();
        // The stall cost a gap (concealment then silence), and its late packets were dropped.
        assert!(c.concealed >= 1 && c.concealed <= 5, "{c:?}");
        assert!(c.late >= 5, "{c:?}");
        // Within 1 s of the burst the delay is back at the (raised) target, give or take the
        // playout hysteresis (-0.5..+1.5 frames)...
        for &(t, delay, target) in sim
            .delays
            .iter()
            .filter(|d| (3230..4230).contains(&(d.0 / MS)))
        {
            assert!(
                delay >= target - 10.0 && delay < target + 30.0,
                "at {t}: delay {delay} target {target}"
            );
        }
        // While the target shrinks back, the delay follows closely (it waits for a quiet
        // frame to skip, at most three frames).
        for &(t, delay, target) in sim.delays.iter().filter(|d| d.0 >= 3230 * MS) {
            assert!(
                delay < target + 60.0,
                "at {t}: delay {delay} target {target}"
            );
        }
        // ...the target did grow on the stall...
        let max_target = sim.delays.iter().map(|d| d.2).fold(0.0, f32::max);
        assert!(
            max_target > 30.0,
            "target should grow on a stall, max {max_target}"
        );
        // ...and once calm (the stall left the 3 s window) latency is back to the minimum.
        for &(t, delay, target) in sim.delays.iter().filter(|d| d.0 >= 7000 * MS) {
            assert_eq!(target, 10.0, "at {t}");
            assert!(delay < 40.0, "lasting latency at {t}: {delay}");
        }
        // Everything after the stall was played in order; the only frames left out to shed
        // latency were quiet ones (pauses between words).
        let played = sim.played_frames();
        let after: Vec<u32> = played.iter().copied().filter(|&k| k >= 115).collect();
        assert!(after.windows(2).all(|w| w[0] < w[1]));
        let skipped: Vec<u32> = (115..500).filter(|k| !after.contains(k)).collect();
        assert!(skipped.len() <= 6, "{skipped:?}");
        assert!(skipped.iter().all(|k| k % 10 == 9), "{skipped:?}");
    }

    /// Frame k is sent at k × 20 ms and arrives 30 ms later, except that a TCP stall of
    /// `stall_ms` every `every_ms` (from `first_ms`) holds everything sent during it until
    /// it ends.
    fn stalls(first_ms: u64, every_ms: u64, stall_ms: u64) -> impl Fn(u32) -> Option<u64> {
        move |k| {
            let sent = u64::from(k) * 20;
            let into = sent.checked_sub(first_ms).map(|t| t % every_ms);
            Some(match into {
                Some(t) if t < stall_ms => sent - t + stall_ms + 30,
                _ => sent + 30,
            })
        }
    }

    /// Frames of voice that were never played, in `from..to`.
    fn lost_between(sim: &Sim, from: u32, to: u32) -> Vec<u32> {
        let played = sim.played_frames();
        (from..to).filter(|k| !played.contains(k)).collect()
    }

    #[test]
    fn the_audience_remembers_a_stall_and_plays_the_next_ones_whole() {
        // A 400 ms stall every 10 s for a minute.
        let frames = 3_000;
        let mut sim = Sim::with(
            LatencyProfile::Smooth.jitter_config(),
            frames,
            stalls(5_000, 10_000, 400),
        );
        sim.run_until(61_000);
        // The first stall costs a hole (concealment, then a wait): nothing warned of it.
        let holes = |from_ms: u64, to_ms: u64| {
            sim.outputs
                .iter()
                .filter(|(t, o)| {
                    (from_ms * MS..to_ms * MS).contains(t)
                        && *o != JitterOutput::Silence
                        && !matches!(o, JitterOutput::Packet(_))
                })
                .count()
        };
        assert!(holes(5_000, 6_000) > 0, "the first stall went unnoticed");
        // Every later one plays whole: the target now covers 400 ms.
        for stall in 1..5u64 {
            let at = 5_000 + stall * 10_000;
            assert_eq!(holes(at, at + 2_000), 0, "stall at {at} ms left a hole");
        }
        let lost = lost_between(&sim, 300, frames - 10);
        assert!(lost.is_empty(), "lost after the first stall: {lost:?}");
        let max_target = sim.delays.iter().map(|d| d.2).fold(0.0, f32::max);
        assert!((400.0..=600.0).contains(&max_target), "{max_target}");
        let played = sim.played_frames();
        assert!(played.windows(2).all(|w| w[0] < w[1]), "in order");
    }

    #[test]
    fn the_audience_plays_a_first_retransmission_timeout_whole_and_the_stage_does_not() {
        // One hold of a retransmission timeout, 3 s in: the path's first.
        let frames = 500;
        let lost = |profile: LatencyProfile| {
            let mut sim = Sim::with(
                profile.jitter_config(),
                frames,
                stalls(3_000, 1_000_000, TCP_RTO_MIN_MS.into()),
            );
            sim.run_until(11_000);
            lost_between(&sim, 0, frames - 10)
        };
        assert_eq!(lost(LatencyProfile::Smooth), Vec::<u32>::new());
        assert!(
            !lost(LatencyProfile::Low).is_empty(),
            "the stage covered it"
        );
    }

    #[test]
    fn the_stage_forgets_stalls_and_keeps_its_delay_low() {
        let frames = 3_000;
        let mut sim = Sim::with(
            LatencyProfile::Low.jitter_config(),
            frames,
            stalls(5_000, 10_000, 400),
        );
        sim.run_until(61_000);
        // Each stall is a hole for the stage...
        for stall in 0..5u32 {
            let first = 250 + stall * 500;
            assert!(
                !lost_between(&sim, first, first + 40).is_empty(),
                "stall {stall} played whole"
            );
        }
        // ...but between stalls the delay is back near the minimum.
        let calm: Vec<f32> = sim
            .delays
            .iter()
            .filter(|d| (d.0 / MS) % 10_000 > 9_000)
            .map(|d| d.1)
            .collect();
        assert!(
            !calm.is_empty() && calm.iter().all(|d| *d < 60.0),
            "{calm:?}"
        );
    }

    #[test]
    fn the_stage_covers_stalls_that_keep_coming_but_not_a_rare_one() {
        // A 200 ms hold every 2 s (a lossy mobile link), from 5 s on.
        let frames = 1_500;
        let mut sim = Sim::with(
            LatencyProfile::Low.jitter_config(),
            frames,
            stalls(5_000, 2_000, 200),
        );
        sim.run_until(31_000);
        // The first two are holes; from the third on, they recur and are covered.
        let lost = lost_between(&sim, 450, frames - 10);
        assert!(lost.is_empty(), "lost once stalls recurred: {lost:?}");
        let max_target = sim.delays.iter().map(|d| d.2).fold(0.0, f32::max);
        assert!((200.0..=300.0).contains(&max_target), "{max_target}");
    }

    #[test]
    fn a_remembered_stall_is_forgotten_after_a_calm_minute() {
        // One 300 ms stall at 5 s, then a calm 70 s.
        let frames = 4_000;
        let mut sim = Sim::with(LatencyProfile::Smooth.jitter_config(), frames, |k| {
            stalls(5_000, 1_000_000, 300)(k)
        });
        sim.run_until(80_000);
        let target_at = |ms: u64| {
            sim.delays
                .iter()
                .filter(|d| d.0 / MS >= ms)
                .map(|d| d.2)
                .next()
                .unwrap()
        };
        assert!(
            target_at(30_000) >= 300.0,
            "remembered: {}",
            target_at(30_000)
        );
        assert!(target_at(70_000) < 50.0, "forgotten: {}", target_at(70_000));
    }

    #[test]
    fn moving_to_the_audience_while_a_speaker_is_silent_covers_their_next_stall() {
        // The speaker talks for 3 s, is silent for 70 s, then talks again; a hold of a
        // retransmission timeout comes 2 s after they start again. The listener moved to
        // the audience at 40 s, in the silence.
        let frames = 4_000;
        let mut sim = Sim::with(LatencyProfile::Low.jitter_config(), frames, |k| {
            let sent = u64::from(k) * 20;
            if (3_000..73_000).contains(&sent) {
                return None;
            }
            Some(if (75_000..75_200).contains(&sent) {
                75_230
            } else {
                sent + 30
            })
        });
        sim.run_until(40_000);
        sim.jb.set_config(
            JitterConfig {
                stretch: false,
                ..LatencyProfile::Smooth.jitter_config()
            },
            40_000 * MS,
        );
        sim.run_until(79_000);
        let concealed = sim
            .outputs
            .iter()
            .filter(|(t, o)| *t > 73_000 * MS && *o == JitterOutput::Conceal)
            .count();
        assert_eq!(concealed, 0, "the hold after the silence was a hole");
        assert!(lost_between(&sim, 3_650, 3_900).is_empty());
    }

    #[test]
    fn stepping_on_stage_brings_the_delay_down_without_a_gap() {
        let frames = 2_000;
        let mut sim = Sim::with(
            LatencyProfile::Smooth.jitter_config(),
            frames,
            stalls(2_000, 1_000_000, 400),
        );
        sim.run_until(10_000);
        assert!(sim.jb.delay_ms() > 300.0, "{}", sim.jb.delay_ms());
        sim.jb.set_config(
            JitterConfig {
                stretch: false,
                ..LatencyProfile::Low.jitter_config()
            },
            10_000 * MS,
        );
        sim.run_until(30_000);
        assert!(sim.jb.delay_ms() < 60.0, "{}", sim.jb.delay_ms());
        // Latency was shed on quiet frames only (pauses between words), never speech.
        let skipped = lost_between(&sim, 600, 1_400);
        assert!(skipped.iter().all(|k| k % 10 == 9), "{skipped:?}");
        assert_eq!(sim.jb.counters().concealed, sim_concealed_before(&sim));
    }

    /// Concealment can only have happened during the one stall (before 3 s).
    fn sim_concealed_before(sim: &Sim) -> u64 {
        sim.outputs
            .iter()
            .filter(|(t, o)| *t < 3_000 * MS && *o == JitterOutput::Conceal)
            .count() as u64
    }

    #[test]
    fn long_dtx_silence_is_silence_not_loss_and_keeps_the_delay() {
        // Talk 2 s, 10 s of DTX (nothing sent, timestamps keep running), talk 2 s.
        let mut sim = Sim::new(700, 99, |k| {
            let sent = u64::from(k) * 20;
            ((0..2000).contains(&sent) || sent >= 12_000).then_some(sent + 40)
        });
        // Frames just before the DTX gap are not voice (the encoder fades out first).
        for p in sim.pending.iter_mut() {
            if (95..100).contains(&p.4) {
                p.3 = false;
            }
        }
        sim.run_until(14_200);
        let c = sim.jb.counters();
        assert_eq!((c.concealed, c.seq_gaps, c.late), (0, 0, 0), "{c:?}");
        let played = sim.played_frames();
        let expected: Vec<u32> = (0..100).chain(600..700).collect();
        assert_eq!(played, expected);
        let before = sim.delays.iter().find(|d| d.0 > 1000 * MS).unwrap().1;
        let after = sim.delays.iter().find(|d| d.0 > 13_000 * MS).unwrap().1;
        assert!((before - after).abs() <= 20.0, "{before} vs {after}");
        // Silence between spurts really is silence.
        assert!(
            sim.outputs
                .iter()
                .filter(|o| o.0 > 2200 * MS && o.0 < 12_000 * MS)
                .all(|o| o.1 == JitterOutput::Silence)
        );
    }

    #[test]
    fn sequence_gap_is_concealed_as_loss() {
        let mut sim = Sim::new(100, 0, |k| Some(u64::from(k) * 20 + 30));
        // Remove frame 50 but keep the sequence numbers as sent (a server-side drop).
        sim.pending.retain(|p| p.4 != 50);
        sim.run_until(2200);
        let c = sim.jb.counters();
        assert_eq!((c.seq_gaps, c.concealed), (1, 1), "{c:?}");
        let expected: Vec<u32> = (0..100).filter(|&k| k != 50).collect();
        assert_eq!(sim.played_frames(), expected);
    }

    #[test]
    fn speaker_restarting_with_a_new_timeline_is_picked_up() {
        let mut jb = JitterBuffer::default();
        let mut t = 0u64;
        for k in 0..50u32 {
            jb.push(
                frame(k, 5_000_000 + k * 960, 10, true, &[1]),
                t * MS + 30 * MS,
            );
            let _ = jb.tick(t * MS + 7 * MS);
            t += 20;
        }
        // Returns with a fresh sequence and timestamp base (e.g. reconnected).
        let mut played_new = 0;
        for k in 0..50u32 {
            jb.push(frame(k, 42 + k * 960, 10, true, &[2]), t * MS + 30 * MS);
            if let JitterOutput::Packet(f) = jb.tick(t * MS + 7 * MS)
                && f.opus() == [2]
            {
                played_new += 1;
            }
            t += 20;
        }
        assert!(played_new >= 47, "played {played_new}");
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let mut jb = JitterBuffer::default();
        for k in 0..80u32 {
            jb.push(frame(k, k * 960, 10, true, &[0]), 0);
        }
        assert_eq!(jb.buffered_packets(), 50);
        assert_eq!(jb.counters().overflow, 30);
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_plays_in_order(
            events in proptest::collection::vec((any::<u32>(), 0u32..400, any::<bool>(), 0u64..200), 1..300)
        ) {
            let mut jb = JitterBuffer::default();
            let mut now = 0u64;
            for (seq, slot, do_tick, dt_ms) in events {
                now += dt_ms * MS;
                jb.push(frame(seq, slot * 960, 3, true, &slot.to_le_bytes()), now);
                if do_tick {
                    let _ = jb.tick(now);
                }
                prop_assert!(jb.buffered_packets() <= 50);
            }
            let c = jb.counters();
            prop_assert!(c.played <= c.received);
        }
    }
}
