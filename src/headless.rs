//! Commands for scripts and bots: `hallway play` streams a file into a room as a speaker,
//! `hallway record` writes a room's mix (and each speaker's track) to files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use crate::audio::{
    AudioError, Recorder, RecorderConfig, RecorderStats, RecorderThread, SystemClock,
};
use crate::clip::{self, Clip};
use crate::net::live::AudioHandler;
use crate::net::live::Backoff;
use crate::net::{Api, LiveSession, NetError, NetEvent, Target};
use crate::protocol::{
    AudioFrame, ClientCommand, CreateRoom, ErrorCode, Role, RoomDetail, ServerMessage, Share,
    UserId,
};

/// How long `play` waits, by default, for a moderator to invite it after raising its hand.
pub const INVITE_PATIENCE: Duration = Duration::from_secs(60);
/// A script would rather fail than wait forever on a server that went away.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(250),
    max: Duration::from_secs(2),
    max_attempts: Some(5),
};

/// Why a headless command failed; each says what to do next.
#[derive(Debug, Error)]
pub enum HeadlessError {
    /// The audio file could not be used.
    // Transparent, not "{0}": with "{0}" the inner error is both the message and its
    // source, and `hallway: {e:#}` printed it twice.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The server refused or could not be reached.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The session ended before the work was done.
    #[error("{0}")]
    Ended(String),
    /// Nobody let us on stage.
    #[error(
        "no permission to speak in room {room}: a moderator has to invite you (your hand was up for {waited_s} s)"
    )]
    NotInvited { room: String, waited_s: u64 },
    /// The output file's type is not one we write.
    #[error("cannot record to {0}: name the file .wav, .ogg or .opus")]
    BadOutput(PathBuf),
}

/// Where `play` streams to.
pub enum PlayTarget {
    /// A live room, with its share secret when it came by a private room's share link.
    Room { id: String, share: Option<String> },
    /// A new room with this title; private when `private` says who it is shared with.
    Create {
        title: String,
        private: Option<Share>,
        /// The server keeps a replay of it (#15).
        replay: bool,
    },
}

/// How long a speaker in a private room waits for the room key before giving up.
pub const KEY_PATIENCE: Duration = Duration::from_secs(10);

/// Joins a room as a speaker and streams `file` in real time; returns at the end of the file
/// (never, with `looping`, until the room ends or the process is stopped). Off stage, it
/// raises a hand and gives up unless invited within `invite_patience`.
pub async fn play(
    api: &Api,
    target: PlayTarget,
    file: &Path,
    looping: bool,
    invite_patience: Duration,
) -> Result<(), HeadlessError> {
    let path = file.to_path_buf();
    let clip = tokio::task::spawn_blocking(move || Clip::from_file(&path))
        .await
        .map_err(|e| HeadlessError::Ended(format!("encoding failed: {e}")))??;
    let (room, share) = match target {
        PlayTarget::Room { id, share } => (id, share),
        PlayTarget::Create {
            title,
            private,
            replay,
        } => {
            let detail = api
                .create(&CreateRoom {
                    title,
                    private,
                    replay,
                })
                .await?;
            let id = detail.summary.id.clone();
            // Scripts read the link from stdout to share it.
            match &detail.share_secret {
                Some(secret) => println!("{}", Target::share_link(api.base(), &id, secret)),
                None => println!("{}", Target::room_link(api.base(), &id)),
            }
            (id, None)
        }
    };
    let (events_tx, mut events) = mpsc::channel(256);
    let live = LiveSession::start_shared(api, &room, share, events_tx, Box::new(|_| {}), BACKOFF);
    let (me, detail) = joined(&mut events).await?;
    get_on_stage(&live, &mut events, &room, me, invite_patience).await?;
    if detail.summary.private {
        wait_for_key(&live, &mut events).await?;
    }
    tracing::info!(room = %room, seconds = clip.duration().as_secs_f32(), "playing {}", file.display());
    let mut clock = clip::Sender::default();
    let mut tick = tokio::time::interval(clip::FRAME);
    // One frame per tick, whatever else happens: room events are handled between ticks and
    // never cost a frame (skipping one would shift everything after it in time).
    let mut next = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if next == 0 && clock.timestamp_48k == 0 {
                    // Where the sender's clock sits on the wall clock: with the listener's
                    // `output started` line, benches measure mouth-to-ear
                    // (benches/impaired.rs).
                    tracing::info!(unix_us = crate::audio::clock::unix_us(), "timestamp 0 sent");
                }
                if next == clip.frames.len() {
                    if !looping || next == 0 {
                        break;
                    }
                    next = 0;
                }
                if let Some(slot) = clip.frames.get(next) {
                    clock.send(&live, slot.as_ref());
                }
                next += 1;
            }
            event = events.recv() => check_still_there(event)?,
        }
    }
    // Let the last frames leave before saying goodbye.
    tokio::time::sleep(Duration::from_millis(200)).await;
    live.leave().await;
    Ok(())
}

