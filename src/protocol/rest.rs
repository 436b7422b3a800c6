//! Bodies of the REST API under `/api/v2/`, and the room views shared with the WebSocket.
//!
//! Keys, nonces, signatures and secret codes travel as base64url without padding
//! ([`crate::identity::b64`]); times are Unix milliseconds.

use serde::{Deserialize, Serialize};

use super::{ErrorCode, UserId};

/// `GET /api/v2`: what this server is and speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Always `"hallway"`.
    pub server: String,
    /// The server's build version.
    pub version: String,
    /// The wire protocol version, [`super::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// True when creating an account needs an invitation.
    pub invite_only: bool,
    /// In a cluster: where every live node is reached (this one first). A client whose
    /// node goes away reconnects to another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// `GET /api/v2/cluster`: the nodes of the cluster this server is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: String,
    /// Every live node, the one that answered first.
    pub nodes: Vec<ClusterNode>,
    /// The answering node's last round trip to its NATS server, in milliseconds.
    pub nats_rtt_ms: f64,
}

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub name: String,
    /// Where clients reach it.
    pub url: String,
    /// Rooms homed on it.
    pub rooms: usize,
    /// Connections to it, in any room.
    pub members: usize,
    /// Unix ms.
    pub started_ms: u64,
}

/// `POST /api/v2/challenges` response: a nonce to sign, once, within `expires_in_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
    pub expires_in_ms: u64,
}

/// A device's public keys, as its owner registers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    /// Ed25519 public key: signs sign-in challenges.
    pub sign_key: String,
    /// X25519 public key: receives room keys in end-to-end encrypted rooms.
    pub agree_key: String,
    /// What the owner calls the device (e.g. its host name), at most 40 characters.
    #[serde(default)]
    pub label: String,
}

/// A challenge answered: the nonce from `POST /api/v2/challenges` and the device's
/// signature over `"hallway-signin-v2\n" ‖ HOST ‖ "\n" ‖ nonce`, where `HOST` is the
/// request's `Host` header ([`crate::identity::signin_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub nonce: String,
    pub signature: String,
}

/// `POST /api/v2/accounts` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAccount {
    /// `ada` or `@ada`: ASCII letters, digits and `_`, 3 to 20 characters.
    pub handle: String,
    /// The display name; the handle when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub device: DeviceKeys,
    /// An invitation code; required by an invite-only server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<String>,
    #[serde(flatten)]
    pub signed: Signed,
}

/// `POST /api/v2/sessions` request: sign in with a device already on an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    pub sign_key: String,
    #[serde(flatten)]
    pub signed: Signed,
}

/// `POST /api/v2/devices` request: add this device to an account with a link code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDevice {
    pub code: String,
    pub device: DeviceKeys,
    #[serde(flatten)]
    pub signed: Signed,
}

/// The answer to creating an account, signing in or linking a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Bearer token for every later request.
    pub token: String,
    pub expires_at_ms: u64,
    pub user: User,
}

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Unique on the server, without `@`.
    pub handle: String,
    pub name: String,
}

/// One of an account's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub id: i64,
    pub label: String,
    pub sign_key: String,
    pub agree_key: String,
    /// A short form of the signing key to compare aloud.
    pub fingerprint: String,
    pub created_at_ms: u64,
    pub last_seen_ms: u64,
    /// The device this request came from.
    #[serde(default)]
    pub current: bool,
}

/// `GET /api/v2/me`: your account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user: User,
    pub bio: String,
    pub admin: bool,
    /// `None` when unlimited.
    pub invitations_left: Option<u32>,
    pub devices: Vec<DeviceInfo>,
    /// Everyone you follow.
    pub following: Vec<UserId>,
    /// Everyone you block: the client hides their audio, hands and chat.
    pub blocking: Vec<UserId>,
}

/// `PATCH /api/v2/me` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// At most 160 characters, one paragraph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
}

