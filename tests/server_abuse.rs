//! Attacks from one address against a real `hallway serve` process, each bounded in time,
//! while a well-behaved person on another address signs in, joins a room and hears a
//! speaker: they must be served during and after every attack, their audio in order.
//! docs/security.md lists the attacks and what each meets.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU32, Ordering};

use common::{Live, PATIENCE, TestServer, connect_from};
use hallway::identity::{self, DeviceKey};
use hallway::protocol::Session;
use hallway::protocol::handle::handle_from_name;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const WITNESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SPEAKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn addr_of(server: &TestServer) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

/// A REST client whose connections come from `from`.
fn http_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

async fn tcp_from(server: &TestServer, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(addr_of(server)).await
}

async fn post(
    http: &reqwest::Client,
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = http.post(server.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The well-behaved people: a speaker on 127.0.0.3 hosting a room, and a listener on
/// 127.0.0.2 hearing them.
struct Witness {
    http: reqwest::Client,
    host: Session,
    invite_only: bool,
    room: String,
    speaker: Live,
    listener: Live,
    next_sequence: u32,
    signed_in: usize,
}

impl Witness {
    /// With `owner_code`, on an invite-only server: the host is its owner and invites
    /// everyone else.
    async fn start(server: &TestServer, owner_code: Option<&str>) -> Self {
        let speaker_http = http_from(SPEAKER);
        let host = sign_in(&speaker_http, server, "Speaker", owner_code).await;
        let (status, detail) = post(
            &speaker_http,
            server,
            "/api/v2/rooms",
            Some(&host.token),
            json!({"title": "the well-behaved room"}),
        )
        .await;
        assert_eq!(status, 201, "{detail}");
        let room = detail["id"].as_str().unwrap().to_string();
        let mut speaker = Live::join_from(server, &room, &host, SPEAKER).await;
        speaker.command(json!({"type": "unmute"})).await;
        let http = http_from(WITNESS);
        let invite_only = owner_code.is_some();
        let invitation = invitation_from(server, &host, invite_only).await;
        let me = sign_in(&http, server, "Witness", invitation.as_deref()).await;
        let listener = Live::join_from(server, &room, &me, WITNESS).await;
        Self {
            http,
            host,
            invite_only,
            room,
            speaker,
            listener,
            next_sequence: 1,
            signed_in: 1,
        }
    }

    /// The speaker says a few frames; the listener hears all of them, in order.
    async fn hears_the_speaker(&mut self) {
        let first = self.next_sequence;
        for sequence in first..first + 5 {
            self.speaker.send_audio(sequence, &[0xF8, 0xFF, 0xFE]).await;
        }
        self.next_sequence += 5;
        for want in first..first + 5 {
            let frame = self.listener.next_audio().await;
            assert_eq!(
                frame.header.sequence, want,
                "audio arrives whole and in order"
            );
        }
    }

    /// A new person on the witness's address makes an account (with an invitation from
    /// the host on an invite-only server) and joins the room.
    async fn newcomer_gets_in(&mut self, server: &TestServer) {
        self.signed_in += 1;
        let name = format!("Newcomer {}", self.signed_in);
        let invitation = self.invitation(server).await;
        let session = sign_in(&self.http, server, &name, invitation.as_deref()).await;
        let live = Live::join_from(server, &self.room, &session, WITNESS).await;
        drop(live);
    }

    async fn invitation(&self, server: &TestServer) -> Option<String> {
        invitation_from(server, &self.host, self.invite_only).await
    }

    async fn is_served(&mut self, server: &TestServer) {
        self.hears_the_speaker().await;
        self.newcomer_gets_in(server).await;
        self.hears_the_speaker().await;
    }
}

/// Makes an account on a new device key through `http` (from its address); the answer.
async fn try_sign_in(
    http: &reqwest::Client,
    server: &TestServer,
    name: &str,
    invitation: Option<&str>,
) -> (u16, Value) {
    let (status, challenge) = post(http, server, "/api/v2/challenges", None, json!({})).await;
    if status != 200 {
        return (status, challenge);
    }
    let key = DeviceKey::generate();
    let nonce = challenge["nonce"].as_str().unwrap();
    let public = key.public();
    let n = HANDLES.fetch_add(1, Ordering::Relaxed);
    let mut body = json!({
        "handle": handle_from_name(name, &format!("_{n}")).as_str(),
        "name": name,
        "device": {
            "sign_key": identity::b64(&public.sign),
            "agree_key": identity::b64(&public.agree),
        },
        "nonce": nonce,
        "signature": identity::b64(&key.sign_in(&server.origin(), nonce.as_bytes())),
    });
    if let Some(code) = invitation {
        body["invitation"] = json!(code);
    }
    post(http, server, "/api/v2/accounts", None, body).await
}

static HANDLES: AtomicU32 = AtomicU32::new(0);

/// A fresh invitation from `host` (the owner), on an invite-only server.
async fn invitation_from(server: &TestServer, host: &Session, invite_only: bool) -> Option<String> {
    if !invite_only {
        return None;
    }
    let (status, body) = post(
        &http_from(SPEAKER),
        server,
        "/api/v2/invitations",
        Some(&host.token),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    Some(body["code"].as_str().unwrap().to_string())
}

async fn sign_in(
    http: &reqwest::Client,
    server: &TestServer,
    name: &str,
    invitation: Option<&str>,
) -> Session {
    let (status, body) = try_sign_in(http, server, name, invitation).await;
    assert_eq!(status, 200, "signing in from a quiet address: {body}");
    serde_json::from_value(body).unwrap()
}

/// Writes `requests` (`n` of them, back to back) on one connection and returns the status
/// of every response that comes back before the server closes it (or [`PATIENCE`] passes).
async fn pipelined(server: &TestServer, from: Ipv4Addr, requests: &[u8], n: usize) -> Vec<u16> {
    let Ok(mut tcp) = tcp_from(server, from).await else {
        return Vec::new();
    };
    let (mut read, mut write) = tcp.split();
    let writing = async {
        let _ = write.write_all(requests).await;
    };
    let mut text = Vec::new();
    let reading = tokio::time::timeout(PATIENCE, async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(got @ 1..) = read.read(&mut buf).await {
            text.extend_from_slice(&buf[..got]);
            if statuses(&text).len() >= n {
                break;
            }
        }
    });
    let _ = tokio::join!(writing, reading);
    statuses(&text)
}

fn statuses(responses: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(responses);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, m)| text.get(i + m.len()..i + m.len() + 3)?.parse().ok())
        .collect()
}

