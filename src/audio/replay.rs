//! Replays (#15) on the client: each speaker's Ogg Opus track, as the server kept it,
//! placed on the room's timeline and played from any position: by the playout (the TUI's
//! replay screen, with seeking and speed) or from start to end into one file
//! (`hallway replay get`).
//!
//! # Model
//!
//! The room's timeline counts 48 kHz samples from the room's start. A track starts at
//! `first_ms - started_at_ms` on it; within a track, a packet's page granule position is
//! where the packet ends on the speaker's own clock, counted from their first packet.
//! Jumps in the granules are silences the speaker did not send (DTX).
//!
//! [`Timeline::parse`] reads every track once into its packets, each with its place on the
//! timeline, and keeps them compressed: an hour of one speaker is 16 MB as Opus and 690 MB
//! decoded, so a whole replay is held and nothing is decoded ahead of playing it.
//!
//! [`Player`] renders the timeline from any position, a block at a time. Per track it
//! keeps a decoder, the next packet to decode, and the decoded samples not yet played (a
//! frame past the block at most, or the preroll right after a seek). A packet lands at its
//! place; the first [`MAX_CONCEAL`] frames of a gap right after decoded audio are concealed
//! (the decoder fades out, as playout does on a loss) and the rest is silence. Seeking
//! finds each track's packet at the target by binary search and decodes the packets of the
//! [`PREROLL`] frames before it, throwing their samples away, so the decoder has settled by
//! the time the target plays (no click where playing resumes).
//!
//! # Invariants
//!
//! - A track's packets are in timeline order and never overlap: a packet placed before
//!   the end of the previous one (a broken or hostile granule) goes at that end.
//! - Nothing is placed past the room's end plus [`SLACK_MS`]: a track cannot make the
//!   timeline longer than the room was, and a claimed hour of silence costs nothing
//!   (gaps are never stored, and rendering one writes at most the block asked for).
//! - The index is the server's word and is checked: a room longer than [`MAX_REPLAY_MS`]
//!   is refused, at most [`MAX_TRACKS`] tracks are played (the rest are counted as left
//!   out), and empty packets are not kept.
//! - A packet that does not decode is concealed: one broken packet of one speaker costs
//!   that speaker 20 ms. (Only the decoder itself failing is an error.)
//! - [`Player::render`] fills exactly what is left of the timeline, up to the block asked
//!   for, so a replay's samples played from its start equal its length.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::audio::codec::OpusDecoder;
use crate::audio::error::AudioError;
use crate::audio::stretch::{MIN_RATE, REPLAY_MAX_RATE, Stretcher};
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::protocol::UserId;
use crate::protocol::replay::ReplayInfo;

/// Frames of a gap concealed before the rest is silence.
pub const MAX_CONCEAL: u64 = 5;
/// Frames before a seek's target whose packets are decoded (and not played): Opus's
/// prediction settles within a few frames.
pub const PREROLL: usize = 4;
/// The longest replay played or mixed: a day. A longer room is a broken or hostile index.
pub const MAX_REPLAY_MS: u64 = 24 * 3_600_000;
/// The most tracks played: every track is rendered each block, so a hostile index with a
/// thousand speakers must not make each 20 ms cost a thousand decodes.
pub const MAX_TRACKS: usize = 64;
/// Packets this far past the room's end (as the index says) are left out.
pub const SLACK_MS: u64 = 60_000;
/// A track contributing less than this (RMS, about −50 dBFS) to a block is not "speaking".
const SPEAKING_RMS: f32 = 0.003;

const FRAME: u64 = FRAME_SAMPLES as u64;
const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;

/// A replay's tracks, parsed and placed, packets still compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Samples from the room's start to its end (or to the last packet, if later).
    length: u64,
    tracks: Vec<Track>,
    /// Tracks past [`MAX_TRACKS`], not played.
    left_out: usize,
}

/// One speaker's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Track {
    user: UserId,
    /// The packets' bytes, one after another.
    data: Vec<u8>,
    packets: Vec<Packet>,
}

/// Where one packet plays and where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packet {
    /// Its first sample on the timeline.
    at: u64,
    offset: usize,
    len: usize,
}

