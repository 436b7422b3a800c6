//! The listening socket and every connection on it, from `accept` to close: how many one
//! address may hold, how many the process can hold, and how long each may stall.
//!
//! Invariants:
//! - No connection outlives its deadlines: a request (headers and body) must arrive whole
//!   within `request_timeout` of its first byte, a WebSocket message within the same, an
//!   idle HTTP connection is closed after `idle_timeout`, and a quiet WebSocket is pinged
//!   and closed when the ping goes unanswered.
//! - There are no timers per connection: every connection records when it last read and
//!   since when it is part-way through a request or message in atomics, and one sweep per
//!   interval (a few per second at most) decides for all of them. A server with no
//!   connections does not sweep at all.
//! - One address never holds more than `max_connections_per_address` connections (a trusted
//!   proxy is exempt: its clients are counted by the address it forwards), and the process
//!   never accepts past its file-descriptor limit: at the limit the oldest connection that
//!   is not in a room gives way, so rooms keep working and a newcomer can still get in.
//! - Accept errors (out of descriptors) back off instead of spinning.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::addr::AddrKey;
use super::monotonic_ms;
use super::outgoing::{Kind, Outgoing, Wire};

/// `busy_since_ms` when nothing is half-read.
const NOT_BUSY: u64 = u64::MAX;

/// How long each kind of stall may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a request (or WebSocket message, or TLS handshake) to its last.
    pub request: Duration,
    /// An HTTP connection between requests.
    pub idle: Duration,
    /// A WebSocket that has sent nothing this long is pinged...
    pub ping_after: Duration,
    /// ...and closed when nothing (the pong included) comes back within this.
    pub pong: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            ping_after: Duration::from_secs(30),
            pong: Duration::from_secs(20),
        }
    }
}

impl Timeouts {
    /// How often the sweep runs: a quarter of the shortest timeout, so a deadline is kept to
    /// within 25 %, between 250 ms and 2 s.
    pub fn sweep_every(&self) -> Duration {
        let shortest = self
            .request
            .min(self.idle)
            .min(self.ping_after)
            .min(self.pong);
        (shortest / 4).clamp(Duration::from_millis(250), Duration::from_secs(2))
    }
}

/// One accepted connection, as the sweep and the limits see it.
pub struct Conn {
    pub id: u64,
    /// The socket's peer (a proxy, where there is one).
    pub peer: IpAddr,
    key: AddrKey,
    /// A trusted proxy: not counted against the per-address limit.
    exempt: bool,
    last_read_ms: AtomicU64,
    busy_since_ms: AtomicU64,
    upgraded: AtomicBool,
    ping_sent_ms: AtomicU64,
    /// Cancelled to close the connection at once (evicted, timed out, too slow).
    pub close: CancellationToken,
    /// A WebSocket's sending side, for the sweep's pings.
    out: OnceLock<Weak<Outgoing>>,
}

impl Conn {
    fn new(id: u64, peer: IpAddr, exempt: bool, now_ms: u64) -> Self {
        Self {
            id,
            peer,
            key: AddrKey::of(peer),
            exempt,
            last_read_ms: AtomicU64::new(now_ms),
            // The first request is due from the moment of connecting: a connection that
            // sends nothing is held to the request deadline, not the longer idle one.
            busy_since_ms: AtomicU64::new(now_ms),
            upgraded: AtomicBool::new(false),
            ping_sent_ms: AtomicU64::new(NOT_BUSY),
            close: CancellationToken::new(),
            out: OnceLock::new(),
        }
    }

    /// Bytes arrived: the peer is alive, and a request or message may have begun.
    fn read_some(&self) {
        let now = monotonic_ms();
        self.last_read_ms.store(now, Ordering::Relaxed);
        let _ = self.busy_since_ms.compare_exchange(
            NOT_BUSY,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A whole request or message has been read (and, for HTTP, answered).
    pub fn finished_one(&self) {
        self.last_read_ms.store(monotonic_ms(), Ordering::Relaxed);
        self.busy_since_ms.store(NOT_BUSY, Ordering::Relaxed);
    }

    /// The connection is a WebSocket now; `out` is how the sweep pings it.
    pub fn upgraded(&self, out: &Arc<Outgoing>) {
        let _ = self.out.set(Arc::downgrade(out));
        self.upgraded.store(true, Ordering::Relaxed);
    }

    fn state(&self) -> ConnState {
        let opt = |v: u64| (v != NOT_BUSY).then_some(v);
        ConnState {
            last_read_ms: self.last_read_ms.load(Ordering::Relaxed),
            busy_since_ms: opt(self.busy_since_ms.load(Ordering::Relaxed)),
            ping_sent_ms: opt(self.ping_sent_ms.load(Ordering::Relaxed)),
            websocket: self.upgraded.load(Ordering::Relaxed),
        }
    }
}

/// What the sweep reads of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConnState {
    last_read_ms: u64,
    busy_since_ms: Option<u64>,
    ping_sent_ms: Option<u64>,
    websocket: bool,
}

/// What the sweep does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Ping,
    Close(&'static str),
}

/// The whole timeout policy, as a pure function of a connection's state and the time.
fn verdict(state: ConnState, now_ms: u64, t: &Timeouts) -> Verdict {
    let ms = |d: Duration| d.as_millis() as u64;
    let since = |then: u64| now_ms.saturating_sub(then);
    if let Some(start) = state.busy_since_ms
        && since(start) > ms(t.request)
    {
        return Verdict::Close(if state.websocket {
            "a WebSocket message did not finish in time"
        } else {
            "a request did not arrive whole in time"
        });
    }
    if !state.websocket {
        if state.busy_since_ms.is_none() && since(state.last_read_ms) > ms(t.idle) {
            return Verdict::Close("idle");
        }
        return Verdict::Keep;
    }
    match state.ping_sent_ms {
        // Anything read since the ping (its pong, or anything else) answers it.
        Some(sent) if sent >= state.last_read_ms => {
            if since(sent) > ms(t.pong) {
                Verdict::Close("the ping went unanswered")
            } else {
                Verdict::Keep
            }
        }
        _ if since(state.last_read_ms) > ms(t.ping_after) => Verdict::Ping,
        _ => Verdict::Keep,
    }
}

/// Why a new connection was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address holds its limit of connections.
    PerAddress,
    /// The process holds its limit and no connection could give way.
    Full,
}

