//! One WebSocket connection in a room: a reader that checks, limits and forwards what the
//! client sends, and a writer that drains the connection's two bounded queues to the socket.
//!
//! Generic over the socket's `Stream`/`Sink`, so a channel can stand in for it in tests.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Error as WsError;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::actor::{Outbound, Peer, Progress, RoomCommand, RoomHandle, monotonic_ms};
use super::rate::TokenBucket;
use crate::protocol::audio::MAX_FRAME_LEN;
use crate::protocol::{AudioFrame, ClientCommand, ClientMessage, ErrorCode, ServerMessage, User};

/// WebSocket close code for a normal close (RFC 6455, 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code for "going away" (server shutdown).
const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a policy violation (abuse, removal).
const CLOSE_POLICY: u16 = 1008;
/// How long a closing connection waits for the client's close frame before dropping it.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// Messages a writer sends before one flush: batching cuts syscalls under load, and the cap
/// keeps one flush from delaying the next frame by more than a few ms.
const WRITE_BATCH: usize = 64;

/// Runs a connection from `addr` until either side closes it.
pub async fn serve<S>(
    socket: S,
    shared: Arc<Shared>,
    user: User,
    room: RoomHandle,
    addr: std::net::IpAddr,
) where
    S: Stream<Item = Result<Message, WsError>>
        + Sink<Message, Error = WsError>
        + Send
        + Unpin
        + 'static,
{
    let limits = &shared.config.limits;
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (control_tx, control_rx) = mpsc::channel(limits.control_queue);
    let (audio_tx, audio_rx) = mpsc::channel(limits.audio_queue_frames);
    let progress = Arc::new(Progress::default());
    progress
        .drained_at_ms
        .store(monotonic_ms(), Ordering::Relaxed);
    let kick = CancellationToken::new();
    let peer = Peer {
        connection,
        addr,
        control_tx: control_tx.clone(),
        audio_tx,
        progress: progress.clone(),
        kick: kick.clone(),
    };
    let (mut sink, stream) = socket.split();

    let (reply_tx, reply_rx) = oneshot::channel();
    let joined = room
        .tx
        .send(RoomCommand::Join {
            user: user.clone(),
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
        let _ = say_goodbye(&mut sink, code, message).await;
        return;
    }

    shared.metrics.connections.inc();
    let closer = kick.clone();
    let writer = async move {
        write_loop(sink, control_rx, audio_rx, progress, closer.clone()).await;
        // The writer has said goodbye (or the socket failed): give the client a moment to
        // answer the close frame, then stop reading from it either way.
        tokio::select! {
            () = tokio::time::sleep(CLOSE_GRACE) => closer.cancel(),
            () = closer.cancelled() => {}
        }
    };
    let reader = read_loop(
        stream,
        &shared,
        &user,
        connection,
        &room,
        &control_tx,
        kick.clone(),
    );
    tokio::join!(writer, async {
        reader.await;
        // The client went away (or was kicked): the room forgets this connection.
        let _ = room
            .tx
            .send(RoomCommand::Gone {
                user: user.id,
                connection,
            })
            .await;
        kick.cancel();
    });
    shared.metrics.connections.dec();
}

async fn read_loop<S>(
    mut stream: S,
    shared: &Shared,
    user: &User,
    connection: u64,
    room: &RoomHandle,
    control_tx: &mpsc::Sender<Outbound>,
    kick: CancellationToken,
) where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let limits = &shared.config.limits;
    let metrics = &shared.metrics;
    let mut control_bucket = TokenBucket::new(limits.control_per_sec, limits.control_burst);
    let mut audio_bucket = TokenBucket::new(limits.audio_per_sec, limits.audio_burst);
    let mut strikes = TokenBucket::new(limits.strikes_per_sec, limits.strikes_burst);
    let mut told_audio_rate = false;
    // Tells the client what was wrong; false when the connection should be closed as abusive.
    let mut reject = |code: ErrorCode, id: Option<serde_json::Value>, message: String| -> bool {
        metrics.errors.inc();
        let msg = ServerMessage::error(id, code, message);
        let _ = control_tx.try_send(Outbound::Text(Utf8Bytes::from(msg.encode())));
        strikes.try_take()
    };
    loop {
        let message = tokio::select! {
            () = kick.cancelled() => return,
            message = stream.next() => message,
        };
        let keep_going = match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => true,
            Some(Ok(Message::Text(text))) => {
                metrics.control_messages_in.inc();
                if text.len() > limits.max_control_bytes {
                    reject(
                        ErrorCode::PayloadTooLarge,
                        None,
                        format!(
                            "control messages are at most {} bytes",
                            limits.max_control_bytes
                        ),
                    )
                } else if !control_bucket.try_take() {
                    reject(
                        ErrorCode::RateLimited,
                        None,
                        format!(
                            "at most {} control messages a second; slow down",
                            limits.control_per_sec
                        ),
                    )
                } else {
                    match ClientMessage::decode(text.as_str()) {
                        Err(e) => reject(e.code(), e.id(), e.to_string()),
                        // Answered here, not by the room: a round trip measures the network.
                        Ok(ClientMessage {
                            id: _,
                            command: ClientCommand::Ping { nonce },
                        }) => {
                            let pong = ServerMessage::Pong { nonce };
                            // A queue too full for a pong is the room actor's to judge
                            // (slow consumer), not abuse.
                            let _ =
                                control_tx.try_send(Outbound::Text(Utf8Bytes::from(pong.encode())));
                            true
                        }
                        Ok(ClientMessage { id, command }) => room
                            .tx
                            .send(RoomCommand::Control {
                                user: user.id,
                                connection,
                                id,
                                command,
                            })
                            .await
                            .is_ok(),
                    }
                }
            }
            Some(Ok(Message::Binary(bytes))) => {
                if bytes.len() > MAX_FRAME_LEN {
                    reject(
                        ErrorCode::PayloadTooLarge,
                        None,
                        format!("audio frames are at most {MAX_FRAME_LEN} bytes"),
                    )
                } else {
                    match AudioFrame::parse(bytes) {
                        Err(e) => reject(ErrorCode::BadFrame, None, e.to_string()),
                        Ok(_) if !audio_bucket.try_take() => {
                            metrics.audio_frames_dropped.inc();
                            if told_audio_rate {
                                true
                            } else {
                                told_audio_rate = true;
                                reject(
                                    ErrorCode::RateLimited,
                                    None,
                                    format!(
                                        "at most {} audio frames a second (a speaker sends 50, one per 20 ms); extra frames are dropped",
                                        limits.audio_per_sec
                                    ),
                                )
                            }
                        }
                        Ok(frame) => {
                            // Audio never waits for a busy room: a late frame is worth less than none.
                            match room.tx.try_send(RoomCommand::Audio {
                                user: user.id,
                                connection,
                                frame,
                            }) {
                                Ok(()) => true,
                                Err(mpsc::error::TrySendError::Full(_)) => {
                                    metrics.audio_frames_dropped.inc();
                                    true
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => false,
                            }
                        }
                    }
                }
            }
        };
        if !keep_going {
            if !room.tx.is_closed() {
                let _ = control_tx.try_send(Outbound::Goodbye(
                    ErrorCode::Abusive,
                    "too many invalid or excessive messages; fix the client and reconnect".into(),
                ));
            }
            return;
        }
    }
}

