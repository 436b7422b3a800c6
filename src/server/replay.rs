//! Replays on the server (#15): the audio of rooms whose host turned replays on, kept as it
//! came and never decoded.
//!
//! **Layout.** `DIR/ROOM/index.json` (a [`ReplayInfo`]) and `DIR/ROOM/USER.opus`, one Ogg
//! Opus stream a speaker: OpusHead and OpusTags, then each packet on a page of its own whose
//! granule position is the packet's end on the speaker's own 48 kHz clock, counted from
//! their first packet. Silences the sender did not send (DTX) show as jumps in the granule
//! positions, so a reader places every packet where it was said; the track starts on the
//! room's timeline at `first_ms`, when the server took its first packet. One page a packet
//! costs 28 bytes of Ogg framing on a ~60-byte packet: about 16 MB a speaker-hour at 50
//! packets a second, less with DTX.
//!
//! **One writer.** The room actors hand frames to one `hallway-replays` thread over a
//! bounded queue, so no actor ever waits on a disk. A full queue drops the frame and marks
//! the replay incomplete; so does a write that fails (a full disk) or the server-wide quota
//! being reached: the room goes on, the replay keeps what it has and says why it is not
//! whole. A replay whose room did not end before the server stopped is marked incomplete
//! when the server next starts.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use bytes::Bytes;
use ogg::{PacketWriteEndInfo, PacketWriter};

use crate::protocol::replay::{ReplayInfo, ReplayTrack};
use crate::protocol::{AudioFrame, User, UserId};

/// Frames waiting for the writer at most: two seconds of 20 speakers.
const QUEUE: usize = 2_000;
/// One replay takes at most this share of the quota (1/4): one looping room cannot fill it
/// for everyone.
const REPLAY_SHARE: u64 = 4;
/// A packet whose timestamp says it is this far from where its arrival puts it (a sender
/// that restarted its clock, or a hostile one) is placed by its arrival instead.
const MAX_CLOCK_JUMP: u64 = 10 * 48_000;
/// A replay's index is rewritten at least this often while it is written, so a crash loses
/// little of what it says.
const INDEX_EVERY_MS: u64 = 30_000;
/// Serial number of each track's logical stream.
const SERIAL: u32 = 0x4852_504c; // "HRPL"
/// Ogg framing of a one-packet page with a short packet: the 27-byte header and one lacing
/// byte.
const PAGE_OVERHEAD: u64 = 28;

/// What a room actor hands the writer.
enum Job {
    Start {
        info: ReplayInfo,
        lost: Arc<AtomicBool>,
    },
    Frame {
        /// Shared with the handle: a frame costs no copy of the id.
        room: Arc<str>,
        speaker: User,
        arrival_ms: u64,
        frame: Bytes,
    },
    End {
        room: String,
        ended_ms: u64,
        /// Why the replay is not whole, when the room did not end here (it moved nodes).
        why: Option<String>,
    },
    /// The server is stopping: finish every replay still open, then stop.
    Stop,
}