/// A loopback address with a port that was free a moment ago.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A sign-in challenge: what every sign-in and new account starts with, and what the
/// per-address sign-in budget counts.
fn challenge_request() -> Vec<u8> {
    b"POST /api/v2/challenges HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec()
}

#[tokio::test]
async fn a_sign_in_flood_from_one_address_leaves_others_signing_in() {
    let server = TestServer::start();
    let mut witness = Witness::start(&server, None).await;
    let requests = challenge_request().repeat(500);
    let flood = async {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.extend(pipelined(&server, ATTACKER, &requests, 500).await);
        }
        statuses
    };
    let (statuses, ()) = tokio::join!(flood, witness.is_served(&server));
    let granted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        granted <= 250,
        "one address got {granted} sign-in challenges in seconds"
    );
    assert!(
        limited > 1_000,
        "the flood was refused: {limited} of {}",
        statuses.len()
    );
    witness.is_served(&server).await;
}

#[tokio::test]
async fn room_spam_from_one_address_is_held_to_its_budget() {
    let server = TestServer::start();
    let mut witness = Witness::start(&server, None).await;
    let http = http_from(ATTACKER);
    let mut created = 0;
    let mut limited = 0;
    for i in 0..20 {
        let spammer = sign_in(&http, &server, &format!("spam{i}"), None).await;
        for j in 0..3 {
            let (status, _) = post(
                &http,
                &server,
                "/api/v2/rooms",
                Some(&spammer.token),
                json!({"title": format!("spam {i}.{j}")}),
            )
            .await;
            match status {
                201 => created += 1,
                429 => limited += 1,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert!(created <= 12, "{created} rooms from one address at once");
    assert!(limited >= 48);
    witness.is_served(&server).await;
    // The witness's address still has its own budget.
    let me = sign_in(&witness.http, &server, "Room maker", None).await;
    let (status, body) = post(
        &witness.http,
        &server,
        "/api/v2/rooms",
        Some(&me.token),
        json!({"title": "a real room"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Reads until the server closes the connection; returns how long that took.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| start.elapsed())
}

#[tokio::test]
async fn slow_and_silent_connections_are_closed_within_the_request_timeout() {
    let server = TestServer::start_with(&["--request-timeout", "2", "--idle-timeout", "3"]);
    let mut witness = Witness::start(&server, None).await;
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut tcp = tcp_from(&server, ATTACKER).await.unwrap();
        if i % 2 == 0 {
            tcp.write_all(b"POST /api/v2/sessions HTTP/1.1\r\nHost: x\r\nContent-Le")
                .await
                .unwrap();
        }
        slow.push(tcp);
    }
    // One more that answers the headers but trickles its body, a byte at a time.
    let mut trickle = tcp_from(&server, ATTACKER).await.unwrap();
    trickle
        .write_all(b"POST /api/v2/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let trickling = async {
        let start = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            if trickle.write_all(b" ").await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(300), trickle.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {} // a 408 or the like; the close follows
                Err(_) => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(8),
                "a trickled body held on"
            );
        }
        start.elapsed()
    };
    let (trickled_for, ()) = tokio::join!(trickling, witness.is_served(&server));
    assert!(trickled_for < Duration::from_secs(8));
    for tcp in &mut slow {
        let took = closed_within(tcp, Duration::from_secs(8)).await;
        assert!(took.is_some(), "a slow connection is still open after 8 s");
    }
    // An idle keep-alive connection (a request answered, then nothing) goes too.
    let mut idle = tcp_from(&server, ATTACKER).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(8))
            .await
            .is_some()
    );
    witness.is_served(&server).await;
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection_under_a_small_fd_limit() {
    // The server runs under `ulimit -n 1024`; the attacker holds more idle connections
    // than that from two addresses. The test process needs the descriptors too.
    let _ = rlimit::increase_nofile_limit(8192);
    let server = TestServer::start_in_shell(
        "ulimit -n 1024 && exec \"$0\" serve --listen 127.0.0.1:0 --max-connections-per-address 600 --request-timeout 30",
    );
    let mut witness = Witness::start(&server, None).await;
    let mut held = Vec::new();
    for from in [ATTACKER, Ipv4Addr::new(127, 0, 0, 4)] {
        for _ in 0..600 {
            if let Ok(tcp) = tcp_from(&server, from).await {
                held.push(tcp);
            }
        }
    }
    assert!(
        held.len() >= 1_100,
        "the attacker opened {} connections",
        held.len()
    );
    // /healthz from another address is answered, and the witness is served.
    let healthz = http_from(Ipv4Addr::new(127, 0, 0, 5))
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    witness.is_served(&server).await;
    // The server never held more than its descriptors allow: the rest were closed.
    let mut open = 0;
    for tcp in &mut held {
        if closed_within(tcp, Duration::from_millis(1)).await.is_none() {
            open += 1;
        }
    }
    assert!(
        open < 1_024,
        "{open} idle connections still open under a 1,024 fd limit"
    );
}

#[tokio::test]
async fn websockets_that_never_finish_a_message_are_closed() {
    let server = TestServer::start_with(&["--request-timeout", "2"]);
    let mut witness = Witness::start(&server, None).await;
    let http = http_from(ATTACKER);
    let host = sign_in(&http, &server, "Staller", None).await;
    let (_, detail) = post(
        &http,
        &server,
        "/api/v2/rooms",
        Some(&host.token),
        json!({"title": "stalls"}),
    )
    .await;
    let room = detail["id"].as_str().unwrap().to_string();
    let mut stalled = Vec::new();
    for i in 0..50 {
        let session = sign_in(&http, &server, &format!("stall{i}"), None).await;
        let mut ws = connect_from(&server, &room, &session.token, ATTACKER)
            .await
            .unwrap();
        // The first 60 KB fragment of a text message that never ends: a frame header for
        // 60,000 bytes, then only part of them.
        let mut frame = vec![0x01, 0xFE, 0xEA, 0x60, 0, 0, 0, 0];
        frame.extend(std::iter::repeat_n(b' ', 30_000));
        let tcp = match ws.get_mut() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!(),
        };
        tcp.write_all(&frame).await.unwrap();
        stalled.push(ws);
    }
    let start = Instant::now();
    witness.is_served(&server).await;
    for ws in &mut stalled {
        let tcp = match ws.get_mut() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!(),
        };
        assert!(
            closed_within(tcp, Duration::from_secs(8)).await.is_some(),
            "a stalled WebSocket was still open {:?} later",
            start.elapsed()
        );
    }
    witness.is_served(&server).await;
}

