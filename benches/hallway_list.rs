//! The hallway list for someone who follows many people, on a server with many accounts:
//! `GET /api/v2/rooms` with a token (the server reads whom they follow and puts rooms with
//! those people on stage first) against the same list without one.
//!
//! ```text
//! cargo bench --bench hallway_list            # 100,000 accounts, 1,000,000 follows
//! cargo bench --bench hallway_list -- --requests 5000
//! ```
//! The database is filled directly (one transaction, the schema made by the server's own
//! migrations), then `hallway serve` runs on it; the viewer follows 1,000 people, and 100
//! rooms are live with their hosts on stage (every other host is followed). Under
//! `cargo test --all-targets` it runs small, as a smoke test, and checks the order.

#[path = "support/accounts.rs"]
mod accounts;
#[path = "support/server.rs"]
mod support;

use std::time::Instant;

use hallway::identity::DeviceKey;
use hallway::server::store::sqlite::SqliteBackend;
use rusqlite::params;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Scale {
    accounts: u32,
    follows_each: u32,
    viewer_follows: u32,
    rooms: u32,
    requests: usize,
}

/// Fills `path`: accounts 1..=n, account 1 the viewer following 2..=viewer_follows+1,
/// everyone else following `follows_each` others; devices for the viewer and the hosts.
fn fill(path: &std::path::Path, scale: &Scale, keys: &[(u32, &DeviceKey)]) {
    drop(SqliteBackend::open(path).expect("make the schema"));
    let mut conn = rusqlite::Connection::open(path).expect("open");
    let tx = conn.transaction().expect("transaction");
    {
        let mut account = tx
            .prepare(
                "INSERT INTO accounts (id, handle, handle_key, name, created_ms, invitations_left)
                 VALUES (?1, ?2, ?2, ?3, 0, 3)",
            )
            .expect("prepare");
        for id in 1..=scale.accounts {
            account
                .execute(params![id, format!("u{id}"), format!("Person {id}")])
                .expect("account");
        }
        let mut follow = tx
            .prepare(
                "INSERT OR IGNORE INTO follows (follower, followee, created_ms) VALUES (?1, ?2, 0)",
            )
            .expect("prepare");
        for followee in 2..=scale.viewer_follows + 1 {
            follow.execute(params![1, followee]).expect("follow");
        }
        // A cheap spread: each follows the next `follows_each` accounts after a stride.
        for follower in 2..=scale.accounts {
            for k in 1..=scale.follows_each {
                let followee = (follower + k * 7919) % scale.accounts + 1;
                if followee != follower {
                    follow.execute(params![follower, followee]).expect("follow");
                }
            }
        }
        let mut device = tx
            .prepare(
                "INSERT INTO devices (account, sign_key, agree_key, label, created_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, 'bench', 0, 0)",
            )
            .expect("prepare");
        for (account, key) in keys {
            let public = key.public();
            device
                .execute(params![account, &public.sign[..], &public.agree[..]])
                .expect("device");
        }
    }
    tx.commit().expect("commit");
}

/// The limits are for strangers on the internet; the bench is one address doing a lot.
const LIFTED: &[&str] = &[
    "--sessions-per-minute",
    "100000000",
    "--joins-per-second",
    "100000000",
    "--rooms-per-hour",
    "100000000",
    "--max-connections-per-address",
    "1000000",
];

async fn token_for(http: &reqwest::Client, addr: &str, key: &DeviceKey) -> String {
    let mut body = accounts::signed(http, addr, key).await;
    body["sign_key"] = serde_json::json!(hallway::identity::b64(&key.public().sign));
    let answer: Value = http
        .post(format!("http://{addr}/api/v2/sessions"))
        .json(&body)
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("session JSON");
    answer["token"].as_str().expect("a token").to_string()
}

