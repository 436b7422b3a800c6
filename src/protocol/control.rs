//! Control messages on the WebSocket: JSON text frames, each an object with a `type` field.
//!
//! A client command may carry an `id` (any JSON value); the server echoes it in the `ok` or
//! `error` that answers the command, so a script can match answers to requests.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::chat::{ChatLine, ChatPolicy, Reacted, Reaction, ReactionCount};
use super::{ErrorCode, Participant, Role, RoomDetail, UserId};

/// A command from a client, with its optional request id.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMessage {
    pub id: Option<Value>,
    pub command: ClientCommand,
}

/// What a client asks of the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Unknown fields are ignored, so a newer client's optional extras do not break an older server.
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientCommand {
    /// Listener: ask to speak.
    RaiseHand,
    /// Lower your own hand; a moderator may lower someone else's with `user_id`.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<UserId>,
    },
    /// On stage: mute your microphone.
    Mute,
    /// On stage: unmute your microphone (only you can).
    Unmute,
    /// Accept a pending invitation to speak; you arrive on stage muted.
    AcceptInvite,
    /// Decline a pending invitation to speak.
    DeclineInvite,
    /// On stage: go back to the audience yourself.
    LeaveStage,
    /// Leave the room.
    Leave,
    /// Announce that you are recording the room; everyone sees it.
    StartRecording,
    /// Announce that you stopped recording.
    StopRecording,
    /// Round-trip probe, answered by `pong` with the same nonce.
    Ping {
        #[serde(default)]
        nonce: u64,
    },
    /// Moderator: invite a listener to the stage.
    InviteToSpeak { user_id: UserId },
    /// Moderator: move someone from the stage to the audience.
    MoveToAudience { user_id: UserId },
    /// Moderator: mute someone on the stage (only they can unmute).
    MuteSpeaker { user_id: UserId },
    /// Moderator: remove someone from the room; they cannot rejoin it.
    Remove { user_id: UserId },
    /// Moderator: make someone a moderator (moves them to the stage).
    MakeModerator { user_id: UserId },
    /// Moderator: end the room for everyone.
    EndRoom,
    /// Private rooms, a moderator's client (the key leader): the room key of `epoch`,
    /// wrapped to each member's device key. The server hands each wrap to its member only
    /// and never holds a key (docs/security.md).
    ShareKey { epoch: u32, keys: Vec<WrappedKey> },
    /// Private rooms: this member's client opened the room key of `epoch`; everyone who
    /// sees them is told (`key_held`), so the room shows who can hear it.
    KeyHeld { epoch: u32 },
    /// Write a line in the room's chat (at most `chat::MAX_CHAT_CHARS` characters; cleaned
    /// of control and direction-changing characters).
    Chat { text: String },
    /// Delete a chat line: your own, or anyone's as a moderator.
    DeleteChat { message_id: u64 },
    /// Moderator: stop someone writing in the chat (`silenced: false` lets them again).
    SilenceChat { user_id: UserId, silenced: bool },
    /// Moderator: who may write in the chat.
    SetChat { who: ChatPolicy },
    /// React (shown next to you for a moment; counted for everyone once a second).
    React { reaction: Reaction },
    /// Moderator: pin a link (http or https) or one line of text at the top of the room.
    Pin { text: String },
    /// Moderator: take the pin down.
    Unpin,
    /// Announce that you kept a clip: the last `seconds` of the room as you heard it, saved
    /// on your machine. Everyone sees it, as they see a recording.
    Clip { seconds: u32 },
}

/// The most wrapped keys one `share_key` carries: 256 of about 180 bytes of JSON stay well
/// inside a WebSocket message (64 KiB); a leader splits a rotation for thousands into
/// several.
pub const MAX_KEYS_PER_SHARE: usize = 256;
/// Key epochs stay below this (20 bits, so that a frame's key id fits the 8-byte SFrame
/// header): a `share_key`, `key` or `key_held` past it is refused.
pub const MAX_KEY_EPOCH: u32 = 1 << 20;