/// The replays of this server: where they are kept, the quota, and the writer's queue.
pub struct Replays {
    dir: PathBuf,
    /// The finished replays, by room: listings and downloads read this, not the disk.
    finished: Finished,
    quota_bytes: u64,
    used: Arc<AtomicU64>,
    /// Unbounded, so a start or an end never waits; frames are bounded by `queued`.
    tx: Sender<Job>,
    queued: Arc<AtomicUsize>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The finished replays' indexes, shared by the writer (which adds them) and the API.
type Finished = Arc<std::sync::Mutex<HashMap<String, ReplayInfo>>>;

/// A room's replay, held by its actor.
pub struct ReplayHandle {
    room: Arc<str>,
    /// Frames were dropped on the way (the writer's queue was full).
    lost: Arc<AtomicBool>,
    /// Speakers whose first frame went to the writer (with their names).
    seen: std::collections::HashSet<UserId>,
}

impl Replays {
    /// Opens `dir` (made if missing), marks replays the last run left unfinished as
    /// incomplete, counts what is kept against `quota_bytes`, and starts the writer.
    pub fn open(dir: &Path, quota_bytes: u64) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let mut used = 0;
        let mut finished = HashMap::new();
        for mut info in list_in(dir) {
            // What is on disk counts, whatever the index says (a crash may have cut it).
            for track in &mut info.tracks {
                let file = dir.join(&info.id).join(format!("{}.opus", track.user.id));
                if let Ok(meta) = std::fs::metadata(file) {
                    track.bytes = meta.len();
                }
            }
            used += info.bytes();
            if info.ended_at_ms.is_none() {
                info.incomplete = true;
                info.why_incomplete = Some("the server stopped before the room ended".into());
                info.ended_at_ms = Some(info.last_ms.unwrap_or(info.started_at_ms));
            }
            let _ = write_index(&dir.join(&info.id), &info);
            finished.insert(info.id.clone(), info);
        }
        let finished: Finished = Arc::new(std::sync::Mutex::new(finished));
        let used = Arc::new(AtomicU64::new(used));
        let queued = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer {
            dir: dir.to_owned(),
            quota_bytes,
            used: used.clone(),
            queued: queued.clone(),
            finished: finished.clone(),
            replays: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("hallway-replays".into())
            .spawn(move || writer.run(rx))?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            finished,
            quota_bytes,
            used,
            tx,
            queued,
            thread: std::sync::Mutex::new(Some(thread)),
        }))
    }

    /// Bytes kept, and the quota.
    pub fn usage(&self) -> (u64, u64) {
        (self.used.load(Ordering::Relaxed), self.quota_bytes)
    }

    /// The server is stopping: every replay still open is finished (its room did not end
    /// here, so it is marked incomplete) and the writer stops; waits at most `within`.
    pub fn close(&self, within: std::time::Duration) {
        let _ = self.tx.send(Job::Stop);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let deadline = std::time::Instant::now() + within;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("the replay writer did not finish within {within:?}");
            }
        }
    }

    /// Starts the replay of room `room`.
    pub fn start(&self, room: &str, title: &str, host: User, now_ms: u64) -> ReplayHandle {
        let lost = Arc::new(AtomicBool::new(false));
        let info = ReplayInfo {
            id: room.to_owned(),
            title: title.to_owned(),
            host,
            started_at_ms: now_ms,
            last_ms: None,
            ended_at_ms: None,
            incomplete: false,
            why_incomplete: None,
            tracks: Vec::new(),
        };
        if self
            .tx
            .send(Job::Start {
                info,
                lost: lost.clone(),
            })
            .is_err()
        {
            tracing::warn!(
                room,
                "the replay writer has stopped: nothing of this room is kept"
            );
            lost.store(true, Ordering::Relaxed);
        }
        ReplayHandle {
            room: room.into(),
            lost,
            seen: std::collections::HashSet::new(),
        }
    }

    /// A frame `speaker` sent (forwarded to the room): never waits; a full queue drops it
    /// and marks the replay incomplete.
    pub fn frame(&self, replay: &mut ReplayHandle, speaker: User, arrival_ms: u64, frame: Bytes) {
        if self.queued.load(Ordering::Relaxed) >= QUEUE {
            replay.lost.store(true, Ordering::Relaxed);
            return;
        }
        let id = speaker.id;
        let job = Job::Frame {
            room: replay.room.clone(),
            speaker,
            arrival_ms,
            frame,
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(job).is_ok() {
            // Its name went with it: later frames need only the id.
            replay.seen.insert(id);
        } else {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            replay.lost.store(true, Ordering::Relaxed);
        }
    }

    /// The room ended here (`why` is None), or goes on elsewhere (`why` says so): the
    /// replay is finished and listed.
    pub fn end(&self, replay: &ReplayHandle, now_ms: u64, why: Option<String>) {
        let _ = self.tx.send(Job::End {
            room: replay.room.to_string(),
            ended_ms: now_ms,
            why,
        });
    }

    /// The finished replays, newest first.
    pub fn list(&self) -> Vec<ReplayInfo> {
        let mut all: Vec<ReplayInfo> = self
            .finished
            .lock()
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by_key(|i| std::cmp::Reverse(i.started_at_ms));
        all
    }

    /// One finished replay, if it exists.
    pub fn get(&self, room: &str) -> Option<ReplayInfo> {
        self.finished.lock().ok()?.get(room).cloned()
    }

    /// The file of `user`'s track in replay `room`.
    pub fn track_path(&self, room: &str, user: UserId) -> Option<PathBuf> {
        let info = self.get(room)?;
        info.track(user)?;
        Some(self.dir.join(room).join(format!("{user}.opus")))
    }

    /// Deletes a finished replay; its bytes no longer count against the quota.
    pub fn delete(&self, room: &str) -> std::io::Result<()> {
        let info = self
            .get(room)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        if !valid_id(room) {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        std::fs::remove_dir_all(self.dir.join(room))?;
        if let Ok(mut finished) = self.finished.lock() {
            finished.remove(room);
        }
        let freed = info.bytes();
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(freed))
            });
        Ok(())
    }
}