/// Waits until the live session holds a private room's key (its frames are sealed from
/// then on; before, they would be dropped unsent).
async fn wait_for_key(
    live: &LiveSession,
    events: &mut mpsc::Receiver<NetEvent>,
) -> Result<(), HeadlessError> {
    let deadline = tokio::time::Instant::now() + KEY_PATIENCE;
    let mut why = String::from("no moderator's client sent the room key");
    while live
        .stats
        .key_epoch
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                return Err(HeadlessError::Ended(format!(
                    "no room key after {} s: {why}",
                    KEY_PATIENCE.as_secs()
                )));
            }
            Ok(Some(NetEvent::Keys(status))) => {
                if let Some(waiting) = status.problem.or(status.waiting) {
                    why = waiting;
                }
            }
            Ok(event) => check_still_there(event)?,
        }
    }
    Ok(())
}

/// Waits for the snapshot; returns who we are.
async fn joined(
    events: &mut mpsc::Receiver<NetEvent>,
) -> Result<(UserId, RoomDetail), HeadlessError> {
    loop {
        match events.recv().await {
            Some(NetEvent::Server(ServerMessage::RoomSnapshot { you, room, .. })) => {
                return Ok((you, room));
            }
            event => check_still_there(event)?,
        }
    }
}

/// Fails when the session has ended; other events pass.
fn check_still_there(event: Option<NetEvent>) -> Result<(), HeadlessError> {
    match event {
        None => Err(HeadlessError::Ended(
            "the connection to the server ended".into(),
        )),
        Some(NetEvent::Closed { code, message }) => Err(HeadlessError::Ended(match code {
            Some(ErrorCode::RoomNotFound) => {
                format!("{message} (list live rooms with `hallway rooms`)")
            }
            _ => message,
        })),
        Some(_) => Ok(()),
    }
}

/// On stage and unmuted: at once for the host, else by raising a hand and accepting.
async fn get_on_stage(
    live: &LiveSession,
    events: &mut mpsc::Receiver<NetEvent>,
    room: &str,
    me: UserId,
    patience: Duration,
) -> Result<(), HeadlessError> {
    let mut on_stage = false;
    // The snapshot came already; ask the room where we stand by acting and watching.
    live.send(ClientCommand::RaiseHand);
    let deadline = tokio::time::Instant::now() + patience;
    while !on_stage {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(event) => event,
            Err(_) => {
                live.send(ClientCommand::LowerHand { user_id: None });
                return Err(HeadlessError::NotInvited {
                    room: room.to_string(),
                    waited_s: patience.as_secs(),
                });
            }
        };
        match &event {
            // Raising a hand on stage is refused: we are a host or moderator already.
            Some(NetEvent::Server(ServerMessage::Error { code, .. }))
                if *code == ErrorCode::AlreadyOnStage =>
            {
                on_stage = true;
            }
            Some(NetEvent::Server(ServerMessage::Invited { user_id, .. })) if *user_id == me => {
                live.send(ClientCommand::AcceptInvite);
            }
            Some(NetEvent::Server(ServerMessage::RoleChanged { user_id, role, .. }))
                if *user_id == me && role.on_stage() && *role != Role::Listener =>
            {
                on_stage = true;
            }
            _ => check_still_there(event)?,
        }
    }
    live.send(ClientCommand::Unmute);
    Ok(())
}

/// What a recording wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Length of the files, in seconds.
    pub seconds: f64,
    /// Frames heard, people heard, frames lost on the way.
    pub stats: RecorderStats,
    /// One file per speaker, when `--tracks` was given.
    pub tracks: Vec<PathBuf>,
}

