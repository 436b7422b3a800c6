//! Hallway: live audio rooms in the terminal, and the room server they talk to.
//!
//! # Layout
//! - [`protocol`]: the wire shared by client and server: REST bodies, control messages,
//!   binary audio frames and error codes. Pure types and codecs, no I/O.
//! - [`server`]: the room server (axum): REST, WebSocket, one actor per room around the
//!   pure room rules in `server::room`, direct writes with bounded per-connection queues
//!   (`server::outgoing`), metrics; accounts, invitations, follows, blocks and reports
//!   (`server::accounts`) over one store interface (`server::store`, SQLite).
//! - [`identity`]: device keys (Ed25519 to sign in, X25519 for keys to come) and the signed
//!   sign-in message, shared by client and server.
//! - [`e2e`]: private rooms' end-to-end encryption: SFrame-style sealing of each frame,
//!   the room key wrapped to device keys (HPKE), the key leader's rotations. Pure.
//! - [`audio`]: the audio engine: devices (cpal, files, tone, null), real-time rings,
//!   capture and playout workers, Opus, jitter buffers, mixing. No tokio, no UI.
//! - [`net`]: the client side of the wire: REST calls, the live room session with
//!   reconnect, server URLs and room links.
//! - [`app`]: the client's model: state, `Msg` in, `Effect` out; pure, no I/O.
//! - [`config`]: the client's config file (server, name, tokens per server, rebound keys).
//! - [`client`]: the terminal client's shell: sign-in, terminal guard, event loop, effects,
//!   and its link to the audio engine.
//! - [`clip`]: audio files encoded once into Opus frames, replayed in real time.
//! - [`demo`]: demo rooms kept alive by bot hosts, speakers and audiences.
//! - [`ui`]: the view (ratatui): `ui::render(&App, &Theme, &mut Frame)` draws the model
//!   and never changes it (it returns where a pinned link sits, for the shell to make an
//!   OSC 8 hyperlink); `Theme` is colour or plain for `NO_COLOR`.
//! - [`headless`]: `play` and `record`, for scripts and bots.
//! - [`cli`]: the command line (`hallway serve`, ...), parsed with clap; [`account_cli`]:
//!   the account commands (`account`, `invite`, `follow`, `admin`, ...); [`schedule_cli`]:
//!   scheduled rooms; [`replay_cli`]: replays.

pub mod account_cli;
pub mod app;
pub mod audio;
pub mod cli;
pub mod client;
pub mod clip;
pub mod config;
pub mod demo;
pub mod e2e;
pub mod headless;
pub mod identity;
pub mod net;
pub mod protocol;
pub mod replay_cli;
pub mod schedule_cli;
pub mod server;
pub mod ui;
