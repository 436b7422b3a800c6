//! A live room session: one WebSocket, kept up across drops by reconnecting with backoff and
//! rejoining the same room. Control messages come out as [`NetEvent`]s; audio frames go
//! straight to a handler (the playout engine), never through the UI's queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::Api;
use crate::e2e::agent::{KeyAgent, KeyStatus};
use crate::protocol::{
    AudioFrame, ClientCommand, ClientMessage, ErrorBody, ErrorCode, ServerMessage,
};

/// What the live session tells its owner.
#[derive(Debug, Clone, PartialEq)]
// Most events are server messages: boxing them would add an allocation to nearly every
// event to shrink the rare small ones.
#[allow(clippy::large_enum_variant)]
pub enum NetEvent {
    /// Connected (or reconnected) to the room; a `room_snapshot` follows.
    Connected,
    /// A control message from the server.
    Server(ServerMessage),
    /// The connection dropped; trying again.
    Reconnecting { attempt: u32, reason: String },
    /// A round trip measured by ping/pong.
    RoundTrip { rtt_ms: u32 },
    /// A private room's keys changed: the epoch held, its safety code, or why audio is
    /// silent for now.
    Keys(KeyStatus),
    /// The session is over for good (left, removed, room ended, refused); no reconnect.
    Closed {
        code: Option<ErrorCode>,
        message: String,
    },
}

/// Counters the UI shows about the connection.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Outgoing audio frames dropped because the socket could not take them.
    pub audio_dropped_out: AtomicU64,
    /// Audio frames received.
    pub audio_in: AtomicU64,
    /// Reconnects since the session started.
    pub reconnects: AtomicU64,
    /// Private rooms: frames received that did not open (no key, altered, replayed), and
    /// dropped instead of played.
    pub undecryptable: AtomicU64,
    /// Private rooms: frames opened and played.
    pub decrypted: AtomicU64,
    /// Private rooms: own frames not sent for want of a key.
    pub unsealed: AtomicU64,
    /// Private rooms: the newest key epoch held (0: none yet).
    pub key_epoch: std::sync::atomic::AtomicU32,
}

/// Reconnect timing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Give up after this many failed attempts in a row (None: never).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(250),
            max: Duration::from_secs(8),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The wait before attempt `n` (1-based): doubling from `first`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// Outgoing audio waiting for the socket: 25 frames is 500 ms. When full, new frames are
/// dropped (and counted): late speech is worse than a gap.
const AUDIO_OUT_QUEUE: usize = 25;
/// Outgoing control commands: a person cannot type faster than this drains.
const CONTROL_OUT_QUEUE: usize = 64;
/// How often the session measures the round trip, and how long without any answer before
/// the connection counts as dead.
const PING_EVERY: Duration = Duration::from_secs(2);
const DEAD_AFTER: Duration = Duration::from_secs(10);

/// The owner's end of a live session. Dropping it ends the session.
pub struct LiveSession {
    control_tx: mpsc::Sender<(ClientCommand, Option<u64>)>,
    audio_tx: mpsc::Sender<Bytes>,
    pub stats: Arc<LiveStats>,
    task: tokio::task::JoinHandle<()>,
}

/// Handles each received audio frame; called on the network task, so it must not block.
pub type AudioHandler = Box<dyn FnMut(AudioFrame) + Send + Sync>;

impl LiveSession {
    /// Starts the session for `room` with the API's token. Events go to `events_tx`.
    pub fn start(
        api: &Api,
        room: &str,
        events_tx: mpsc::Sender<NetEvent>,
        on_audio: AudioHandler,
        backoff: Backoff,
    ) -> Self {
        Self::start_shared(api, room, None, events_tx, on_audio, backoff)
    }

    /// [`LiveSession::start`] with a private room's share secret (from its share link).
    pub fn start_shared(
        api: &Api,
        room: &str,
        share: Option<String>,
        events_tx: mpsc::Sender<NetEvent>,
        on_audio: AudioHandler,
        backoff: Backoff,
    ) -> Self {
        let (control_tx, control_rx) = mpsc::channel(CONTROL_OUT_QUEUE);
        let (audio_tx, audio_rx) = mpsc::channel(AUDIO_OUT_QUEUE);
        let stats = Arc::new(LiveStats::default());
        let worker = Worker {
            room: room.to_string(),
            share,
            keys: None,
            private: false,
            clock: std::time::Instant::now(),
            nodes: vec![api.clone()],
            current: 0,
            siblings: Arc::default(),
            joined: false,
            api: api.clone(),
            events_tx,
            on_audio,
            control_rx,
            audio_rx,
            stats: stats.clone(),
            backoff,
        };
        let task = tokio::spawn(worker.run());
        Self {
            control_tx,
            audio_tx,
            stats,
            task,
        }
    }