/// The largest `share_key` message in bytes: [`MAX_KEYS_PER_SHARE`] wraps of about 180
/// bytes of JSON each, with room to spare. Every other command stays within the server's
/// small control limit (4 KiB).
pub const MAX_SHARE_KEY_BYTES: usize = 56 * 1024;

/// The longest wrapped key, in base64url characters (ours are 152: 32 bytes of
/// encapsulated key, 66 of payload and 16 of tag).
pub const MAX_SEALED_CHARS: usize = 256;

/// One member's copy of a room key: HPKE-sealed to their device (`e2e::wrap`), base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub to: UserId,
    pub sealed: String,
}

/// The `type` names of every [`ClientCommand`], to tell "unknown type" from "bad fields".
pub const CLIENT_COMMAND_TYPES: &[&str] = &[
    "raise_hand",
    "lower_hand",
    "mute",
    "unmute",
    "accept_invite",
    "decline_invite",
    "leave_stage",
    "leave",
    "start_recording",
    "stop_recording",
    "ping",
    "invite_to_speak",
    "move_to_audience",
    "mute_speaker",
    "remove",
    "make_moderator",
    "end_room",
    "share_key",
    "key_held",
    "chat",
    "delete_chat",
    "silence_chat",
    "set_chat",
    "react",
    "pin",
    "unpin",
    "clip",
];

/// Why a text message is not a valid command. Each keeps the request id when one could be read.
#[derive(Debug, Error, PartialEq)]
pub enum ControlDecodeError {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    Malformed(String),
    /// No string `type` field.
    #[error("the message has no string \"type\" field")]
    MissingType { id: Option<Value> },
    /// A `type` this protocol version does not define.
    #[error("unknown message type {kind:?}")]
    UnknownType { id: Option<Value>, kind: String },
    /// A known type with missing or mistyped fields.
    #[error("bad fields for {kind:?}: {detail}")]
    BadFields {
        id: Option<Value>,
        kind: String,
        detail: String,
    },
}

impl ControlDecodeError {
    /// The error code the server answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed(_) => ErrorCode::MalformedJson,
            Self::UnknownType { .. } => ErrorCode::UnknownType,
            Self::MissingType { .. } | Self::BadFields { .. } => ErrorCode::BadRequest,
        }
    }

    /// The request id, when the message had a readable one.
    pub fn id(&self) -> Option<Value> {
        match self {
            Self::Malformed(_) => None,
            Self::MissingType { id }
            | Self::UnknownType { id, .. }
            | Self::BadFields { id, .. } => id.clone(),
        }
    }
}

/// The `type` of a command, read without decoding the rest (None when it has none).
pub fn command_type(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    serde_json::from_str::<Typed>(text).ok()?.kind
}

impl ClientMessage {
    /// Decodes one text frame.
    pub fn decode(text: &str) -> Result<Self, ControlDecodeError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ControlDecodeError::Malformed(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(ControlDecodeError::Malformed("expected an object".into()));
        };
        let id = object.remove("id");
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            _ => return Err(ControlDecodeError::MissingType { id }),
        };
        if !CLIENT_COMMAND_TYPES.contains(&kind.as_str()) {
            return Err(ControlDecodeError::UnknownType { id, kind });
        }
        // Unknown fields are ignored, but a `user_id` on mute/unmute would silently act on
        // the sender instead of the person meant: say so.
        if matches!(kind.as_str(), "mute" | "unmute") && object.contains_key("user_id") {
            return Err(ControlDecodeError::BadFields {
                id,
                detail: format!(
                    "{kind} acts on yourself and takes no user_id; moderators mute others with mute_speaker, and only a speaker can unmute"
                ),
                kind,
            });
        }
        match serde_json::from_value(Value::Object(object)) {
            Ok(command) => Ok(Self { id, command }),
            Err(e) => Err(ControlDecodeError::BadFields {
                id,
                kind,
                detail: e.to_string(),
            }),
        }
    }

    /// Encodes for sending.
    pub fn encode(&self) -> String {
        let mut value = serde_json::to_value(&self.command).unwrap_or(Value::Null);
        if let (Value::Object(object), Some(id)) = (&mut value, &self.id) {
            object.insert("id".into(), id.clone());
        }
        value.to_string()
    }
}