#[tokio::test]
async fn invitation_guesses_back_off_are_counted_and_a_real_invitation_still_works() {
    let metrics_addr = free_port();
    let mut server = TestServer::start_with(&[
        "--invite-only",
        "--metrics-listen",
        &metrics_addr.to_string(),
    ]);
    let owner_code = server.owner_invitation();
    let mut witness = Witness::start(&server, Some(&owner_code)).await;
    // 40 guesses: within the address's sign-in budget, so each one meets the code check.
    let attacker = http_from(ATTACKER);
    let mut statuses = Vec::new();
    for i in 0..40 {
        let (status, _) =
            try_sign_in(&attacker, &server, "guesser", Some(&format!("guess{i}"))).await;
        statuses.push(status);
    }
    let wrong = statuses.iter().filter(|s| **s == 403).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        wrong <= 6,
        "{wrong} guesses were compared; the back-off allows a handful"
    );
    assert_eq!(wrong + locked, 40, "{statuses:?}");
    // Even a real invitation waits out the lock-out on the guessing address...
    let real = witness.invitation(&server).await;
    let (status, body) = try_sign_in(&attacker, &server, "guesser", real.as_deref()).await;
    assert_eq!(status, 429, "{body}");
    // ...while the witness's address is not held back at all.
    witness.is_served(&server).await;
    // On an invite-only server /metrics is not public; it is on the metrics address.
    let (status, _) = server.get("/metrics", None).await;
    assert_eq!(status, 404);
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hallway_auth_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 41.0, "{failures}");
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    let server =
        TestServer::start_with(&["--trusted-proxy", "127.0.0.9", "--sessions-per-minute", "1"]);
    // --sessions-per-minute 1 makes the burst 3 (200 × 1/60): five sign-in challenges from
    // one client address.
    let via = |proxy: Ipv4Addr, client: &'static str| {
        let http = http_from(proxy);
        let server = &server;
        async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let response = http
                    .post(server.url("/api/v2/challenges"))
                    .header("x-forwarded-for", format!("6.6.6.6, {client}"))
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        }
    };
    // Through the trusted proxy, each forwarded client has its own budget (and the forged
    // leftmost entry is ignored).
    assert_eq!(
        via(Ipv4Addr::new(127, 0, 0, 9), "198.51.100.1").await,
        [200, 200, 200, 429, 429]
    );
    assert_eq!(
        via(Ipv4Addr::new(127, 0, 0, 9), "198.51.100.2").await,
        [200, 200, 200, 429, 429]
    );
    // From anyone else the header is ignored: a forged address buys no fresh budget.
    assert_eq!(
        via(ATTACKER, "198.51.100.3").await,
        [200, 200, 200, 429, 429]
    );
    assert_eq!(via(ATTACKER, "198.51.100.4").await, [429; 5]);
}

