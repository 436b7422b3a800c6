//! What nodes of a cluster say to each other about a room, and on which NATS subjects.
//!
//! A room has one home (the node whose actor runs its rules) and any number of edges (nodes
//! with members of it). Everything for one room is under `hallway.room.ID.`:
//!
//! | subject            | from → to       | payload                                      |
//! |--------------------|-----------------|----------------------------------------------|
//! | `in`               | edge → home     | [`ToHome`] (JSON): joins, commands, departures |
//! | `speak.USER.CONN`  | edge → home     | an audio frame as the client sent it         |
//! | `events`           | home → edges    | [`ToEdges`] (JSON), numbered                 |
//! | `audio.SPEAKER`    | home → edges    | an audio frame as listeners receive it       |
//! | `admit`, `describe`| edge → home, request/reply | [`Admit`] → `Result<(), Refusal>`; nothing → `RoomDetail` |
//!
//! One subject per direction keeps order: commands from one edge reach the home in the
//! order their members sent them, and an edge sees a command's events before its answer
//! (`ok` comes as an event, as on one node), and a member's `joined` before anything
//! addressed to them. Audio has subjects of its own so that an edge that falls behind
//! loses audio (NATS drops what a slow subscriber cannot take), never control: events are
//! numbered, and an edge that finds a gap lets its members go to rejoin (their snapshot
//! is then whole again) rather than show them a room that has silently diverged.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::{ClientCommand, ErrorCode, User, UserId};
use crate::server::room::{Recipients, Refusal};

/// Room ids the cluster carries: what the server makes (`new_room_id`), never a NATS
/// wildcard or separator. Anything else named in a URL is no room.
pub fn valid_room_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

pub fn room_in(room: &str) -> String {
    format!("hallway.room.{room}.in")
}

pub fn room_speak(room: &str, user: UserId, connection: u64) -> String {
    format!("hallway.room.{room}.speak.{user}.{connection}")
}

pub fn room_speak_all(room: &str) -> String {
    format!("hallway.room.{room}.speak.*.*")
}

pub fn room_events(room: &str) -> String {
    format!("hallway.room.{room}.events")
}

pub fn room_audio(room: &str, speaker: UserId) -> String {
    format!("hallway.room.{room}.audio.{speaker}")
}

pub fn room_audio_all(room: &str) -> String {
    format!("hallway.room.{room}.audio.*")
}

pub fn room_admit(room: &str) -> String {
    format!("hallway.room.{room}.admit")
}

pub fn room_describe(room: &str) -> String {
    format!("hallway.room.{room}.describe")
}

/// Sessions revoked on one node, for every node to forget (they cache sessions).
pub const REVOKED: &str = "hallway.cluster.revoked";

/// The user and connection a `...speak.USER.CONN` subject names.
pub fn two_ids(subject: &str) -> Option<(UserId, u64)> {
    let mut tokens = subject.rsplit('.');
    let second = tokens.next()?.parse().ok()?;
    let first = tokens.next()?.parse().ok()?;
    Some((first, second))
}

/// The speaker an `...audio.SPEAKER` subject names.
pub fn last_id(subject: &str) -> Option<UserId> {
    subject.rsplit('.').next()?.parse().ok()
}

/// An edge tells a room's home.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToHome {
    /// A member connected to `node` joins.
    Join {
        user: User,
        /// A private room's member's device key (base64url X25519).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        addr: IpAddr,
        connection: u64,
        node: String,
        /// The run of `node` ([`super::NodeInfo::instance`]): members of a run that is gone
        /// (the node restarted) are swept.
        #[serde(default)]
        instance: u64,
    },
    Control {
        user: UserId,
        connection: u64,
        id: Option<Value>,
        command: ClientCommand,
    },
    /// The connection closed, or the edge let it go.
    Gone { user: UserId, connection: u64 },
    /// Put someone out (a block, a revoked device), as [`crate::server::actor::RoomCommand::Expel`].
    Expel {
        user: UserId,
        code: ErrorCode,
        message: String,
        by: Option<UserId>,
    },
}

/// A room's home tells its edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Numbered {
    /// One more than the last event of this room; an edge that sees a gap resyncs.
    pub seq: u64,
    pub event: ToEdges,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToEdges {
    /// The answer to a [`ToHome::Join`]; it comes before anything addressed to them.
    Joined {
        user: UserId,
        connection: u64,
        refusal: Option<Refusal>,
    },
    /// A message for the members `to` names: `text` is the JSON each of them is sent.
    Message { to: Recipients, text: String },
    /// Tell one connection why, then close it.
    Disconnect {
        user: UserId,
        connection: u64,
        code: ErrorCode,
        message: String,
    },
    /// The member left: close their connection normally.
    Left { user: UserId, connection: u64 },
    /// The room has ended: every member goes.
    Ended,
}

/// An edge asks whether someone may join, before their WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Admit {
    pub user: User,
    pub addr: IpAddr,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_never_carry_subject_syntax() {
        assert!(valid_room_id("ab3xk9qz"));
        for bad in ["", "a.b", "*", ">", "a b", "AB", "a>", &"a".repeat(33)] {
            assert!(!valid_room_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_come_back_out_of_subjects() {
        assert_eq!(two_ids(&room_speak("r", 7, 99)), Some((7, 99)));
        assert_eq!(last_id(&room_audio("r", 12)), Some(12));
        assert_eq!(two_ids("hallway.room.r.speak.x.1"), None);
    }
}
