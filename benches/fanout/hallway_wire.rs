//! The Hallway side of the load: starts `hallway serve` pinned to a core, signs users in over
//! REST, and speaks the live WebSocket with a minimal hand-rolled client (handshake, frame
//! parsing in place), so that one generator thread can receive hundreds of thousands of
//! frames a second without an allocation per message.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

use super::stats::Stats;

/// A running `hallway serve`, killed when dropped.
pub struct HallwayServer {
    child: Child,
    _stdout: ChildStdout,
    pub addr: String,
    http: reqwest::Client,
}

/// Fan-out shards for the servers this run starts (`--shards`); unset: one (the room's
/// fan-out on one core, as before shards, and as Mumble's server runs it).
pub static SHARDS: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

/// Whether `bin serve` takes `--fanout-shards` (builds from before it do not).
fn supports_shards(bin: &str) -> bool {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--fanout-shards"))
}

/// Whether `bin serve` takes the per-address limit flags (builds from before them do not).
fn supports_limit_flags(bin: &str) -> bool {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--ping-after"))
}

impl HallwayServer {
    /// Starts the server on 127.0.0.1:0, on `cpu` when given, and reads its address.
    pub fn start(cpu: Option<usize>) -> Self {
        let bin = std::env::var("HALLWAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hallway").to_string());
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), &bin]);
                c
            }
            None => Command::new(&bin),
        };
        // The generator opens every connection from 127.0.0.1: lift the per-address limits,
        // which are for strangers on the internet, not for a load generator in the lab
        // (benches/signin.rs measures what they cost). The generator's listeners never send
        // and do not answer pings; Hallway's own client pings every 2 s, so the server never
        // pings it: keep the server from pinging (then closing) silent listeners on long
        // set-ups. Builds from before these flags (HALLWAY_BIN, for comparisons) get none.
        command.args(["serve", "--listen", "127.0.0.1:0", "--data", ":memory:"]);
        if supports_limit_flags(&bin) {
            command.args(super::packets::LIFTED_LIMITS);
        }
        if supports_shards(&bin) {
            match SHARDS.get() {
                Some(shards) => {
                    command.args(["--fanout-shards", &shards.to_string(), "--shard-from", "1"])
                }
                None => command.args(["--fanout-shards", "1"]),
            };
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hallway serve (set HALLWAY_BIN to its path)");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the server's first line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|url| url.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"))
            .to_string();
        Self {
            child,
            _stdout: stdout.into_inner(),
            addr,
            http: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `count` new accounts, signed in: (token, user id).
    pub async fn sessions(&self, prefix: &str, count: usize) -> Vec<(String, u32)> {
        futures_util::stream::iter(0..count)
            .map(|i| async move {
                crate::accounts::sign_up(&self.http, &self.addr, &format!("{prefix}{i}")).await
            })
            .buffered(32)
            .collect()
            .await
    }

    /// Creates a room as `token`; returns its id.
    pub async fn create_room(&self, token: &str, title: &str) -> String {
        create_room(&self.http, &self.addr, token, title).await
    }
}

impl Drop for HallwayServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One live WebSocket, before it is split into a reader task and a speaker.
pub struct Ws {
    stream: TcpStream,
    buf: BytesMut,
}

const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;

impl Ws {
    /// Opens `/api/v2/rooms/{room}/live` and reads the `room_snapshot`.
    pub async fn join(addr: &str, room: &str, token: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect to hallway");
        let _ = stream.set_nodelay(true);
        let request = format!(
            "GET /api/v2/rooms/{room}/live HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the handshake");
        let mut buf = BytesMut::with_capacity(4096);
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read_buf(&mut buf).await.expect("read the handshake");
            assert!(n > 0, "the server closed during the handshake");
        };
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "upgrade refused: {}",
            String::from_utf8_lossy(&buf[..end])
        );
        buf.advance(end);
        let mut ws = Self { stream, buf };
        let snapshot = ws.next_json().await;
        assert_eq!(snapshot["type"], "room_snapshot", "{snapshot}");
        ws
    }

    /// The next text message as JSON, skipping audio; panics if the connection closes.
    pub async fn next_json(&mut self) -> Value {
        loop {
            if let Some((op, header, len)) = parse_frame(&self.buf) {
                let payload = self.buf[header..header + len].to_vec();
                self.buf.advance(header + len);
                match op {
                    OP_TEXT => return serde_json::from_slice(&payload).expect("JSON text"),
                    OP_CLOSE => panic!("closed during setup"),
                    _ => continue,
                }
            }
            let n = self.stream.read_buf(&mut self.buf).await.expect("read");
            assert!(n > 0, "the server closed during setup");
        }
    }

    /// Skips messages until one matches.
    pub async fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100_000 {
            let msg = self.next_json().await;
            if wanted(&msg) {
                return msg;
            }
        }
        panic!("never got the awaited message");
    }

    pub async fn send_json(&mut self, value: Value) {
        let mut out = Vec::new();
        put_frame(&mut out, OP_TEXT, value.to_string().as_bytes());
        self.stream.write_all(&out).await.expect("send a command");
    }

    pub fn split(self) -> (Reader, OwnedWriteHalf) {
        let (read, write) = self.stream.into_split();
        (
            Reader {
                read,
                buf: self.buf,
            },
            write,
        )
    }
}

