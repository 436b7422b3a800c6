//! One WebSocket connection in a room. Its task reads, checks, limits and forwards what the
//! client sends; what the server sends goes through the connection's [`Outgoing`], written
//! straight to the socket by the room actor, and the task writes only what the socket could
//! not take at once.
//!
//! tungstenite reads and parses the client's frames (and answers pings); the server's own
//! frames bypass it, framed once per message for every receiver.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf, ReadHalf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::actor::{Peer, RoomCommand, RoomHandle};
use super::listener::ConnGuard;
use super::outgoing::{CLOSE_NORMAL, Drive, Kind, Outgoing, Wire, goodbye};
use super::rate::TokenBucket;
use super::room::is_own_toggle;
use crate::protocol::audio::MAX_FRAME_LEN;
use crate::protocol::control::{MAX_SHARE_KEY_BYTES, command_type};
use crate::protocol::{AudioFrame, ClientCommand, ClientMessage, ErrorCode, ServerMessage, User};

/// How long a closing connection waits for the client's close frame before dropping it.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a connection the client closed may take to send its last frames.
const LAST_WORDS: Duration = Duration::from_millis(200);
/// WebSocket messages above this are a protocol violation and close the connection; smaller
/// oversize messages get a `payload_too_large` error and the connection stays up.
const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;
/// `share_key` messages a second (burst): a rotation for 5,000 is 20, at most one rotation
/// every 2 s, and newcomers' keys go in batches at most every 50 ms.
const KEY_SHARES_PER_SEC: f64 = 40.0;
const KEY_SHARES_BURST: f64 = 80.0;
/// Bytes a WebSocket read takes at once: the largest audio frame (1,291 bytes) and then
/// some. Larger control messages arrive over several reads. Every connection keeps one,
/// and tungstenite zero-fills it before each read: small is lighter on both counts (with
/// the default 128 KiB that was half the server's CPU under fan-out; docs/benchmarks.md).
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Runs a connection from `addr` over `io` (an upgraded HTTP connection) until either side
/// closes it. `guard` holds the connection's place among all connections; the sweep pings
/// it when quiet and closes it (through the same token as the room's kick) when it stalls.
pub async fn serve<S>(
    io: S,
    shared: Arc<Shared>,
    user: User,
    device: Option<String>,
    room: RoomHandle,
    addr: std::net::IpAddr,
    guard: Arc<ConnGuard>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let limits = &shared.config.limits;
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (read, write) = tokio::io::split(io);
    let out = Arc::new(Outgoing::new(
        write,
        limits.audio_queue_frames,
        limits.control_queue,
    ));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // tungstenite writes only pongs and close answers, into `out`, which takes them whole.
        .write_buffer_size(0)
        .max_message_size(Some(MAX_WS_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WS_MESSAGE_BYTES));
    let socket = Socket {
        read,
        out: out.clone(),
    };
    let mut ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
    guard.conn.upgraded(&out);
    let kick: CancellationToken = guard.conn.close.clone();
    let peer = Peer {
        connection,
        addr,
        out: out.clone(),
        kick: kick.clone(),
    };

    let (reply_tx, reply_rx) = oneshot::channel();
    let joined = room
        .tx
        .send(RoomCommand::Join {
            user: user.clone(),
            device,
            peer,
            reply: reply_tx,
        })
        .await
        .is_ok();
    let refusal = match reply_rx.await {
        Ok(Ok(())) if joined => None,
        Ok(Err(refusal)) => Some((refusal.code, refusal.message)),
        _ => Some((
            ErrorCode::RoomNotFound,
            "this room has ended; pick another from the room list".into(),
        )),
    };
    if let Some((code, message)) = refusal {
        // The room may have said goodbye already (it drops a peer it never took with one).
        out.close_with(goodbye(code, message));
        linger(&out, &mut ws).await;
        return;
    }

    shared.metrics.connections.inc();
    let mut reader = Reader::new(&shared, &user, connection, &room, &out);
    // Once the server has queued its last words (a goodbye, a close frame), the client has
    // a moment to read them and answer the close, and is not listened to meanwhile.
    let grace = tokio::time::sleep(CLOSE_GRACE);
    tokio::pin!(grace);
    let mut closing = false;
    let mut flushed = false;
    let mut ending = Ending::ClientGone;
    loop {
        tokio::select! {
            biased;
            () = kick.cancelled() => {
                ending = Ending::Kicked;
                break;
            }
            () = &mut grace, if closing => break,
            drive = std::future::poll_fn(|cx| out.poll_drive(cx)), if !flushed => match drive {
                Ok(Drive::Closing) => {
                    closing = true;
                    grace.as_mut().reset(Instant::now() + CLOSE_GRACE);
                }
                Ok(Drive::Flushed) => flushed = true,
                // The socket failed: nobody is listening any more.
                Err(_) => break,
            },
            message = ws.next() => {
                if let Some(Ok(_)) = &message {
                    guard.conn.finished_one();
                }
                match reader.handle(message, closing).await {
                Flow::Continue => {}
                Flow::Closed(code) => {
                    if let Some(code) = code {
                        ending = Ending::ClientClosed(code);
                    }
                    break;
                }
                Flow::Abusive => {
                    // Closed at once: what was queued ahead of the goodbye no longer
                    // matters, and the client's close is not waited for.
                    if !room.tx.is_closed() {
                        out.abandon_with(goodbye(
                            ErrorCode::Abusive,
                            "too many invalid or excessive messages; fix the client and reconnect"
                                .into(),
                        ));
                    }
                    break;
                }
            }},
        }
    }
    match ending {
        // Answer the client's close (it waits for one) after whatever was still queued,
        // before the room hears it left (its goodbye would then say the room ended).
        Ending::ClientClosed(code) => {
            out.close_with([Wire::close(code, "")]);
        }
        // Nothing more is said: the socket is broken, or the client broke the protocol
        // (the room must not say goodbye when it lets go of the connection).
        Ending::ClientGone => {
            out.abandon_with([]);
        }
        Ending::Kicked => {}
    }
    // The room forgets this connection.
    reader.leave().await;
    // What may still be queued: the answer to the client's close, or the goodbye of a
    // connection closed at once (slow or abusive: everything before it was dropped).
    linger(&out, &mut ws).await;
    shared.metrics.connections.dec();
}