/// Every open connection, and how many each address holds.
pub struct Conns {
    table: Mutex<Table>,
    max_total: usize,
    max_per_address: usize,
    /// Woken when the first connection arrives, so an empty server's sweep sleeps.
    arrived: Notify,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    by_id: HashMap<u64, Arc<Conn>>,
    per_address: HashMap<AddrKey, usize>,
}

impl Conns {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            max_total,
            max_per_address,
            arrived: Notify::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a new connection from `peer`, or says why not. At the process's limit the
    /// oldest connection that is not a WebSocket gives way (it is told to close at once).
    pub fn admit(self: &Arc<Self>, peer: IpAddr, exempt: bool) -> Result<ConnGuard, Refused> {
        let Ok(mut table) = self.table.lock() else {
            return Err(Refused::Full);
        };
        let key = AddrKey::of(peer);
        if !exempt && table.per_address.get(&key).copied().unwrap_or(0) >= self.max_per_address {
            return Err(Refused::PerAddress);
        }
        if table.by_id.len() >= self.max_total && !table.evict_oldest_http() {
            return Err(Refused::Full);
        }
        table.next_id += 1;
        let conn = Arc::new(Conn::new(table.next_id, peer, exempt, monotonic_ms()));
        if !exempt {
            *table.per_address.entry(key).or_default() += 1;
        }
        let first = table.by_id.is_empty();
        table.by_id.insert(conn.id, conn.clone());
        drop(table);
        if first {
            self.arrived.notify_one();
        }
        Ok(ConnGuard {
            conn,
            conns: self.clone(),
        })
    }

    /// Closes the oldest connection that is not a WebSocket, to make room (out of
    /// descriptors). False when there is none.
    pub fn evict_one(&self) -> bool {
        self.table
            .lock()
            .map(|mut t| t.evict_oldest_http())
            .unwrap_or(false)
    }

    fn remove(&self, conn: &Conn) {
        if let Ok(mut table) = self.table.lock()
            && table.by_id.remove(&conn.id).is_some()
            && !conn.exempt
            && let Some(n) = table.per_address.get_mut(&conn.key)
        {
            *n -= 1;
            if *n == 0 {
                table.per_address.remove(&conn.key);
            }
        }
    }

    /// Applies the timeouts to every connection once.
    pub fn sweep(&self, timeouts: &Timeouts) {
        let conns: Vec<Arc<Conn>> = match self.table.lock() {
            Ok(t) => t.by_id.values().cloned().collect(),
            Err(_) => return,
        };
        let now = monotonic_ms();
        for conn in conns {
            match verdict(conn.state(), now, timeouts) {
                Verdict::Keep => {}
                Verdict::Ping => {
                    conn.ping_sent_ms.store(now, Ordering::Relaxed);
                    if let Some(out) = conn.out.get().and_then(Weak::upgrade) {
                        let _ = out.send(&Wire::ping(), Kind::Control);
                    }
                }
                Verdict::Close(why) => {
                    if !conn.close.is_cancelled() {
                        tracing::debug!(peer = %conn.peer, "closing a connection: {why}");
                        conn.close.cancel();
                    }
                }
            }
        }
    }

    /// Sweeps every `timeouts.sweep_every()` while there are connections, until `stop`.
    pub async fn run_sweeps(self: Arc<Self>, timeouts: Timeouts, stop: CancellationToken) {
        let every = timeouts.sweep_every();
        loop {
            if self.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.arrived.notified() => {}
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            self.sweep(&timeouts);
        }
    }
}