    /// Queues a command; false if the session is over.
    pub fn send(&self, command: ClientCommand) -> bool {
        self.control_tx.try_send((command, None)).is_ok()
    }

    /// Queues a command whose answer, `ok` or `error`, names `id`.
    pub fn send_tagged(&self, command: ClientCommand, id: u64) -> bool {
        self.control_tx.try_send((command, Some(id))).is_ok()
    }

    /// Queues an audio frame (its speaker id is stamped by the server); drops it when the
    /// socket is behind.
    pub fn send_audio(&self, frame: &AudioFrame) {
        if self.audio_tx.try_send(frame.bytes().clone()).is_err() {
            self.stats.audio_dropped_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A sender for audio frames, for a capture thread to use directly.
    pub fn audio_sender(&self) -> mpsc::Sender<Bytes> {
        self.audio_tx.clone()
    }

    /// Leaves the room and waits (briefly) for the server to close the connection.
    pub async fn leave(mut self) {
        let _ = self.control_tx.send((ClientCommand::Leave, None)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
    }

    /// Whether the session has ended for good.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        // Ends the task if it is still running (aborting a finished task does nothing).
        self.task.abort();
    }
}

struct Worker {
    room: String,
    /// A private room's share secret, from its link.
    share: Option<String>,
    /// A private room's key agent, from its first snapshot on; kept across reconnects
    /// (its counters must never start over under the same key).
    keys: Option<KeyAgent>,
    /// The room is private: without a key agent (no device key), nothing is sent or
    /// played, never audio in the clear.
    private: bool,
    clock: std::time::Instant,
    /// The server, then the other nodes of its cluster (learnt once connected): a
    /// connection that cannot be made again moves to the next.
    nodes: Vec<Api>,
    current: usize,
    /// The other nodes, as last learnt (by a task of their own, never delaying a join).
    siblings: Arc<std::sync::Mutex<Vec<url::Url>>>,
    /// The current connection got as far as the room's snapshot.
    joined: bool,
    /// The node connected to now. Shares the session with the rest of the client, so a
    /// renewed token is used here too.
    api: Api,
    events_tx: mpsc::Sender<NetEvent>,
    on_audio: AudioHandler,
    control_rx: mpsc::Receiver<(ClientCommand, Option<u64>)>,
    audio_rx: mpsc::Receiver<Bytes>,
    stats: Arc<LiveStats>,
    backoff: Backoff,
}

/// How one connection ended.
enum Ended {
    /// For good: tell the owner and stop.
    Final(Option<ErrorCode>, String),
    /// Dropped: reconnect.
    Dropped(String),
}

impl Worker {
    async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            let ended = match self.connect().await {
                Ok(ws) => {
                    if self.events_tx.send(NetEvent::Connected).await.is_err() {
                        return;
                    }
                    self.learn_siblings();
                    self.joined = false;
                    let ended = self.session(ws).await;
                    if self.joined {
                        attempt = 0;
                    }
                    ended
                }
                Err(ended) => ended,
            };
            let reason = match ended {
                Ended::Final(code, message) => {
                    let _ = self
                        .events_tx
                        .send(NetEvent::Closed { code, message })
                        .await;
                    return;
                }
                Ended::Dropped(reason) => reason,
            };
            attempt += 1;
            if self.backoff.max_attempts.is_some_and(|max| attempt > max) {
                let message = format!(
                    "gave up reconnecting after {} attempts: {reason}",
                    attempt - 1
                );
                let _ = self
                    .events_tx
                    .send(NetEvent::Closed {
                        code: None,
                        message,
                    })
                    .await;
                return;
            }
            // Once again on the same node (a dropped connection is most often the
            // network's), then round the cluster's nodes: this one may be gone.
            if attempt >= 2 {
                self.next_node();
            }
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            let event = NetEvent::Reconnecting { attempt, reason };
            if self.events_tx.send(event).await.is_err() {
                return;
            }
            // Wait, but leave promptly if asked to; commands typed meanwhile are stale.
            let wait = tokio::time::sleep(self.backoff.delay(attempt));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    command = self.control_rx.recv() => match command {
                        None | Some((ClientCommand::Leave, _)) => {
                            let _ = self.events_tx.send(NetEvent::Closed { code: None, message: "you left the room".into() }).await;
                            return;
                        }
                        Some(_) => {}
                    },
                    frame = self.audio_rx.recv() => if frame.is_some() {
                        self.stats.audio_dropped_out.fetch_add(1, Ordering::Relaxed);
                    },
                }
            }
        }
    }

    /// Learns the other nodes of the server's cluster, in the background.
    fn learn_siblings(&self) {
        let (api, siblings) = (self.api.clone(), self.siblings.clone());
        tokio::spawn(async move {
            let learnt = api.sibling_nodes().await;
            if let Ok(mut siblings) = siblings.lock() {
                *siblings = learnt;
            }
        });
    }

    /// Moves to the next node of the cluster (the nodes known now, the first server
    /// first): nothing changes for a server that is not in one.
    fn next_node(&mut self) {
        let learnt = self.siblings.lock().map(|s| s.clone()).unwrap_or_default();
        for url in learnt {
            if !self.nodes.iter().any(|n| n.base() == &url) {
                self.nodes.push(self.nodes[0].at(url));
            }
        }
        if self.nodes.len() > 1 {
            self.current = (self.current + 1) % self.nodes.len();
            self.api = self.nodes[self.current].clone();
            tracing::info!(node = %self.api.base(), "trying another node of the cluster");
        }
    }

    async fn connect(&self) -> Result<Ws, Ended> {
        let url = self.api.live_url_shared(&self.room, self.share.as_deref());
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Ended::Final(None, format!("bad room address {url}: {e}")))?;
        let header = format!("Bearer {}", self.api.token().unwrap_or_default())
            .parse()
            .map_err(|_| {
                Ended::Final(
                    None,
                    "the session token is not valid text; sign in again".into(),
                )
            })?;
        request.headers_mut().insert("authorization", header);
        // No Nagle delay: audio frames are small and must leave at once.
        let tls = super::tls::client_config().map(tokio_tungstenite::Connector::Rustls);
        match tokio_tungstenite::connect_async_tls_with_config(request, None, true, tls).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok());
                match body {
                    // The server restarted and forgot us: sign in again and retry at once.
                    Some(body)
                        if body.error.code == ErrorCode::Unauthorized && self.api.renew().await =>
                    {
                        Err(Ended::Dropped(
                            "signed in again after the server restarted".into(),
                        ))
                    }
                    // A refusal (room gone, banned, bad token) will not change by retrying,
                    // except when the server is busy or restarting.
                    Some(body) if !matches!(status, 429 | 500..) => {
                        Err(Ended::Final(Some(body.error.code), body.error.message))
                    }
                    Some(body) => Err(Ended::Dropped(body.error.message)),
                    None => Err(Ended::Dropped(format!("the server answered HTTP {status}"))),
                }
            }
            Err(e) => Err(Ended::Dropped(describe(&e))),
        }
    }

    async fn session(&mut self, mut ws: Ws) -> Ended {
        let started = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut goodbye: Option<(ErrorCode, String)> = None;
        let mut leaving = false;
        // Private rooms only: the key agent's timers (rotations, newcomers' keys).
        let mut key_tick = tokio::time::interval(KEY_TICK);
        key_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = ws.next() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => match ServerMessage::decode(&text) {
                            Ok(ServerMessage::Pong { nonce }) => {
                                let rtt_ms = (started.elapsed().as_millis() as u64).saturating_sub(nonce) as u32;
                                let _ = self.events_tx.try_send(NetEvent::RoundTrip { rtt_ms });
                            }
                            Ok(ServerMessage::Goodbye { code, message }) => goodbye = Some((code, message)),
                            Ok(message) => {
                                // In the room: the next drop starts counting attempts again.
                                // (Not at the upgrade: a join refused after it, as a node
                                // that cannot reach the room refuses, must count.)
                                if let ServerMessage::RoomSnapshot { room, .. } = &message {
                                    self.joined = true;
                                    if room.summary.private && self.keys.is_none() {
                                        self.private = true;
                                        self.keys = self.new_agent();
                                    }
                                }
                                if let Err(ended) = self.keys_take(&mut ws, &message).await {
                                    return ended;
                                }
                                if matches!(message, ServerMessage::Key { .. }) {
                                    continue;
                                }
                                if self.events_tx.send(NetEvent::Server(message)).await.is_err() {
                                    return Ended::Final(None, "closed".into());
                                }
                            }
                            Err(e) => tracing::warn!("ignoring a server message this client does not understand: {e}"),
                        },
                        Some(Ok(Message::Binary(bytes))) => {
                            if let Ok(frame) = AudioFrame::parse(bytes) {
                                self.stats.audio_in.fetch_add(1, Ordering::Relaxed);
                                match &mut self.keys {
                                    None if self.private => {
                                        self.stats.undecryptable.fetch_add(1, Ordering::Relaxed);
                                    }
                                    None => (self.on_audio)(frame),
                                    Some(keys) => match keys.open(&frame) {
                                        Ok(frame) => {
                                            self.stats.decrypted.fetch_add(1, Ordering::Relaxed);
                                            (self.on_audio)(frame);
                                        }
                                        Err(why) => {
                                            // Frames before the first key (a newcomer's first
                                            // moments) are expected, not trouble.
                                            let waiting = matches!(why, crate::e2e::agent::Dropped::NoKey(_))
                                                && keys.status().epoch.is_none();
                                            if !waiting {
                                                self.stats.undecryptable.fetch_add(1, Ordering::Relaxed);
                                            }
                                            tracing::trace!("dropped a frame that did not open: {why}");
                                        }
                                    },
                                }
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            return match goodbye {
                                Some((code, message)) if is_final(code) => Ended::Final(Some(code), message),
                                Some((_, message)) => Ended::Dropped(message),
                                None if leaving => Ended::Final(None, "you left the room".into()),
                                None => Ended::Dropped("the connection dropped".into()),
                            };
                        }
                        Some(Ok(_)) => {}
                    }
                }
                command = self.control_rx.recv() => {
                    let (command, id) = command.unwrap_or((ClientCommand::Leave, None));
                    leaving |= command == ClientCommand::Leave;
                    let id = id.map(serde_json::Value::from);
                    let text = ClientMessage { id, command }.encode();
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        return Ended::Dropped("the connection dropped while sending".into());
                    }
                }
                Some(frame) = self.audio_rx.recv() => {
                    let frame = match &mut self.keys {
                        None if self.private => {
                            self.stats.unsealed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        None => frame,
                        Some(keys) => match AudioFrame::parse(frame).map(|f| keys.seal(&f)) {
                            Ok(Ok(sealed)) => sealed.bytes().clone(),
                            _ => {
                                self.stats.unsealed.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                    };
                    if ws.send(Message::Binary(frame)).await.is_err() {
                        return Ended::Dropped("the connection dropped while sending audio".into());
                    }
                }
                _ = key_tick.tick(), if self.keys.is_some() => {
                    if let Err(ended) = self.keys_tick(&mut ws).await {
                        return ended;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > DEAD_AFTER {
                        return Ended::Dropped(format!("no answer from the server for {} s", DEAD_AFTER.as_secs()));
                    }
                    let nonce = started.elapsed().as_millis() as u64;
                    let text = ClientMessage { id: None, command: ClientCommand::Ping { nonce } }.encode();
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        return Ended::Dropped("the connection dropped".into());
                    }
                }
            }
        }
    }
}