/// Ends a connection that is closing, within [`LAST_WORDS`]: writes what is still queued,
/// then a FIN, then reads and drops whatever the client still sends until it closes too.
/// Closing a socket with unread data makes the kernel send a reset, and a reset makes the
/// client's kernel throw away the last words before the client reads them.
async fn linger<S: AsyncRead + AsyncWrite>(out: &Outgoing, ws: &mut WebSocketStream<Socket<S>>) {
    let _ = tokio::time::timeout(LAST_WORDS, async {
        out.finish().await;
        let _ = std::future::poll_fn(|cx| out.poll_shutdown(cx)).await;
        let mut scratch = [0u8; 2048];
        while let Ok(1..) = ws.get_mut().read(&mut scratch).await {}
    })
    .await;
}

/// How a connection's loop ended.
enum Ending {
    /// The socket failed, the client broke the protocol, the room went away, or the
    /// client did not answer the server's close in time.
    ClientGone,
    /// The client closed the connection with this code.
    ClientClosed(u16),
    /// The room closed it at once (it fell behind).
    Kicked,
}

/// What the connection does after a message from the client.
enum Flow {
    Continue,
    /// The connection is over: the client closed it with this code (1000 when it gave
    /// none), or with none to answer (the socket failed, the room is gone).
    Closed(Option<u16>),
    /// Too many invalid or excessive messages: say goodbye and close.
    Abusive,
}