impl Timeline {
    /// Reads `tracks` (each speaker's id and Ogg Opus bytes, as downloaded) of `info`,
    /// dropping each track's bytes once read. Tracks of users the index does not name are
    /// left out. Bytes that are not Ogg are an error naming the speaker; so is a room
    /// longer than [`MAX_REPLAY_MS`].
    pub fn parse(info: &ReplayInfo, tracks: Vec<(UserId, Vec<u8>)>) -> Result<Self, AudioError> {
        let room_ms = info.length_ms();
        if room_ms > MAX_REPLAY_MS {
            return Err(AudioError::Format(format!(
                "the replay's index says the room lasted {} hours, more than the {} a replay may: refused",
                room_ms / 3_600_000,
                MAX_REPLAY_MS / 3_600_000
            )));
        }
        let limit = (room_ms + SLACK_MS) * SAMPLES_PER_MS;
        let mut length = room_ms * SAMPLES_PER_MS;
        let mut parsed = Vec::new();
        let mut left_out = 0;
        for (user, bytes) in tracks {
            let Some(indexed) = info.track(user) else {
                continue;
            };
            if parsed.len() == MAX_TRACKS {
                left_out += 1;
                continue;
            }
            let start = indexed
                .first_ms
                .saturating_sub(info.started_at_ms)
                .saturating_mul(SAMPLES_PER_MS);
            let mut track = Track {
                user,
                data: Vec::new(),
                packets: Vec::new(),
            };
            let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes.as_slice()));
            let mut headers = 0;
            // Where the next packet may start at the earliest: the end of the previous one.
            let mut next = start;
            while let Some(packet) = reader
                .read_packet()
                .map_err(|e| AudioError::Format(format!("the replay track of {user}: {e}")))?
            {
                if headers < 2 {
                    headers += 1;
                    continue;
                }
                let begin = packet.absgp_page().saturating_sub(FRAME);
                let at = start.saturating_add(begin).max(next);
                if at.saturating_add(FRAME) > limit {
                    // Past the room's end: a broken or hostile track; the rest is left out.
                    break;
                }
                if packet.data.is_empty() {
                    continue;
                }
                track.packets.push(Packet {
                    at,
                    offset: track.data.len(),
                    len: packet.data.len(),
                });
                track.data.extend_from_slice(&packet.data);
                next = at + FRAME;
            }
            length = length.max(next);
            parsed.push(track);
        }
        if left_out > 0 {
            tracing::warn!("a replay with more than {MAX_TRACKS} speakers: {left_out} left out");
        }
        Ok(Timeline {
            length,
            tracks: parsed,
            left_out,
        })
    }

    /// Tracks not played: past [`MAX_TRACKS`].
    pub fn left_out(&self) -> usize {
        self.left_out
    }

    /// Its length in samples.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Its length in milliseconds.
    pub fn length_ms(&self) -> u64 {
        self.length / SAMPLES_PER_MS
    }

    /// The speakers, in the order of the tracks.
    pub fn speakers(&self) -> impl Iterator<Item = UserId> + '_ {
        self.tracks.iter().map(|t| t.user)
    }
}

/// Plays a [`Timeline`] from any position.
pub struct Player {
    timeline: Arc<Timeline>,
    cursors: Vec<Cursor>,
    /// The next sample [`Player::render`] writes.
    position: u64,
    frame: Vec<f32>,
}

/// One track's playing state.
struct Cursor {
    decoder: OpusDecoder,
    /// The next packet to decode.
    next: usize,
    /// Decoded samples not yet played, the first at `pending_at`.
    pending: VecDeque<f32>,
    pending_at: u64,
    /// Frames of the current gap that may still be concealed.
    conceal_left: u64,
    /// The track sounded in the last block rendered.
    speaking: bool,
}

impl Player {
    /// A player at the start of `timeline`.
    pub fn new(timeline: Arc<Timeline>) -> Result<Self, AudioError> {
        let cursors = timeline
            .tracks
            .iter()
            .map(|track| {
                Ok(Cursor {
                    decoder: OpusDecoder::new()?,
                    next: 0,
                    // A seek's preroll, a block and a frame past it: never grown while
                    // playing.
                    pending: VecDeque::with_capacity((PREROLL + 4) * FRAME_SAMPLES),
                    pending_at: track.packets.first().map_or(0, |p| p.at),
                    conceal_left: 0,
                    speaking: false,
                })
            })
            .collect::<Result<Vec<_>, AudioError>>()?;
        Ok(Player {
            timeline,
            cursors,
            position: 0,
            frame: vec![0.0; FRAME_SAMPLES],
        })
    }

    /// The next sample to be rendered.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// Whether everything has been rendered.
    pub fn finished(&self) -> bool {
        self.position >= self.timeline.length
    }

