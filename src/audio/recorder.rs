//! Recording a room to files: the mix and, on request, one track per speaker.
//!
//! Playout has to place each frame by when it arrives, because a listener cannot wait. A
//! recording can. The recorder places every frame by its sender's own sample clock (the
//! header's timestamp) and waits up to [`RecorderConfig::reorder_ms`] for a frame that is
//! late or out of order, so a busy machine or a jittery network costs a recording nothing:
//! speech comes out continuous and at the sender's own timing. Only frames that never
//! arrive are concealed.
//!
//! # Timeline
//!
//! Position 0 is the start of the recording; positions count 48 kHz samples. A speaker's
//! clock is mapped onto the timeline by an offset, `position = timestamp + offset`, taken
//! from the least-delayed frames (the smallest `arrival - timestamp` seen lately). Within a
//! talk spurt the offset never changes, so speech is never stretched or cut; at a pause it
//! follows the sender's clock once the two are [`RecorderConfig::drift_tolerance_ms`]
//! apart, at most as fast as clocks drift ([`RecorderConfig::max_drift_ppm`]), so pauses
//! keep their length too. Every track starts at position 0 and all end together,
//! so tracks line up with each other and with the mix in any editor.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::audio::clock::Clock;
use crate::audio::codec::OpusDecoder;
use crate::audio::error::AudioError;
use crate::audio::files::{AudioSink, create_sink};
use crate::audio::mixer::Mixer;
use crate::audio::stream::DeviceFormat;
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::protocol::AudioFrame;

/// One frame in samples, as a timeline distance.
const FRAME: i64 = FRAME_SAMPLES as i64;
/// Sequence numbers this far from the last one mean the sender started a new stream
/// (it reconnected and counts from scratch), not that a minute of frames went missing.
const RESTART_FRAMES: i64 = 3_000;
/// Lost frames beyond this many are silence, not concealment: Opus's concealment fades
/// out by itself, and inventing more than this would be inventing speech.
const MAX_CONCEAL: i64 = 5;
/// A speaker's frames held back at most; a flood commits early instead of growing memory.
const MAX_PENDING: usize = 500;
/// How far before its arrival a late frame may still be placed in the mix: the lateness
/// this absorbs (a stalled sender or network) costs the mix nothing.
const MIX_SETTLE: i64 = SAMPLE_RATE as i64;
/// A speaker's clock may run this far ahead of ours before it is re-anchored at once.
const MAX_AHEAD: i64 = SAMPLE_RATE as i64;
/// The window over which the least-delayed frame is sought, per bucket.
const OFFSET_BUCKET: i64 = 5 * SAMPLE_RATE as i64;

/// How patient the recorder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderConfig {
    /// How long to wait for a missing or late frame before concealing it.
    pub reorder_ms: u32,
    /// How fast a speaker's clock may drift from ours, in parts per million: the offset
    /// follows at most this fast, at pauses. Sound cards are within 100.
    pub max_drift_ppm: u32,
    /// How far apart the clocks may seem before the offset follows: below this it is
    /// jitter, and chasing it would shift speech by fractions of a millisecond for nothing.
    pub drift_tolerance_ms: u32,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            reorder_ms: 500,
            max_drift_ppm: 1_000,
            drift_tolerance_ms: 10,
        }
    }
}

/// What a recording holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Frames decoded into the recording.
    pub frames: u64,
    /// Frames that never came and were concealed or left silent.
    pub lost: u64,
    /// Frames that came after their place was written, or twice; left out.
    pub late: u64,
    /// Frames the recorder could not take in time (its queue was full); counted in `lost`
    /// too when their place is reached.
    pub dropped: u64,
    /// People heard.
    pub speakers: usize,
    /// Length of the recording in samples (48 kHz).
    pub samples: u64,
}

impl RecorderStats {
    /// Length of the recording in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples as f64 / f64::from(SAMPLE_RATE)
    }
}

/// Makes the sink for a speaker's track when the speaker is first heard.
pub type TrackSinks = Box<dyn FnMut(u32) -> Result<Box<dyn AudioSink>, AudioError> + Send>;

/// The recorder's pure core: frames in, with their arrival time; files out.
pub struct Recorder {
    out: Outputs,
    speakers: BTreeMap<u32, Line>,
    /// The latest time seen, in samples.
    now: i64,
}

/// Where written frames go, how, and what is counted: what every speaker's line shares.
struct Outputs {
    config: RecorderConfig,
    mix: Mix,
    tracks: Option<TrackSinks>,
    stats: RecorderStats,
}

impl Recorder {
    /// A recorder writing the mix to `mix` and, with `tracks`, each speaker to its own sink.
    pub fn new(
        config: RecorderConfig,
        mix: Box<dyn AudioSink>,
        tracks: Option<TrackSinks>,
    ) -> Self {
        Recorder {
            out: Outputs {
                config,
                mix: Mix::new(mix),
                tracks,
                stats: RecorderStats::default(),
            },
            speakers: BTreeMap::new(),
            now: 0,
        }
    }

    /// A recorder writing files: the mix to `mix`, and with `tracks = Some((dir, ext))` each
    /// speaker to `dir/speaker-<id>.<ext>`. The format follows each file's extension.
    pub fn to_files(
        config: RecorderConfig,
        mix: &Path,
        tracks: Option<(PathBuf, String)>,
    ) -> Result<Self, AudioError> {
        let mix = create_sink(mix, DeviceFormat::ENGINE)?;
        let tracks = tracks.map(|(dir, ext)| -> TrackSinks {
            Box::new(move |id| {
                create_sink(
                    &dir.join(format!("speaker-{id}.{ext}")),
                    DeviceFormat::ENGINE,
                )
            })
        });
        Ok(Self::new(config, mix, tracks))
    }