/// The reading side of a connection: limits, checks, and what goes to the room.
struct Reader<'a> {
    shared: &'a Shared,
    user: &'a User,
    connection: u64,
    room: &'a RoomHandle,
    out: &'a Outgoing,
    control_bucket: TokenBucket,
    audio_bucket: TokenBucket,
    strikes: TokenBucket,
    /// A member's own hand and recording toggles: the room shows one change a second
    /// anyway; faster toggling is a flood and earns strikes.
    toggle_bucket: TokenBucket,
    /// A private room's key leader's `share_key` messages, on a budget of their own: a
    /// rotation for 5,000 is 20 of them at once, and must not starve (or be starved by)
    /// the person's other commands.
    keys_bucket: TokenBucket,
    told_audio_rate: bool,
    /// False once the room has been told this connection is gone.
    in_room: bool,
}

impl<'a> Reader<'a> {
    fn new(
        shared: &'a Shared,
        user: &'a User,
        connection: u64,
        room: &'a RoomHandle,
        out: &'a Outgoing,
    ) -> Self {
        let limits = &shared.config.limits;
        Self {
            shared,
            user,
            connection,
            room,
            out,
            control_bucket: TokenBucket::new(limits.control_per_sec, limits.control_burst),
            audio_bucket: TokenBucket::new(limits.audio_per_sec, limits.audio_burst),
            strikes: TokenBucket::new(limits.strikes_per_sec, limits.strikes_burst),
            toggle_bucket: TokenBucket::new(limits.toggles_per_sec, limits.toggles_burst),
            keys_bucket: TokenBucket::new(KEY_SHARES_PER_SEC, KEY_SHARES_BURST),
            told_audio_rate: false,
            in_room: true,
        }
    }

    /// Tells the room this connection is gone (once).
    async fn leave(&mut self) {
        if std::mem::take(&mut self.in_room) {
            let _ = self
                .room
                .tx
                .send(RoomCommand::Gone {
                    user: self.user.id,
                    connection: self.connection,
                })
                .await;
        }
    }

    /// Tells the client what was wrong; Abusive when it has been told too often.
    fn reject(&mut self, code: ErrorCode, id: Option<serde_json::Value>, message: String) -> Flow {
        self.shared.metrics.errors.inc();
        let msg = ServerMessage::error(id, code, message);
        // A queue too full for an error is the room actor's to judge (slow consumer).
        let _ = self.out.send(&Wire::text(msg.encode()), Kind::Control);
        if self.strikes.try_take() {
            Flow::Continue
        } else {
            Flow::Abusive
        }
    }

