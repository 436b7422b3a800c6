//! Bodies of the REST API under `/api/v1/`, and the room views shared with the WebSocket.

use serde::{Deserialize, Serialize};

use super::{ErrorCode, UserId};

/// `GET /api/v1`: what this server is and speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Always `"hallway"`.
    pub server: String,
    /// The server's build version.
    pub version: String,
    /// The wire protocol version, [`super::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// True when `POST /api/v1/sessions` needs an access code.
    pub invite_only: bool,
}

/// `POST /api/v1/sessions` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSession {
    /// The display name, 1 to 32 characters.
    pub name: String,
    /// Needed when the server is invite-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_code: Option<String>,
}

/// `POST /api/v1/sessions` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Bearer token for every later request.
    pub token: String,
    pub user: User,
}

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
}

/// `POST /api/v1/rooms` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRoom {
    /// The room's title, 1 to 100 characters.
    pub title: String,
}

/// What a participant is in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the room; a moderator on the stage. Exactly one while any moderator is present.
    Host,
    /// Runs the stage with the host; on the stage.
    Moderator,
    /// On the stage, may talk.
    Speaker,
    /// In the audience.
    Listener,
}

impl Role {
    /// Host, moderators and speakers are on the stage and may send audio when unmuted.
    pub fn on_stage(self) -> bool {
        !matches!(self, Role::Listener)
    }

    /// Host and moderators run the room.
    pub fn is_moderator(self) -> bool {
        matches!(self, Role::Host | Role::Moderator)
    }
}

/// One person in a room, as everyone in it sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    /// Meaningful on the stage; listeners are always muted.
    pub muted: bool,
    /// When the hand was raised (Unix ms), if it is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_raised_at_ms: Option<u64>,
    /// A moderator has invited them to speak and they have not answered yet.
    // The three flags are omitted when false: a big room's snapshot lists dozens of
    // people, and every connection keeps a buffer the size of the largest message it got.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invited: bool,
    /// Their audio is above the speaking threshold right now.
    #[serde(default, skip_serializing_if = "is_false")]
    pub speaking: bool,
    /// They are recording the room (everyone is told).
    #[serde(default, skip_serializing_if = "is_false")]
    pub recording: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A speaker in a room listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMember {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    pub muted: bool,
    pub speaking: bool,
}

/// A live room as the directory lists it (`GET /api/v1/rooms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// Short random id, also used in room links.
    pub id: String,
    pub title: String,
    /// The host, when one is in the room (absent briefly while the role is handed over).
    #[serde(default)]
    pub host: Option<User>,
    /// Everyone on the stage: host, moderators and speakers.
    pub speakers: Vec<StageMember>,
    pub listener_count: usize,
    /// Unix ms.
    pub created_at_ms: u64,
    /// Someone in the room is recording it.
    #[serde(default)]
    pub recording: bool,
}

/// `GET /api/v1/rooms` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    pub rooms: Vec<RoomSummary>,
}

/// A room in full (`GET /api/v1/rooms/{id}` and the WebSocket snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomDetail {
    #[serde(flatten)]
    pub summary: RoomSummary,
    /// Everyone in the room: stage first, then the audience, each in joining order. In a
    /// big room, members other than the host and moderators are sent only part of the
    /// audience (the stage, the audience's front rows, anyone recording, and themselves);
    /// `unlisted` counts the rest.
    pub participants: Vec<Participant>,
    /// Listeners in the room but not in `participants`; 0 when everyone is listed.
    #[serde(default)]
    pub unlisted: usize,
    /// Raised hands, oldest first.
    pub hands: Vec<UserId>,
    /// The most people the stage holds.
    pub stage_limit: usize,
}

/// The body of every REST error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A machine code and a human message saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}
