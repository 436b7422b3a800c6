//! How long a listener is out of its room when a node of a cluster goes away, with the real
//! client library (`LiveSession`, its default back-off) and real nodes, NATS and PostgreSQL
//! on loopback.
//!
//! - **edge**: the listener's node dies (the room is homed on the other one). Measured from
//!   the kill to the listener's next `room_snapshot`, through the other node.
//! - **home**: the room's node dies (the listener is on the other one). Measured from the
//!   kill to the listener's next `room_snapshot`, in the room carried on by its node.
//!
//! ```sh
//! cargo bench --bench failover -- --runs 5
//! ```
//!
//! `cargo test --all-targets` runs this without `--bench`: one edge failure, asserting only
//! that the listener is back in the room.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/nats.rs"]
mod nats;
#[path = "../tests/common/postgres.rs"]
mod pg;
#[path = "support/server.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hallway::identity::DeviceKey;
use hallway::net::live::Backoff;
use hallway::net::{Api, Credentials, Enroll, LiveSession, NetEvent};
use hallway::protocol::ServerMessage;
use nats::NatsCluster;
use support::Server;
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Failure {
    Edge,
    Home,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    // The PostgreSQL client runs a runtime of its own: databases are made before ours.
    let postgres = pg::TestPostgres::start();
    let plan: Vec<Failure> = if bench {
        (0..runs)
            .flat_map(|_| [Failure::Edge, Failure::Home])
            .collect()
    } else {
        vec![Failure::Edge]
    };
    let databases: Vec<String> = (0..plan.len())
        .map(|i| postgres.create_database(&format!("failover{i}")))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut edge = Vec::new();
    let mut home = Vec::new();
    runtime.block_on(async {
        for (failure, database) in plan.iter().zip(&databases) {
            let out = once(*failure, database).await;
            eprintln!(
                "{failure:?}: back in the room after {:.0} ms",
                out.as_secs_f64() * 1e3
            );
            match failure {
                Failure::Edge => edge.push(out),
                Failure::Home => home.push(out),
            }
        }
    });
    if !bench {
        println!("failover smoke: the listener was back in the room after its node died");
        return;
    }
    println!(
        "failover, {runs} runs each (median, min..max), the client's default back-off; nodes, NATS, PostgreSQL and the client share this machine's cores"
    );
    for (what, mut times) in [("edge node dies", edge), ("home node dies", home)] {
        times.sort();
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {what} | {:.0} ms | {:.0}..{:.0} ms |",
            ms(&times[times.len() / 2]),
            ms(&times[0]),
            ms(&times[times.len() - 1])
        );
    }
}

/// One failure: two nodes, a room on `a`, its host on `a` and a listener on `b`; then the
/// listener's node (edge) or the room's (home) is killed. Returns how long the listener
/// was out of the room.
async fn once(failure: Failure, database: &str) -> Duration {
    let nats = tokio::task::spawn_blocking(|| NatsCluster::start(1))
        .await
        .unwrap();
    let url = nats.url_list();
    let node = |name: &str| {
        Server::start_on(
            Path::new(database),
            &["--cluster", &url, "--node-name", name],
        )
    };
    let mut a = node("a");
    let mut b = node("b");
    let http = reqwest::Client::new();
    for server in [&a, &b] {
        wait_until(|| async {
            http.get(format!("http://{}/api/v2/cluster", server.addr))
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()?["nodes"]
                .as_array()
                .map(|n| n.len() == 2)
        })
        .await;
    }
    let host = client(&a.addr, "Hera").await;
    let room = host.create_room("failover").await.unwrap().summary.id;
    let (host_tx, mut host_events) = mpsc::channel(4096);
    let _host = LiveSession::start(&host, &room, host_tx, Box::new(|_| {}), Backoff::default());
    snapshot(&mut host_events).await;
    wait_until(|| async {
        let rooms = http
            .get(format!("http://{}/api/v2/rooms", b.addr))
            .send()
            .await
            .ok()?
            .json::<serde_json::Value>()
            .await
            .ok()?;
        Some(
            rooms["rooms"]
                .as_array()?
                .iter()
                .any(|r| r["id"] == room.as_str()),
        )
    })
    .await;
    let listener = client(&b.addr, "Ada").await;
    let (tx, mut events) = mpsc::channel(4096);
    let _listener = LiveSession::start(&listener, &room, tx, Box::new(|_| {}), Backoff::default());
    snapshot(&mut events).await;
    // The client learns the other node once connected, in the background.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    let victim = match failure {
        Failure::Edge => &mut b,
        Failure::Home => &mut a,
    };
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    snapshot(&mut events).await;
    let out = killed.elapsed();
    drop((a, b, nats));
    out
}

/// A client with a new device and account on the node at `addr`.
async fn client(addr: &str, name: &str) -> Api {
    let api = Api::new(url::Url::parse(&format!("http://{addr}")).unwrap()).with_credentials(
        Credentials {
            key: Arc::new(DeviceKey::generate()),
            enroll: Some(Enroll {
                name: name.into(),
                ..Enroll::default()
            }),
        },
    );
    api.sign_in().await.unwrap();
    api
}

/// Waits for the session's next `room_snapshot` (the room, joined or joined again).
async fn snapshot(events: &mut mpsc::Receiver<NetEvent>) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await.expect("the session ended") {
                NetEvent::Server(ServerMessage::RoomSnapshot { .. }) => return,
                NetEvent::Closed { code, message } => panic!("closed: {code:?} {message}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the listener never came back into the room");
}

async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<bool>>,
{
    let deadline = Instant::now() + PATIENCE;
    while check().await != Some(true) {
        assert!(Instant::now() < deadline, "the cluster never formed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
