//! Test harness: a real `hallway serve` process on 127.0.0.1:0, a REST client and live
//! WebSocket clients speaking the real wire.
#![allow(dead_code, clippy::unwrap_used)]

pub mod nats;
pub mod postgres;
pub mod relay;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hallway::identity::{self, DeviceKey};
use hallway::protocol::handle::handle_from_name;
use hallway::protocol::{AudioFrame, AudioHeader, RoomDetail, ServerMessage, Session, UserId};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a message it expects before failing. Generous: CI is slow.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A `hallway serve` child process with a database of its own, killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
    /// The lines the server printed after its first (the owner invitation, if any).
    pub stdout: Option<BufReader<std::process::ChildStdout>>,
    /// Holds the database; a restarted server is given the same one.
    pub data: std::sync::Arc<tempfile::TempDir>,
}

/// Accounts made by this test process, for unique handles.
static ACCOUNTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Self {
        Self::start_listening("127.0.0.1:0", args)
    }

    /// A server on a given address (to restart one on the port it had), with a new database.
    pub fn start_listening(listen: &str, args: &[&str]) -> Self {
        Self::start_on_data(
            std::sync::Arc::new(tempfile::tempdir().unwrap()),
            listen,
            args,
        )
    }

    /// A server on the database of `data` (a restart keeps its accounts).
    pub fn start_on_data(
        data: std::sync::Arc<tempfile::TempDir>,
        listen: &str,
        args: &[&str],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hallway"));
        command
            .args(["serve", "--listen", listen, "--data"])
            .arg(data.path().join("server.db"))
            .args(args);
        Self::start_command(command, data)
    }

    /// A server with these arguments after `serve --listen 127.0.0.1:0` and nothing else
    /// (they name its data: a PostgreSQL URL, say).
    pub fn start_raw(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hallway"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        Self::start_command(command, std::sync::Arc::new(tempfile::tempdir().unwrap()))
    }

    /// A server started by a shell `script`, in which `$0` is the `hallway` binary (to set
    /// limits with `ulimit` first) and `$HALLWAY_DATA` its database.
    pub fn start_in_shell(script: &str) -> Self {
        let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let mut command = Command::new("sh");
        command
            .args(["-c", script, env!("CARGO_BIN_EXE_hallway")])
            .env("HALLWAY_DATA", data.path().join("server.db"));
        Self::start_command(command, data)
    }

    fn start_command(mut command: Command, data: std::sync::Arc<tempfile::TempDir>) -> Self {
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("HALLWAY_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hallway serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_string();
        Self {
            child,
            base,
            http: reqwest::Client::new(),
            stdout: Some(stdout),
            data,
        }
    }

    /// The owner invitation an invite-only server prints on its second line.
    pub fn owner_invitation(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .as_mut()
            .expect("stdout")
            .read_line(&mut line)
            .unwrap();
        let link = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|l| l.contains("/invite/"))
            .unwrap_or_else(|| panic!("no owner invitation: {line:?}"));
        link.rsplit('/').next().unwrap().to_string()
    }

    /// The host as a device signs it (`Host` of our requests).
    pub fn origin(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    }

    /// Answers a fresh challenge with `key`.
    pub async fn signed(&self, key: &DeviceKey) -> Value {
        let (status, challenge) = self.post_json("/api/v2/challenges", None, json!({})).await;
        assert_eq!(status, 200, "{challenge}");
        let nonce = challenge["nonce"].as_str().unwrap().to_string();
        let signature = key.sign_in(&self.origin(), nonce.as_bytes());
        json!({ "nonce": nonce, "signature": identity::b64(&signature) })
    }

    /// Tries to create an account for `key`; the raw answer.
    pub async fn try_account(
        &self,
        key: &DeviceKey,
        handle: &str,
        name: &str,
        invitation: Option<&str>,
    ) -> (u16, Value) {
        let public = key.public();
        let mut body = self.signed(key).await;
        body["handle"] = json!(handle);
        body["name"] = json!(name);
        body["device"] = json!({
            "sign_key": identity::b64(&public.sign),
            "agree_key": identity::b64(&public.agree),
            "label": "test",
        });
        if let Some(code) = invitation {
            body["invitation"] = json!(code);
        }
        self.post_json("/api/v2/accounts", None, body).await
    }

    /// Signs `key` in; the raw answer.
    pub async fn try_sign_in(&self, key: &DeviceKey) -> (u16, Value) {
        let mut body = self.signed(key).await;
        body["sign_key"] = json!(identity::b64(&key.public().sign));
        self.post_json("/api/v2/sessions", None, body).await
    }

    /// A new account named `name` on a new device key; panics unless the server grants it.
    pub async fn session(&self, name: &str) -> Session {
        self.account(name, None).await.0
    }

    /// A new account with an invitation; the session and its device key.
    pub async fn account(&self, name: &str, invitation: Option<&str>) -> (Session, DeviceKey) {
        let key = DeviceKey::generate();
        let n = ACCOUNTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handle = handle_from_name(name, &format!("_{n}"));
        let (status, body) = self
            .try_account(&key, handle.as_str(), name, invitation)
            .await;
        assert_eq!(status, 200, "{body}");
        (serde_json::from_value(body).unwrap(), key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, room: &str) -> String {
        format!(
            "{}/api/v2/rooms/{room}/live",
            self.base.replacen("http", "ws", 1)
        )
    }

    /// Creates a room as `host`; returns its id.
    pub async fn create_room(&self, host: &Session, title: &str) -> String {
        let resp = self
            .http
            .post(self.url("/api/v2/rooms"))
            .bearer_auth(&host.token)
            .json(&json!({ "title": title }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        let detail: RoomDetail = resp.json().await.unwrap();
        detail.summary.id
    }

    pub async fn room(&self, id: &str) -> RoomDetail {
        let resp = self
            .http
            .get(self.url(&format!("/api/v2/rooms/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// GET a path; returns the status and the JSON body (Null when not JSON).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST a raw body; returns the status and the JSON body.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Any method; returns the status and the JSON body (Null when there is none).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// POST a JSON value; returns the status and the JSON body.
    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.post_raw(path, token, body.to_string()).await
    }

    /// The whole /metrics page.
    pub async fn metrics_text(&self) -> String {
        let resp = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// The value of one metric from /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Sends SIGINT, as Ctrl-C would.
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit on its own; panics if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server was still running {within:?} after being told to stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Checks a REST error: the status, and a body of exactly `{"error":{"code","message"}}`
/// with this code and a non-empty message.
#[track_caller]
pub fn assert_api_error(got: &(u16, Value), status: u16, code: &str) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "status for {body}");
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(object.len(), 1, "only an \"error\" field: {body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    assert_eq!(error.len(), 2, "error has code and message only: {body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a human message: {body}"
    );
}

/// The next event `wanted` picks from a client library session; panics after [`PATIENCE`]
/// without one, or when the session ends.
pub async fn next_event(
    events: &mut tokio::sync::mpsc::Receiver<hallway::net::NetEvent>,
    wanted: impl Fn(&hallway::net::NetEvent) -> bool,
) -> hallway::net::NetEvent {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("timed out waiting for a net event")
            .expect("the session ended");
        if wanted(&event) {
            return event;
        }
    }
}

/// Retries `check` until it returns true; panics after [`PATIENCE`]. For state that is only
/// visible by asking (REST), where no message can be awaited.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A participant connected to a room's live WebSocket.
pub struct Live {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub me: UserId,
    pub snapshot: RoomDetail,
}

/// Opens the WebSocket with a token; returns the HTTP refusal's status if it is refused.
pub async fn connect_raw(
    server: &TestServer,
    room: &str,
    token: Option<&str>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, u16> {
    let mut request = server.ws_url(room).into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Opens the WebSocket from a given loopback address; an HTTP refusal comes back as its
/// status and JSON body.
pub async fn connect_from(
    server: &TestServer,
    room: &str,
    token: &str,
    from: std::net::Ipv4Addr,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, (u16, Value)> {
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut request = server.ws_url(room).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(refusal_of(&resp)),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// A refused handshake's status and JSON body (Null when it has none).
fn refusal_of(resp: &tungstenite::http::Response<Option<Vec<u8>>>) -> (u16, Value) {
    let body = resp
        .body()
        .as_deref()
        .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (resp.status().as_u16(), body)
}

/// Frames a client library session played, by sequence number, with their payloads.
pub type Heard = std::sync::Arc<std::sync::Mutex<Vec<(u32, Vec<u8>)>>>;

/// An audio handler for `LiveSession` that keeps what it is given, and what it kept.
pub fn hearing() -> (Heard, hallway::net::live::AudioHandler) {
    let heard: Heard = Default::default();
    let sink = heard.clone();
    let on_audio = Box::new(move |frame: AudioFrame| {
        sink.lock()
            .unwrap()
            .push((frame.header.sequence, frame.opus().to_vec()));
    });
    (heard, on_audio)
}

/// An audio frame as a client sends it: sequence `sequence`, its timestamp 960 samples a
/// frame, voice at -20 dBov.
pub fn audio_frame(sequence: u32, opus: &[u8]) -> AudioFrame {
    let header = AudioHeader {
        speaker_id: 0,
        sequence,
        timestamp_48k: sequence.wrapping_mul(960),
        level: 20,
        voice: true,
    };
    AudioFrame::new(header, opus).unwrap()
}

/// A client on the real client library, signed in on `server` with a device key of its
/// own (an account named `name` made for it).
pub async fn signed_in_client(server: &TestServer, name: &str) -> hallway::net::Api {
    use hallway::net::{Api, Credentials, Enroll};
    let api = Api::new(url::Url::parse(&server.base).unwrap()).with_credentials(Credentials {
        key: std::sync::Arc::new(DeviceKey::generate()),
        enroll: Some(Enroll {
            name: name.into(),
            ..Enroll::default()
        }),
    });
    api.sign_in().await.unwrap();
    api
}

/// Joins a private room with its share link's secret, or returns the refusal's status and
/// body.
pub async fn connect_shared(
    server: &TestServer,
    room: &str,
    token: &str,
    share: &str,
) -> Result<Live, (u16, Value)> {
    let url = format!("{}?share={share}", server.ws_url(room));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => {
            let mut live = Live {
                ws,
                me: 0,
                snapshot: empty_detail(),
            };
            if let ServerMessage::RoomSnapshot { you, room, .. } = live.next().await {
                live.me = you;
                live.snapshot = room;
            }
            Ok(live)
        }
        Err(tungstenite::Error::Http(resp)) => Err(refusal_of(&resp)),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Tries to open the WebSocket and expects an HTTP refusal: returns its status and JSON body.
pub async fn connect_refusal(server: &TestServer, room: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = server.ws_url(room).into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => panic!("the upgrade to room {room} was accepted"),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            (status, body)
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Joins with a socket made to fill up fast, for a client that then stops reading: a small
/// receive buffer (a small window) and a small segment size. On loopback the segment size
/// is 64 KiB, and the kernel sizes the server's send buffer from it (megabytes, minutes of
/// audio); with 536-byte segments it stays a few tens of KiB.
pub async fn connect_small_buffer(
    server: &TestServer,
    room: &str,
    token: &str,
) -> WebSocketStream<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    // Both must be set before connecting: they are announced in the SYN.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_tcp_mss(536).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = TcpSocket::from_std_stream(socket.into());
    let stream = socket.connect(addr).await.unwrap();
    let mut request = server.ws_url(room).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap()
        .0
}

impl Live {
    /// Joins and reads the snapshot.
    pub async fn join(server: &TestServer, room: &str, session: &Session) -> Self {
        let ws = connect_raw(server, room, Some(&session.token))
            .await
            .unwrap();
        Self::joined(ws, session).await
    }

    /// Joins from another loopback address (127.0.0.2, ...), as if from another machine.
    pub async fn join_from(
        server: &TestServer,
        room: &str,
        session: &Session,
        from: std::net::Ipv4Addr,
    ) -> Self {
        let ws = connect_from(server, room, &session.token, from)
            .await
            .unwrap_or_else(|refusal| panic!("refused: {refusal:?}"));
        Self::joined(ws, session).await
    }

    /// Reads the snapshot on a freshly opened connection.
    pub async fn joined(ws: WebSocketStream<MaybeTlsStream<TcpStream>>, session: &Session) -> Self {
        let mut live = Self {
            ws,
            me: session.user.id,
            snapshot: empty_detail(),
        };
        match live.next().await {
            ServerMessage::RoomSnapshot { you, room, .. } => {
                assert_eq!(you, session.user.id);
                live.snapshot = room;
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
        live
    }

    /// The next message of any kind, control or audio, within [`PATIENCE`].
    pub async fn next_any(&mut self) -> Message {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("connection closed")
                .expect("websocket error");
            if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
                return msg;
            }
        }
    }

    /// The next control message, skipping audio and speaking indicators.
    pub async fn next(&mut self) -> ServerMessage {
        loop {
            match self.next_any().await {
                Message::Text(text) => {
                    let msg = ServerMessage::decode(&text)
                        .unwrap_or_else(|e| panic!("bad server message {text}: {e}"));
                    if !matches!(msg, ServerMessage::Speaking { .. }) {
                        return msg;
                    }
                }
                Message::Binary(_) => {}
                Message::Close(frame) => panic!("closed: {frame:?}"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Skips messages until one matches; panics on timeout.
    pub async fn wait_for(
        &mut self,
        mut wanted: impl FnMut(&ServerMessage) -> bool,
    ) -> ServerMessage {
        loop {
            let msg = self.next().await;
            if wanted(&msg) {
                return msg;
            }
        }
    }

    /// The next audio frame, skipping control messages.
    pub async fn next_audio(&mut self) -> AudioFrame {
        loop {
            if let Message::Binary(bytes) = self.next_any().await {
                return AudioFrame::parse(bytes).unwrap();
            }
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.ws
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Sends a command with an id and waits for its `ok` (panicking on an `error`).
    pub async fn command(&mut self, mut value: Value) {
        value["id"] = json!("cmd");
        self.send(value.clone()).await;
        match self
            .wait_for(|m| {
                matches!(
                    m,
                    ServerMessage::Ok { .. } | ServerMessage::Error { id: Some(_), .. }
                )
            })
            .await
        {
            ServerMessage::Ok { .. } => {}
            other => panic!("{value} was refused: {other:?}"),
        }
    }

    /// Sends a command with an id and returns the error code it is refused with.
    pub async fn refused(&mut self, mut value: Value) -> String {
        value["id"] = json!("cmd");
        self.send(value.clone()).await;
        match self
            .wait_for(|m| {
                matches!(
                    m,
                    ServerMessage::Ok { .. } | ServerMessage::Error { id: Some(_), .. }
                )
            })
            .await
        {
            ServerMessage::Error { code, .. } => code.as_str().to_string(),
            other => panic!("{value} was accepted: {other:?}"),
        }
    }

    /// Sends a command with this request id and returns the `ok` or `error` that echoes it.
    pub async fn answer(&mut self, mut value: Value, id: Value) -> ServerMessage {
        value["id"] = id.clone();
        self.send(value).await;
        self.wait_for(|m| match m {
            ServerMessage::Ok { id: got } => *got == id,
            ServerMessage::Error { id: Some(got), .. } => *got == id,
            _ => false,
        })
        .await
    }

    /// Sends a ping and waits for its pong: proof the connection still works.
    pub async fn ping(&mut self, nonce: u64) {
        self.send(json!({"type": "ping", "nonce": nonce})).await;
        self.wait_for(|m| matches!(m, ServerMessage::Pong { nonce: n } if *n == nonce))
            .await;
    }

    /// Sends one audio frame with this sequence number and payload.
    pub async fn send_audio(&mut self, sequence: u32, opus: &[u8]) {
        let frame = audio_frame(sequence, opus);
        self.ws
            .send(Message::Binary(frame.bytes().clone()))
            .await
            .unwrap();
    }

    /// Reads until the server closes the socket (past the close frame, to the end of the
    /// TCP stream, so the server has let go of the connection); returns the goodbye code if
    /// one came first.
    pub async fn closed(&mut self) -> Option<String> {
        let mut goodbye = None;
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                None | Some(Err(_)) => return goodbye,
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ServerMessage::Goodbye { code, .. }) = ServerMessage::decode(&text) {
                        goodbye = Some(code.as_str().to_string());
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

fn empty_detail() -> RoomDetail {
    serde_json::from_value(json!({
        "id": "", "title": "", "host": null, "speakers": [], "listener_count": 0,
        "created_at_ms": 0, "participants": [], "hands": [], "stage_limit": 0
    }))
    .unwrap()
}

/// A room with a host and `n` listeners, all connected.
pub async fn room_with(server: &TestServer, listeners: &[&str]) -> (String, Live, Vec<Live>) {
    let host_session = server.session("Hera").await;
    let room = server.create_room(&host_session, "test room").await;
    let host = Live::join(server, &room, &host_session).await;
    let mut others = Vec::new();
    for name in listeners {
        let session = server.session(name).await;
        others.push(Live::join(server, &room, &session).await);
    }
    (room, host, others)
}