    /// Moves to `sample` (at most the end).
    pub fn seek(&mut self, sample: u64) -> Result<(), AudioError> {
        let target = sample.min(self.timeline.length);
        self.position = target;
        for (track, cursor) in self.timeline.tracks.iter().zip(&mut self.cursors) {
            // The first packet still sounding at the target, and up to PREROLL before it
            // (only ones close before: a packet an hour earlier is no preroll).
            let reach = (PREROLL as u64 + 1) * FRAME;
            let first = track
                .packets
                .partition_point(|p| p.at.saturating_add(reach) <= target);
            cursor.decoder.reset()?;
            cursor.next = first;
            cursor.pending.clear();
            cursor.pending_at = track.packets.get(first).map_or(target, |p| p.at);
            cursor.conceal_left = 0;
            cursor.speaking = false;
        }
        Ok(())
    }

    /// Writes the next samples into `out` (overwriting it) and returns how many: all of
    /// `out`, or what is left of the timeline. Not mixed further: the caller limits.
    pub fn render(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let left = self.timeline.length.saturating_sub(self.position);
        let n = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let out = &mut out[..n];
        out.fill(0.0);
        let (from, to) = (self.position, self.position + n as u64);
        for (track, cursor) in self.timeline.tracks.iter().zip(&mut self.cursors) {
            cursor.fill(track, from, to, &mut self.frame)?;
            cursor.speaking = cursor.add_into(out, from) > SPEAKING_RMS;
        }
        self.position = to;
        Ok(n)
    }

    /// The speakers whose tracks sounded in the last block rendered.
    pub fn speaking(&self) -> impl Iterator<Item = UserId> + '_ {
        self.timeline
            .tracks
            .iter()
            .zip(&self.cursors)
            .filter(|(_, c)| c.speaking)
            .map(|(t, _)| t.user)
    }
}

impl Cursor {
    fn covered(&self) -> u64 {
        self.pending_at + self.pending.len() as u64
    }

