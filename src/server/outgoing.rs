//! What a connection sends: WebSocket frames, framed once per message and shared by every
//! receiver, written to the socket by whoever sends them (usually the room actor, at the
//! end of each batch of commands it handles), and left queued only while the socket's
//! kernel buffer is full.
//!
//! A delivery is then at most one `write` on the socket, and under load one write carries
//! several frames: no channel, no task wake-up, no copy. (Waking one writer task per
//! listener cost as much as the write itself: see docs/benchmarks.md.) The connection's own
//! task writes the queue when the socket was full, and is woken only then.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::monotonic_ms;
use crate::protocol::{ErrorCode, ServerMessage};

/// WebSocket close code for a normal close (RFC 6455, 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code for "going away" (server shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a policy violation (abuse, removal).
pub const CLOSE_POLICY: u16 = 1008;
/// Queued frames one write takes at most (one `writev`).
const WRITE_SLICES: usize = 64;

/// One message framed for the wire. Server frames are not masked, so one encoding serves
/// every receiver; clones share the buffer.
#[derive(Clone, Debug)]
pub struct Wire(Bytes);

impl Wire {
    /// A binary message (an audio frame).
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Self::frame(Frame::message(payload, OpCode::Data(Data::Binary), true))
    }

    /// A text message (a control message).
    pub fn text(text: String) -> Self {
        Self::frame(Frame::message(text, OpCode::Data(Data::Text), true))
    }

    /// A ping (the sweep's check that a quiet peer is still there).
    pub fn ping() -> Self {
        Self::frame(Frame::ping(Vec::new()))
    }

    /// A close frame. `reason` is cut to the 123 bytes a close frame can carry.
    pub fn close(code: u16, reason: &str) -> Self {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self::frame(Frame::close(Some(CloseFrame {
            code: code.into(),
            reason: reason[..end].to_string().into(),
        })))
    }

    fn frame(frame: Frame) -> Self {
        let mut bytes = Vec::with_capacity(frame.len());
        // Formatting into a Vec cannot fail.
        let _ = frame.format(&mut bytes);
        Self(bytes.into())
    }

    #[cfg(test)]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The `goodbye` message and the close frame that end a connection for `code`.
pub fn goodbye(code: ErrorCode, message: String) -> [Wire; 2] {
    let close_code = match code {
        ErrorCode::ServerShutdown => CLOSE_GOING_AWAY,
        ErrorCode::RoomEnded => CLOSE_NORMAL,
        _ => CLOSE_POLICY,
    };
    let text = ServerMessage::Goodbye { code, message }.encode();
    // A close reason is short: the code is the stable part.
    [Wire::text(text), Wire::close(close_code, code.as_str())]
}

/// What a frame is, for the queue's limits: audio is dropped when too much is waiting,
/// control never is (a receiver that far behind is disconnected instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Control,
}

/// What the connection's task learns from [`Outgoing::poll_drive`].
#[derive(Debug, PartialEq, Eq)]
pub enum Drive {
    /// The connection's last frames are queued: time its close from now.
    Closing,
    /// Everything is written, the close frame included.
    Flushed,
}

/// Why a frame was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its limit of this kind of frame; the socket has been backed up
    /// since this many ms on the server's monotonic clock ([`monotonic_ms`]).
    Full { backed_up_since_ms: u64 },
    /// The connection is closing or closed.
    Closed,
}

/// The sending side of one connection, shared by the room actor and the connection's task.
pub struct Outgoing {
    state: Mutex<State>,
    audio_limit: usize,
    control_limit: usize,
}

type Socket = Pin<Box<dyn AsyncWrite + Send>>;

struct State {
    /// None once a write failed.
    socket: Option<Socket>,
    /// Frames not yet written; the first may be partly written.
    queue: VecDeque<(Wire, Kind)>,
    /// Bytes of the first queued frame already written.
    written: usize,
    audio: usize,
    control: usize,
    /// Set once a close frame is queued: nothing is taken after it.
    closing: bool,
    /// Whether the connection's task has been told of `closing`.
    closing_told: bool,
    /// Set while the socket is full: the connection's task writes the queue then.
    backed_up: bool,
    /// When the socket last filled up.
    backed_up_since_ms: u64,
    /// The connection's task, woken when the queue needs it.
    task: Option<Waker>,
}

