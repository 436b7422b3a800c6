//! The room server: REST and WebSocket over axum, one actor per room, bounded per-peer queues.
//!
//! ```text
//! connection task (reader) ──RoomCommand──▶ room actor (pure Room core) ──framed bytes──▶ socket (writes it; the connection task writes what had to wait)
//! ```
//! The room actor's command channel is the seam where a cluster backbone could carry rooms
//! across servers later: nothing else touches room state.

pub mod access;
mod accounts;
mod actor;
pub mod addr;
pub mod budget;
pub mod cluster;
mod connection;
mod http;
pub mod listener;
mod members;
pub mod metrics;
mod outgoing;
mod rate;
pub mod replay;
mod replay_api;
pub mod room;
pub mod room_life;
mod schedule;
pub mod store;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::User;
pub use addr::TrustedProxies;
pub use budget::AddressLimits;
pub use listener::Timeouts;
pub use metrics::Metrics;
pub use room::RoomLimits;
use store::{AccountId, DeviceId, SecretHash, Store};
pub use tls::TlsFiles;

/// Kernel send buffer per connection: 13 speakers at ~3 KB/s each is ~40 KB/s of audio.
const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// The default address `hallway serve` listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7600";

/// Everything the server can be told at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Creating an account needs an invitation, and everything but the invitation page
    /// needs a token.
    pub invite_only: bool,
    /// Invitations each new member may send (admins are unlimited).
    pub invitation_quota: u32,
    /// Where accounts are kept.
    pub data: DataLocation,
    /// The addresses people reach the server at (`https://rooms.example.org`): a sign-in is
    /// signed for one of them, and invitation links use the first. The listen address (and,
    /// on loopback, `localhost`) is always one.
    pub public_urls: Vec<String>,
    pub limits: Limits,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers name the client.
    pub trusted_proxies: TrustedProxies,
    /// Serve `https://` and `wss://` with this certificate (reloaded on SIGHUP).
    pub tls: Option<TlsFiles>,
    /// Serve `/metrics` on this address instead of the public one. Without it, `/metrics`
    /// is on the public port unless the server is invite-only.
    pub metrics_listen: Option<SocketAddr>,
    /// Join a cluster of servers over NATS ([`cluster`]).
    pub cluster: Option<cluster::ClusterConfig>,
    /// Fan-out shards per big room (1: none): see [`actor::Shards`].
    pub fanout_shards: usize,
    /// Members a room has before newcomers go to its shards.
    pub shard_from: usize,
    /// Where replays are kept (#15); none: rooms cannot have replays here.
    pub replays: Option<std::path::PathBuf>,
    /// The most bytes all replays may take.
    pub replay_quota_bytes: u64,
}

/// Where the server keeps accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLocation {
    /// A SQLite file, created if missing.
    File(std::path::PathBuf),
    /// Memory only, gone with the process (the embedded demo server).
    Memory,
    /// A PostgreSQL database (`postgres://USER@HOST:PORT/DB`), shared by a cluster's nodes.
    Postgres(String),
}

impl DataLocation {
    /// `--data` as written: `:memory:`, a `postgres://` (or `postgresql://`) URL, or a file.
    pub fn parse(text: &std::ffi::OsStr) -> Self {
        match text.to_str() {
            Some(":memory:") => Self::Memory,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Self::Postgres(url.to_string())
            }
            _ => Self::File(text.into()),
        }
    }
}

impl DataLocation {
    /// `$XDG_DATA_HOME/hallway/server.db`, or `./hallway-server.db` without a home.
    pub fn default_file() -> Self {
        let path = directories::ProjectDirs::from("", "", "hallway")
            .map(|dirs| dirs.data_dir().join("server.db"))
            .unwrap_or_else(|| "hallway-server.db".into());
        Self::File(path)
    }
}