impl Table {
    fn evict_oldest_http(&mut self) -> bool {
        let victim = self
            .by_id
            .values()
            .filter(|c| !c.upgraded.load(Ordering::Relaxed) && !c.close.is_cancelled())
            .min_by_key(|c| c.last_read_ms.load(Ordering::Relaxed));
        match victim {
            Some(conn) => {
                conn.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Holds a connection's place in [`Conns`]; the place is freed when the last holder (the
/// HTTP task, then the WebSocket task it hands over to) drops it.
pub struct ConnGuard {
    pub conn: Arc<Conn>,
    conns: Arc<Conns>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.remove(&self.conn);
    }
}

/// A socket that tells its [`Conn`] when bytes arrive.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.read_some();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

/// Connections the process may hold with `fd_limit` descriptors: what is left after the
/// listeners, log files, the runtime's own and a margin for files a request may open.
pub fn max_connections(fd_limit: u64) -> usize {
    const RESERVED: u64 = 64;
    usize::try_from(fd_limit.saturating_sub(RESERVED).max(16)).unwrap_or(usize::MAX)
}

/// Whether an accept error means the process (or system) is out of descriptors.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23 on Linux; ENOBUFS/ENOMEM are the same pressure by another name.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        ping_after: Duration::from_secs(30),
        pong: Duration::from_secs(20),
    };

    fn http(last_read_ms: u64, busy_since_ms: Option<u64>) -> ConnState {
        ConnState {
            last_read_ms,
            busy_since_ms,
            ping_sent_ms: None,
            websocket: false,
        }
    }

    #[test]
    fn a_request_that_trickles_is_closed_at_its_deadline_however_often_bytes_come() {
        // One byte a second keeps `last_read` fresh; the deadline runs from the first byte.
        assert_eq!(verdict(http(9_000, Some(0)), 9_500, &T), Verdict::Keep);
        assert_eq!(verdict(http(10_000, Some(0)), 10_000, &T), Verdict::Keep);
        assert!(matches!(
            verdict(http(10_900, Some(0)), 10_001, &T),
            Verdict::Close(_)
        ));
    }

    #[test]
    fn an_idle_http_connection_is_closed_after_the_idle_timeout() {
        assert_eq!(verdict(http(1_000, None), 61_000, &T), Verdict::Keep);
        assert_eq!(
            verdict(http(1_000, None), 61_001, &T),
            Verdict::Close("idle")
        );
    }

    #[test]
    fn a_quiet_websocket_is_pinged_then_closed_unless_it_answers() {
        let quiet = ConnState {
            last_read_ms: 0,
            busy_since_ms: None,
            ping_sent_ms: None,
            websocket: true,
        };
        // Long idle is fine for a WebSocket (a listener sends nothing): it is only pinged.
        assert_eq!(verdict(quiet, 29_000, &T), Verdict::Keep);
        assert_eq!(verdict(quiet, 30_001, &T), Verdict::Ping);
        let pinged = ConnState {
            ping_sent_ms: Some(30_001),
            ..quiet
        };
        assert_eq!(verdict(pinged, 45_000, &T), Verdict::Keep);
        assert!(matches!(verdict(pinged, 50_002, &T), Verdict::Close(_)));
        // The pong (any read after the ping) clears it.
        let answered = ConnState {
            last_read_ms: 30_050,
            ..pinged
        };
        assert_eq!(verdict(answered, 50_002, &T), Verdict::Keep);
        assert_eq!(verdict(answered, 60_051, &T), Verdict::Ping);
    }

    #[test]
    fn a_websocket_message_that_never_finishes_is_closed() {
        let partial = ConnState {
            last_read_ms: 9_000,
            busy_since_ms: Some(1_000),
            ping_sent_ms: None,
            websocket: true,
        };
        assert_eq!(verdict(partial, 10_000, &T), Verdict::Keep);
        assert!(matches!(verdict(partial, 11_001, &T), Verdict::Close(_)));
    }

    #[test]
    fn one_address_is_held_to_its_limit_and_a_full_process_evicts_the_oldest_http() {
        let conns = Conns::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = conns.admit(a, false).unwrap();
        let _a2 = conns.admit(a, false).unwrap();
        assert_eq!(conns.admit(a, false).err(), Some(Refused::PerAddress));
        // A trusted proxy is not held to the per-address limit.
        let _p = conns.admit(a, true).unwrap();
        // Full: the oldest non-WebSocket connection is told to close, and b gets in.
        a1.conn.upgraded.store(true, Ordering::Relaxed);
        let b1 = conns.admit(b, false).unwrap();
        assert!(!a1.conn.close.is_cancelled(), "a WebSocket never gives way");
        assert_eq!(conns.len(), 4);
        drop(b1);
        drop(a1);
        assert_eq!(conns.len(), 2);
        // Freed places count again.
        let _a3 = conns.admit(a, false).unwrap();
    }

    #[test]
    fn the_sweep_runs_a_few_times_a_second_at_most() {
        assert_eq!(T.sweep_every(), Duration::from_secs(2));
        let short = Timeouts {
            request: Duration::from_millis(100),
            ..T
        };
        assert_eq!(short.sweep_every(), Duration::from_millis(250));
    }
}
