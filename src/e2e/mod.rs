//! End-to-end encrypted audio for private rooms (#13): the server forwards frames it cannot
//! read. Pure code, no I/O: the live session (`net::live`) calls it for every frame and
//! every key message.
//!
//! - [`sframe`]: each frame's Opus payload sealed as in SFrame (RFC 9605), with a replay
//!   window per sender.
//! - [`wrap`]: the room key wrapped to one member's device key (HPKE, RFC 9180), the
//!   roster digest and the safety code people read aloud.
//! - [`agent`]: who hands out keys (the key leader), when they rotate, and which key opens
//!   which frame.

pub mod agent;
pub mod sframe;
pub mod wrap;