impl ReplayHandle {
    /// Whether `speaker`'s name went to the writer already.
    pub fn knows(&self, speaker: UserId) -> bool {
        self.seen.contains(&speaker)
    }
}

/// Room ids are the server's own: letters and digits. Anything else never names a path.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn read_index(dir: &Path) -> Option<ReplayInfo> {
    let text = std::fs::read_to_string(dir.join("index.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_index(dir: &Path, info: &ReplayInfo) -> std::io::Result<()> {
    // Written whole to a temporary file, synced and renamed: a reader never sees half of
    // one, and a power cut leaves the old one or the new.
    let tmp = dir.join("index.json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(info).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(tmp, dir.join("index.json"))?;
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn list_in(dir: &Path) -> Vec<ReplayInfo> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(valid_id))
        .filter_map(|e| read_index(&e.path()))
        .collect()
}

/// One speaker's track being written.
struct Track {
    writer: PacketWriter<'static, BufWriter<File>>,
    /// The sender's timestamp that maps to granule 0 (moved when their clock restarts).
    first_timestamp: u32,
    /// The last packet's end: granules only ever grow.
    last_granule: u64,
    index: usize,
}

/// One replay being written.
struct Replay {
    info: ReplayInfo,
    lost: Arc<AtomicBool>,
    tracks: HashMap<UserId, Track>,
    /// Writing stopped for good (a write failed, or the quota): the reason.
    stopped: Option<String>,
    /// When the index was last written (its arrival time).
    indexed_ms: u64,
    /// Bytes this replay wrote.
    bytes: u64,
}

struct Writer {
    dir: PathBuf,
    quota_bytes: u64,
    used: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    finished: Finished,
    replays: HashMap<String, Replay>,
}

fn opus_head() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(1); // mono
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: the packets are as sent
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family 0
    head
}