    /// Takes one received frame: `arrival_us` is when it came, on the recording's clock.
    pub fn push(
        &mut self,
        arrival_us: u64,
        speaker_id: u32,
        sequence: u32,
        timestamp_48k: u32,
        opus: &[u8],
    ) -> Result<(), AudioError> {
        let arrival = us_to_samples(arrival_us);
        self.now = self.now.max(arrival);
        if let std::collections::btree_map::Entry::Vacant(entry) = self.speakers.entry(speaker_id) {
            entry.insert(Line::new(sequence, timestamp_48k)?);
            self.out.stats.speakers += 1;
        }
        let Some(line) = self.speakers.get_mut(&speaker_id) else {
            return Ok(());
        };
        let highest = line.seq.last;
        let seq = line.seq.unwrap(sequence);
        let ts = line.ts.unwrap(timestamp_48k);
        // Far off; or for a place written longer ago than any frame is waited for: not a
        // straggler but a sender counting from scratch (a restarted client keeps its user
        // id, and counts from 0 again).
        let wait = ms_to_samples(self.out.config.reorder_ms);
        let restarted = (seq - highest).abs() > RESTART_FRAMES
            || (line.next_seq.is_some_and(|next| seq < next - 1)
                && arrival - line.last_arrival > wait);
        if restarted {
            // The sender starts over: finish its old stream where it is, then begin anew.
            let mut ctx = Ctx {
                out: &mut self.out,
                now: self.now,
                force: true,
            };
            line.commit(speaker_id, &mut ctx)?;
            line.restart(sequence, timestamp_48k)?;
            return self.push(arrival_us, speaker_id, sequence, timestamp_48k, opus);
        }
        if line.next_seq.is_some_and(|next| seq < next) || line.pending.contains_key(&seq) {
            self.out.stats.late += 1;
            return Ok(());
        }
        line.offsets.see(arrival, arrival - ts);
        line.pending.insert(
            seq,
            Pending {
                ts,
                arrival,
                opus: opus.to_vec(),
            },
        );
        Ok(())
    }

    /// Notes frames the caller had to drop before they reached the recorder.
    pub fn note_dropped(&mut self, frames: u64) {
        self.out.stats.dropped += frames;
    }

    /// Writes out what is settled by `now_us`: frames whose wait is over, and the mix up to
    /// the point no frame still waiting could reach.
    pub fn advance(&mut self, now_us: u64) -> Result<(), AudioError> {
        self.now = self.now.max(us_to_samples(now_us));
        let mut ctx = Ctx {
            out: &mut self.out,
            now: self.now,
            force: false,
        };
        for (id, line) in &mut self.speakers {
            line.commit(*id, &mut ctx)?;
        }
        // A frame committed now arrived at most `reorder` ago, and its place is before its
        // arrival by however late it was; the mix is settled a second before that.
        let settled = self.now - ms_to_samples(self.out.config.reorder_ms) - MIX_SETTLE;
        if settled > 0 {
            self.out.mix.flush(settled.unsigned_abs())?;
        }
        Ok(())
    }

    /// Writes out everything still waiting, ends every file at the same length (the later
    /// of `now_us` and the last sound) and closes them.
    pub fn finish(mut self, now_us: u64) -> Result<RecorderStats, AudioError> {
        self.now = self.now.max(us_to_samples(now_us));
        let mut ctx = Ctx {
            out: &mut self.out,
            now: self.now,
            force: true,
        };
        let mut result = Ok(());
        for (id, line) in &mut self.speakers {
            result = result.and(line.commit(*id, &mut ctx));
        }
        let end = self
            .speakers
            .values()
            .map(|line| line.written)
            .chain([self.now.unsigned_abs(), self.out.mix.end()])
            .max()
            .unwrap_or(0)
            .next_multiple_of(FRAME_SAMPLES as u64);
        result = result.and(self.out.mix.flush(end));
        result = result.and(self.out.mix.sink.finish());
        for line in self.speakers.values_mut() {
            if let Some(sink) = line.sink.as_mut() {
                result = result.and(write_silence(sink.as_mut(), end - line.written.min(end)));
                result = result.and(sink.finish());
            }
        }
        self.out.stats.samples = end;
        result.map(|()| self.out.stats)
    }

    /// Counts so far.
    pub fn stats(&self) -> RecorderStats {
        self.out.stats
    }
}

/// What committing frames needs besides the speaker's own line.
struct Ctx<'a> {
    out: &'a mut Outputs,
    now: i64,
    /// Commit everything, waiting for nothing (a restart, the end of the recording).
    force: bool,
}

/// A frame waiting for its turn.
struct Pending {
    ts: i64,
    arrival: i64,
    opus: Vec<u8>,
}

/// Turns a wrapping `u32` counter into a monotonic `i64` near the last value seen.
#[derive(Debug, Clone, Copy)]
struct Unwrap {
    raw: u32,
    last: i64,
}

impl Unwrap {
    fn new(raw: u32) -> Self {
        Unwrap {
            raw,
            last: i64::from(raw),
        }
    }

    fn unwrap(&mut self, raw: u32) -> i64 {
        // The wrapped difference read as signed: a step back is negative.
        let delta = i64::from(raw.wrapping_sub(self.raw).cast_signed());
        let value = self.last + delta;
        if delta > 0 {
            self.raw = raw;
            self.last = value;
        }
        value
    }
}

/// The smallest `arrival - timestamp` over the last one or two buckets of time: the
/// least-delayed frame, which tells where the sender's clock is against ours.
#[derive(Debug, Clone, Copy)]
struct OffsetWindow {
    bucket_start: i64,
    current: Option<i64>,
    previous: Option<i64>,
}

