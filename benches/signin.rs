//! Signing in: how many sign-ins a second one core serves (challenge, Ed25519 check, token
//! stored), what a burst of new accounts from one address meets with the default limits and
//! with them lifted, and what the server spends on each request of a flood it refuses.
//!
//! ```text
//! cargo bench --bench signin                 # 5 runs of each
//! cargo bench --bench signin -- --runs 9
//! ```
//! Under `cargo test --all-targets` it runs once, small, as a smoke test.

#[path = "support/accounts.rs"]
mod accounts;
#[path = "support/server.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hallway::identity::DeviceKey;
use support::Server;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

fn client(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .build()
        .expect("client")
}

/// `n` new accounts at once from `from`; returns how many were made and the wall time.
async fn burst(server: &Server, from: Ipv4Addr, n: usize) -> (usize, Duration) {
    let http = client(from);
    let start = Instant::now();
    let made = futures_util::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                let key = DeviceKey::generate();
                let mut body = accounts::signed(&http, &server.addr, &key).await;
                if body["nonce"].is_null() {
                    return false;
                }
                let public = key.public();
                body["handle"] = serde_json::json!(format!("person_{i}"));
                body["device"] = serde_json::json!({
                    "sign_key": hallway::identity::b64(&public.sign),
                    "agree_key": hallway::identity::b64(&public.agree),
                });
                http.post(format!("http://{}/api/v2/accounts", server.addr))
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    (made, start.elapsed())
}

/// Signs each of `keys` in `rounds` times, 32 at once; returns (sign-ins per second,
/// server CPU µs per sign-in).
async fn sign_ins(server: &Server, keys: &[DeviceKey], rounds: usize) -> (f64, f64) {
    let http = client(Ipv4Addr::LOCALHOST);
    let cpu_before = server.cpu_s();
    let start = Instant::now();
    let total = keys.len() * rounds;
    let done = futures_util::stream::iter((0..rounds).flat_map(|_| keys.iter()))
        .map(|key| accounts::sign_in(&http, &server.addr, key))
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(done, total, "every sign-in succeeds");
    let took = start.elapsed().as_secs_f64();
    let cpu = server.cpu_s() - cpu_before;
    (total as f64 / took, cpu * 1e6 / total as f64)
}

/// `n` sign-in challenges pipelined on one connection from 127.0.0.1; returns (refused,
/// server CPU s).
async fn flood(server: &Server, n: usize) -> (usize, f64) {
    let one = "POST /api/v2/challenges HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    let all = one.repeat(n);
    let socket = TcpSocket::new_v4().expect("socket");
    let mut tcp = socket
        .connect(server.addr.parse().expect("addr"))
        .await
        .expect("connect");
    let before = server.cpu_s();
    let (mut read, mut write) = tcp.split();
    let writing = async {
        let _ = write.write_all(all.as_bytes()).await;
    };
    let mut seen = Vec::new();
    let reading = async {
        let mut buf = vec![0u8; 256 * 1024];
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(got @ 1..) = read.read(&mut buf).await {
                seen.extend_from_slice(&buf[..got]);
                if count(&seen, b"HTTP/1.1 ") >= n {
                    break;
                }
            }
        })
        .await;
    };
    tokio::join!(writing, reading);
    let refused = count(&seen, b"HTTP/1.1 429");
    (refused, server.cpu_s() - before)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

const LIFTED: &[&str] = &[
    "--max-connections-per-address",
    "1000000",
    "--sessions-per-minute",
    "100000000",
];

/// The server on one core, where `taskset` is there to pin it.
fn one_core(extra: &[&str]) -> Server {
    let pinned = std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if pinned {
        Server::start_pinned(0, extra)
    } else {
        Server::start(extra)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let (runs, burst_n, accounts_n, rounds, flood_n) = if benching {
        (runs, 200, 200, 10, 20_000)
    } else {
        (1, 20, 10, 2, 500)
    };
    let mut rows = Vec::new();

    let mut rates = Vec::new();
    let mut costs = Vec::new();
    for _ in 0..runs {
        let server = one_core(LIFTED);
        let keys: Vec<DeviceKey> = (0..accounts_n).map(|_| DeviceKey::generate()).collect();
        let http = client(Ipv4Addr::LOCALHOST);
        for (i, key) in keys.iter().enumerate() {
            accounts::sign_up_with(&http, &server.addr, &format!("signer{i}"), key).await;
        }
        let (rate, cpu_us) = sign_ins(&server, &keys, rounds).await;
        rates.push(rate);
        costs.push(cpu_us);
    }
    rows.push(format!(
        "sign-ins (challenge + Ed25519 check + token stored) on one core, 32 at once: {:.0} /s, {:.0} µs of server CPU each (median of {runs})",
        median(rates),
        median(costs)
    ));

    for (label, extra) in [("default limits", &[][..]), ("limits lifted", LIFTED)] {
        let mut rates = Vec::new();
        let mut made_all = true;
        for _ in 0..runs {
            let server = Server::start(extra);
            let (made, took) = burst(&server, Ipv4Addr::LOCALHOST, burst_n).await;
            made_all &= made == burst_n;
            rates.push(burst_n as f64 / took.as_secs_f64());
        }
        assert!(
            made_all,
            "{label}: a legitimate burst of {burst_n} new accounts was refused in part"
        );
        rows.push(format!(
            "burst of {burst_n} new accounts from one address, {label}: {:.0} accounts/s (median of {runs})",
            median(rates)
        ));
    }
    let mut costs = Vec::new();
    let mut refused_share = Vec::new();
    for _ in 0..runs {
        let server = Server::start(&[]);
        let (refused, cpu_s) = flood(&server, flood_n).await;
        refused_share.push(refused as f64 / flood_n as f64);
        costs.push(cpu_s * 1e6 / flood_n as f64);
    }
    assert!(
        median(refused_share.clone()) > 0.5,
        "the flood was not refused"
    );
    rows.push(format!(
        "flood of {flood_n} pipelined sign-in challenges from one address: {:.1} % refused, {:.1} µs of server CPU per request (median of {runs})",
        100.0 * median(refused_share),
        median(costs)
    ));
    for row in rows {
        println!("{row}");
    }
}