/// `GET /api/v2/users/{handle}`: someone's profile as you see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub user: User,
    pub bio: String,
    pub joined_at_ms: u64,
    /// The handle of who invited them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    pub followers: u64,
    pub following: u64,
    /// You follow them.
    pub followed: bool,
    /// You block them.
    pub blocked: bool,
    /// Their devices' public keys: what end-to-end encrypted rooms wrap room keys to, and
    /// the fingerprints people compare.
    pub devices: Vec<PublicDevice>,
    #[serde(default)]
    pub suspended: bool,
}

/// One of someone's devices, as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicDevice {
    /// Ed25519, base64url.
    pub sign_key: String,
    /// X25519, base64url.
    pub agree_key: String,
    pub fingerprint: String,
}

/// `POST /api/v2/invitations` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub code: String,
    /// `SERVER/invite/CODE`: what a newcomer passes to `hallway --server`.
    pub url: String,
    pub expires_at_ms: u64,
    /// `None` when unlimited.
    pub invitations_left: Option<u32>,
}

/// `POST /api/v2/devices/link-codes` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCode {
    pub code: String,
    pub expires_at_ms: u64,
}

/// `POST /api/v2/users/{handle}/reports` and `POST /api/v2/admin/users/{handle}/suspension`
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// 1 to 500 characters.
    pub reason: String,
}

/// One report, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportInfo {
    pub id: i64,
    pub reporter: String,
    pub reported: String,
    pub reason: String,
    pub created_at_ms: u64,
}

/// `GET /api/v2/admin/reports` response, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportList {
    pub reports: Vec<ReportInfo>,
}

/// `POST /api/v2/rooms` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRoom {
    /// The room's title, 1 to 100 characters.
    pub title: String,
    /// Makes the room private (#13): listed to, and joined by, only those it is shared
    /// with, its audio end-to-end encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<Share>,
    /// Keep a replay of the room (#15): everyone sees it before joining and while in it.
    /// Never with `private`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replay: bool,
}

/// Who a private room is shared with, besides its host. At least one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// These people, by handle (without `@`); every handle must exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handles: Vec<String>,
    /// Everyone the room's maker follows (looked up at each check).
    #[serde(default, skip_serializing_if = "is_false")]
    pub followers: bool,
    /// Anyone holding the room's share link (its secret is in the room's detail, for
    /// moderators).
    #[serde(default, skip_serializing_if = "is_false")]
    pub link: bool,
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
    pub handle: String,
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
    /// Private rooms: the X25519 key of the device they are in the room with (base64url),
    /// which the room key is wrapped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
    /// Private rooms: the newest room key epoch their client says it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_epoch: Option<u32>,
    /// A moderator stopped them writing in the chat.
    #[serde(default, skip_serializing_if = "is_false")]
    pub chat_silenced: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A speaker in a room listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMember {
    pub id: UserId,
    pub handle: String,
    pub name: String,
    pub role: Role,
    pub muted: bool,
    pub speaking: bool,
}

/// A live room as the directory lists it (`GET /api/v2/rooms`).
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
    /// Someone the viewer follows is on the stage (in `GET /api/v2/rooms` with a token).
    #[serde(default, skip_serializing_if = "is_false")]
    pub followed: bool,
    /// Private: shown and open only to those it is shared with; audio end-to-end encrypted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub private: bool,
    /// The server keeps a replay of the room (its host chose so at creation).
    #[serde(default, skip_serializing_if = "is_false")]
    pub replay: bool,
}

/// `GET /api/v2/rooms` response: with a token, rooms with people you follow on the stage
/// first; newest first within each part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    pub rooms: Vec<RoomSummary>,
}

/// A room in full (`GET /api/v2/rooms/{id}` and the WebSocket snapshot).
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
    /// Private rooms shared by link: the link's secret, shown to the host and moderators
    /// (who pass the link on); `?share=SECRET` on the room's URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_secret: Option<String>,
    /// Chat, pin: what the room shows besides its people.
    #[serde(flatten)]
    pub life: super::chat::RoomLife,
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