impl OffsetWindow {
    fn see(&mut self, arrival: i64, offset: i64) {
        if arrival - self.bucket_start >= OFFSET_BUCKET {
            self.previous = self.current;
            self.current = None;
            self.bucket_start = arrival;
        }
        self.current = Some(self.current.map_or(offset, |c| c.min(offset)));
    }

    fn best(&self) -> Option<i64> {
        match (self.current, self.previous) {
            (Some(c), Some(p)) => Some(c.min(p)),
            (c, p) => c.or(p),
        }
    }
}

/// One speaker's stream on the timeline.
struct Line {
    decoder: OpusDecoder,
    sink: Option<Box<dyn AudioSink>>,
    /// The timeline position the track has reached.
    written: u64,
    pending: BTreeMap<i64, Pending>,
    seq: Unwrap,
    ts: Unwrap,
    /// The sequence number after the last one written; None before the first.
    next_seq: Option<i64>,
    /// Timestamp of the last frame written, and when it came.
    last_ts: i64,
    last_arrival: i64,
    /// `position = timestamp + offset`; None before the first frame is written.
    offset: Option<i64>,
    /// The timestamp at which the offset was last set.
    anchored_ts: i64,
    /// How far the offset was pushed later than the clocks say, to keep from writing over
    /// what was written (a long stall): given back at the next pause.
    pushed: i64,
    offsets: OffsetWindow,
    frame: Vec<f32>,
}

impl Line {
    fn new(sequence: u32, timestamp: u32) -> Result<Self, AudioError> {
        Ok(Line {
            decoder: OpusDecoder::new()?,
            sink: None,
            written: 0,
            pending: BTreeMap::new(),
            seq: Unwrap::new(sequence),
            ts: Unwrap::new(timestamp),
            next_seq: None,
            last_ts: 0,
            last_arrival: 0,
            offset: None,
            anchored_ts: 0,
            pushed: 0,
            offsets: OffsetWindow {
                bucket_start: 0,
                current: None,
                previous: None,
            },
            frame: vec![0.0; FRAME_SAMPLES],
        })
    }

    /// Starts a new stream on the same track (the sender reconnected).
    fn restart(&mut self, sequence: u32, timestamp: u32) -> Result<(), AudioError> {
        self.decoder.reset()?;
        self.seq = Unwrap::new(sequence);
        self.ts = Unwrap::new(timestamp);
        self.next_seq = None;
        self.offset = None;
        self.pushed = 0;
        self.offsets.current = None;
        self.offsets.previous = None;
        Ok(())
    }

    /// Writes every frame whose turn has come.
    fn commit(&mut self, id: u32, ctx: &mut Ctx<'_>) -> Result<(), AudioError> {
        let reorder = ms_to_samples(ctx.out.config.reorder_ms);
        while let Some((&seq, head)) = self.pending.first_key_value() {
            let waited_out =
                ctx.force || ctx.now - head.arrival >= reorder || self.pending.len() > MAX_PENDING;
            match self.next_seq {
                // The first frame waits its turn too, so that the offset comes from the
                // least-delayed of the frames around it, not from whichever came first.
                None if !waited_out => break,
                Some(next) if seq > next && !waited_out => break,
                _ => {}
            }
            let Some(frame) = self.pending.remove(&seq) else {
                break;
            };
            let missing = self.next_seq.map_or(0, |next| seq - next);
            ctx.out.stats.lost += missing.unsigned_abs();
            let at = self.position_of(&frame, missing, ctx);
            // What never came is concealed just before this frame, where it belonged (not
            // after the last frame written, which may be a pause earlier), and never over
            // what is written.
            let concealed = missing.min(MAX_CONCEAL).unsigned_abs();
            for k in (1..=concealed).rev() {
                let Some(slot) = at.checked_sub(k * FRAME_SAMPLES as u64) else {
                    continue;
                };
                if slot >= self.written.max(ctx.out.mix.flushed) {
                    self.decoder.conceal(&mut self.frame)?;
                    self.place(id, slot, ctx)?;
                }
            }
            self.decoder.decode(&frame.opus, &mut self.frame)?;
            self.place(id, at, ctx)?;
            ctx.out.stats.frames += 1;
            self.next_seq = Some(seq + 1);
            self.last_ts = frame.ts;
            self.last_arrival = frame.arrival;
        }
        Ok(())
    }

    /// Where a frame goes: by its timestamp. The offset moves only at a pause and only as
    /// fast as clocks drift, so pauses keep their length (a late start is corrected a
    /// millisecond a second, not all at once); it jumps only when it must, never to write
    /// over what is written.
    ///
    /// `missing` frames were lost just before this one: their time is not a pause.
    fn position_of(&mut self, frame: &Pending, missing: i64, ctx: &Ctx<'_>) -> u64 {
        let best = self.offsets.best().unwrap_or(frame.arrival - frame.ts);
        let paused = frame.ts - self.last_ts > (missing + 1) * FRAME;
        let mut offset = match self.offset {
            None => {
                self.anchored_ts = frame.ts;
                best
            }
            // A pause, and the clocks are further apart than jitter explains.
            // What a stall pushed later is given back at the first pause, at once.
            Some(offset)
                if paused
                    && (best - offset).abs() > ms_to_samples(ctx.out.config.drift_tolerance_ms) =>
            {
                let drift = (frame.ts - self.anchored_ts).max(0)
                    * i64::from(ctx.out.config.max_drift_ppm)
                    / 1_000_000;
                self.anchored_ts = frame.ts;
                let moved = (best - offset).clamp(-(drift + self.pushed), drift);
                if moved < 0 {
                    self.pushed = (self.pushed + moved).max(0);
                }
                offset + moved
            }
            Some(offset) => offset,
        };
        // A sender whose clock jumped far ahead is pulled back to when its frame came.
        if frame.ts + offset > frame.arrival + MAX_AHEAD {
            offset = frame.arrival - frame.ts;
        }
        let floor = i64::try_from(self.written.max(ctx.out.mix.flushed)).unwrap_or(i64::MAX);
        if frame.ts + offset < floor {
            self.pushed += floor - (frame.ts + offset);
            offset = floor - frame.ts;
        }
        self.offset = Some(offset);
        (frame.ts + offset).max(0).unsigned_abs()
    }

