//! Stable machine-readable error codes, shared by REST errors, WebSocket `error` messages and
//! the `goodbye` a server sends before it closes a connection.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a request was refused or a connection is being closed. The serialized names
/// (snake_case) are part of the protocol and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or a field in it is not what the endpoint takes.
    BadRequest,
    /// A WebSocket text message that is not a JSON object.
    MalformedJson,
    /// A control message whose `type` this server does not know.
    UnknownType,
    /// A binary frame that is not a valid audio frame.
    BadFrame,
    /// A display name that is blank, too long, has control, invisible or direction-changing
    /// characters, or a word the client draws beside names (`you`, `host`, `muted`, ...).
    InvalidName,
    /// A room title that is blank, too long, or has control, invisible or
    /// direction-changing characters.
    InvalidTitle,
    /// Someone in the room already has a name that looks the same (`Ada` and Cyrillic `Аda`).
    NameLookalike,
    /// No `Authorization: Bearer` token, or one this server did not issue.
    Unauthorized,
    /// Version 1 only (shared access codes were replaced by invitations); kept so the
    /// name never means anything else.
    BadAccessCode,
    /// The action needs a role the caller does not have (e.g. moderator).
    Forbidden,
    /// The caller was removed from this room by a moderator and cannot rejoin.
    Banned,
    /// No live room with that id (it may have ended).
    RoomNotFound,
    /// The user named in a command is not in the room.
    UserNotFound,
    /// No such endpoint.
    NotFound,
    /// The stage already has the maximum number of speakers.
    StageFull,
    /// The target (or caller) is already on the stage.
    AlreadyOnStage,
    /// The target (or caller) is not on the stage.
    NotOnStage,
    /// There is no pending invitation to accept or decline.
    NotInvited,
    /// Audio was sent by someone who is muted or not on the stage; it was dropped.
    NotAllowedToSpeak,
    /// The request or message is larger than the server accepts.
    PayloadTooLarge,
    /// Too many requests or messages; slow down.
    RateLimited,
    /// The server is at a capacity limit (sessions, rooms, room size).
    ServerFull,
    /// The room ended (a moderator ended it, or no moderator was left).
    RoomEnded,
    /// A moderator removed this participant from the room.
    Removed,
    /// The connection could not keep up with the room's audio and was closed.
    SlowConsumer,
    /// The same user connected to the room again; this older connection was closed.
    Replaced,
    /// The peer kept sending invalid or excessive messages and was disconnected.
    Abusive,
    /// The server is shutting down.
    ServerShutdown,
    /// Something failed inside the server; the request may be retried.
    Internal,
    /// Connect again: the room moved, or the node serving this connection lost its link to
    /// the room's home (a cluster). A client reconnects at once, to this node or another.
    Reconnect,
    /// The endpoint exists but not with this HTTP method.
    MethodNotAllowed,
    /// The client speaks an older protocol (version 1); it must be upgraded.
    UpgradeRequired,
    /// A handle that is not 3 to 20 ASCII letters, digits or `_`.
    InvalidHandle,
    /// The handle is taken, or looks like one that is (`ada` and `ADA`; `poll` and `p0ll`).
    HandleTaken,
    /// This device's key already belongs to an account: sign in instead.
    DeviceTaken,
    /// The server is invite-only and no invitation was given.
    InvitationRequired,
    /// No such invitation or link code.
    InvitationUnknown,
    /// The invitation or link code was already used.
    InvitationUsed,
    /// The invitation or link code expired.
    InvitationExpired,
    /// The account has no invitations left to send.
    NoInvitationsLeft,
    /// The sign-in challenge is unknown, used or expired: ask for a new one.
    ChallengeExpired,
    /// The signature over the challenge is not this device's.
    BadSignature,
    /// This device has no account here (or was revoked): create an account or link it.
    UnknownDevice,
    /// The account is suspended by an admin.
    Suspended,
    /// No account with that handle.
    UnknownHandle,
    /// An action aimed at yourself (following, blocking or reporting yourself).
    Yourself,
    /// The room's host or a moderator blocks you.
    Blocked,
    /// A chat line or pin that is blank, too long, or (a pin) a link that is not http(s)
    /// or has control characters.
    InvalidText,
    /// No chat line with that id in the room (it was deleted, or is too old).
    MessageNotFound,
    /// A scheduled room's time is in the past, or more than a year ahead.
    InvalidTime,
    /// The scheduled room was started already (or is being started).
    AlreadyStarted,
    /// A code from a newer server that this build does not know; read the message.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status a REST response with this code carries.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BadRequest | MalformedJson | UnknownType | BadFrame | InvalidName | InvalidTitle
            | InvalidHandle | Yourself | InvalidText | InvalidTime => 400,
            Unauthorized | ChallengeExpired | BadSignature | UnknownDevice => 401,
            BadAccessCode | Forbidden | Banned | NotAllowedToSpeak | Removed
            | InvitationRequired | InvitationUnknown | NoInvitationsLeft | Suspended | Blocked => {
                403
            }
            RoomNotFound | UserNotFound | NotFound | RoomEnded | UnknownHandle
            | MessageNotFound => 404,
            StageFull | AlreadyOnStage | NotOnStage | NotInvited | Replaced | NameLookalike
            | HandleTaken | DeviceTaken | AlreadyStarted => 409,
            InvitationUsed | InvitationExpired => 410,
            UpgradeRequired => 426,
            PayloadTooLarge => 413,
            RateLimited | Abusive | SlowConsumer => 429,
            ServerFull | ServerShutdown | Reconnect => 503,
            Internal | Unknown => 500,
            MethodNotAllowed => 405,
        }
    }

    /// The wire name, e.g. `room_not_found`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            MalformedJson => "malformed_json",
            UnknownType => "unknown_type",
            BadFrame => "bad_frame",
            InvalidName => "invalid_name",
            InvalidTitle => "invalid_title",
            NameLookalike => "name_lookalike",
            Unauthorized => "unauthorized",
            BadAccessCode => "bad_access_code",
            Forbidden => "forbidden",
            Banned => "banned",
            RoomNotFound => "room_not_found",
            UserNotFound => "user_not_found",
            NotFound => "not_found",
            StageFull => "stage_full",
            AlreadyOnStage => "already_on_stage",
            NotOnStage => "not_on_stage",
            NotInvited => "not_invited",
            NotAllowedToSpeak => "not_allowed_to_speak",
            PayloadTooLarge => "payload_too_large",
            RateLimited => "rate_limited",
            ServerFull => "server_full",
            RoomEnded => "room_ended",
            Removed => "removed",
            SlowConsumer => "slow_consumer",
            Replaced => "replaced",
            Abusive => "abusive",
            ServerShutdown => "server_shutdown",
            Internal => "internal",
            Reconnect => "reconnect",
            MethodNotAllowed => "method_not_allowed",
            UpgradeRequired => "upgrade_required",
            InvalidHandle => "invalid_handle",
            HandleTaken => "handle_taken",
            DeviceTaken => "device_taken",
            InvitationRequired => "invitation_required",
            InvitationUnknown => "invitation_unknown",
            InvitationUsed => "invitation_used",
            InvitationExpired => "invitation_expired",
            NoInvitationsLeft => "no_invitations_left",
            ChallengeExpired => "challenge_expired",
            BadSignature => "bad_signature",
            UnknownDevice => "unknown_device",
            Suspended => "suspended",
            UnknownHandle => "unknown_handle",
            Yourself => "yourself",
            Blocked => "blocked",
            InvalidText => "invalid_text",
            MessageNotFound => "message_not_found",
            InvalidTime => "invalid_time",
            AlreadyStarted => "already_started",
            Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_name_matches_serde_name() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::RoomNotFound,
            ErrorCode::NotAllowedToSpeak,
            ErrorCode::ServerShutdown,
            ErrorCode::SlowConsumer,
            ErrorCode::UpgradeRequired,
            ErrorCode::InvitationExpired,
            ErrorCode::NoInvitationsLeft,
            ErrorCode::Blocked,
            ErrorCode::Reconnect,
        ] {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn a_code_from_a_newer_server_still_decodes() {
        let code: ErrorCode = serde_json::from_str("\"quota_exceeded\"").expect("decodes");
        assert_eq!(code, ErrorCode::Unknown);
        assert_eq!(ErrorCode::MethodNotAllowed.http_status(), 405);
    }
}