/// Limits that keep one client from hurting the others. Each is answered with its error code.
#[derive(Debug, Clone)]
pub struct Limits {
    pub room: RoomLimits,
    /// Display names, in characters.
    pub max_name_chars: usize,
    /// Room titles, in characters.
    pub max_title_chars: usize,
    /// Signed-in sessions the server keeps in memory (more are looked up in the store).
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
    /// Hand and recording toggles per second per connection, sustained; the room shows at
    /// most one change a second per member, so more is a flood (refused, and strikes).
    pub toggles_per_sec: f64,
    /// Toggles in a burst (a few quick corrections are fine).
    pub toggles_burst: f64,
    /// What one address may do.
    pub address: AddressLimits,
    /// How long a peer may stall.
    pub timeouts: Timeouts,
    /// A session not used for this long (and not in a room) leaves the memory cache.
    pub session_idle: Duration,
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
            toggles_per_sec: 2.0,
            toggles_burst: 10.0,
            address: AddressLimits::default(),
            timeouts: Timeouts::default(),
            session_idle: Duration::from_secs(24 * 3600),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            invite_only: false,
            invitation_quota: 3,
            data: DataLocation::Memory,
            public_urls: Vec::new(),
            limits: Limits::default(),
            trusted_proxies: TrustedProxies::default(),
            tls: None,
            metrics_listen: None,
            cluster: None,
            fanout_shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shard_from: 500,
            replays: None,
            replay_quota_bytes: 2 << 30,
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
    /// The TLS certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The database could not be opened; it was left as it was.
    #[error(transparent)]
    Data(#[from] store::sqlite::OpenError),
    /// The PostgreSQL database could not be used; it was left as it was.
    #[error(transparent)]
    Postgres(#[from] store::postgres::ConnectError),
    /// The store could not start or answer.
    #[error("the account store failed: {0}")]
    Store(#[from] store::StoreError),
    /// The cluster could not be joined.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

/// A signed-in device of an account, and the account's per-session limits.
pub(crate) struct SessionEntry {
    pub user: User,
    pub device: DeviceId,
    /// The device's X25519 key, which private rooms' keys are wrapped to.
    pub agree_key: [u8; 32],
    pub admin: bool,
    /// When the token stops being good (Unix ms).
    pub expires_ms: u64,
    /// The account's limits, shared by all its sessions and kept across sign-ins.
    pub limits: Arc<AccountLimits>,
    /// When the token was last presented, on [`monotonic_ms`]'s clock.
    pub last_used_ms: AtomicU64,
    /// Cancelled when the token is revoked (the device signed out, the account suspended):
    /// the session's open room connections close.
    pub revoked: CancellationToken,
    /// Live WebSocket connections: a session in a room is never forgotten.
    pub live: AtomicU32,
}

/// What one account may do, however many sessions it has.
pub(crate) struct AccountLimits {
    pub room_bucket: Mutex<rate::TokenBucket>,
    pub report_bucket: Mutex<rate::TokenBucket>,
    /// Account calls that reach the store (follows, blocks, profile, invitations, devices,
    /// cards): 10 a second, 50 at once. The store is one thread for everyone; one account
    /// in a loop must not queue ahead of everyone's sign-ins and joins.
    pub store_bucket: Mutex<rate::TokenBucket>,
}

impl SessionEntry {
    /// Spends one report: 5 in a burst, then one every two minutes.
    pub fn take_report(&self) -> bool {
        self.limits
            .report_bucket
            .lock()
            .map(|mut b| b.try_take())
            .unwrap_or(false)
    }

    /// Spends one call that reaches the store.
    pub fn take_store_call(&self) -> bool {
        self.limits
            .store_bucket
            .lock()
            .map(|mut b| b.try_take())
            .unwrap_or(false)
    }

    /// Spends one new room.
    pub fn take_room(&self) -> bool {
        self.limits
            .room_bucket
            .lock()
            .map(|mut b| b.try_take())
            .unwrap_or(false)
    }

    fn idle_since_ms(&self) -> Option<u64> {
        (self.live.load(Ordering::Relaxed) == 0).then(|| self.last_used_ms.load(Ordering::Relaxed))
    }
}

/// The signed-in sessions in memory, by the token's hash: a cache of the store. At the global cap the session unused for longest (and not in
/// a room) gives way; with per-address rate limits in front, one address cannot push out
/// more than its own budget.
#[derive(Default)]
pub(crate) struct Sessions {
    by_token: HashMap<SecretHash, Arc<SessionEntry>>,
}

impl Sessions {
    pub fn get(&self, token: &SecretHash) -> Option<&Arc<SessionEntry>> {
        self.by_token.get(token)
    }

    /// Forgets every session `which` picks (a revoked device, a suspended account).
    pub fn forget(&mut self, which: impl Fn(&SessionEntry) -> bool) -> Vec<Arc<SessionEntry>> {
        let mut gone = Vec::new();
        self.by_token.retain(|_, e| {
            let keep = !which(e);
            if !keep {
                gone.push(e.clone());
            }
            keep
        });
        gone
    }

    /// Adds a session; when `max` are held, forgets the idlest first. False when every
    /// session is in a room.
    pub fn insert(&mut self, token: SecretHash, entry: Arc<SessionEntry>, max: usize) -> bool {
        if self.by_token.len() >= max {
            let idlest = self
                .by_token
                .iter()
                .filter_map(|(token, e)| Some((e.idle_since_ms()?, token)))
                .min()
                .map(|(_, token)| *token);
            match idlest {
                Some(token) => {
                    self.by_token.remove(&token);
                }
                None => return false,
            }
        }
        self.by_token.insert(token, entry);
        true
    }

    /// Forgets sessions unused for `idle` and not in a room; returns how many.
    pub fn expire(&mut self, idle: Duration, now_ms: u64) -> usize {
        let before = self.by_token.len();
        let idle_ms = idle.as_millis() as u64;
        self.by_token.retain(|_, e| {
            e.idle_since_ms()
                .is_none_or(|since| now_ms.saturating_sub(since) <= idle_ms)
        });
        before - self.by_token.len()
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// The tokens (hashed) of every cached session.
    pub fn tokens(&self) -> Vec<SecretHash> {
        self.by_token.keys().copied().collect()
    }

    /// Forgets one token's session.
    pub fn remove(&mut self, token: &SecretHash) -> Option<Arc<SessionEntry>> {
        self.by_token.remove(token)
    }
}

/// Tokens that stop being good: every cached session they touch is forgotten, and its
/// open room connections close.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Revocation {
    /// A device was signed out of its account.
    Device(DeviceId),
    /// An account was suspended (with the reason), or all its tokens went.
    Account {
        id: AccountId,
        suspended: Option<String>,
    },
}

/// What every handler and actor shares.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub metrics: Metrics,
    pub sessions: RwLock<Sessions>,
    pub store: Store,
    pub challenges: Mutex<accounts::Challenges>,
    /// The names this server answers to, as `Host` headers spell them: what a sign-in must
    /// have been signed for ([`accounts`]).
    pub origins: accounts::Origins,
    /// Revocations so far (see [`Shared::cache_session`]).
    pub revocations: AtomicU64,
    /// Each account's limits (about 100 bytes each), by account.
    pub account_limits: Mutex<HashMap<AccountId, Arc<AccountLimits>>>,
    /// Rooms homed here.
    pub rooms: RwLock<HashMap<String, actor::RoomHandle>>,
    /// In a cluster: the link to the other nodes.
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// Connection ids. They also name connections to other nodes of a cluster, so each
    /// process starts at a random point: two nodes' ids meet with a chance of about
    /// (connections² / 2⁶³), nil in practice.
    pub next_connection: AtomicU64,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub conns: Arc<listener::Conns>,
    pub budgets: budget::Budgets,
    /// Where rooms with replays on are kept, when this server keeps them.
    pub replays: Option<Arc<replay::Replays>>,
}

/// A bound, not yet running server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    tls: Option<Arc<tls::Tls>>,
    owner_code: Option<String>,
}

impl Server {
    /// Binds the listen address (port 0 picks a free port), loads the TLS certificate and
    /// raises the open-file limit.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        // The database first: a server that cannot keep accounts does not start, and
        // does not take the port either.
        let store = match &config.data {
            DataLocation::File(path) => {
                Store::spawn(Box::new(store::sqlite::SqliteBackend::open(path)?))?
            }
            DataLocation::Memory => {
                Store::spawn(Box::new(store::sqlite::SqliteBackend::in_memory()?))?
            }
            DataLocation::Postgres(url) => {
                // The client blocks, and must not be made or dropped on this runtime's
                // threads (it runs a small runtime of its own): connected, and handed to the
                // store's thread, on a blocking one.
                let url = url.clone();
                tokio::task::spawn_blocking(move || -> Result<Store, ServerError> {
                    let backend = store::postgres::PostgresBackend::connect(&url)?;
                    Ok(Store::spawn(Box::new(backend))?)
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??
            }
        };
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let listener = bind(config.listen).await?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::Tls::load(files.clone())?)),
            None => None,
        };
        let fd_limit = listener::raise_fd_limit();
        let max_connections = listener::max_connections(fd_limit);
        tracing::debug!(fd_limit, max_connections, "open-file limit");
        // Only a server that holds its port makes a new owner code (and retires the last):
        // a second start that fails to bind must not take the running one's code away.
        let owner_code = if config.invite_only && !store.call(|s| s.has_admin()).await? {
            let code = crate::identity::random_code(16);
            let hash = crate::identity::sha256(code.as_bytes());
            let now = unix_ms();
            store.call(move |s| s.set_owner_code(&hash, now)).await?;
            Some(code)
        } else {
            None
        };
        let origins = accounts::Origins::new(&config.public_urls, listener.local_addr()?);
        if config.listen.ip().is_unspecified() && origins.only_loopback() {
            tracing::warn!(
                "listening on {} without --public-url: clients that reach this server by a name or another address cannot sign in; name it with --public-url URL",
                config.listen
            );
        }
        let metrics = Metrics::new();
        let cluster = match &config.cluster {
            Some(cluster) => {
                let url = config.public_urls.first().cloned().unwrap_or_else(|| {
                    let scheme = if config.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    };
                    format!(
                        "{scheme}://{}",
                        listener.local_addr().unwrap_or(config.listen)
                    )
                });
                Some(cluster::Cluster::connect(cluster, url, metrics.clone()).await?)
            }
            None => None,
        };
        let replays = match &config.replays {
            Some(dir) => Some(
                replay::Replays::open(dir, config.replay_quota_bytes).map_err(|e| {
                    ServerError::Io(std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot keep replays in {}: {e}; give another --replays DIR",
                            dir.display()
                        ),
                    ))
                })?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            replays,
            conns: listener::Conns::new(max_connections, config.limits.address.connections),
            budgets: budget::Budgets::new(config.limits.address.clone()),
            config,
            metrics,
            sessions: RwLock::new(Sessions::default()),
            store,
            challenges: Mutex::new(accounts::Challenges::default()),
            origins,
            account_limits: Mutex::new(HashMap::new()),
            revocations: AtomicU64::new(0),
            rooms: RwLock::new(HashMap::new()),
            cluster,
            next_connection: AtomicU64::new(rand::random::<u64>() >> 1),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        Ok(Self {
            shared,
            listener,
            metrics_listener,
            tls,
            owner_code,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` is served on, when it has its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// On an invite-only server without an admin yet: the one-time code that makes its user
    /// the owner (an admin). Each start without an admin makes a new one and retires the
    /// last.
    pub fn owner_code(&self) -> Option<&str> {
        self.owner_code.as_deref()
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server's TLS settings, for reloading the certificate and key on SIGHUP
    /// ([`tls::Tls::reload`]); None without TLS.
    pub fn tls_reloader(&self) -> Option<Arc<tls::Tls>> {
        self.tls.clone()
    }

    /// Cancel this token to shut the server down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then tells every client why it is being
    /// disconnected and waits (up to 5 s) for their connections to close.
    pub async fn run(self) -> Result<(), ServerError> {
        let shared = self.shared;
        let public = http::router(shared.clone(), http::Surface::Public);
        let shutdown = shared.shutdown.clone();
        let timeouts = shared.config.limits.timeouts;
        shared
            .tasks
            .spawn(shared.conns.clone().run_sweeps(timeouts, shutdown.clone()));
        shared.tasks.spawn(housekeeping(shared.clone()));
        if let Some(cluster) = shared.cluster.clone() {
            let load = {
                let shared = Arc::downgrade(&shared);
                move || {
                    shared.upgrade().map_or((0, 0), |s| {
                        let rooms = s.rooms.read().map_or(0, |r| r.len());
                        (rooms, s.metrics.connections.get().max(0) as usize)
                    })
                }
            };
            shared
                .tasks
                .spawn(cluster.clone().run(shared.shutdown.clone(), load));
            shared
                .tasks
                .spawn(cluster::follow_revocations(shared.clone(), cluster));
        }
        if let Some(metrics_listener) = self.metrics_listener {
            let router = http::router(shared.clone(), http::Surface::Metrics);
            let shutdown = shutdown.clone();
            let app = router.into_make_service();
            shared.tasks.spawn(async move {
                let served = axum::serve(metrics_listener, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::warn!("the metrics listener failed: {e}");
                }
            });
        }
        accept_loop(&shared, &self.listener, &public, self.tls.as_deref()).await;
        shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s of shutdown");
        }
        // The rooms have ended: their replays are finished before the process goes.
        if let Some(replays) = shared.replays.clone() {
            let _ =
                tokio::task::spawn_blocking(move || replays.close(Duration::from_secs(5))).await;
        }
        Ok(())
    }
}

/// Accepts connections until shutdown. Never spins: out of descriptors, it makes room by
/// closing the oldest connection not in a room and waits a moment before the next accept.
async fn accept_loop(
    shared: &Arc<Shared>,
    listener: &TcpListener,
    router: &axum::Router,
    tls: Option<&tls::Tls>,
) {
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                let pressure = listener::out_of_descriptors(&e);
                if pressure {
                    shared.conns.evict_one();
                }
                if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        "accept failed: {e}{}",
                        if pressure {
                            "; closing idle connections (raise `ulimit -n` for more)"
                        } else {
                            ""
                        }
                    );
                    last_warning = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
        };
        let exempt = shared.config.trusted_proxies.contains(peer.ip());
        let guard = match shared.conns.admit(peer.ip(), exempt) {
            Ok(guard) => guard,
            Err(refused) => {
                shared.metrics.connections_refused.inc();
                tracing::debug!(%peer, ?refused, "connection refused");
                // Dropped unanswered: a reply would cost what the limit is there to save.
                drop(tcp);
                continue;
            }
        };
        prepare(&tcp);
        let acceptor = tls.map(tls::Tls::acceptor);
        shared.tasks.spawn(http::serve_connection(
            shared.clone(),
            router.clone(),
            tcp,
            Arc::new(guard),
            acceptor,
        ));
    }
}

/// Audio frames are small and late ones are worthless: no Nagle delay, and a kernel send
/// buffer of about a second of a busy room's audio, so a slow reader shows up in its own
/// queue (dropped, counted, disconnected) instead of hiding seconds of stale audio in the
/// kernel.
fn prepare(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let _ = socket2::SockRef::from(tcp).set_send_buffer_size(SEND_BUFFER_BYTES);
}

/// Once a minute: forgets idle sessions and addresses, and logs the access-code bursts that
/// ended.
async fn housekeeping(shared: Arc<Shared>) {
    const EVERY: Duration = Duration::from_secs(60);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        let limits = &shared.config.limits;
        if let Ok(mut sessions) = shared.sessions.write() {
            let expired = sessions.expire(limits.session_idle, monotonic_ms());
            if expired > 0 {
                tracing::info!(expired, left = sessions.len(), "forgot idle sessions");
            }
        }
        let idle = Duration::from_secs(3600).max(limits.address.code_lockout);
        for burst in shared.budgets.sweep(idle, EVERY) {
            tracing::warn!(addr = %burst.addr, attempts = burst.attempts, "wrong invitation or link codes: the burst ended");
        }
    }
}

/// Milliseconds since the Unix epoch (for the command line's tables).
pub fn unix_ms_now() -> u64 {
    unix_ms()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds on the server's monotonic clock: deadlines, idle times, stuck receivers.
pub fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl Shared {
    /// The revocation count before a store call whose answer may be cached: pass it to
    /// [`Shared::cache_session`].
    pub(crate) fn revocation_mark(&self) -> u64 {
        self.revocations.load(Ordering::SeqCst)
    }

    /// Keeps a signed-in session in memory.
    ///
    /// Invariant: a cached session never outlives its token in the store. A revocation
    /// (a device revoked, an account suspended) commits in the store, then bumps
    /// `revocations`, then forgets the cached sessions, under the sessions lock; this checks
    /// `revocations` against `mark` (read before the store call that found the token) under
    /// the same lock, and caches nothing when a revocation came in between. The answer is
    /// still returned for the one request that asked.
    pub(crate) fn cache_session(
        &self,
        token: SecretHash,
        account: &store::Account,
        device: &store::Device,
        expires_ms: u64,
        mark: u64,
    ) -> Result<Arc<SessionEntry>, http::ApiError> {
        let limits = &self.config.limits;
        let account_limits = self
            .account_limits
            .lock()
            .map_err(|_| http::internal())?
            .entry(account.id)
            .or_insert_with(|| {
                Arc::new(AccountLimits {
                    room_bucket: Mutex::new(rate::TokenBucket::new(
                        limits.rooms_per_minute / 60.0,
                        limits.rooms_per_minute,
                    )),
                    report_bucket: Mutex::new(rate::TokenBucket::new(1.0 / 120.0, 5.0)),
                    store_bucket: Mutex::new(rate::TokenBucket::new(10.0, 50.0)),
                })
            })
            .clone();
        let entry = Arc::new(SessionEntry {
            user: User {
                id: account.id,
                handle: account.handle.clone(),
                name: account.name.clone(),
            },
            device: device.id,
            agree_key: device.agree_key,
            admin: account.admin,
            expires_ms,
            limits: account_limits,
            last_used_ms: monotonic_ms().into(),
            live: 0.into(),
            revoked: CancellationToken::new(),
        });
        let mut sessions = self.sessions.write().map_err(|_| http::internal())?;
        if self.revocations.load(Ordering::SeqCst) != mark {
            return Ok(entry);
        }
        let inserted = sessions.insert(token, entry.clone(), limits.max_sessions);
        drop(sessions);
        if !inserted {
            return Err(http::ApiError::new(
                crate::protocol::ErrorCode::ServerFull,
                "this server has too many people in rooms; try again later",
            ));
        }
        Ok(entry)
    }

    /// After a revocation has committed in the store: forgets the cached sessions it
    /// touches (see [`Shared::cache_session`] for why the order matters), here and, in a
    /// cluster, on every node.
    pub(crate) fn revoke(self: &Arc<Self>, revocation: Revocation) {
        self.revoke_here(&revocation);
        if let Some(cluster) = &self.cluster {
            cluster.publish_revocation(&revocation);
        }
    }

    /// [`Shared::revoke`] on this node only: forgets its cached sessions, and a suspended
    /// account's members are put out of the rooms homed here with the reason.
    pub(crate) fn revoke_here(self: &Arc<Self>, revocation: &Revocation) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        let which = |e: &SessionEntry| match revocation {
            Revocation::Device(id) => e.device == *id,
            Revocation::Account { id, .. } => e.user.id == *id,
        };
        let gone = match self.sessions.write() {
            Ok(mut sessions) => sessions.forget(which),
            Err(poisoned) => poisoned.into_inner().forget(which),
        };
        let Revocation::Account {
            id,
            suspended: Some(reason),
        } = revocation
        else {
            for session in gone {
                session.revoked.cancel();
            }
            return;
        };
        // A suspension puts the account out of the rooms homed here with its reason, before
        // its sessions' connections close for being signed out (which says less).
        let rooms: Vec<_> = match self.rooms.read() {
            Ok(rooms) => rooms.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let (id, message) = (*id, format!("an admin suspended your account ({reason})"));
        self.tasks.spawn(async move {
            for room in rooms {
                let _ = room
                    .tx
                    .send(actor::RoomCommand::Expel {
                        user: id,
                        code: crate::protocol::ErrorCode::Suspended,
                        message: message.clone(),
                        by: None,
                    })
                    .await;
            }
            for session in gone {
                session.revoked.cancel();
            }
        });
    }

    /// Checks every cached session against the store, and signs out those whose token is
    /// gone: after this node's link to the cluster dropped, revocations published meanwhile
    /// may never have arrived.
    pub(crate) async fn revalidate_sessions(self: &Arc<Self>) {
        let tokens = match self.sessions.read() {
            Ok(sessions) => sessions.tokens(),
            Err(_) => return,
        };
        let mut gone = 0;
        for token in tokens {
            let now = unix_ms();
            let found = self.store.call(move |s| s.token(&token, now)).await;
            if let Ok(None) = found {
                self.revocations.fetch_add(1, Ordering::SeqCst);
                let removed = match self.sessions.write() {
                    Ok(mut sessions) => sessions.remove(&token),
                    Err(poisoned) => poisoned.into_inner().remove(&token),
                };
                if let Some(session) = removed {
                    session.revoked.cancel();
                    gone += 1;
                }
            }
        }
        if gone > 0 {
            tracing::info!(
                gone,
                "signed out sessions revoked while this node was away from the cluster"
            );
        }
    }

    /// A changed display name reaches the cached sessions (rooms keep the name they
    /// joined with until the person rejoins).
    pub(crate) fn update_cached_user(&self, user: &User) {
        let id: AccountId = user.id;
        if let Ok(mut sessions) = self.sessions.write() {
            // Entries are shared with live connections; a new entry per token carries
            // the new name for the next request.
            sessions.forget(|e| e.user.id == id);
        }
    }

    /// The server's base URL as people reach it: `--public-url`, else from the request.
    pub(crate) fn public_base(&self, headers: &axum::http::HeaderMap) -> String {
        if let Some(url) = self.config.public_urls.first() {
            return url.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    }
}