    /// Writes the decoded frame at `at` into the track (silence before it) and the mix.
    fn place(&mut self, id: u32, at: u64, ctx: &mut Ctx<'_>) -> Result<(), AudioError> {
        if let Some(tracks) = ctx.out.tracks.as_mut() {
            if self.sink.is_none() {
                self.sink = Some(tracks(id)?);
            }
            if let Some(sink) = self.sink.as_mut() {
                write_silence(sink.as_mut(), at.saturating_sub(self.written))?;
                sink.write(&self.frame)?;
            }
        }
        ctx.out.mix.add(at, &self.frame);
        self.written = at + FRAME_SAMPLES as u64;
        Ok(())
    }
}

/// The mix being summed: everything from `flushed` on, not yet written.
struct Mix {
    sink: Box<dyn AudioSink>,
    flushed: u64,
    sum: VecDeque<f32>,
    limiter: Mixer,
    frame: Vec<f32>,
}

impl Mix {
    fn new(sink: Box<dyn AudioSink>) -> Self {
        Mix {
            sink,
            flushed: 0,
            sum: VecDeque::new(),
            limiter: Mixer::new(),
            frame: vec![0.0; FRAME_SAMPLES],
        }
    }

    /// The end of what has been summed so far.
    fn end(&self) -> u64 {
        self.flushed + self.sum.len() as u64
    }

    /// Adds `samples` at timeline position `at` (never before `flushed`: callers clamp).
    fn add(&mut self, at: u64, samples: &[f32]) {
        let Some(start) = at
            .checked_sub(self.flushed)
            .and_then(|s| usize::try_from(s).ok())
        else {
            return;
        };
        let end = start + samples.len();
        if self.sum.len() < end {
            self.sum.resize(end, 0.0);
        }
        for (slot, &s) in self.sum.range_mut(start..end).zip(samples) {
            if s.is_finite() {
                *slot += s;
            }
        }
    }

    /// Limits and writes the mix up to `until`, in whole frames.
    fn flush(&mut self, until: u64) -> Result<(), AudioError> {
        while self.flushed + FRAME_SAMPLES as u64 <= until {
            let available = self.sum.len().min(FRAME_SAMPLES);
            for (slot, s) in self.frame.iter_mut().zip(self.sum.drain(..available)) {
                *slot = s;
            }
            self.frame[available..].fill(0.0);
            self.limiter.finish(&mut self.frame, 1.0);
            self.sink.write(&self.frame)?;
            self.flushed += FRAME_SAMPLES as u64;
        }
        Ok(())
    }
}

/// Writes `samples` of silence.
fn write_silence(sink: &mut dyn AudioSink, samples: u64) -> Result<(), AudioError> {
    const ZEROS: [f32; FRAME_SAMPLES] = [0.0; FRAME_SAMPLES];
    let mut left = samples;
    while left > 0 {
        let n = left.min(FRAME_SAMPLES as u64);
        sink.write(&ZEROS[..n as usize])?;
        left -= n;
    }
    Ok(())
}

fn us_to_samples(us: u64) -> i64 {
    i64::try_from(us.saturating_mul(u64::from(SAMPLE_RATE)) / 1_000_000).unwrap_or(i64::MAX / 2)
}

fn ms_to_samples(ms: u32) -> i64 {
    i64::from(ms) * i64::from(SAMPLE_RATE) / 1000
}

/// A frame on its way to the recorder thread, with when it came.
struct Arrived {
    at_us: u64,
    frame: AudioFrame,
}

enum ToRecorder {
    Frame(Arrived),
    Stop,
}

/// Frames the recorder thread can fall behind by before new ones are dropped (a minute of
/// one speaker): it only decodes and writes files, so this is only reached when the disk
/// stalls.
const QUEUE: usize = 3_000;

/// Cheap to clone: what the network side holds to hand frames to a [`RecorderThread`].
#[derive(Clone)]
pub struct RecorderSender {
    tx: SyncSender<ToRecorder>,
    clock: Arc<dyn Clock>,
    dropped: Arc<AtomicU64>,
}