/// Joins a room's live session and keeps the socket open (the host is then on stage).
async fn join(addr: &str, room: &str, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /api/v2/rooms/{room}/live HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("handshake");
    let mut buf = [0u8; 12];
    stream.read_exact(&mut buf).await.expect("answer");
    assert!(buf.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    stream
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

async fn timed(
    http: &reqwest::Client,
    addr: &str,
    token: Option<&str>,
    n: usize,
) -> (Vec<f64>, Value) {
    let mut ms = Vec::with_capacity(n);
    let mut last = Value::Null;
    for _ in 0..n {
        let mut request = http.get(format!("http://{addr}/api/v2/rooms"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let start = Instant::now();
        let body = request
            .send()
            .await
            .expect("GET")
            .bytes()
            .await
            .expect("body");
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        last = serde_json::from_slice(&body).expect("room list");
    }
    ms.sort_by(f64::total_cmp);
    (ms, last)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let requests = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok());
    let scale = if benching {
        Scale {
            accounts: 100_000,
            follows_each: 10,
            viewer_follows: 1_000,
            rooms: 100,
            requests: requests.unwrap_or(2_000),
        }
    } else {
        Scale {
            accounts: 2_000,
            follows_each: 5,
            viewer_follows: 100,
            rooms: 6,
            requests: requests.unwrap_or(20),
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.db");
    let viewer = DeviceKey::generate();
    // Hosts: accounts 2, 2 + stride, ...: every other one followed by the viewer.
    let hosts: Vec<(u32, DeviceKey)> = (0..scale.rooms)
        .map(|i| {
            let followed = i % 2 == 0;
            let id = if followed {
                2 + i
            } else {
                scale.viewer_follows + 10 + i
            };
            (id, DeviceKey::generate())
        })
        .collect();
    let mut keys: Vec<(u32, &DeviceKey)> = vec![(1, &viewer)];
    keys.extend(hosts.iter().map(|(id, key)| (*id, key)));
    let filling = Instant::now();
    fill(&path, &scale, &keys);
    let filled_s = filling.elapsed().as_secs_f64();
    let server = support::Server::start_on(&path, LIFTED);
    let addr = server.addr.clone();

    let http = reqwest::Client::new();
    let mut sockets = Vec::new();
    for (i, (_, key)) in hosts.iter().enumerate() {
        let token = token_for(&http, &addr, key).await;
        let room: Value = http
            .post(format!("http://{addr}/api/v2/rooms"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "title": format!("room {i}") }))
            .send()
            .await
            .expect("create room")
            .json()
            .await
            .expect("room JSON");
        let id = room["id"].as_str().expect("room id").to_string();
        sockets.push(join(&addr, &id, &token).await);
    }
    let token = token_for(&http, &addr, &viewer).await;

    // Warm up, then time.
    timed(&http, &addr, Some(&token), 20).await;
    let (signed_in, list) = timed(&http, &addr, Some(&token), scale.requests).await;
    let (anonymous, _) = timed(&http, &addr, None, scale.requests).await;
    let rooms = list["rooms"].as_array().expect("rooms");
    let followed = rooms.iter().take_while(|r| r["followed"] == true).count();
    assert_eq!(
        followed,
        scale.rooms.div_ceil(2) as usize,
        "the rooms with followed hosts come first"
    );
    assert!(
        rooms[followed..]
            .iter()
            .all(|r| r.get("followed").is_none()),
        "and only they are marked"
    );
    println!(
        "{} accounts, {} follows (filled in {filled_s:.1} s), viewer following {}, {} live rooms, {} requests each:",
        scale.accounts,
        scale.accounts as u64 * u64::from(scale.follows_each) + u64::from(scale.viewer_follows),
        scale.viewer_follows,
        scale.rooms,
        scale.requests
    );
    for (label, ms) in [
        ("signed in (follows first)", &signed_in),
        ("anonymous", &anonymous),
    ] {
        println!(
            "  GET /api/v2/rooms {label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(ms, 0.5),
            percentile(ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN)
        );
    }
    drop(sockets);
    drop(server);
}
