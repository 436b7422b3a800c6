//! The room server: REST and WebSocket over axum, one actor per room, bounded per-peer queues.
//!
//! ```text
//! connection task (reader) ──RoomCommand──▶ room actor (pure Room core) ──framed bytes──▶ socket (writes it; the connection task writes what had to wait)
//! ```
//! The room actor's command channel is the seam where a cluster backbone could carry rooms
//! across servers later: nothing else touches room state.

mod actor;
mod connection;
mod http;
pub mod metrics;
mod outgoing;
mod rate;
pub mod room;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::serve::ListenerExt;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::User;
pub use metrics::Metrics;
pub use room::RoomLimits;

/// Kernel send buffer per connection: 13 speakers at ~3 KB/s each is ~40 KB/s of audio.
const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// The default address `hallway serve` listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7600";

/// Everything the server can be told at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// When set, `POST /api/v1/sessions` needs this code and listing rooms needs a token.
    pub access_code: Option<String>,
    pub limits: Limits,
}

/// Limits that keep one client from hurting the others. Each is answered with its error code.
#[derive(Debug, Clone)]
pub struct Limits {
    pub room: RoomLimits,
    /// Display names, in characters.
    pub max_name_chars: usize,
    /// Room titles, in characters.
    pub max_title_chars: usize,
    /// Sessions the server keeps (each is a small entry until restart).
    pub max_sessions: usize,
    /// Live rooms on the server.
    pub max_rooms: usize,
    /// Bytes in one WebSocket text message.
    pub max_control_bytes: usize,
    /// Control messages per second per connection, sustained.
    pub control_per_sec: f64,
    /// Control messages a connection may send in a burst.
    pub control_burst: f64,
    /// Audio frames per second per connection, sustained (a speaker sends 50).
    pub audio_per_sec: f64,
    /// Audio frames in a burst, enough for a client catching up after a 1 s network stall.
    pub audio_burst: f64,
    /// Invalid messages (malformed, unknown, oversize, over a rate limit) a connection may
    /// send per second before it counts as abusive. Refusals by the room rules are not counted.
    pub strikes_per_sec: f64,
    /// Invalid messages in a burst before it counts as abusive.
    pub strikes_burst: f64,
    /// Audio frames waiting to be written to one connection. 48 frames is about 1 s of one
    /// speaker or 75 ms of 13 at once: beyond that, a listener hears stale audio anyway, so
    /// newer frames are dropped (and counted) instead of queued.
    pub audio_queue_frames: usize,
    /// Control messages waiting to be written to one connection. Control is never dropped; a
    /// client this far behind (a join storm is about 1,000 events) is disconnected instead.
    pub control_queue: usize,
    /// A connection whose outbound queue has not emptied for this long is disconnected when
    /// its audio limit is reached.
    pub stuck_after: Duration,
    /// Rooms one user may create per minute.
    pub rooms_per_minute: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            room: RoomLimits::default(),
            max_name_chars: 32,
            max_title_chars: 100,
            max_sessions: 200_000,
            max_rooms: 10_000,
            max_control_bytes: 4_096,
            control_per_sec: 20.0,
            control_burst: 40.0,
            audio_per_sec: 60.0,
            audio_burst: 100.0,
            strikes_per_sec: 2.0,
            strikes_burst: 30.0,
            audio_queue_frames: 48,
            control_queue: 2_048,
            stuck_after: Duration::from_secs(5),
            rooms_per_minute: 6.0,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            access_code: None,
            limits: Limits::default(),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The listen address is taken or not ours to bind.
    #[error("cannot listen on {addr}: {source}; pick another address with --listen")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The accept loop failed.
    #[error("server I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A signed-in user and their per-user limits.
pub(crate) struct SessionEntry {
    pub user: User,
    pub room_bucket: Mutex<rate::TokenBucket>,
}

/// What every handler and actor shares.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub metrics: Metrics,
    pub sessions: RwLock<HashMap<String, Arc<SessionEntry>>>,
    pub rooms: RwLock<HashMap<String, actor::RoomHandle>>,
    pub next_user: AtomicU32,
    pub next_connection: AtomicU64,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// A bound, not yet running server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Server {
    /// Binds the listen address (port 0 picks a free port).
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let shared = Arc::new(Shared {
            config,
            metrics: Metrics::new(),
            sessions: RwLock::new(HashMap::new()),
            rooms: RwLock::new(HashMap::new()),
            next_user: AtomicU32::new(1),
            next_connection: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        Ok(Self { shared, listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Cancel this token to shut the server down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then tells every client why it is being
    /// disconnected and waits (up to 5 s) for their connections to close.
    pub async fn run(self) -> Result<(), ServerError> {
        let shared = self.shared;
        let app = http::router(shared.clone());
        let shutdown = shared.shutdown.clone();
        // Audio frames are small and late ones are worthless: no Nagle delay, and a kernel
        // send buffer of about a second of a busy room's audio, so a slow reader shows up
        // in its own queue (dropped, counted, disconnected) instead of hiding seconds of
        // stale audio in the kernel.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
            let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(SEND_BUFFER_BYTES);
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
        shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s of shutdown");
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn next_user_id(shared: &Shared) -> u32 {
    shared.next_user.fetch_add(1, Ordering::Relaxed)
}
