//! What the per-address limits cost: how fast a legitimate burst of sign-ins goes through
//! with the default limits and with them lifted, and what the server spends on each request
//! of a flood it refuses.
//!
//! ```text
//! cargo bench --bench signin                 # 5 runs of each
//! cargo bench --bench signin -- --runs 9
//! ```
//! Under `cargo test --all-targets` it runs once, small, as a smoke test.

#[path = "support/server.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use support::Server;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// `n` sign-ins at once from `from`, each on its own connection; returns how many got a
/// session and the wall time for all of them.
async fn burst(server: &Server, from: Ipv4Addr, n: usize) -> (usize, Duration) {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let start = Instant::now();
    let requests = (0..n).map(|i| {
        let http = http.clone();
        let url = format!("http://{}/api/v2/sessions", server.addr);
        async move {
            http.post(url)
                .json(&serde_json::json!({ "name": format!("person {i}") }))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    });
    let granted = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    (granted, start.elapsed())
}

/// `n` sign-ins pipelined on one connection from 127.0.0.1; returns (refused, server CPU s).
async fn flood(server: &Server, n: usize) -> (usize, f64) {
    let body = r#"{"name":"flood"}"#;
    let one = format!(
        "POST /api/v2/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
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
    let (runs, burst_n, flood_n) = if benching {
        (runs, 200, 20_000)
    } else {
        (1, 20, 500)
    };
    let mut rows = Vec::new();
    for (label, extra) in [("default limits", &[][..]), ("limits lifted", LIFTED)] {
        let mut rates = Vec::new();
        let mut granted_all = true;
        for _ in 0..runs {
            let server = Server::start(extra);
            let (granted, took) = burst(&server, Ipv4Addr::LOCALHOST, burst_n).await;
            granted_all &= granted == burst_n;
            rates.push(burst_n as f64 / took.as_secs_f64());
        }
        assert!(
            granted_all,
            "{label}: a legitimate burst of {burst_n} was refused in part"
        );
        rows.push(format!(
            "burst of {burst_n} sign-ins from one address, {label}: {:.0} sessions/s (median of {runs})",
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
        "flood of {flood_n} pipelined sign-ins from one address: {:.1} % refused, {:.1} µs of server CPU per request (median of {runs})",
        100.0 * median(refused_share),
        median(costs)
    ));
    for row in rows {
        println!("{row}");
    }
}