#[tokio::test]
async fn hostile_names_are_refused_with_a_clear_error() {
    let server = TestServer::start();
    for (name, why) in [
        ("\u{202e}evil", "U+202E"),
        ("a\u{200b}b", "U+200B"),
        ("\u{3164}", "blank"),
        ("Victim (you)", "you"),
        ("x host muted", "host"),
        ("\u{1b}]0;pwned\u{7}", "U+001B"),
    ] {
        let (status, body) = server
            .try_account(&DeviceKey::generate(), "hostile", name, None)
            .await;
        assert_eq!(status, 400, "{name:?} was accepted: {body}");
        assert_eq!(body["error"]["code"], "invalid_name");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{name:?}: {message}");
    }
    let (status, body) = server
        .try_account(&DeviceKey::generate(), "cafe", "Cafe\u{301}", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Caf\u{e9}", "names are kept in NFC");

    // A look-alike of someone in the room cannot join it.
    let ada = server.session("Ada").await;
    let room = server.create_room(&ada, "look-alikes").await;
    let _ada_live = Live::join(&server, &room, &ada).await;
    let fake = server.session("\u{410}da").await; // Cyrillic А
    let (status, body) = common::connect_refusal(&server, &room, Some(&fake.token)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "name_lookalike");
    let other = server.session("Adam").await;
    let _adam = Live::join(&server, &room, &other).await;
}

#[tokio::test]
async fn the_authorization_scheme_is_case_insensitive() {
    let server = TestServer::start();
    let me = server.session("Case").await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = server
            .http
            .get(server.url("/api/v2/me"))
            .header("authorization", format!("{scheme} {}", me.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

/// Opens a room's WebSocket through a proxy at `proxy` that forwards `client` as the
/// client's address; returns the refusal's status and error code if it is refused.
async fn join_via_proxy(
    server: &TestServer,
    room: &str,
    token: &str,
    proxy: Ipv4Addr,
    client: &str,
) -> Result<Live, (u16, String)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tcp = tcp_from(server, proxy).await.unwrap();
    let mut request = server.ws_url(room).into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers.insert("x-forwarded-for", client.parse().unwrap());
    match tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
    {
        Ok((ws, _)) => Ok(Live::joined(ws, &token_owner(server, token).await).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((
                response.status().as_u16(),
                body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ))
        }
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

async fn token_owner(server: &TestServer, token: &str) -> Session {
    let (status, me) = server.get("/api/v2/me", Some(token)).await;
    assert_eq!(status, 200);
    Session {
        token: token.to_string(),
        expires_at_ms: 0,
        user: serde_json::from_value(me["user"].clone()).unwrap(),
    }
}

#[tokio::test]
async fn a_removed_troll_behind_a_trusted_proxy_cannot_walk_back_in() {
    const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);
    let server = TestServer::start_with(&["--trusted-proxy", "127.0.0.9"]);
    let mut witness = Witness::start(&server, None).await;
    let troll = server.session("Troll").await;
    let mut troll_live =
        join_via_proxy(&server, &witness.room, &troll.token, PROXY, "198.51.100.66")
            .await
            .unwrap();
    witness
        .speaker
        .command(json!({"type": "remove", "user_id": troll_live.me}))
        .await;
    assert_eq!(troll_live.closed().await.as_deref(), Some("removed"));
    // A fresh session, through the same proxy, from the same client address: banned.
    let again = server.session("Not a troll").await;
    let refused =
        join_via_proxy(&server, &witness.room, &again.token, PROXY, "198.51.100.66").await;
    assert_eq!(refused.err(), Some((403, "banned".to_string())));
    // Everyone else behind the proxy is someone else, and gets in.
    let neighbour = server.session("Neighbour").await;
    join_via_proxy(
        &server,
        &witness.room,
        &neighbour.token,
        PROXY,
        "198.51.100.77",
    )
    .await
    .unwrap();
    witness.is_served(&server).await;
}

#[tokio::test]
async fn a_recording_toggle_flood_reaches_listeners_once_a_second_and_ends_as_abuse() {
    use hallway::protocol::ServerMessage;
    let server = TestServer::start();
    let mut witness = Witness::start(&server, None).await;
    let http = http_from(ATTACKER);
    let mut togglers = Vec::new();
    for i in 0..20 {
        let session = sign_in(&http, &server, &format!("toggler{i}"), None).await;
        togglers.push(Live::join_from(&server, &witness.room, &session, ATTACKER).await);
    }
    // Each toggles recording 19 times a second for 3 seconds, all at once.
    let flood = futures_util::future::join_all(togglers.iter_mut().map(|t| async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1_000 / 19));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 0..57 {
            tick.tick().await;
            let kind = if i % 2 == 0 {
                "start_recording"
            } else {
                "stop_recording"
            };
            let sent = tokio::time::timeout(
                PATIENCE,
                futures_util::SinkExt::send(
                    &mut t.ws,
                    tokio_tungstenite::tungstenite::Message::Text(
                        json!({ "type": kind }).to_string().into(),
                    ),
                ),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
    }));
    // Meanwhile the plain listener counts what reaches them, until the flood is over and a
    // second has passed.
    let counting = async {
        let mut changes = 0;
        let until = Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(
            until.into(),
            futures_util::StreamExt::next(&mut witness.listener.ws),
        )
        .await
        {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message
                && let Ok(ServerMessage::RecordingChanged { .. }) = ServerMessage::decode(&text)
            {
                changes += 1;
            }
        }
        changes
    };
    let ((), changes) = tokio::join!(
        async {
            flood.await;
        },
        counting
    );
    // Uncoalesced, that was 20 × 57 = 1,140 messages; coalesced, at most one a second each
    // (and the flooders are cut off as abusive within a few seconds).
    assert!(
        changes <= 20 * 5,
        "{changes} recording changes reached a listener in 5 s"
    );
    for toggler in &mut togglers {
        assert_eq!(toggler.closed().await.as_deref(), Some("abusive"));
    }
    witness.is_served(&server).await;
}
