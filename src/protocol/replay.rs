//! Replays (#15): a room whose host turned replays on at creation is kept by the server as
//! each speaker's packets, as they came, in one Ogg Opus file a speaker (one packet a page,
//! each page's granule position the packet's place on the speaker's own clock) plus an
//! index. The server never decodes them; a client mixes them into one file.
//! Never for private rooms: their audio is sealed end to end.

use serde::{Deserialize, Serialize};

use super::{User, UserId};

/// One speaker's track in a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayTrack {
    pub user: User,
    /// When the server took the track's first packet, Unix ms: where the track starts on
    /// the room's timeline (granule positions count 48 kHz samples from there).
    pub first_ms: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// A replay as listed and described (`GET /api/v2/replays`, `GET /api/v2/replays/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayInfo {
    /// The room's id.
    pub id: String,
    pub title: String,
    pub host: User,
    pub started_at_ms: u64,
    /// When the last packet was kept (while it is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    /// When the room ended; absent while it is live (or when the server stopped first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// Some audio is missing: the disk filled, the server-wide quota was reached, the
    /// writer fell behind, or the server stopped before the room ended. The rest is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// Why, when it is incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_incomplete: Option<String>,
    pub tracks: Vec<ReplayTrack>,
}

impl ReplayInfo {
    /// How long the room lasted, ms: to its end, or to its last packet kept when the server
    /// stopped before the room ended.
    pub fn length_ms(&self) -> u64 {
        self.ended_at_ms
            .or(self.last_ms)
            .unwrap_or(self.started_at_ms)
            .saturating_sub(self.started_at_ms)
    }

    /// Bytes on disk for the audio.
    pub fn bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.bytes).sum()
    }

    /// The track of `user`.
    pub fn track(&self, user: UserId) -> Option<&ReplayTrack> {
        self.tracks.iter().find(|t| t.user.id == user)
    }
}

/// `GET /api/v2/replays`: the replays of rooms that ended, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayList {
    pub replays: Vec<ReplayInfo>,
}