async fn write_loop<S>(
    mut sink: S,
    mut control_rx: mpsc::Receiver<Outbound>,
    mut audio_rx: mpsc::Receiver<Bytes>,
    progress: Arc<Progress>,
    kick: CancellationToken,
) where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut audio_open = true;
    loop {
        let first = tokio::select! {
            biased;
            () = kick.cancelled() => {
                // Best effort: the goodbye may already be queued, and the socket may be stuck.
                // It may sit behind other messages (the errors an abusive peer earned before
                // it, events for a slow one); those no longer matter, the reason does.
                while let Ok(outbound) = control_rx.try_recv() {
                    if let Outbound::Goodbye(code, message) = outbound {
                        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), say_goodbye(&mut sink, code, message)).await;
                        break;
                    }
                }
                return;
            }
            outbound = control_rx.recv() => match outbound {
                Some(outbound) => Some(outbound),
                None => return,
            },
            frame = audio_rx.recv(), if audio_open => match frame {
                Some(frame) => { sink_feed(&mut sink, Message::Binary(frame), &kick).await; None }
                None => { audio_open = false; None }
            },
        };
        if let Some(outbound) = first
            && !write_outbound(&mut sink, outbound, &kick).await
        {
            return;
        }
        // Write what else is ready, then flush once.
        for _ in 0..WRITE_BATCH {
            if let Ok(outbound) = control_rx.try_recv() {
                if !write_outbound(&mut sink, outbound, &kick).await {
                    return;
                }
            } else if let Ok(frame) = audio_rx.try_recv() {
                if !sink_feed(&mut sink, Message::Binary(frame), &kick).await {
                    return;
                }
            } else {
                break;
            }
        }
        let flushed = tokio::select! {
            () = kick.cancelled() => false,
            result = sink.flush() => result.is_ok(),
        };
        if !flushed {
            return;
        }
        if audio_rx.is_empty() {
            progress
                .drained_at_ms
                .store(monotonic_ms(), Ordering::Relaxed);
        }
    }
}

/// Writes one queued message; false when the connection is to close.
async fn write_outbound<S>(sink: &mut S, outbound: Outbound, kick: &CancellationToken) -> bool
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    match outbound {
        Outbound::Text(text) => sink_feed(sink, Message::Text(text), kick).await,
        Outbound::Goodbye(code, message) => {
            let _ = say_goodbye(sink, code, message).await;
            false
        }
        Outbound::Close => {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CLOSE_NORMAL,
                    reason: Utf8Bytes::from_static("left the room"),
                })))
                .await;
            false
        }
    }
}

async fn sink_feed<S>(sink: &mut S, message: Message, kick: &CancellationToken) -> bool
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    tokio::select! {
        () = kick.cancelled() => false,
        result = sink.feed(message) => result.is_ok(),
    }
}

/// Sends a `goodbye` message and a close frame carrying the same reason.
async fn say_goodbye<S>(sink: &mut S, code: ErrorCode, message: String) -> Result<(), WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let close_code = match code {
        ErrorCode::ServerShutdown => CLOSE_GOING_AWAY,
        ErrorCode::RoomEnded => CLOSE_NORMAL,
        _ => CLOSE_POLICY,
    };
    let text = ServerMessage::Goodbye {
        code,
        message: message.clone(),
    }
    .encode();
    sink.feed(Message::Text(Utf8Bytes::from(text))).await?;
    // A close reason is at most 123 bytes; the code is the short, stable part.
    sink.send(Message::Close(Some(CloseFrame {
        code: close_code,
        reason: Utf8Bytes::from(code.as_str()),
    })))
    .await
}