impl RecorderSender {
    /// Hands over a received frame, stamped with its arrival time; never blocks. Returns
    /// false once the recorder has stopped.
    pub fn push(&self, frame: AudioFrame) -> bool {
        let frame = Arrived {
            at_us: self.clock.now_us(),
            frame,
        };
        match self.tx.try_send(ToRecorder::Frame(frame)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// A [`Recorder`] on its own thread, so that decoding and file writes never hold up the
/// network. Stop it with [`RecorderThread::finish`].
pub struct RecorderThread {
    sender: RecorderSender,
    thread: JoinHandle<Result<RecorderStats, AudioError>>,
}

impl RecorderThread {
    /// Starts recording; position 0 is now on `clock`.
    pub fn start(recorder: Recorder, clock: Arc<dyn Clock>) -> Result<Self, AudioError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let sender = RecorderSender {
            tx,
            clock: clock.clone(),
            dropped: dropped.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("hallway-recorder".into())
            .spawn(move || run(recorder, &rx, clock.as_ref(), &dropped))
            .map_err(|e| AudioError::io("starting the recorder thread", e))?;
        Ok(RecorderThread { sender, thread })
    }

    /// What to hand frames to.
    pub fn sender(&self) -> RecorderSender {
        self.sender.clone()
    }

    /// True once the thread has stopped by itself (a write failed).
    pub fn has_stopped(&self) -> bool {
        self.thread.is_finished()
    }

    /// Writes out everything, closes the files and returns what was recorded (or the first
    /// error, such as a full disk).
    pub fn finish(self) -> Result<RecorderStats, AudioError> {
        // Blocking send: the stop must not be lost to a full queue. A thread that already
        // stopped has dropped its receiver, and this fails at once.
        let _ = self.sender.tx.send(ToRecorder::Stop);
        self.thread.join().unwrap_or_else(|_| {
            Err(AudioError::io(
                "recording",
                std::io::Error::other("the recorder thread stopped unexpectedly"),
            ))
        })
    }
}

fn run(
    mut recorder: Recorder,
    rx: &Receiver<ToRecorder>,
    clock: &dyn Clock,
    dropped: &AtomicU64,
) -> Result<RecorderStats, AudioError> {
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ToRecorder::Frame(f)) => {
                let h = f.frame.header;
                recorder.push(
                    f.at_us,
                    h.speaker_id,
                    h.sequence,
                    h.timestamp_48k,
                    f.frame.opus(),
                )?;
            }
            Ok(ToRecorder::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        recorder.note_dropped(dropped.swap(0, Ordering::Relaxed));
        recorder.advance(clock.now_us())?;
    }
    recorder.note_dropped(dropped.swap(0, Ordering::Relaxed));
    recorder.finish(clock.now_us())
}

#[cfg(test)]
// Frame k is sent at k times 20 ms: the index is also the time.
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::audio::clock::ManualClock;
    use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};

    const F: usize = FRAME_SAMPLES;

    /// A sink that keeps what it is given, shared with the test.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<f32>>>, Arc<AtomicU64>);

    impl Memory {
        fn samples(&self) -> Vec<f32> {
            self.0.lock().unwrap().clone()
        }
        fn finished(&self) -> bool {
            self.1.load(Ordering::SeqCst) > 0
        }
    }

    impl AudioSink for Memory {
        fn format(&self) -> DeviceFormat {
            DeviceFormat::ENGINE
        }
        fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
            self.0.lock().unwrap().extend_from_slice(samples);
            Ok(())
        }
        fn finish(&mut self) -> Result<(), AudioError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A recorder into memory: the mix and each speaker's track.
    struct Rig {
        recorder: Recorder,
        mix: Memory,
        tracks: Arc<Mutex<BTreeMap<u32, Memory>>>,
    }

    impl Rig {
        fn new() -> Self {
            let mix = Memory::default();
            let tracks: Arc<Mutex<BTreeMap<u32, Memory>>> = Arc::default();
            let made = tracks.clone();
            let sinks: TrackSinks = Box::new(move |id| {
                let sink = Memory::default();
                made.lock().unwrap().insert(id, sink.clone());
                Ok(Box::new(sink))
            });
            Rig {
                recorder: Recorder::new(
                    RecorderConfig::default(),
                    Box::new(mix.clone()),
                    Some(sinks),
                ),
                mix,
                tracks,
            }
        }
    }

    /// A speaker's track as written.
    fn track(tracks: &Mutex<BTreeMap<u32, Memory>>, id: u32) -> Vec<f32> {
        tracks.lock().unwrap()[&id].samples()
    }

