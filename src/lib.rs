//! Hallway: live audio rooms in the terminal, and the room server they talk to.
//!
//! # Layout
//! - [`protocol`]: the wire shared by client and server: REST bodies, control messages,
//!   binary audio frames and error codes. Pure types and codecs, no I/O.
//! - [`server`]: the room server (axum): REST, WebSocket, one actor per room around the
//!   pure room rules in `server::room`, bounded per-connection queues, metrics.
//! - [`cli`]: the command line (`hallway serve`, ...), parsed with clap.

pub mod cli;
pub mod protocol;
pub mod server;