impl Outgoing {
    /// Sends to `socket`, which should not buffer (a TCP stream: each write goes out).
    pub fn new(
        socket: impl AsyncWrite + Send + 'static,
        audio_limit: usize,
        control_limit: usize,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                socket: Some(Box::pin(socket)),
                queue: VecDeque::new(),
                written: 0,
                audio: 0,
                control: 0,
                closing: false,
                closing_told: false,
                backed_up: false,
                backed_up_since_ms: 0,
                task: None,
            }),
            audio_limit,
            control_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still a
        // consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `wire` now if the socket takes it, or queues it behind what is waiting.
    pub fn send(&self, wire: &Wire, kind: Kind) -> Result<(), Refused> {
        let mut state = self.lock();
        self.admit(&mut state, kind)?;
        state.push(wire.clone(), kind);
        state.write_now();
        Ok(())
    }

    /// Queues `wire` without writing it yet, so that one write can carry several frames.
    /// True when the caller must [`flush`](Self::flush) (the queue was idle); otherwise a
    /// flush is already owed, or the connection's task writes when the socket has room.
    pub fn queue(&self, wire: &Wire, kind: Kind) -> Result<bool, Refused> {
        let mut state = self.lock();
        self.admit(&mut state, kind)?;
        let idle = state.queue.is_empty() && !state.backed_up;
        state.push(wire.clone(), kind);
        Ok(idle)
    }

    /// Writes what [`queue`](Self::queue) left, unless the socket is full (then the
    /// connection's task does, when it has room).
    pub fn flush(&self) {
        let mut state = self.lock();
        if !state.backed_up {
            state.write_now();
        }
    }

    /// Whether the queue takes one more frame of this kind. A queue at its limit that
    /// only waits for a flush (a batch longer than the limit) is written first: the
    /// limits are for sockets that are full.
    fn admit(&self, state: &mut State, kind: Kind) -> Result<(), Refused> {
        let at_limit = |state: &State| match kind {
            Kind::Audio => state.audio >= self.audio_limit,
            Kind::Control => state.control >= self.control_limit,
        };
        if !state.closing && !state.backed_up && at_limit(state) {
            state.write_now();
        }
        if state.closing || state.socket.is_none() {
            return Err(Refused::Closed);
        }
        if at_limit(state) {
            // Only a full socket leaves frames queued after a write: this is backed up.
            return Err(Refused::Full {
                backed_up_since_ms: state.backed_up_since_ms,
            });
        }
        Ok(())
    }

    /// Queues the frames that end the connection (a goodbye, a close frame) and writes
    /// what it can; nothing is sent after them. Limits do not apply. False if the
    /// connection was already closing.
    pub fn close_with(&self, wires: impl IntoIterator<Item = Wire>) -> bool {
        self.close(wires, false)
    }

    /// Like [`close_with`](Self::close_with), for a connection too far behind for what is
    /// queued to matter: that is dropped (all but a frame already partly written), so the
    /// goodbye can go at once.
    pub fn abandon_with(&self, wires: impl IntoIterator<Item = Wire>) -> bool {
        self.close(wires, true)
    }

    fn close(&self, wires: impl IntoIterator<Item = Wire>, abandon: bool) -> bool {
        let mut state = self.lock();
        if state.closing || state.socket.is_none() {
            return false;
        }
        if abandon {
            let keep = usize::from(state.written > 0);
            state.queue.truncate(keep);
            let kept = state.queue.front().map(|(_, kind)| *kind);
            state.audio = usize::from(kept == Some(Kind::Audio));
            state.control = usize::from(kept == Some(Kind::Control));
        }
        for wire in wires {
            state.push(wire, Kind::Control);
        }
        state.closing = true;
        state.write_now();
        // The task times the close from now.
        if let Some(task) = &state.task {
            task.wake_by_ref();
        }
        true
    }

    /// Bytes from the WebSocket library itself (pongs, its answer to a close): queued as
    /// control; dropped unsent once the connection is closing.
    pub fn write_raw(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut state = self.lock();
        if state.socket.is_none() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if !state.closing {
            if state.control >= self.control_limit {
                return Err(io::Error::other(
                    "the client is not reading what it is sent",
                ));
            }
            state.push(Wire(Bytes::copy_from_slice(bytes)), Kind::Control);
            state.write_now();
        }
        Ok(bytes.len())
    }

    /// Writes what is queued, for the connection's task. Ready when the connection starts
    /// closing and again once everything is written ([`Drive`]); Ready(Err) if the socket
    /// failed; otherwise Pending, and the task is woken when there is work.
    pub fn poll_drive(&self, cx: &mut Context<'_>) -> Poll<io::Result<Drive>> {
        let mut state = self.lock();
        state.register(cx);
        if state.socket.is_none() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let written = state.pump(cx);
        if state.closing && !state.closing_told {
            state.closing_told = true;
            return Poll::Ready(Ok(Drive::Closing));
        }
        match written {
            Poll::Ready(Ok(())) if state.closing => Poll::Ready(Ok(Drive::Flushed)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    /// Writes what is queued, for the connection's task while it waits for something else:
    /// Ready only if the socket failed.
    pub fn poll_write(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        state.register(cx);
        if state.socket.is_none() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        match state.pump(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
        }
    }

    /// Shuts the socket's sending side (a FIN after what was written).
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.lock().socket.as_mut() {
            Some(socket) => socket.as_mut().poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Writes the last frames, for a connection that is closing: done when they are
    /// written or the socket fails.
    pub async fn finish(&self) {
        while let Ok(Drive::Closing) = std::future::poll_fn(|cx| self.poll_drive(cx)).await {}
    }

    /// Frames waiting for the socket.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

impl State {
    /// Remembers the connection's task, to be woken when the queue needs it.
    fn register(&mut self, cx: &Context<'_>) {
        if self.task.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            self.task = Some(cx.waker().clone());
        }
    }

    fn push(&mut self, wire: Wire, kind: Kind) {
        self.queue.push_back((wire, kind));
        match kind {
            Kind::Audio => self.audio += 1,
            Kind::Control => self.control += 1,
        }
    }

    /// Writes the queue on the caller's time. If the socket is full, whoever polls next
    /// must be the connection's task (the no-op waker here registers nothing useful), so
    /// it is woken.
    fn write_now(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        // Unconstrained: tokio's budget would otherwise refuse all but the first 128
        // writes of a fan-out, as if each socket were full.
        let written = {
            let pump = std::future::poll_fn(|cx| self.pump(cx));
            std::pin::pin!(tokio::task::unconstrained(pump))
                .poll(&mut Context::from_waker(Waker::noop()))
        };
        if (written.is_pending() || self.socket.is_none())
            && let Some(task) = &self.task
        {
            task.wake_by_ref();
        }
    }

    /// Writes queued frames until the queue is empty or the socket is full (then it is
    /// backed up until the queue empties).
    fn pump(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let Some(socket) = self.socket.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            };
            let result = if self.queue.len() == 1 {
                socket
                    .as_mut()
                    .poll_write(cx, &self.queue[0].0.0[self.written..])
            } else {
                let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                let mut n = 0;
                for (i, (wire, _)) in self.queue.iter().take(WRITE_SLICES).enumerate() {
                    let skip = if i == 0 { self.written } else { 0 };
                    slices[i] = IoSlice::new(&wire.0[skip..]);
                    n = i + 1;
                }
                socket.as_mut().poll_write_vectored(cx, &slices[..n])
            };
            match result {
                Poll::Pending => {
                    if !self.backed_up {
                        self.backed_up = true;
                        self.backed_up_since_ms = monotonic_ms();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    // The peer is gone: nothing queued can be delivered.
                    self.socket = None;
                    self.queue.clear();
                    (self.audio, self.control, self.written) = (0, 0, 0);
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                Poll::Ready(Ok(mut n)) => {
                    while n > 0 {
                        let Some((wire, kind)) = self.queue.front() else {
                            break;
                        };
                        let left = wire.0.len() - self.written;
                        if n < left {
                            self.written += n;
                            break;
                        }
                        n -= left;
                        self.written = 0;
                        match kind {
                            Kind::Audio => self.audio -= 1,
                            Kind::Control => self.control -= 1,
                        }
                        self.queue.pop_front();
                    }
                }
            }
        }
        self.backed_up = false;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// Drives `out` until it has closed, on the test's own task.
    async fn drive(out: &Outgoing) -> io::Result<()> {
        loop {
            if std::future::poll_fn(|cx| out.poll_drive(cx)).await? == Drive::Flushed {
                return Ok(());
            }
        }
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_through_a_socket_that_takes_a_few_bytes_at_a_time() {
        // 64 bytes of buffer: most frames go out in pieces, most sends find it full.
        let (server, client) = tokio::io::duplex(64);
        let out = Outgoing::new(server, 1_000, 1_000);
        let mut expected = Vec::new();
        for i in 0..200u32 {
            if i % 7 == 0 {
                let text = format!("{{\"type\":\"event\",\"n\":{i}}}");
                out.send(&Wire::text(text.clone()), Kind::Control)
                    .expect("below the limit");
                expected.push(Message::Text(text.into()));
            } else {
                let payload = Bytes::from(vec![i as u8; 90 + (i as usize % 30)]);
                out.send(&Wire::binary(payload.clone()), Kind::Audio)
                    .expect("below the limit");
                expected.push(Message::Binary(payload));
            }
        }
        assert!(out.queued() > 100, "the socket should have backed up");
        let [hello, close] = goodbye(ErrorCode::RoomEnded, "the host ended the room".into());
        assert!(out.close_with([hello, close]));
        let reader = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let mut got = Vec::new();
            while let Some(Ok(message)) = ws.next().await {
                got.push(message);
            }
            got
        });
        drive(&out).await.expect("the socket stays up");
        // The server's side of the socket closes; the client's read ends.
        drop(out);
        let got = reader.await.expect("the reader task finishes");
        assert_eq!(got[..200], expected[..]);
        assert!(
            matches!(&got[200], Message::Text(t) if t.contains("\"goodbye\"") && t.contains("room_ended")),
            "{:?}",
            got[200]
        );
        assert!(
            matches!(&got[201], Message::Close(Some(f)) if u16::from(f.code) == CLOSE_NORMAL),
            "{:?}",
            got[201]
        );
    }

    #[tokio::test]
    async fn a_fan_out_writes_through_to_every_socket_that_has_room() {
        // More sends in one poll of one task than tokio's cooperative budget (128).
        let (server, _client) = tokio::io::duplex(1 << 20);
        let out = Outgoing::new(server, 10, 10);
        let audio = Wire::binary(vec![0u8; 100]);
        for _ in 0..1_000 {
            out.send(&audio, Kind::Audio).expect("the socket has room");
            assert_eq!(out.queued(), 0);
        }
    }

    #[tokio::test]
    async fn queued_frames_wait_for_a_flush_and_then_go_out_in_order() {
        let (server, mut client) = tokio::io::duplex(4096);
        let out = Outgoing::new(server, 10, 10);
        let one = Wire::binary(vec![1u8; 10]);
        let two = Wire::binary(vec![2u8; 10]);
        assert_eq!(out.queue(&one, Kind::Audio), Ok(true));
        // Already owed a flush: the caller need not remember it twice.
        assert_eq!(out.queue(&two, Kind::Audio), Ok(false));
        assert_eq!(out.queued(), 2);
        out.flush();
        assert_eq!(out.queued(), 0);
        let mut got = vec![0u8; 24];
        client
            .read_exact(&mut got)
            .await
            .expect("both frames were written");
        assert_eq!(&got[..12], one.as_bytes());
        assert_eq!(&got[12..], two.as_bytes());
    }

    #[tokio::test]
    async fn a_batch_longer_than_the_limit_is_written_not_refused_when_the_socket_has_room() {
        let (server, _client) = tokio::io::duplex(1 << 20);
        let out = Outgoing::new(server, 3, 3);
        let audio = Wire::binary(vec![0u8; 100]);
        for _ in 0..10 {
            out.queue(&audio, Kind::Audio).expect("the socket has room");
        }
        out.flush();
        assert_eq!(out.queued(), 0);
    }

    #[tokio::test]
    async fn a_slow_consumers_goodbye_skips_the_stale_queue_but_finishes_a_partly_written_frame() {
        let (server, client) = tokio::io::duplex(50);
        let out = Outgoing::new(server, 100, 100);
        for i in 0..20u8 {
            out.send(&Wire::binary(vec![i; 30]), Kind::Audio)
                .expect("below the limit");
        }
        // 50 bytes went out: one whole frame (32 bytes) and part of the second.
        assert_eq!(out.queued(), 19);
        assert!(out.abandon_with(goodbye(
            ErrorCode::SlowConsumer,
            "your connection could not keep up".into()
        )));
        assert_eq!(out.queued(), 3);
        let reader = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let mut got = Vec::new();
            while let Some(Ok(message)) = ws.next().await {
                got.push(message);
            }
            got
        });
        assert_eq!(
            std::future::poll_fn(|cx| out.poll_drive(cx)).await.ok(),
            Some(Drive::Closing)
        );
        drive(&out).await.expect("the socket stays up");
        drop(out);
        let got = reader.await.expect("the reader task finishes");
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], Message::Binary(vec![0u8; 30].into()));
        assert_eq!(got[1], Message::Binary(vec![1u8; 30].into()));
        assert!(matches!(&got[2], Message::Text(t) if t.contains("slow_consumer")));
        assert!(matches!(&got[3], Message::Close(Some(f)) if u16::from(f.code) == CLOSE_POLICY));
    }

    #[tokio::test]
    async fn audio_is_refused_past_its_limit_but_control_still_goes_in() {
        let (server, mut client) = tokio::io::duplex(16);
        let out = Outgoing::new(server, 3, 2);
        let audio = Wire::binary(vec![1u8; 40]);
        for _ in 0..3 {
            out.send(&audio, Kind::Audio).expect("below the limit");
        }
        assert!(matches!(
            out.send(&audio, Kind::Audio),
            Err(Refused::Full { .. })
        ));
        let event = Wire::text("{}".into());
        out.send(&event, Kind::Control).expect("below the limit");
        out.send(&event, Kind::Control).expect("below the limit");
        assert!(matches!(
            out.send(&event, Kind::Control),
            Err(Refused::Full { .. })
        ));
        // Once the client reads, the queue drains and takes audio again.
        let mut sink = vec![0u8; 4096];
        let drained = async {
            let mut total = 0;
            let expected = 3 * audio.as_bytes().len() + 2 * event.as_bytes().len();
            while total < expected {
                total += client.read(&mut sink).await.expect("the pipe stays open");
            }
            total
        };
        let (_, total) = tokio::join!(
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                // The drive never finishes (the connection is not closing): stop it once
                // the reader has everything.
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(300), drive(&out)).await;
            }),
            drained
        );
        assert_eq!(total, 3 * 42 + 2 * 4);
        assert_eq!(out.queued(), 0);
        out.send(&audio, Kind::Audio).expect("the queue drained");
    }

    #[tokio::test]
    async fn nothing_is_taken_after_the_close_frame_or_once_the_socket_has_failed() {
        let (server, client) = tokio::io::duplex(1024);
        let out = Outgoing::new(server, 10, 10);
        assert!(out.close_with([Wire::close(CLOSE_NORMAL, "left the room")]));
        assert!(!out.close_with([Wire::close(CLOSE_NORMAL, "again")]));
        assert_eq!(
            out.send(&Wire::text("{}".into()), Kind::Control),
            Err(Refused::Closed)
        );
        // The library's own replies are dropped quietly while closing.
        assert_eq!(out.write_raw(b"pong").expect("taken while closing"), 4);
        drive(&out).await.expect("the socket stays up");
        drop(client);
        let (server, client) = tokio::io::duplex(1024);
        drop(client);
        let out = Outgoing::new(server, 10, 10);
        // The first write finds the peer gone; from then on the connection is closed.
        let _ = out.send(&Wire::text("{}".into()), Kind::Control);
        assert_eq!(
            out.send(&Wire::text("{}".into()), Kind::Control),
            Err(Refused::Closed)
        );
        assert!(drive(&out).await.is_err());
    }

    #[test]
    fn a_long_close_reason_is_cut_at_a_character_boundary() {
        let wire = Wire::close(CLOSE_POLICY, &"é".repeat(100));
        // 2-byte header, 2-byte code, at most 123 bytes of reason (61 whole "é").
        assert_eq!(wire.as_bytes().len(), 2 + 2 + 122);
    }
}