/// How often a private room's key agent looks at its timers.
const KEY_TICK: Duration = Duration::from_millis(100);

impl Worker {
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn new_agent(&self) -> Option<KeyAgent> {
        match self.api.device_key() {
            Some(device) => Some(KeyAgent::new(&self.room, &device, self.now_ms())),
            None => {
                tracing::warn!(
                    "a private room, but this client has no device key: its audio cannot be opened"
                );
                None
            }
        }
    }

    /// Feeds a message to the key agent, sends what it says, tells the owner of changes.
    async fn keys_take(&mut self, ws: &mut Ws, message: &ServerMessage) -> Result<(), Ended> {
        let now = self.now_ms();
        let Some(keys) = &mut self.keys else {
            return Ok(());
        };
        let before = keys.status().clone();
        let commands = keys.on_message(message, now);
        self.keys_send(ws, commands, before).await
    }

    async fn keys_tick(&mut self, ws: &mut Ws) -> Result<(), Ended> {
        let now = self.now_ms();
        let Some(keys) = &mut self.keys else {
            return Ok(());
        };
        let before = keys.status().clone();
        let commands = keys.tick(now);
        self.keys_send(ws, commands, before).await
    }

    async fn keys_send(
        &mut self,
        ws: &mut Ws,
        commands: Vec<ClientCommand>,
        before: KeyStatus,
    ) -> Result<(), Ended> {
        for command in commands {
            let text = ClientMessage { id: None, command }.encode();
            if ws.send(Message::Text(text.into())).await.is_err() {
                return Err(Ended::Dropped(
                    "the connection dropped while sending keys".into(),
                ));
            }
        }
        if let Some(keys) = &self.keys
            && *keys.status() != before
        {
            self.stats
                .key_epoch
                .store(keys.status().epoch.unwrap_or(0), Ordering::Relaxed);
            let _ = self
                .events_tx
                .send(NetEvent::Keys(keys.status().clone()))
                .await;
        }
        Ok(())
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Goodbyes after which reconnecting would not help (or would be unwelcome).
fn is_final(code: ErrorCode) -> bool {
    !matches!(
        code,
        ErrorCode::SlowConsumer | ErrorCode::Internal | ErrorCode::Reconnect
    )
}

fn describe(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "the server refused the connection (is it running?)".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(250));
        assert_eq!(b.delay(2), Duration::from_millis(500));
        assert_eq!(b.delay(4), Duration::from_secs(2));
        assert_eq!(b.delay(10), Duration::from_secs(8));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(8));
    }
}