/// Joins a room as a listener and records its mix to `out` (and one file per speaker into
/// `tracks`) for `seconds`, or until the room ends or `stop` is cancelled.
///
/// Frames are placed by their senders' clocks, not by when they came (see
/// [`crate::audio::recorder`]), so a slow network or a busy machine costs the recording
/// nothing.
pub async fn record(
    api: &Api,
    room: &str,
    share: Option<String>,
    out: &Path,
    tracks: Option<&Path>,
    seconds: Option<f64>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Recorded, HeadlessError> {
    let extension = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !matches!(extension.as_str(), "wav" | "ogg" | "opus") {
        return Err(HeadlessError::BadOutput(out.to_path_buf()));
    }
    if let Some(dir) = tracks {
        std::fs::create_dir_all(dir)
            .map_err(|e| AudioError::io("creating the tracks directory", e))?;
    }
    let recorder = Recorder::to_files(
        RecorderConfig::default(),
        out,
        tracks.map(|dir| (dir.to_path_buf(), extension.clone())),
    )?;
    let recorder = RecorderThread::start(recorder, Arc::new(SystemClock::new()))?;
    let sender = recorder.sender();
    let on_audio: AudioHandler = Box::new(move |frame: AudioFrame| {
        sender.push(frame);
    });
    let (events_tx, mut events) = mpsc::channel(256);
    let live = LiveSession::start_shared(api, room, share, events_tx, on_audio, BACKOFF);
    let mut was_in_room = false;
    // Who is who, to name the per-speaker tracks.
    let mut names: HashMap<UserId, String> = HashMap::new();
    let outcome = async {
        let (_, detail) = joined(&mut events).await?;
        was_in_room = true;
        names.extend(detail.participants.into_iter().map(|p| (p.id, p.name)));
        // Everyone in the room sees that it is being recorded, and by whom.
        live.send(ClientCommand::StartRecording);
        let limit = seconds.map(Duration::from_secs_f64);
        let sleep = async {
            match limit {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        // A recorder that stopped by itself could not write (a full disk): say so now,
        // not at the end of a long recording.
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = &mut sleep => break,
                () = stop.cancelled() => break,
                _ = check.tick() => if recorder.has_stopped() { break },
                event = events.recv() => match event {
                    Some(NetEvent::Server(ServerMessage::RoomEnded { .. })) => break,
                    // Back after a reconnect: the room forgot the flag with the old connection.
                    Some(NetEvent::Server(ServerMessage::RoomSnapshot { room: detail, .. })) => {
                        names.extend(detail.participants.into_iter().map(|p| (p.id, p.name)));
                        live.send(ClientCommand::StartRecording);
                    }
                    Some(NetEvent::Server(ServerMessage::ParticipantJoined { participant })) => {
                        names.insert(participant.id, participant.name);
                    }
                    Some(NetEvent::Closed { code: Some(ErrorCode::RoomEnded), .. }) => break,
                    event => check_still_there(event)?,
                },
            }
        }
        Ok::<_, HeadlessError>(())
    }
    .await;
    live.send(ClientCommand::StopRecording);
    live.leave().await;
    let finished = tokio::task::spawn_blocking(move || recorder.finish())
        .await
        .map_err(|e| HeadlessError::Ended(format!("closing the recording failed: {e}")))?;
    if !was_in_room {
        // Never got in (no such room, refused): leave no empty recording behind for a
        // script to mistake for one. After joining, whatever was recorded is kept.
        let _ = std::fs::remove_file(out);
    }
    outcome?;
    let stats = finished?;
    let tracks = match tracks {
        Some(dir) => name_tracks(dir, &extension, &names),
        None => Vec::new(),
    };
    Ok(Recorded {
        seconds: stats.seconds(),
        stats,
        tracks,
    })
}

/// Renames the recorder's `speaker-<id>.<ext>` files to `speaker-<id>-<name>.<ext>`,
/// so people can tell the tracks apart; returns every track file. A file that cannot be
/// renamed keeps its id-only name.
fn name_tracks(dir: &Path, extension: &str, names: &HashMap<UserId, String>) -> Vec<PathBuf> {
    let mut tracks = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return tracks;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("speaker-"))
            .and_then(|n| n.strip_suffix(&format!(".{extension}")))
            .and_then(|n| n.parse::<UserId>().ok())
        else {
            continue;
        };
        let named = names.get(&id).map(|name| {
            let slug: String = name
                .chars()
                .map(|c| if c.is_alphanumeric() { c } else { '-' })
                .take(32)
                .collect();
            dir.join(format!(
                "speaker-{id}-{}.{extension}",
                slug.trim_matches('-')
            ))
        });
        match named {
            Some(named) if std::fs::rename(&path, &named).is_ok() => tracks.push(named),
            _ => tracks.push(path),
        }
    }
    tracks.sort();
    tracks
}