fn opus_tags() -> Vec<u8> {
    let vendor = b"hallway replay";
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    tags
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            match job {
                Job::Start { info, lost } => {
                    let dir = self.dir.join(&info.id);
                    let stopped = std::fs::create_dir_all(&dir)
                        .and_then(|()| write_index(&dir, &info))
                        .err()
                        .map(|e| format!("cannot write the replay ({e})"));
                    let indexed_ms = info.started_at_ms;
                    self.replays.insert(
                        info.id.clone(),
                        Replay {
                            info,
                            lost,
                            tracks: HashMap::new(),
                            stopped,
                            indexed_ms,
                            bytes: 0,
                        },
                    );
                }
                Job::Frame {
                    room,
                    speaker,
                    arrival_ms,
                    frame,
                } => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    self.frame(&room, speaker, arrival_ms, frame);
                }
                Job::End {
                    room,
                    ended_ms,
                    why,
                } => self.end(&room, ended_ms, why),
                Job::Stop => break,
            }
        }
        // Stopping: what is still open did not end here.
        let open: Vec<(String, u64)> = self
            .replays
            .values()
            .map(|r| {
                (
                    r.info.id.clone(),
                    r.info.last_ms.unwrap_or(r.info.started_at_ms),
                )
            })
            .collect();
        for (room, last_ms) in open {
            self.end(
                &room,
                last_ms,
                Some("the server stopped before the room ended".into()),
            );
        }
    }

    fn frame(&mut self, room: &str, speaker: User, arrival_ms: u64, frame: Bytes) {
        let dir = self.dir.join(room);
        let (quota, used) = (self.quota_bytes, self.used.clone());
        let Some(replay) = self.replays.get_mut(room) else {
            return;
        };
        if replay.stopped.is_some() {
            return;
        }
        let Ok(frame) = AudioFrame::parse(frame) else {
            return;
        };
        let bytes = frame.opus().len() as u64 + PAGE_OVERHEAD;
        if used.load(Ordering::Relaxed) + bytes > quota {
            replay.stopped = Some("the server's replay quota was reached".into());
            return;
        }
        if replay.bytes + bytes > quota / REPLAY_SHARE {
            replay.stopped = Some(format!(
                "one replay may take at most a quarter of the server's replay quota ({} MB)",
                quota / REPLAY_SHARE / 1_000_000
            ));
            return;
        }
        let is_new = !replay.tracks.contains_key(&speaker.id);
        let result = (|| -> std::io::Result<()> {
            if !replay.tracks.contains_key(&speaker.id) {
                let file = File::create(dir.join(format!("{}.opus", speaker.id)))?;
                let mut writer = PacketWriter::new(BufWriter::new(file));
                writer.write_packet(opus_head(), SERIAL, PacketWriteEndInfo::EndPage, 0)?;
                writer.write_packet(opus_tags(), SERIAL, PacketWriteEndInfo::EndPage, 0)?;
                replay.info.tracks.push(ReplayTrack {
                    user: speaker.clone(),
                    first_ms: arrival_ms,
                    packets: 0,
                    bytes: 0,
                });
                replay.tracks.insert(
                    speaker.id,
                    Track {
                        writer,
                        first_timestamp: frame.header.timestamp_48k,
                        last_granule: 0,
                        index: replay.info.tracks.len() - 1,
                    },
                );
            }
            let Some(track) = replay.tracks.get_mut(&speaker.id) else {
                return Ok(());
            };
            let first_ms = replay.info.tracks[track.index].first_ms;
            // Where the packet's arrival puts it on the track, in samples.
            let by_arrival = arrival_ms.saturating_sub(first_ms) * 48;
            let mut offset = u64::from(
                frame
                    .header
                    .timestamp_48k
                    .wrapping_sub(track.first_timestamp),
            );
            // A clock that restarted (a new process counts from 0) or jumped: the packet is
            // placed by its arrival, and the track goes on from there.
            if offset.abs_diff(by_arrival) > MAX_CLOCK_JUMP {
                track.first_timestamp = frame
                    .header
                    .timestamp_48k
                    .wrapping_sub(u32::try_from(by_arrival).unwrap_or(u32::MAX));
                offset = by_arrival;
            }
            let frame_samples = crate::audio::FRAME_SAMPLES as u64;
            let granule = (offset + frame_samples).max(track.last_granule + frame_samples);
            track.last_granule = granule;
            track.writer.write_packet(
                frame.opus().to_vec(),
                SERIAL,
                PacketWriteEndInfo::EndPage,
                granule,
            )?;
            let listed = &mut replay.info.tracks[track.index];
            listed.packets += 1;
            listed.bytes += bytes;
            Ok(())
        })();
        match result {
            Ok(()) => {
                used.fetch_add(bytes, Ordering::Relaxed);
                replay.bytes += bytes;
                replay.info.last_ms = Some(arrival_ms);
                // A new speaker, or a while since: the index follows, so a crash keeps it.
                if is_new || arrival_ms >= replay.indexed_ms + INDEX_EVERY_MS {
                    replay.indexed_ms = arrival_ms;
                    for track in replay.tracks.values_mut() {
                        let _ = track.writer.inner_mut().flush();
                    }
                    let _ = write_index(&dir, &replay.info);
                }
            }
            Err(e) => {
                tracing::warn!(room, "replay stopped: {e}");
                replay.stopped = Some(format!("writing failed ({e}); is the disk full?"));
            }
        }
    }

    fn end(&mut self, room: &str, ended_ms: u64, moved: Option<String>) {
        let Some(mut replay) = self.replays.remove(room) else {
            return;
        };
        let mut why = replay.stopped.take().or(moved);
        for track in replay.tracks.values_mut() {
            if let Err(e) = track.writer.inner_mut().flush()
                && why.is_none()
            {
                why = Some(format!("writing failed ({e}); is the disk full?"));
            }
        }
        if why.is_none() && replay.lost.load(Ordering::Relaxed) {
            why = Some("the server fell behind writing it".into());
        }
        replay.info.ended_at_ms = Some(ended_ms);
        replay.info.incomplete = why.is_some();
        replay.info.why_incomplete = why;
        if let Err(e) = write_index(&self.dir.join(room), &replay.info) {
            tracing::warn!(room, "cannot finish the replay's index: {e}");
        }
        if let Ok(mut finished) = self.finished.lock() {
            finished.insert(room.to_owned(), replay.info);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::AudioHeader;

    fn user(id: UserId) -> User {
        User {
            id,
            handle: format!("u{id}"),
            name: format!("U{id}"),
        }
    }

    fn frame(sequence: u32, timestamp: u32) -> Bytes {
        let header = AudioHeader {
            speaker_id: 1,
            sequence,
            timestamp_48k: timestamp,
            level: 20,
            voice: true,
        };
        AudioFrame::new(header, &[sequence as u8; 40])
            .unwrap()
            .bytes()
            .clone()
    }

    fn wait_for(replays: &Replays, room: &str) -> ReplayInfo {
        for _ in 0..500 {
            if let Some(info) = replays.get(room).filter(|i| i.ended_at_ms.is_some()) {
                return info;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the replay of {room} was not finished");
    }

    #[test]
    fn packets_are_kept_as_sent_with_their_place_on_the_speakers_clock() {
        let dir = tempfile::tempdir().unwrap();
        let replays = Replays::open(dir.path(), 1 << 30).unwrap();
        let mut handle = replays.start("room1", "Talk", user(1), 1_000);
        // Three packets, then a silence of 10 frames (DTX), then one more.
        for (seq, ts) in [(0, 96_000), (1, 96_960), (2, 97_920), (3, 107_520)] {
            replays.frame(&mut handle, user(1), 1_500, frame(seq, ts));
        }
        replays.end(&handle, 9_000, None);
        let info = wait_for(&replays, "room1");
        assert!(!info.incomplete, "{info:?}");
        assert_eq!(info.tracks.len(), 1);
        assert_eq!(
            (info.tracks[0].first_ms, info.tracks[0].packets),
            (1_500, 4)
        );
        let path = replays.track_path("room1", 1).unwrap();
        let mut reader = ogg::PacketReader::new(File::open(path).unwrap());
        let head = reader.read_packet_expected().unwrap();
        assert!(head.data.starts_with(b"OpusHead"));
        reader.read_packet_expected().unwrap();
        let mut got = Vec::new();
        while let Some(packet) = reader.read_packet().unwrap() {
            got.push((packet.data[0], packet.absgp_page()));
        }
        assert_eq!(got, [(0, 960), (1, 1_920), (2, 2_880), (3, 12_480)]);
        assert_eq!(replays.list().len(), 1);
        // Names never become paths.
        assert!(replays.get("../etc").is_none());
        replays.delete("room1").unwrap();
        assert!(replays.list().is_empty());
        assert_eq!(replays.usage().0, 0);
    }

    #[test]
    fn the_quota_stops_a_replay_which_says_so_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        // One replay may take a quarter of the quota: room for two packets.
        let replays = Replays::open(dir.path(), 4 * 2 * (40 + PAGE_OVERHEAD)).unwrap();
        let mut handle = replays.start("room2", "Talk", user(1), 1_000);
        for seq in 0..5 {
            replays.frame(&mut handle, user(1), 1_000, frame(seq, seq * 960));
        }
        replays.end(&handle, 2_000, None);
        let info = wait_for(&replays, "room2");
        assert!(info.incomplete);
        assert!(
            info.why_incomplete.as_deref().unwrap().contains("quota"),
            "{info:?}"
        );
        assert_eq!(info.tracks[0].packets, 2);
    }

    #[test]
    fn a_replay_left_unfinished_by_a_stopped_server_is_marked_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let replays = Replays::open(dir.path(), 1 << 30).unwrap();
            let _handle = replays.start("room3", "Talk", user(1), 1_000);
            for _ in 0..100 {
                if dir.path().join("room3/index.json").exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let replays = Replays::open(dir.path(), 1 << 30).unwrap();
        let info = replays.get("room3").unwrap();
        assert!(info.incomplete && info.ended_at_ms.is_some(), "{info:?}");
        assert_eq!(replays.list().len(), 1);
    }

    #[test]
    fn a_speaker_whose_clock_restarts_goes_on_where_their_arrival_puts_them() {
        let dir = tempfile::tempdir().unwrap();
        let replays = Replays::open(dir.path(), 1 << 30).unwrap();
        let mut handle = replays.start("room4", "Talk", user(1), 1_000);
        replays.frame(&mut handle, user(1), 1_000, frame(0, 500_000));
        replays.frame(&mut handle, user(1), 1_020, frame(1, 500_960));
        // A new process: its clock starts at 0, five seconds later.
        replays.frame(&mut handle, user(1), 6_020, frame(0, 0));
        replays.frame(&mut handle, user(1), 6_040, frame(1, 960));
        replays.end(&handle, 7_000, None);
        let _ = wait_for(&replays, "room4");
        let path = replays.track_path("room4", 1).unwrap();
        let mut reader = ogg::PacketReader::new(File::open(path).unwrap());
        reader.read_packet_expected().unwrap();
        reader.read_packet_expected().unwrap();
        let mut granules = Vec::new();
        while let Some(packet) = reader.read_packet().unwrap() {
            granules.push(packet.absgp_page());
        }
        // 5.02 s after the first packet is 240,960 samples; the next follows on.
        assert_eq!(granules, [960, 1_920, 240_960 + 960, 240_960 + 1_920]);
    }

    #[test]
    fn a_server_stopping_finishes_what_it_was_writing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let replays = Replays::open(dir.path(), 1 << 30).unwrap();
        let mut handle = replays.start("room5", "Talk", user(1), 1_000);
        for seq in 0..10 {
            replays.frame(
                &mut handle,
                user(1),
                1_000 + u64::from(seq) * 20,
                frame(seq, seq * 960),
            );
        }
        replays.close(std::time::Duration::from_secs(5));
        let info = replays.get("room5").unwrap();
        assert!(info.incomplete, "{info:?}");
        assert_eq!(info.tracks[0].packets, 10);
        assert!(info.why_incomplete.unwrap().contains("stopped"));
    }
}