/// The receiving half: counts every audio frame until the connection closes or `stop`.
pub struct Reader {
    read: OwnedReadHalf,
    buf: BytesMut,
}

impl Reader {
    /// Reads until closed or stopped; records frames when `measure` (the join storm's
    /// newcomers don't).
    pub async fn run(mut self, stats: Rc<Stats>, measure: bool, stop: CancellationToken) {
        loop {
            while let Some((op, header, len)) = parse_frame(&self.buf) {
                if op == OP_BINARY && measure && len >= 16 {
                    let p = &self.buf[header..header + len];
                    let ts = u32::from_be_bytes([p[10], p[11], p[12], p[13]]);
                    stats.on_received(stats.unwrap_us(ts));
                } else if op == OP_CLOSE {
                    stats.disconnects.set(stats.disconnects.get() + 1);
                    return;
                }
                self.buf.advance(header + len);
            }
            self.buf.reserve(4096);
            let read = tokio::select! {
                read = self.read.read_buf(&mut self.buf) => read,
                () = stop.cancelled() => return,
            };
            if !matches!(read, Ok(n) if n > 0) {
                stats.disconnects.set(stats.disconnects.get() + 1);
                return;
            }
        }
    }
}

/// (opcode, header length, payload length) of the first complete frame in `buf`.
fn parse_frame(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (header, len) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(b) as usize)
        }
        126 | 127 => return None,
        n => (2, usize::from(n)),
    };
    // Server frames are never masked (RFC 6455, 5.1).
    (buf.len() >= header + len).then_some((buf[0] & 0x0f, header, len))
}

/// Appends one client frame. Clients must mask; a zero key leaves the payload as it is.
fn put_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    out.push(0x80 | op);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// One audio frame as a speaker sends it: the send time rides in the timestamp field.
pub fn audio_frame(out: &mut Vec<u8>, seq: u32, sent_us: u64, level: u8, opus: &[u8]) {
    let mut frame = [0u8; 16];
    frame[0] = 1;
    frame[1] = 1;
    frame[6..10].copy_from_slice(&seq.to_be_bytes());
    frame[10..14].copy_from_slice(&(sent_us as u32).to_be_bytes());
    frame[14] = level;
    out.clear();
    let len = 16 + opus.len();
    out.push(0x80 | OP_BINARY);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&frame);
    out.extend_from_slice(opus);
}

/// Joins everyone for a fan-out run: speaker 0 creates the room and invites the others,
/// who accept and unmute. Returns the room id, the speakers' connections, and readers for
/// the listeners (already draining, so a join flood never backs up their queues).
pub async fn stage(
    server: &HallwayServer,
    speakers: usize,
) -> (String, Vec<(Reader, OwnedWriteHalf)>) {
    let sessions = server.sessions("speaker", speakers).await;
    let room = server.create_room(&sessions[0].0, "fanout bench").await;
    let mut host = Ws::join(&server.addr, &room, &sessions[0].0).await;
    host.send_json(json!({"type": "unmute"})).await;
    let mut joined = Vec::new();
    for (token, id) in &sessions[1..] {
        let mut ws = Ws::join(&server.addr, &room, token).await;
        host.send_json(json!({"type": "invite_to_speak", "user_id": id}))
            .await;
        ws.wait_for(|m| m["type"] == "invited" && m["user_id"] == *id)
            .await;
        ws.send_json(json!({"type": "accept_invite"})).await;
        ws.send_json(json!({"type": "unmute"})).await;
        ws.wait_for(|m| m["type"] == "mute_changed" && m["user_id"] == *id && m["muted"] == false)
            .await;
        joined.push(ws);
        // The host's control budget is 20 a second.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut all = vec![host.split()];
    all.extend(joined.into_iter().map(Ws::split));
    (room, all)
}

/// Creates a room on the server at `addr` (`HOST:PORT`) as `token`; returns its id.
pub async fn create_room(http: &reqwest::Client, addr: &str, token: &str, title: &str) -> String {
    let body: Value = http
        .post(format!("http://{addr}/api/v2/rooms"))
        .bearer_auth(token)
        .json(&json!({ "title": title }))
        .send()
        .await
        .expect("POST /api/v2/rooms")
        .json()
        .await
        .expect("room JSON");
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("room not created: {body}"))
        .to_string()
}