    /// A speaker's packets: a 440 Hz tone at a speaking level, encoded frame by frame.
    fn packets(frames: usize, hz: f32) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig {
            dtx: false,
            ..OpusEncoderConfig::default()
        })
        .unwrap();
        (0..frames)
            .map(|k| {
                let frame: Vec<f32> = (0..F)
                    .map(|i| {
                        let t = (k * F + i) as f32 / SAMPLE_RATE as f32;
                        0.3 * (std::f32::consts::TAU * hz * t).sin()
                    })
                    .collect();
                encoder.encode_vec(&frame).unwrap()
            })
            .collect()
    }

    /// What a listener decoding every packet in order hears.
    fn decoded(packets: &[Vec<u8>]) -> Vec<f32> {
        let mut decoder = OpusDecoder::new().unwrap();
        let mut out = vec![0.0; F];
        let mut all = Vec::new();
        for p in packets {
            decoder.decode(p, &mut out).unwrap();
            all.extend_from_slice(&out);
        }
        all
    }

    /// Fails with where two signals first differ (not with thousands of samples).
    #[track_caller]
    fn assert_same(got: &[f32], want: &[f32]) {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            got.len() == want.len() && first.is_none(),
            "lengths {} and {}, first difference at {first:?}",
            got.len(),
            want.len()
        );
    }

    /// Where in `track` the decoded `packets` begin (Opus starts with a few silent
    /// samples, so the first sound is not the first sample).
    fn placed_at(track: &[f32], packets: &[Vec<u8>]) -> usize {
        first_sound(track) - first_sound(&decoded(packets))
    }

    /// Where the first non-silent sample is.
    fn first_sound(samples: &[f32]) -> usize {
        samples.iter().position(|s| s.abs() > 1e-6).unwrap()
    }

    fn us(ms: f64) -> u64 {
        (ms * 1000.0) as u64
    }

    #[test]
    fn late_and_reordered_frames_come_out_continuous_at_the_senders_timing() {
        let packets = packets(100, 440.0);
        let mut rig = Rig::new();
        // Sent every 20 ms from 100 ms on; the network delays each by 10 ms, except that
        // frames 30..50 are held up to 400 ms and come in a burst, and 61 and 60 swap.
        let mut arrivals: Vec<(u64, usize)> = (0..packets.len())
            .map(|k| {
                let sent = 100.0 + 20.0 * k as f64;
                let delay = match k {
                    30..50 => 400.0 - 20.0 * (k - 30) as f64,
                    60 => 35.0,
                    _ => 10.0,
                };
                (us(sent + delay), k)
            })
            .collect();
        arrivals.sort();
        for (at, k) in arrivals {
            rig.recorder.advance(at).unwrap();
            let ts = 5_000 + (k * F) as u32;
            rig.recorder
                .push(at, 7, 1_000 + k as u32, ts, &packets[k])
                .unwrap();
        }
        let stats = rig.recorder.finish(us(3_000.0)).unwrap();

        assert_eq!((stats.frames, stats.lost, stats.late), (100, 0, 0));
        let track = track(&rig.tracks, 7);
        let start = placed_at(&track, &packets);
        // Placed by its least-delayed frames: sent at 100 ms, 10 ms on the way.
        assert_eq!(start, 110 * 48);
        let expected = decoded(&packets);
        assert_same(&track[start..start + expected.len()], expected.as_slice());
        // One speaker well under the limiter: the mix is the track.
        assert_same(&rig.mix.samples(), &track);
        assert_eq!(stats.samples as usize, track.len());
        assert!(rig.mix.finished());
    }

    #[test]
    fn a_pause_keeps_its_length_and_a_lost_frame_is_concealed_in_place() {
        let packets = packets(40, 300.0);
        let mut rig = Rig::new();
        for k in 0..40usize {
            // Frames 20.. come after 1 s of silence (DTX sends nothing); frame 30 is lost.
            let slot = if k < 20 { k } else { k + 50 };
            let at = us(20.0 * slot as f64 + 5.0);
            rig.recorder.advance(at).unwrap();
            if k != 30 {
                rig.recorder
                    .push(at, 3, k as u32, (slot * F) as u32, &packets[k])
                    .unwrap();
            }
        }
        let stats = rig.recorder.finish(us(2_000.0)).unwrap();
        assert_eq!((stats.frames, stats.lost), (39, 1));
        let track = track(&rig.tracks, 3);
        let start = placed_at(&track, &packets[..20]);
        // The first spurt, then exactly the sender's second of silence, then the rest.
        let expected = decoded(&packets[..20]);
        assert_same(&track[start..start + 20 * F], expected.as_slice());
        let silence = &track[start + 20 * F..start + 70 * F];
        assert!(silence.iter().all(|s| *s == 0.0), "the pause stays silent");
        let second = &track[start + 70 * F..start + 90 * F];
        assert!(
            second[..F].iter().any(|s| s.abs() > 0.01),
            "speech resumes on time"
        );
        // The lost frame's slot is filled by concealment, not left as a hole.
        let concealed = &second[10 * F..11 * F];
        assert!(concealed.iter().any(|s| s.abs() > 0.01));
        // And what follows it is where the sender put it: same length overall.
        assert_eq!(track.len() as u64, stats.samples);
    }

    #[test]
    fn two_speakers_line_up_in_tracks_of_equal_length_and_sum_in_the_mix() {
        let low = packets(25, 200.0);
        let high = packets(25, 900.0);
        let mut rig = Rig::new();
        for k in 0..25usize {
            // Two senders with unrelated clocks; the second starts 200 ms later.
            let at_a = us(50.0 + 20.0 * k as f64);
            let at_b = us(250.0 + 20.0 * k as f64 + 3.0);
            rig.recorder.advance(at_a).unwrap();
            rig.recorder
                .push(at_a, 1, k as u32, 777 + (k * F) as u32, &low[k])
                .unwrap();
            rig.recorder
                .push(
                    at_b,
                    2,
                    90_000 + k as u32,
                    4_000_000_000 + (k * F) as u32,
                    &high[k],
                )
                .unwrap();
        }
        let stats = rig.recorder.finish(us(1_500.0)).unwrap();
        assert_eq!(stats.speakers, 2);
        let (a, b) = (track(&rig.tracks, 1), track(&rig.tracks, 2));
        assert_eq!(a.len(), b.len(), "tracks end together");
        assert_eq!(rig.mix.samples().len(), a.len(), "and with the mix");
        assert_eq!(placed_at(&a, &low), 50 * 48);
        assert_eq!(placed_at(&b, &high), 253 * 48);
        let mix = rig.mix.samples();
        for i in (0..a.len()).step_by(97) {
            assert!((mix[i] - (a[i] + b[i])).abs() < 1e-6, "sample {i}");
        }
    }

    #[test]
    fn counters_wrap_and_a_restarted_sender_continues_the_same_track() {
        let packets = packets(20, 500.0);
        let mut rig = Rig::new();
        for k in 0..10usize {
            let at = us(20.0 * k as f64);
            rig.recorder.advance(at).unwrap();
            // Both counters wrap in the middle of this stream.
            let seq = (u32::MAX - 4).wrapping_add(k as u32);
            let ts = (u32::MAX - 3 * F as u32).wrapping_add((k * F) as u32);
            rig.recorder.push(at, 9, seq, ts, &packets[k]).unwrap();
        }
        // Reconnected a second later: its counters started over from elsewhere.
        for k in 10..20usize {
            let at = us(1_000.0 + 20.0 * k as f64);
            rig.recorder.advance(at).unwrap();
            rig.recorder
                .push(at, 9, 12_345 + k as u32, 42 + (k * F) as u32, &packets[k])
                .unwrap();
        }
        let stats = rig.recorder.finish(us(3_000.0)).unwrap();
        assert_eq!((stats.frames, stats.lost, stats.late), (20, 0, 0));
        let track = track(&rig.tracks, 9);
        assert_same(&track[..10 * F], decoded(&packets[..10]).as_slice());
        let second = placed_at(&track[10 * F..], &packets[10..]) + 10 * F;
        assert_eq!(second, 1_200 * 48, "the new stream starts when it came");
    }

    #[test]
    fn a_frame_after_its_place_was_written_and_a_duplicate_are_left_out() {
        let packets = packets(10, 440.0);
        let mut rig = Rig::new();
        for k in 0..10usize {
            let at = us(20.0 * k as f64);
            rig.recorder.advance(at).unwrap();
            rig.recorder
                .push(at, 1, k as u32, (k * F) as u32, &packets[k])
                .unwrap();
        }
        // Its place was written, but it comes within the wait of the frames around it: a
        // straggler, left out. (Much later it would be a sender starting over.)
        rig.recorder.advance(us(600.0)).unwrap();
        rig.recorder
            .push(us(600.0), 1, 3, (3 * F) as u32, &packets[3])
            .unwrap();
        rig.recorder
            .push(us(2_001.0), 1, 10, (10 * F) as u32, &packets[0])
            .unwrap();
        rig.recorder
            .push(us(2_002.0), 1, 10, (10 * F) as u32, &packets[0])
            .unwrap();
        let stats = rig.recorder.finish(us(2_100.0)).unwrap();
        assert_eq!((stats.frames, stats.late), (11, 2));
    }

    #[test]
    fn garbage_in_a_packet_is_concealed_and_nothing_panics() {
        let packets = packets(5, 440.0);
        let mut rig = Rig::new();
        for k in 0..5usize {
            let junk = [0xFFu8; 3];
            let opus: &[u8] = if k == 2 { &junk } else { &packets[k] };
            rig.recorder
                .push(us(20.0 * k as f64), 1, k as u32, (k * F) as u32, opus)
                .unwrap();
        }
        let stats = rig.recorder.finish(us(500.0)).unwrap();
        assert_eq!(stats.frames, 5);
        assert_eq!(track(&rig.tracks, 1).len() as u64, stats.samples);
    }

    #[test]
    fn a_slow_sender_clock_is_followed_at_pauses_without_cutting_speech() {
        // The sender's clock runs 0.05 % slow (five times worse than a cheap sound card):
        // its 20 ms frames come every 20.01 ms of ours, 60 ms late after two minutes.
        let packets = packets(10, 440.0);
        let mut rig = Rig::new();
        let mut starts = Vec::new();
        for spurt in 0..60usize {
            let ts0 = spurt * 100 * F; // a spurt every 2 s of the sender's clock
            let at0 = 2_001.0 * spurt as f64;
            starts.push(at0);
            for k in 0..10usize {
                let at = us(at0 + 20.01 * k as f64);
                rig.recorder.advance(at).unwrap();
                let seq = (spurt * 10 + k) as u32;
                rig.recorder
                    .push(at, 5, seq, (ts0 + k * F) as u32, &packets[k])
                    .unwrap();
            }
        }
        let stats = rig.recorder.finish(us(125_000.0)).unwrap();
        assert_eq!((stats.frames, stats.lost), (600, 0));
        let track = track(&rig.tracks, 5);
        let spurt = decoded(&packets);
        let mut from = 0;
        for at0 in starts {
            let start = first_sound(&track[from..]) + from;
            // Within 16 ms of when it really came: the 10 ms tolerance, plus 5 ms the
            // least-delayed frame lags (it is sought over the last 5 to 10 s), plus 1 ms
            // for where the first sound of a continued decoder falls. And whole.
            let came = (at0 * 48.0) as i64;
            assert!((start as i64 - came).abs() <= 16 * 48, "{start} vs {came}");
            // Each spurt decodes on from the last with the same decoder state, so compare
            // its length of sound rather than its samples.
            let end = start + spurt.len();
            assert!(
                track[end - F..end].iter().any(|s| s.abs() > 0.01),
                "spurt is whole"
            );
            from = end;
        }
    }

    #[test]
    fn a_client_restarted_under_the_same_id_counts_from_zero_and_is_still_recorded() {
        let packets = packets(40, 440.0);
        let mut rig = Rig::new();
        for (k, p) in packets.iter().enumerate() {
            // Frames 0..30, then the client restarts 2 s later and counts from 0 again.
            let (seq, slot) = if k < 30 { (k, k) } else { (k - 30, k + 70) };
            let at = us(20.0 * slot as f64);
            rig.recorder.advance(at).unwrap();
            rig.recorder
                .push(at, 6, seq as u32, (seq * F) as u32, p)
                .unwrap();
        }
        let stats = rig.recorder.finish(us(4_000.0)).unwrap();
        assert_eq!((stats.frames, stats.late), (40, 0));
        let track = track(&rig.tracks, 6);
        let second = placed_at(&track[30 * F..], &packets[30..]) + 30 * F;
        assert_eq!(second, 100 * F, "the new stream starts when it came");
    }

    #[test]
    fn a_long_stall_is_given_back_at_the_next_pause() {
        // Frames 10..20 are held up 3 s (longer than the mix waits), then a pause, then
        // speech on time again.
        let packets = packets(30, 440.0);
        let mut rig = Rig::new();
        let mut arrivals: Vec<(u64, usize, usize)> = (0..30)
            .map(|k| {
                let slot = if k < 20 { k } else { k + 200 };
                let late = if (10..20).contains(&k) { 3_000.0 } else { 0.0 };
                (us(20.0 * slot as f64 + late), k, slot)
            })
            .collect();
        arrivals.sort();
        for (at, k, slot) in arrivals {
            rig.recorder.advance(at).unwrap();
            rig.recorder
                .push(at, 8, k as u32, (slot * F) as u32, &packets[k])
                .unwrap();
        }
        let stats = rig.recorder.finish(us(8_000.0)).unwrap();
        assert_eq!(stats.frames, 30);
        let track = track(&rig.tracks, 8);
        // After the pause, speech is back where its clock says (within the 10 ms the
        // offset may wander), not 3 s late.
        let from = 200 * F;
        let resumed = first_sound(&track[from..]) + from;
        let want = 220 * F;
        assert!(
            resumed.abs_diff(want) <= 10 * 48,
            "resumed at {resumed}, want {want}"
        );
    }

    #[test]
    fn a_frame_lost_after_a_pause_is_concealed_where_it_belonged() {
        let packets = packets(20, 440.0);
        let mut rig = Rig::new();
        for k in 0..20usize {
            // A second of silence after frame 9; frame 10, the first after it, is lost.
            let slot = if k < 10 { k } else { k + 50 };
            let at = us(20.0 * slot as f64);
            rig.recorder.advance(at).unwrap();
            if k != 10 {
                rig.recorder
                    .push(at, 4, k as u32, (slot * F) as u32, &packets[k])
                    .unwrap();
            }
        }
        let stats = rig.recorder.finish(us(3_000.0)).unwrap();
        assert_eq!((stats.frames, stats.lost), (19, 1));
        let track = track(&rig.tracks, 4);
        let start = placed_at(&track, &packets[..10]);
        // The pause stays silent: nothing was invented right after the first spurt...
        let pause = &track[start + 10 * F..start + 60 * F];
        assert!(pause.iter().all(|s| *s == 0.0), "the pause stays silent");
        // ...and the lost frame's slot, just before frame 11, is filled.
        let slot = &track[start + 60 * F..start + 61 * F];
        assert!(
            slot.iter().any(|s| s.abs() > 0.0),
            "concealed in its own slot"
        );
    }

    #[test]
    fn a_late_start_does_not_shorten_the_pauses_that_follow() {
        // The first words come 300 ms late (a stall); everything after is on time.
        let packets = packets(30, 440.0);
        let mut rig = Rig::new();
        for k in 0..30usize {
            let spurt = k / 10; // three spurts, one a second on the sender's clock
            let slot = spurt * 50 + k % 10;
            let late = if spurt == 0 { 300.0 } else { 0.0 };
            let at = us(20.0 * slot as f64 + late);
            rig.recorder.advance(at).unwrap();
            rig.recorder
                .push(at, 2, k as u32, (slot * F) as u32, &packets[k])
                .unwrap();
        }
        rig.recorder.finish(us(4_000.0)).unwrap();
        let track = track(&rig.tracks, 2);
        let first = first_sound(&track);
        for spurt in 1..3 {
            let from = first + (spurt * 50 - 2) * F;
            let start = first_sound(&track[from..]) + from;
            let gap_ms = (start - first) as f64 / 48.0 - 1_000.0 * spurt as f64;
            // At most 1 ms per second of correction (the drift limit), not 300 ms at once;
            // 1 ms more for where the first sound of a continued decoder falls.
            assert!(
                gap_ms.abs() <= spurt as f64 + 1.0,
                "spurt {spurt} moved {gap_ms} ms"
            );
        }
    }

    #[test]
    fn the_thread_records_what_it_is_handed_and_reports_at_the_end() {
        let clock = ManualClock::new();
        let mix = Memory::default();
        let recorder = Recorder::new(RecorderConfig::default(), Box::new(mix.clone()), None);
        let thread = RecorderThread::start(recorder, Arc::new(clock.clone())).unwrap();
        let sender = thread.sender();
        let packets = packets(10, 440.0);
        for (k, p) in packets.iter().enumerate() {
            clock.advance_ms(20);
            assert!(sender.push(speaker_4(k as u32, (k * F) as u32, p)));
        }
        clock.advance_ms(1_000);
        let stats = thread.finish().unwrap();
        assert_eq!((stats.frames, stats.speakers), (10, 1));
        assert!(mix.finished());
        assert_eq!(mix.samples().len() as u64, stats.samples);
        assert!(
            !sender.push(speaker_4(10, 10 * F as u32, &packets[0])),
            "stopped"
        );
    }

    fn speaker_4(sequence: u32, timestamp_48k: u32, opus: &[u8]) -> AudioFrame {
        let header = crate::protocol::AudioHeader {
            speaker_id: 4,
            sequence,
            timestamp_48k,
            level: 20,
            voice: true,
        };
        AudioFrame::new(header, opus).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever order frames come in, if none is later than the wait, the track is
        /// exactly what an in-order listener decodes.
        #[test]
        fn any_order_within_the_wait_is_undone(delays in proptest::collection::vec(0u32..400, 30)) {
            let packets = packets(30, 440.0);
            let mut rig = Rig::new();
            let mut arrivals: Vec<(u64, usize)> = delays
                .iter()
                .enumerate()
                .map(|(k, d)| (us(20.0 * k as f64 + f64::from(*d)), k))
                .collect();
            arrivals.sort();
            for (at, k) in arrivals {
                rig.recorder.advance(at).unwrap();
                rig.recorder.push(at, 1, k as u32, (k * F) as u32, &packets[k]).unwrap();
            }
            let stats = rig.recorder.finish(us(3_000.0)).unwrap();
            prop_assert_eq!((stats.frames, stats.lost, stats.late), (30, 0, 0));
            let track = track(&rig.tracks, 1);
            let start = placed_at(&track, &packets);
            let expected = decoded(&packets);
            assert_same(&track[start..start + 30 * F], expected.as_slice());
        }
    }
}