    /// Decodes (or conceals, or leaves silent) until the samples up to `to` are known.
    fn fill(
        &mut self,
        track: &Track,
        from: u64,
        to: u64,
        frame: &mut [f32],
    ) -> Result<(), AudioError> {
        while self.covered() < to {
            let covered = self.covered();
            match track.packets.get(self.next) {
                Some(p) if p.at <= covered => {
                    let bytes = track.data.get(p.offset..p.offset + p.len).unwrap_or(&[]);
                    self.decoder.decode(bytes, frame)?;
                    self.pending.extend(frame.iter().copied());
                    self.next += 1;
                    self.conceal_left = MAX_CONCEAL;
                }
                next => {
                    let gap_end = next.map_or(u64::MAX, |p| p.at);
                    if self.conceal_left > 0 && gap_end - covered >= FRAME {
                        self.decoder.conceal(frame)?;
                        self.pending.extend(frame.iter().copied());
                        self.conceal_left -= 1;
                        continue;
                    }
                    self.conceal_left = 0;
                    // Silence up to the next packet or the block's end, whichever is
                    // first.
                    let until = gap_end.min(to);
                    if until <= from {
                        // A gap in a seek's preroll, before the block: what was decoded
                        // will never play, and the next packet goes at its own place.
                        self.pending.clear();
                        self.pending_at = until;
                        continue;
                    }
                    // What is before the block will never play: dropped first, so the
                    // zeros written are at most the block's length.
                    self.drop_before(from);
                    if self.pending.is_empty() {
                        self.pending_at = until.max(self.pending_at);
                    } else {
                        let zeros = until.saturating_sub(self.covered());
                        self.pending
                            .extend(std::iter::repeat_n(0.0, zeros as usize));
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets decoded samples before `sample`.
    fn drop_before(&mut self, sample: u64) {
        let drop = sample
            .saturating_sub(self.pending_at)
            .min(self.pending.len() as u64);
        self.pending.drain(..drop as usize);
        self.pending_at += drop;
        if self.pending.is_empty() {
            self.pending_at = self.pending_at.max(sample);
        }
    }

    /// Adds this track's samples for the block starting at `from` into `out`, forgets
    /// them, and returns their RMS.
    fn add_into(&mut self, out: &mut [f32], from: u64) -> f32 {
        self.drop_before(from);
        let skip = self.pending_at.saturating_sub(from);
        let mut energy = 0.0f32;
        let mut count = 0usize;
        if let Ok(skip) = usize::try_from(skip)
            && skip < out.len()
        {
            for (o, s) in out[skip..].iter_mut().zip(self.pending.iter()) {
                *o += *s;
                energy += s * s;
                count += 1;
            }
        }
        self.drop_before(from + out.len() as u64);
        if count == 0 {
            0.0
        } else {
            (energy / out.len() as f32).sqrt()
        }
    }
}

/// Renders all of `timeline` from its start, a second at a time, through a limiter, into
/// `write` (48 kHz mono): the whole replay as one file without holding it in memory.
pub fn mix_into(
    timeline: Arc<Timeline>,
    mut write: impl FnMut(&[f32]) -> Result<(), AudioError>,
) -> Result<u64, AudioError> {
    let mut player = Player::new(timeline)?;
    let mut limiter = crate::audio::mixer::Mixer::new();
    let mut block = vec![0.0f32; SAMPLE_RATE as usize];
    let mut written = 0u64;
    loop {
        let n = player.render(&mut block)?;
        if n == 0 {
            return Ok(written);
        }
        limiter.finish(&mut block[..n], 1.0);
        write(&block[..n])?;
        written += n as u64;
    }
}

/// What the playout is told about the replay it plays.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayCommand {
    /// Play this replay from its start (instead of any other).
    Play(Arc<Timeline>),
    /// Go to this place, ms from the room's start (at most its end).
    Seek { ms: u64 },
    /// Play at this speed, pitch kept ([`MIN_RATE`]..=[`REPLAY_MAX_RATE`]).
    Speed(f32),
    /// Hold (true) or go on (false).
    Pause(bool),
    /// Stop and forget the replay.
    Stop,
}

/// Where the replay being played is, for the screen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayProgress {
    /// What is being heard, ms from the room's start.
    pub position_ms: u64,
    pub length_ms: u64,
    pub paused: bool,
    /// Played to its end (it then holds there, paused).
    pub ended: bool,
    /// Seeks, speeds and pauses done so far: a screen that has asked for more knows this
    /// report is older news.
    pub commands: u64,
    /// Whose tracks sound now.
    pub speaking: Vec<UserId>,
}

/// Input kept ahead of what is played beyond one frame's worth at the speed: a splice's
/// search and overlap (see [`crate::audio::stretch`]), with margin.
const LOOKAHEAD: usize = 1_500;

/// A replay as the playout plays it: the [`Player`] feeds a [`Stretcher`] that plays it
/// at the chosen speed with its pitch kept, one frame a tick. What is heard is the
/// player's position less what the stretcher holds (exactly the input it has not played).
pub struct Playback {
    player: Player,
    stretcher: Stretcher,
    speed: f32,
    paused: bool,
    ended: bool,
    commands: u64,
    input: Vec<f32>,
    speaking: Vec<UserId>,
}

impl std::fmt::Debug for Playback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playback")
            .field("position", &self.player.position())
            .field("speed", &self.speed)
            .field("paused", &self.paused)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Playback {
    /// Ready to play `timeline` from its start.
    pub fn new(timeline: Arc<Timeline>) -> Result<Self, AudioError> {
        Ok(Playback {
            player: Player::new(timeline)?,
            stretcher: Stretcher::with_max_rate(REPLAY_MAX_RATE),
            speed: 1.0,
            paused: false,
            ended: false,
            commands: 0,
            input: vec![0.0; FRAME_SAMPLES],
            speaking: Vec::new(),
        })
    }

    /// Seeks, changes speed or pauses (`Play` and `Stop` are the playout's to handle).
    /// A seek to the end leaves it ended; elsewhere, it plays or holds as it did.
    pub fn command(&mut self, command: ReplayCommand) -> Result<(), AudioError> {
        match command {
            ReplayCommand::Seek { ms } => {
                self.player.seek(ms.saturating_mul(SAMPLES_PER_MS))?;
                self.stretcher.reset();
                self.ended = self.player.finished();
            }
            ReplayCommand::Speed(speed) => {
                self.speed = if speed.is_finite() {
                    speed.clamp(MIN_RATE, REPLAY_MAX_RATE)
                } else {
                    1.0
                };
            }
            ReplayCommand::Pause(paused) => self.paused = paused,
            // Not counted: a new playback, or none.
            ReplayCommand::Play(_) | ReplayCommand::Stop => return Ok(()),
        }
        self.commands += 1;
        Ok(())
    }

    /// Writes the next frame into `frame` (silence while paused or after the end).
    pub fn play(&mut self, frame: &mut [f32]) {
        frame.fill(0.0);
        if self.paused || self.ended {
            self.speaking.clear();
            return;
        }
        let want = (self.speed * frame.len() as f32).ceil() as usize + LOOKAHEAD;
        while self.stretcher.buffered() < want && !self.player.finished() {
            match self.player.render(&mut self.input) {
                Ok(n) => self.stretcher.push(&self.input[..n]),
                Err(e) => {
                    // Only the decoder's own failure gets here: stop rather than loop.
                    tracing::warn!("the replay stopped: {e}");
                    self.ended = true;
                    return;
                }
            }
        }
        self.speaking.clear();
        self.speaking.extend(self.player.speaking());
        let got = self.stretcher.pull(frame, self.speed);
        if got == 0 && self.player.finished() {
            self.ended = true;
            self.paused = true;
        }
    }

    /// Where it is, for the screen.
    pub fn progress(&self) -> ReplayProgress {
        let heard = self
            .player
            .position()
            .saturating_sub(self.stretcher.buffered() as u64);
        ReplayProgress {
            position_ms: heard / SAMPLES_PER_MS,
            length_ms: self.player.timeline().length_ms(),
            paused: self.paused,
            ended: self.ended,
            commands: self.commands,
            speaking: self.speaking.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};
    use crate::protocol::User;
    use crate::protocol::replay::ReplayTrack;
    use ogg::{PacketWriteEndInfo, PacketWriter};

    /// A track as the server writes it: per packet, where it starts on the speaker's clock
    /// and the frequency of its 20 ms tone (in phase with the clock).
    fn ogg_track(packets: impl IntoIterator<Item = (u64, f32)>) -> Vec<u8> {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let mut writer = PacketWriter::new(Vec::new());
        for head in [&b"OpusHead"[..], &b"OpusTags"[..]] {
            writer
                .write_packet(head.to_vec(), 1, PacketWriteEndInfo::EndPage, 0)
                .unwrap();
        }
        for (start, freq) in packets {
            let tone: Vec<f32> = (0..FRAME)
                .map(|i| {
                    let t = (start + i) as f32 / SAMPLE_RATE as f32;
                    0.3 * (2.0 * std::f32::consts::PI * freq * t).sin()
                })
                .collect();
            let packet = encoder.encode_vec(&tone).unwrap();
            writer
                .write_packet(packet, 1, PacketWriteEndInfo::EndPage, start + FRAME)
                .unwrap();
        }
        writer.into_inner()
    }

    /// A tone of `freq` in the frames listed (by frame number on the speaker's clock).
    fn track_of(freq: f32, frames: &[u64]) -> Vec<u8> {
        ogg_track(frames.iter().map(|&n| (n * FRAME, freq)))
    }

    fn track(frames: &[u64]) -> Vec<u8> {
        track_of(440.0, frames)
    }

    fn energy(samples: &[f32]) -> f32 {
        samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32
    }

    fn user(id: UserId) -> User {
        User {
            id,
            handle: format!("u{id}"),
            name: format!("U{id}"),
        }
    }

    /// A replay from `started` to `ended` (ms) whose speakers start at the times given.
    fn info(started: u64, ended: u64, firsts: &[(UserId, u64)]) -> ReplayInfo {
        ReplayInfo {
            id: "r".into(),
            title: "t".into(),
            host: user(1),
            started_at_ms: started,
            last_ms: None,
            ended_at_ms: Some(ended),
            incomplete: false,
            why_incomplete: None,
            tracks: firsts
                .iter()
                .map(|&(id, first_ms)| ReplayTrack {
                    user: user(id),
                    first_ms,
                    packets: 0,
                    bytes: 0,
                })
                .collect(),
        }
    }

    fn mix(info: &ReplayInfo, tracks: &[(UserId, Vec<u8>)]) -> Vec<f32> {
        let timeline = Arc::new(Timeline::parse(info, tracks.to_vec()).unwrap());
        let mut out = Vec::new();
        mix_into(timeline, |block| {
            out.extend_from_slice(block);
            Ok(())
        })
        .unwrap();
        out
    }

    /// Zero crossings a second in `samples`: twice the frequency of a tone.
    fn frequency(samples: &[f32]) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0))
            .count();
        crossings as f32 / 2.0 / (samples.len() as f32 / SAMPLE_RATE as f32)
    }

    #[test]
    fn tracks_land_at_their_speakers_times_with_their_silences() {
        let info = info(10_000, 20_000, &[(1, 10_000), (2, 13_000)]);
        // Speaker 1: half a second, 2 s of silence (not sent), half a second.
        let one: Vec<u64> = (0..25).chain(125..150).collect();
        // Speaker 2 starts 3 s in: half a second.
        let two: Vec<u64> = (0..25).collect();
        let mixed = mix(&info, &[(1, track(&one)), (2, track(&two))]);
        let at = |s: f32| (s * SAMPLE_RATE as f32) as usize;
        let window = |from: f32, to: f32| energy(&mixed[at(from)..at(to)]);
        assert!(window(0.1, 0.4) > 0.01, "speaker 1 at 0 s");
        assert!(
            window(1.0, 2.4) < 1e-4,
            "the silence speaker 1 did not send"
        );
        assert!(window(2.6, 2.9) > 0.01, "speaker 1 again at 2.5 s");
        assert!(window(3.1, 3.4) > 0.01, "speaker 2 at 3 s");
        assert_eq!(mixed.len(), at(10.0), "as long as the room was");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let info = info(0, 1, &[(1, 0)]);
        assert!(Timeline::parse(&info, vec![(1, b"not ogg at all".to_vec())]).is_err());
    }

    #[test]
    fn a_track_claiming_hours_past_the_rooms_end_is_cut_there() {
        let info = info(0, 2_000, &[(1, 0)]);
        // Frame 0, then one "11 hours" later.
        let timeline = Timeline::parse(&info, vec![(1, track(&[0, 11 * 3_600 * 50]))]).unwrap();
        assert_eq!(timeline.length_ms(), 2_000);
        assert_eq!(timeline.tracks[0].packets.len(), 1);
    }

    #[test]
    fn a_packet_claiming_the_place_of_the_previous_one_goes_after_it() {
        let info = info(0, 2_000, &[(1, 0)]);
        // Frames 3, 3 and 1: the second and third are moved after the first.
        let timeline = Timeline::parse(&info, vec![(1, track(&[3, 3, 1]))]).unwrap();
        let places: Vec<u64> = timeline.tracks[0].packets.iter().map(|p| p.at).collect();
        assert_eq!(places, vec![3 * FRAME, 4 * FRAME, 5 * FRAME]);
    }

    /// A 4 s replay: 440 Hz for the first 2 s, 880 Hz for the next 2 (one speaker).
    fn two_tones() -> Arc<Timeline> {
        let info = info(0, 4_000, &[(1, 0)]);
        let low_high =
            ogg_track((0..200).map(|n| (n * FRAME, if n < 100 { 440.0 } else { 880.0 })));
        Arc::new(Timeline::parse(&info, vec![(1, low_high)]).unwrap())
    }

    #[test]
    fn seeking_plays_what_is_at_the_target_from_any_block_size() {
        let timeline = two_tones();
        assert_eq!(timeline.length(), 4 * u64::from(SAMPLE_RATE));
        let mut player = Player::new(timeline.clone()).unwrap();
        let mut block = vec![0.0f32; 700];
        let n = player.render(&mut block).unwrap();
        assert_eq!(n, 700);
        assert_eq!(player.speaking().collect::<Vec<_>>(), vec![1]);
        // Ahead to 3 s: the high tone, at once (after the preroll settled the decoder).
        player.seek(3 * u64::from(SAMPLE_RATE)).unwrap();
        let mut second = vec![0.0f32; 24_000];
        assert_eq!(player.render(&mut second).unwrap(), 24_000);
        let f = frequency(&second[960..]);
        assert!((f - 880.0).abs() < 20.0, "{f} Hz after seeking to 3 s");
        // Back to 0.5 s, in odd-sized blocks: the low tone.
        player.seek(24_000).unwrap();
        let mut got = Vec::new();
        for size in [1usize, 959, 961, 7_000, 14_079] {
            let mut b = vec![0.0f32; size];
            assert_eq!(player.render(&mut b).unwrap(), size);
            got.extend_from_slice(&b);
        }
        let f = frequency(&got[960..]);
        assert!((f - 440.0).abs() < 10.0, "{f} Hz after seeking to 0.5 s");
        // Past the end: nothing left.
        player.seek(u64::MAX).unwrap();
        assert!(player.finished());
        assert_eq!(player.render(&mut block).unwrap(), 0);
        // And from the start, in 20 ms blocks, it adds up to the length exactly.
        player.seek(0).unwrap();
        let mut total = 0u64;
        let mut frame = vec![0.0f32; FRAME_SAMPLES];
        loop {
            let n = player.render(&mut frame).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        assert_eq!(total, timeline.length());
    }

    #[test]
    fn a_seek_into_a_long_silence_renders_silence_without_allocating_it() {
        // One frame at the start and one 50 minutes later, in a room of an hour.
        let info = info(0, 3_600_000, &[(1, 0)]);
        let timeline =
            Arc::new(Timeline::parse(&info, vec![(1, track(&[0, 50 * 60 * 50]))]).unwrap());
        let mut player = Player::new(timeline).unwrap();
        player.seek(10 * 60 * u64::from(SAMPLE_RATE)).unwrap();
        let mut block = vec![1.0f32; FRAME_SAMPLES];
        assert_eq!(player.render(&mut block).unwrap(), FRAME_SAMPLES);
        assert!(block.iter().all(|s| *s == 0.0));
        assert!(player.cursors[0].pending.len() <= 2 * FRAME_SAMPLES);
        // Just before the frame at 50 minutes: it is heard.
        player.seek(50 * 60 * u64::from(SAMPLE_RATE) - 480).unwrap();
        let mut block = vec![0.0f32; 2 * FRAME_SAMPLES];
        player.render(&mut block).unwrap();
        assert!(energy(&block[480..1440]) > 0.001);
        assert!(player.cursors[0].pending.len() <= 2 * FRAME_SAMPLES);
    }

    #[test]
    fn the_playout_plays_a_replay_at_its_speed_with_its_pitch_pauses_seeks_and_ends() {
        use crate::audio::jitter::LatencyProfile;
        use crate::audio::playout::{PlayoutCommand, PlayoutCore};
        let timeline = two_tones();
        let mut core = PlayoutCore::new(LatencyProfile::Low.jitter_config());
        let mut now = 0u64;
        let mut run = |core: &mut PlayoutCore, ticks: usize| {
            let mut heard = Vec::new();
            for _ in 0..ticks {
                heard.extend_from_slice(core.tick(now));
                now += 20_000;
            }
            heard
        };
        let replay = |core: &mut PlayoutCore, command| {
            core.handle(PlayoutCommand::Replay(command), 0).unwrap();
        };
        let start = Playback::new(timeline.clone()).unwrap();
        core.handle(PlayoutCommand::StartReplay(Box::new(start)), 0)
            .unwrap();
        // A second as is: the low tone, a second in.
        let heard = run(&mut core, 50);
        let progress = core.stats().replay.unwrap();
        assert_eq!(progress.length_ms, 4_000);
        assert!(progress.position_ms.abs_diff(1_000) <= 40, "{progress:?}");
        let f = frequency(&heard[FRAME_SAMPLES..]);
        assert!((f - 440.0).abs() < 10.0, "{f} Hz");
        assert_eq!(progress.speaking, vec![1]);
        // Twice as fast for half a second: a second further on, the pitch the same.
        replay(&mut core, ReplayCommand::Speed(2.0));
        let heard = run(&mut core, 25);
        let progress = core.stats().replay.unwrap();
        assert!(progress.position_ms.abs_diff(2_000) <= 60, "{progress:?}");
        let f = frequency(&heard[2 * FRAME_SAMPLES..20 * FRAME_SAMPLES]);
        assert!((f - 440.0).abs() < 15.0, "{f} Hz at 2x");
        // Paused: nothing heard and nothing moves.
        replay(&mut core, ReplayCommand::Pause(true));
        let heard = run(&mut core, 10);
        assert!(heard.iter().all(|s| *s == 0.0));
        assert_eq!(
            core.stats().replay.unwrap().position_ms,
            progress.position_ms
        );
        // Ahead to 3 s and on: the high tone, heard at once.
        replay(&mut core, ReplayCommand::Seek { ms: 3_000 });
        replay(&mut core, ReplayCommand::Pause(false));
        replay(&mut core, ReplayCommand::Speed(1.0));
        let heard = run(&mut core, 10);
        let f = frequency(&heard[FRAME_SAMPLES..]);
        assert!((f - 880.0).abs() < 20.0, "{f} Hz after the seek");
        let progress = core.stats().replay.unwrap();
        assert_eq!(progress.commands, 5, "speed, pause, seek, pause, speed");
        assert!(progress.position_ms.abs_diff(3_200) <= 40, "{progress:?}");
        // To the end: it holds there, paused and ended.
        run(&mut core, 60);
        let progress = core.stats().replay.unwrap();
        assert!(progress.ended && progress.paused, "{progress:?}");
        assert_eq!(progress.position_ms, 4_000);
        // A seek after the end plays again.
        replay(&mut core, ReplayCommand::Seek { ms: 0 });
        replay(&mut core, ReplayCommand::Pause(false));
        let heard = run(&mut core, 5);
        assert!(energy(&heard) > 0.001);
        replay(&mut core, ReplayCommand::Stop);
        assert_eq!(core.stats().replay, None);
    }

    /// A track whose packets are `step` samples apart on the speaker's clock (a sender
    /// whose timestamps are not whole frames), a 440 Hz tone.
    fn spaced_track(step: u64, count: u64) -> Vec<u8> {
        ogg_track((0..count).map(|n| (n * step, 440.0)))
    }

    fn render_in(player: &mut Player, sizes: &[usize]) -> Vec<f32> {
        let mut out = Vec::new();
        for &size in sizes.iter().cycle() {
            let mut block = vec![0.0f32; size];
            let n = player.render(&mut block).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&block[..n]);
        }
        out
    }

    #[test]
    fn blocks_of_any_size_render_the_same_samples() {
        let info = info(0, 3_000, &[(1, 0), (2, 700)]);
        let one: Vec<u64> = (0..40).chain(60..120).collect();
        let tracks = vec![(1, track(&one)), (2, spaced_track(1_000, 50))];
        let timeline = Arc::new(Timeline::parse(&info, tracks).unwrap());
        let whole = render_in(&mut Player::new(timeline.clone()).unwrap(), &[48_000]);
        assert_eq!(whole.len() as u64, timeline.length());
        for sizes in [&[1usize, 959, 961, 7_000][..], &[960], &[333, 4_801]] {
            let pieces = render_in(&mut Player::new(timeline.clone()).unwrap(), sizes);
            assert_eq!(pieces, whole, "blocks of {sizes:?}");
        }
    }

    #[test]
    fn after_a_seek_each_packet_plays_at_its_own_place() {
        // Packets 1,000 samples apart: gaps of 40 samples a frame, so a packet placed
        // at the wrong one of them would be heard shifted.
        let info = info(0, 2_000, &[(1, 0)]);
        let timeline =
            Arc::new(Timeline::parse(&info, vec![(1, spaced_track(1_000, 90))]).unwrap());
        let straight = render_in(&mut Player::new(timeline.clone()).unwrap(), &[48_000]);
        let mut player = Player::new(timeline).unwrap();
        for target in [5_500u64, 20_020, 47_999, 30_000] {
            player.seek(target).unwrap();
            let mut got = vec![0.0f32; 4_800];
            assert_eq!(player.render(&mut got).unwrap(), 4_800);
            let want = &straight[target as usize..target as usize + 4_800];
            // The first frame may differ while the decoder settles; the rest matches.
            let diff = energy(
                &got[FRAME_SAMPLES..]
                    .iter()
                    .zip(&want[FRAME_SAMPLES..])
                    .map(|(a, b)| a - b)
                    .collect::<Vec<_>>(),
            );
            let signal = energy(&want[FRAME_SAMPLES..]);
            assert!(
                diff < signal * 0.01,
                "at {target}: difference {diff} against signal {signal}"
            );
        }
    }

    #[test]
    fn a_hostile_index_is_refused_or_bounded() {
        // A room "a year long": refused, not rendered for a year.
        let long = info(0, 365 * 24 * 3_600_000, &[(1, 0)]);
        assert!(Timeline::parse(&long, vec![(1, track(&[0]))]).is_err());
        // A track starting before the room did starts with it.
        let early = info(10_000, 12_000, &[(1, 0)]);
        let timeline = Timeline::parse(&early, vec![(1, track(&[0]))]).unwrap();
        assert_eq!(timeline.tracks[0].packets[0].at, 0);
        // A thousand speakers: 64 played, the rest counted.
        let crowd: Vec<(UserId, u64)> = (1..=1_000).map(|id| (id, 0)).collect();
        let info = info(0, 1_000, &crowd);
        let one = track(&[0]);
        let tracks = (1..=1_000).map(|id| (id, one.clone())).collect();
        let timeline = Timeline::parse(&info, tracks).unwrap();
        assert_eq!(timeline.speakers().count(), MAX_TRACKS);
        assert_eq!(timeline.left_out(), 1_000 - MAX_TRACKS);
    }
}