    async fn handle(&mut self, message: Option<Result<Message, WsError>>, closing: bool) -> Flow {
        let limits = &self.shared.config.limits;
        let message = match message {
            Some(Ok(Message::Close(frame))) => {
                return Flow::Closed(Some(frame.map_or(CLOSE_NORMAL, |f| f.code.into())));
            }
            // A broken socket or a protocol violation: nothing to answer.
            None | Some(Err(_)) => return Flow::Closed(None),
            // Once the server has said goodbye, only the client's close matters.
            Some(Ok(_)) if closing || !self.in_room => return Flow::Continue,
            Some(Ok(message)) => message,
        };
        match message {
            Message::Text(text) => {
                self.shared.metrics.control_messages_in.inc();
                // Only a key share may be bigger than the control limit (its type is read
                // first), up to a limit of its own, and on a budget of its own.
                // Only the host's client hands out keys: anyone else's share is an ordinary
                // command, held to the ordinary limits.
                // (The summary may lag the room a moment on another node of a cluster, so a
                // moderator, or anyone while no host is listed, passes here; the room itself
                // refuses all but its host.)
                let host = {
                    let summary = self.room.summary.borrow();
                    let me = self.user.id;
                    summary.host.as_ref().is_none_or(|h| h.id == me)
                        || summary
                            .speakers
                            .iter()
                            .any(|s| s.id == me && s.role.is_moderator())
                };
                let share = host
                    && (text.len() > limits.max_control_bytes || text.contains("share_key"))
                    && command_type(text.as_str()).as_deref() == Some("share_key");
                if share && text.len() > MAX_SHARE_KEY_BYTES {
                    return self.reject(
                        ErrorCode::PayloadTooLarge,
                        None,
                        format!("a share_key message is at most {MAX_SHARE_KEY_BYTES} bytes"),
                    );
                }
                if share && !self.keys_bucket.try_take() {
                    return self.reject(
                        ErrorCode::RateLimited,
                        None,
                        format!("at most {KEY_SHARES_PER_SEC} key shares a second; slow down"),
                    );
                }
                if !share && text.len() > limits.max_control_bytes {
                    return self.reject(
                        ErrorCode::PayloadTooLarge,
                        None,
                        format!(
                            "control messages are at most {} bytes",
                            limits.max_control_bytes
                        ),
                    );
                }
                if !share && !self.control_bucket.try_take() {
                    return self.reject(
                        ErrorCode::RateLimited,
                        None,
                        format!(
                            "at most {} control messages a second; slow down",
                            limits.control_per_sec
                        ),
                    );
                }
                match ClientMessage::decode(text.as_str()) {
                    Err(e) => self.reject(e.code(), e.id(), e.to_string()),
                    // Answered here, not by the room: a round trip measures the network.
                    Ok(ClientMessage {
                        id: _,
                        command: ClientCommand::Ping { nonce },
                    }) => {
                        let pong = ServerMessage::Pong { nonce };
                        let _ = self.out.send(&Wire::text(pong.encode()), Kind::Control);
                        Flow::Continue
                    }
                    Ok(ClientMessage { id, command })
                        if is_own_toggle(self.user.id, &command)
                            && !self.toggle_bucket.try_take() =>
                    {
                        self.reject(
                            ErrorCode::RateLimited,
                            id,
                            format!(
                                "at most {} hand or recording changes a second; slow down",
                                limits.toggles_per_sec
                            ),
                        )
                    }
                    Ok(ClientMessage { id, command }) => {
                        let send = self.room.tx.send(RoomCommand::Control {
                            user: self.user.id,
                            connection: self.connection,
                            id,
                            command,
                        });
                        // A busy room makes this connection wait; what is queued to it
                        // still goes out meanwhile, or it would age towards `slow_consumer`.
                        let sent = tokio::select! {
                            sent = send => sent.is_ok(),
                            Err(_) = std::future::poll_fn(|cx| self.out.poll_write(cx)) => false,
                        };
                        if sent {
                            Flow::Continue
                        } else {
                            Flow::Closed(None)
                        }
                    }
                }
            }
            Message::Binary(bytes) => {
                if bytes.len() > MAX_FRAME_LEN {
                    return self.reject(
                        ErrorCode::PayloadTooLarge,
                        None,
                        format!("audio frames are at most {MAX_FRAME_LEN} bytes"),
                    );
                }
                let frame = match AudioFrame::parse(bytes) {
                    Ok(frame) => frame,
                    Err(e) => return self.reject(ErrorCode::BadFrame, None, e.to_string()),
                };
                if !self.audio_bucket.try_take() {
                    self.shared.metrics.audio_frames_dropped.inc();
                    if std::mem::replace(&mut self.told_audio_rate, true) {
                        return Flow::Continue;
                    }
                    return self.reject(
                        ErrorCode::RateLimited,
                        None,
                        format!(
                            "at most {} audio frames a second (a speaker sends 50, one per 20 ms); extra frames are dropped",
                            limits.audio_per_sec
                        ),
                    );
                }
                // Audio never waits for a busy room: a late frame is worth less than none.
                match self.room.tx.try_send(RoomCommand::Audio {
                    user: self.user.id,
                    connection: self.connection,
                    frame,
                }) {
                    Ok(()) => Flow::Continue,
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        self.shared.metrics.audio_frames_dropped.inc();
                        Flow::Continue
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Flow::Closed(None),
                }
            }
            // Pings are answered by tungstenite; pongs and raw frames need nothing.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_) => {
                Flow::Continue
            }
        }
    }
}

/// What tungstenite reads from and writes to: the socket's read half, and the connection's
/// [`Outgoing`] for its own few frames (pongs, its answer to a close).
struct Socket<S> {
    read: ReadHalf<S>,
    out: Arc<Outgoing>,
}

impl<S: AsyncRead + AsyncWrite> AsyncRead for Socket<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for Socket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.out.write_raw(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