/// Why someone left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They left.
    Left,
    /// Their connection dropped.
    Disconnected,
    /// A moderator removed them.
    Removed,
}

/// What the server tells a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The first message after joining: the whole room, and who you are.
    RoomSnapshot {
        protocol_version: u32,
        you: UserId,
        room: RoomDetail,
    },
    ParticipantJoined {
        participant: Participant,
    },
    ParticipantLeft {
        user_id: UserId,
        reason: LeaveReason,
    },
    RoleChanged {
        user_id: UserId,
        role: Role,
        /// The moderator who made the change, if it was not the user's own doing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    MuteChanged {
        user_id: UserId,
        muted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    /// Hands are announced in the order they were raised.
    HandRaised {
        user_id: UserId,
        raised_at_ms: u64,
    },
    HandLowered {
        user_id: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    Invited {
        user_id: UserId,
        by: UserId,
    },
    InviteDeclined {
        user_id: UserId,
    },
    /// Someone started or stopped recording the room.
    RecordingChanged {
        user_id: UserId,
        recording: bool,
    },
    /// How many listeners you do not see changed (big rooms list only part of their
    /// audience to most members; at most one of these a second).
    AudienceChanged {
        unlisted: usize,
    },
    /// A speaker started or stopped talking (from the level in their audio frames).
    Speaking {
        user_id: UserId,
        speaking: bool,
    },
    /// The room is over; the server closes the connection next.
    RoomEnded {
        reason: RoomEndReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    /// A command with an `id` succeeded.
    Ok {
        id: Value,
    },
    /// A command or frame was rejected; the connection stays up.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        code: ErrorCode,
        message: String,
    },
    Pong {
        nonce: u64,
    },
    /// Private rooms: the room key of `epoch`, wrapped to your device by `from` (a
    /// moderator's client).
    Key {
        from: UserId,
        epoch: u32,
        sealed: String,
    },
    /// Private rooms: someone's client holds the room key of `epoch`.
    KeyHeld {
        user_id: UserId,
        epoch: u32,
    },
    /// New chat lines, oldest first: all the room took since the last `chat` (at most one
    /// of these every `chat::CHAT_EVERY_MS`).
    Chat {
        lines: Vec<ChatLine>,
    },
    /// A chat line was deleted (by its author, or `by` a moderator).
    ChatDeleted {
        message_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    /// A moderator silenced (or let back) someone's chat.
    ChatSilenced {
        user_id: UserId,
        silenced: bool,
        by: UserId,
    },
    /// Who may write in the chat changed.
    ChatPolicy {
        who: ChatPolicy,
        by: UserId,
    },
    /// The reactions of the last second (at most one of these every
    /// `chat::REACTIONS_EVERY_MS`): who reacted among those everyone sees, and counts of
    /// everyone's.
    Reactions {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shown: Vec<Reacted>,
        counts: Vec<ReactionCount>,
    },
    /// Someone kept a clip of the last `seconds` they heard (their name travels with it: in
    /// a big room not everyone knows every listener).
    Clipped {
        user_id: UserId,
        name: String,
        seconds: u32,
    },
    /// The pin changed (`text: null` when it was taken down).
    Pinned {
        #[serde(default)]
        text: Option<String>,
        by: UserId,
    },
    /// The server is about to close this connection, and why.
    Goodbye {
        code: ErrorCode,
        message: String,
    },
}

/// Why a room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEndReason {
    /// A moderator ended it.
    EndedByModerator,
    /// The last moderator left and none came back in time.
    NoModerator,
    /// The server is shutting down.
    ServerShutdown,
}

impl ServerMessage {
    /// Encodes as JSON text; these types always serialize.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(r#"{"type":"error","code":"internal","message":"encoding failed"}"#)
        })
    }

    /// Decodes a server message (for clients).
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// An `error` answer.
    pub fn error(id: Option<Value>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_commands_with_and_without_ids() {
        let msg =
            ClientMessage::decode(r#"{"type":"invite_to_speak","user_id":7,"id":"a1"}"#).unwrap();
        assert_eq!(msg.command, ClientCommand::InviteToSpeak { user_id: 7 });
        assert_eq!(msg.id, Some(Value::from("a1")));
        let msg = ClientMessage::decode(r#"{"type":"raise_hand"}"#).unwrap();
        assert_eq!(msg.command, ClientCommand::RaiseHand);
        assert_eq!(msg.id, None);
    }

    #[test]
    fn encode_and_decode_are_inverses() {
        let msg = ClientMessage {
            id: Some(Value::from(3)),
            command: ClientCommand::LowerHand { user_id: Some(9) },
        };
        assert_eq!(ClientMessage::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn every_listed_type_is_a_real_command() {
        for kind in CLIENT_COMMAND_TYPES {
            let err = ClientMessage::decode(&format!(r#"{{"type":"{kind}"}}"#)).err();
            assert!(
                !matches!(err, Some(ControlDecodeError::UnknownType { .. })),
                "{kind} is listed but unknown"
            );
        }
    }

    #[test]
    fn tells_the_kinds_of_bad_input_apart() {
        assert_eq!(
            ClientMessage::decode("{nope").unwrap_err().code(),
            ErrorCode::MalformedJson
        );
        assert_eq!(
            ClientMessage::decode("[1,2]").unwrap_err().code(),
            ErrorCode::MalformedJson
        );
        let err = ClientMessage::decode(r#"{"id":5}"#).unwrap_err();
        assert_eq!(
            (err.code(), err.id()),
            (ErrorCode::BadRequest, Some(Value::from(5)))
        );
        let err = ClientMessage::decode(r#"{"type":"dance","id":1}"#).unwrap_err();
        assert_eq!(
            (err.code(), err.id()),
            (ErrorCode::UnknownType, Some(Value::from(1)))
        );
        let err = ClientMessage::decode(r#"{"type":"remove","user_id":"bob"}"#).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        let msg = ClientMessage::decode(r#"{"type":"mute","extra":1}"#).unwrap();
        assert_eq!(
            msg.command,
            ClientCommand::Mute,
            "unknown fields are ignored"
        );
    }

    #[test]
    fn mute_and_unmute_refuse_a_user_id_instead_of_acting_on_the_sender() {
        let err = ClientMessage::decode(r#"{"type":"unmute","user_id":7}"#).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(err.to_string().contains("mute_speaker"), "{err}");
        assert!(ClientMessage::decode(r#"{"type":"mute"}"#).is_ok());
    }

    #[test]
    fn server_messages_round_trip() {
        let msg = ServerMessage::error(
            Some(Value::from("x")),
            ErrorCode::StageFull,
            "the stage is full",
        );
        let text = msg.encode();
        assert!(text.contains(r#""type":"error""#) && text.contains(r#""code":"stage_full""#));
        assert_eq!(ServerMessage::decode(&text).unwrap(), msg);
    }

    proptest! {
        #[test]
        fn decode_never_panics(text in ".{0,300}") {
            let _ = ClientMessage::decode(&text);
        }

        #[test]
        fn decode_never_panics_on_typed_objects(kind in "[a-z_]{0,20}", user in any::<i64>(), extra in "[a-z]{0,5}") {
            let _ = ClientMessage::decode(&format!(r#"{{"type":"{kind}","user_id":{user},"{extra}":null}}"#));
        }
    }
}
