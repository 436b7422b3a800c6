//! The wire, shared by client and server: pure types and codecs, no I/O.
//!
//! Control messages are JSON objects with a `type` field ([`control`]); audio travels in
//! binary WebSocket frames with a fixed 16-byte header and one opaque Opus packet
//! ([`audio`]); the REST API's bodies are in [`rest`]; every rejection carries an
//! [`ErrorCode`]; what text from a peer may be, and how it is shown, is in [`text`].
//! docs/protocol.md describes the same wire for people writing other clients.

pub mod audio;
pub mod chat;
pub mod control;
pub mod error;
pub mod handle;
pub mod replay;
pub mod rest;
pub mod schedule;
pub mod text;

pub use audio::{AudioFrame, AudioFrameError, AudioHeader};
pub use control::{ClientCommand, ClientMessage, ControlDecodeError, ServerMessage, WrappedKey};
pub use error::ErrorCode;
pub use rest::*;

/// The protocol version this build speaks. Bumped on any incompatible change to the wire;
/// the server announces it in `GET /api/v2` and in the room snapshot. Version 1 (guest
/// sessions under `/api/v1/`) is answered with `upgrade_required`.
pub const PROTOCOL_VERSION: u32 = 2;

/// An account's id, unique on one server for good. Also the speaker id stamped into audio
/// frames.
pub type UserId = u32;
