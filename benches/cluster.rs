//! Cluster load generator: one room across 1, 2 and 3 `hallway serve` nodes on this machine,
//! one `nats-server` between them and one PostgreSQL for their shared accounts.
//!
//! For each node count k: a fresh nats-server and a fresh database (one PostgreSQL serves
//! the whole bench, with a new database per run), k nodes `n1`..`nk`, accounts made on `n1`,
//! a room created on `n1` (its home) whose host joins there and unmutes; once every node
//! lists the room, N listeners join, listener i through node `n{i % k + 1}`. The host
//! replays pre-encoded Opus packets at 50 a second with each packet's send time inside it,
//! as `benches/fanout.rs` does. Receivers on the home and on the edges keep separate
//! latency histograms, so the NATS hop's added latency is edge minus home in the same run.
//! CPU seconds of every node and of nats-server come from /proc over the measured window.
//! Every figure is the median of `--runs` runs.
//!
//! ```sh
//! cargo bench --bench cluster                                   # 1000 listeners, 1,2,3 nodes
//! cargo bench --bench cluster -- --listeners 2000 --nodes 1,3 --seconds 20 --runs 5
//! ```
//!
//! Nothing is pinned: the generator, nats-server, PostgreSQL and the nodes share the
//! machine's cores (two on the reference machine), which the output says.
//!
//! Needs `nats-server` and PostgreSQL's server, found as the cluster tests find them
//! (`tests/common/nats.rs`, `tests/common/postgres.rs`).
//!
//! `cargo test --all-targets` runs this without `--bench`: then it is a smoke run (1 speaker
//! × 6 listeners over 2 nodes for 2 s) that asserts listeners on the home and on the edge
//! both received frames.
#![allow(clippy::unwrap_used)]

#[path = "support/accounts.rs"]
mod accounts;
// The fan-out's single-server helpers (`HallwayServer`, `stage`) are not used here.
#[allow(dead_code)]
#[path = "fanout/hallway_wire.rs"]
mod hallway_wire;
#[path = "../tests/common/nats.rs"]
mod nats;
// Not `mod postgres`: that is also the name of the PostgreSQL client crate.
#[path = "../tests/common/postgres.rs"]
mod pg;
// Peak RSS, context switches and the join-storm phase are the fan-out's.
#[path = "support/packets.rs"]
mod packets;
#[allow(dead_code)]
#[path = "fanout/stats.rs"]
mod stats;
#[path = "support/server.rs"]
mod support;

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use hallway_wire::Ws;
use nats::NatsCluster;
use packets::{Packet, load_packets};
use pg::TestPostgres;
use stats::{Stats, sample};
use support::Server;

const WARMUP: Duration = Duration::from_secs(2);
/// Frames still in flight after the window closes get this long to arrive.
const GRACE: Duration = Duration::from_secs(1);
/// How long set-up steps (nodes meeting, the room reaching every listing) may take.
const PATIENCE: Duration = Duration::from_secs(60);
/// The issue's budgets.
const HOP_P50_BUDGET_MS: f64 = 1.0;
const HOP_P99_BUDGET_MS: f64 = 5.0;
const EDGE_COST_BUDGET: f64 = 1.1;

/// Command-line arguments, parsed by hand (`--flag VALUE` or `--flag=VALUE`; anything else,
/// such as a filter cargo passes, is ignored).
struct Args {
    /// Set by `cargo bench`; without it this is a smoke run.
    bench: bool,
    listeners: usize,
    nodes: Vec<usize>,
    /// Seconds measured per run (after a 2 s warm-up).
    seconds: u64,
    runs: usize,
}

impl Args {
    fn parse() -> Self {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let value = |name: &str| -> Option<String> {
            argv.iter().enumerate().find_map(|(i, a)| {
                if a == name {
                    argv.get(i + 1).cloned()
                } else {
                    a.strip_prefix(name)?.strip_prefix('=').map(str::to_string)
                }
            })
        };
        let number = |name: &str, default: u64| -> u64 {
            value(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a whole number, not {v:?}"))
            })
        };
        let nodes: Vec<usize> = value("--nodes")
            .unwrap_or_else(|| "1,2,3".to_string())
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("--nodes takes counts like 1,2,3, not {n:?}"))
            })
            .collect();
        let args = Self {
            bench: argv.iter().any(|a| a == "--bench"),
            listeners: number("--listeners", 1000) as usize,
            nodes,
            seconds: number("--seconds", 10),
            runs: number("--runs", 3) as usize,
        };
        assert!(args.listeners >= 1, "--listeners must be at least 1");
        assert!(
            args.nodes.iter().all(|&k| k >= 1),
            "--nodes counts must be at least 1"
        );
        assert!(args.seconds >= 1, "--seconds must be at least 1");
        assert!(args.runs >= 1, "--runs must be at least 1");
        args
    }

    /// The command line that reproduces this bench.
    fn command(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(ToString::to_string).collect();
        format!(
            "cargo bench --bench cluster -- --listeners {} --nodes {} --seconds {} --runs {}",
            self.listeners,
            nodes.join(","),
            self.seconds,
            self.runs
        )
    }
}

fn main() {
    let args = Args::parse();
    // The harness's PostgreSQL client is synchronous and runs a runtime of its own, which
    // cannot start inside ours: the server and a database for each run are made here first.
    // One PostgreSQL for the whole bench, a new database for each run.
    let pg = TestPostgres::start();
    let count = if args.bench {
        args.nodes.len() * args.runs
    } else {
        1
    };
    let databases: Vec<String> = (0..count)
        .map(|i| pg.create_database(&format!("run{i}")))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let packets = Rc::new(load_packets());
        if args.bench {
            bench(&args, databases, &packets).await;
        } else {
            smoke(&databases[0], &packets).await;
        }
    });
    drop(pg);
}

/// Under `cargo test`: 1 speaker × 6 listeners over 2 nodes for 2 s. Only asserts that
/// frames reached listeners on both nodes; nothing about timing.
async fn smoke(data: &str, packets: &Rc<Vec<Packet>>) {
    let out = run(data, 2, 6, 2, packets).await;
    println!(
        "cluster smoke: sent {} delivered home {} edge {} dropped {} disconnects {}",
        out.sent, out.home_delivered, out.edge_delivered, out.dropped, out.disconnects
    );
    assert!(out.sent > 0, "the speaker sent nothing");
    assert!(
        out.home_delivered > 0,
        "no listener on the home node received a frame"
    );
    assert!(
        out.edge_delivered > 0,
        "no listener on the edge node received a frame"
    );
}

async fn bench(args: &Args, databases: Vec<String>, packets: &Rc<Vec<Packet>>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cluster: 1 speaker x {} listeners, listener i on node i % k (n1 is the room's home), \
         {} s measured after a {} s warm-up, median of {} runs",
        args.listeners,
        args.seconds,
        WARMUP.as_secs(),
        args.runs
    );
    println!(
        "nothing pinned: the generator, nats-server, PostgreSQL and every node share this \
         machine's {cores} cores"
    );
    // A new database (made in `main`) and a new nats-server for each run.
    let mut databases = databases.into_iter();
    let mut medians = Vec::new();
    for &k in &args.nodes {
        let mut outs = Vec::new();
        for r in 0..args.runs {
            let data = databases.next().expect("a database for each run");
            let out = run(&data, k, args.listeners, args.seconds, packets).await;
            eprintln!("  {k} node(s) run {r}: {out:?}");
            outs.push(out);
        }
        let m = median(&outs);
        report_line(k, args, &m);
        medians.push((k, m));
    }
    table(args, cores, &medians);
}

/// What one run measured. Latencies in ms, CPU in seconds over the window.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    sent: u64,
    home_listeners: u64,
    edge_listeners: u64,
    home_delivered: u64,
    edge_delivered: u64,
    /// Frames sent in the window that some listener never received.
    dropped: u64,
    home_p50_ms: f64,
    home_p99_ms: f64,
    /// Edge latencies, already corrected for the two histograms' clocks.
    edge_p50_ms: f64,
    edge_p99_ms: f64,
    /// What the NATS hop adds: edge minus home, in this run.
    hop_p50_ms: f64,
    hop_p99_ms: f64,
    home_cpu_s: f64,
    /// All edge nodes together.
    edges_cpu_s: f64,
    /// NaN when nats-server's process was not found.
    nats_cpu_s: f64,
    /// Delivered frames per CPU-second of every node and nats-server.
    frames_per_cpu_s: f64,
    /// CPU per delivery: the home's CPU over its listeners' frames, the edges' over theirs.
    home_us_per_delivery: f64,
    edge_us_per_delivery: f64,
    /// Edge ÷ home CPU per delivery (budget: ≤ 1.1).
    edge_cost_ratio: f64,
    /// The generator's CPU over the window, % of one core (it shares the cores).
    generator_pct: f64,
    disconnects: u64,
    /// The nodes' own counters over the whole run: audio dropped for slow listeners, room
    /// events and audio not handed to NATS, edge resyncs.
    server_dropped: u64,
    cluster_dropped: u64,
    resyncs: u64,
}

/// A cluster of `hallway serve` nodes and their nats-server; nodes are killed first.
struct Cluster {
    nodes: Vec<Server>,
    _nats: NatsCluster,
    nats_pid: Option<u32>,
}

impl Cluster {
    /// A fresh nats-server and `k` nodes on the (fresh) database at `data`.
    fn start(data: &str, k: usize) -> Self {
        let nats = NatsCluster::start(1);
        let nats_url = nats.url(0);
        let nats_pid = nats_pid(&nats_url);
        if nats_pid.is_none() {
            eprintln!("  warning: nats-server's process not found in /proc; its CPU is left out");
        }
        let nodes = (1..=k)
            .map(|i| {
                let name = format!("n{i}");
                let mut extra = vec!["--cluster", nats_url.as_str(), "--node-name", name.as_str()];
                extra.extend_from_slice(packets::LIFTED_LIMITS);
                Server::start_on(Path::new(data), &extra)
            })
            .collect();
        Self {
            nodes,
            _nats: nats,
            nats_pid,
        }
    }

    fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// CPU seconds so far of every node, nats-server and this generator.
    fn cpu(&self) -> CpuSample {
        CpuSample {
            nodes: self
                .nodes
                .iter()
                .map(|n| sample(n.child.id()).cpu_s)
                .collect(),
            nats: self.nats_pid.map_or(f64::NAN, |pid| sample(pid).cpu_s),
            generator: sample(std::process::id()).cpu_s,
        }
    }
}

struct CpuSample {
    nodes: Vec<f64>,
    nats: f64,
    generator: f64,
}

/// The nats-server process listening on `url`'s port: the harness keeps its child private,
/// so this finds the process whose `-c` configuration names that port.
fn nats_pid(url: &str) -> Option<u32> {
    let port = url.rsplit(':').next()?;
    let listen = format!("listen: 127.0.0.1:{port}\n");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let argv: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let at = argv.iter().position(|a| *a == b"-c".as_slice())?;
            let config = std::str::from_utf8(argv.get(at + 1)?).ok()?;
            let text = std::fs::read_to_string(config).ok()?;
            text.contains(&listen).then_some(pid)
        })
}

/// One run on `k` nodes sharing the database at `data`, with `listeners` listeners,
/// measured for `seconds`.
async fn run(
    data: &str,
    k: usize,
    listeners: usize,
    seconds: u64,
    packets: &Rc<Vec<Packet>>,
) -> Outcome {
    let cluster = Cluster::start(data, k);
    let addrs = cluster.addrs();
    let http = reqwest::Client::new();
    wait_on_every_node(
        &http,
        &addrs,
        "/api/v2/cluster",
        "every node lists all nodes",
        |b| b["nodes"].as_array().is_some_and(|n| n.len() >= k),
    )
    .await;

    // Accounts are shared: all made on the home, good on every node.
    let host = sign_ups(&http, &addrs[0], "host", 1).await.remove(0);
    let tokens: Vec<String> = sign_ups(&http, &addrs[0], "listener", listeners)
        .await
        .into_iter()
        .map(|(token, _)| token)
        .collect();
    let room = hallway_wire::create_room(&http, &addrs[0], &host.0, "cluster bench").await;

    // Edge first: its clock starts earlier, so it runs ahead of the home's (the speaker's)
    // by `offset_ms`; edge latencies are read that much high and corrected below. (Behind,
    // a frame faster than the offset would look sent in the future.)
    let edge = Rc::new(Stats::new());
    let home = Rc::new(Stats::new());
    let offset_ms = home
        .at_us(0)
        .saturating_duration_since(edge.at_us(0))
        .as_secs_f64()
        * 1000.0;
    let stop = CancellationToken::new();

    let mut host_ws = Ws::join(&addrs[0], &room, &host.0).await;
    host_ws.send_json(json!({"type": "unmute"})).await;
    let host_id = host.1;
    // Everyone joins muted, so the unmute is always answered.
    tokio::time::timeout(
        PATIENCE,
        host_ws.wait_for(|m| {
            m["type"] == "mute_changed" && m["user_id"] == host_id && m["muted"] == false
        }),
    )
    .await
    .expect("the host's unmute was never confirmed");
    let (host_reader, mouth) = host_ws.split();
    tokio::task::spawn_local(host_reader.run(home.clone(), false, stop.clone()));

    // An edge finds the room through the directory: wait until every node lists it.
    wait_on_every_node(
        &http,
        &addrs,
        "/api/v2/rooms",
        "every node lists the room",
        |b| {
            b["rooms"]
                .as_array()
                .is_some_and(|rooms| rooms.iter().any(|r| r["id"] == room.as_str()))
        },
    )
    .await;

    let keep = join_listeners(&addrs, &room, &tokens, &home, &edge, &stop).await;

    let t0 = home.now_us() + WARMUP.as_micros() as u64;
    let t1 = t0 + seconds * 1_000_000;
    home.set_window(t0, t1);
    edge.set_window(t0, t1);
    let end = tokio::time::Instant::from_std(home.at_us(t1)) + Duration::from_millis(100);
    let speaking = tokio::task::spawn_local(speak(mouth, packets.clone(), home.clone(), end));
    tokio::time::sleep_until(tokio::time::Instant::from_std(home.at_us(t0))).await;
    let before = cluster.cpu();
    tokio::time::sleep_until(tokio::time::Instant::from_std(home.at_us(t1))).await;
    let after = cluster.cpu();
    let mouth = speaking.await.expect("the speaker task");
    tokio::time::sleep(GRACE).await;
    stop.cancel();
    // Let the readers see the stop before anything is torn down.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let totals = counters(
        &http,
        &addrs,
        &[
            "hallway_audio_frames_dropped_total",
            "hallway_cluster_dropped_total",
            "hallway_cluster_resyncs_total",
        ],
    )
    .await;
    drop(mouth);
    drop(keep);

    let home_listeners = listeners.div_ceil(k) as u64;
    let edge_listeners = listeners as u64 - home_listeners;
    let sent = home.sent.get();
    let (home_delivered, edge_delivered) = (home.delivered.get(), edge.delivered.get());
    let expected = sent * listeners as u64;
    let (home_p50_ms, home_p99_ms, _) = home.latency_ms(0);
    let (edge_p50, edge_p99, _) = edge.latency_ms(0);
    let (edge_p50_ms, edge_p99_ms) = (edge_p50 - offset_ms, edge_p99 - offset_ms);
    let node_cpu = |i: usize| after.nodes[i] - before.nodes[i];
    let home_cpu_s = node_cpu(0);
    let edges_cpu_s: f64 = (1..k).map(node_cpu).sum();
    let nats_cpu_s = after.nats - before.nats;
    // Without nats-server's process, the cluster-wide figure counts the nodes only.
    let nats_counted_s = if nats_cpu_s.is_finite() {
        nats_cpu_s
    } else {
        0.0
    };
    let all_cpu_s = home_cpu_s + edges_cpu_s + nats_counted_s;
    let per_delivery_us = |cpu_s: f64, frames: u64| {
        if frames > 0 {
            cpu_s * 1e6 / frames as f64
        } else {
            f64::NAN
        }
    };
    let home_us_per_delivery = per_delivery_us(home_cpu_s, home_delivered);
    let edge_us_per_delivery = per_delivery_us(edges_cpu_s, edge_delivered);
    Outcome {
        sent,
        home_listeners,
        edge_listeners,
        home_delivered,
        edge_delivered,
        dropped: expected.saturating_sub(home_delivered + edge_delivered),
        home_p50_ms,
        home_p99_ms,
        edge_p50_ms,
        edge_p99_ms,
        hop_p50_ms: edge_p50_ms - home_p50_ms,
        hop_p99_ms: edge_p99_ms - home_p99_ms,
        home_cpu_s,
        edges_cpu_s,
        nats_cpu_s,
        frames_per_cpu_s: (home_delivered + edge_delivered) as f64 / all_cpu_s.max(0.01),
        home_us_per_delivery,
        edge_us_per_delivery,
        edge_cost_ratio: edge_us_per_delivery / home_us_per_delivery,
        generator_pct: 100.0 * (after.generator - before.generator) / seconds as f64,
        disconnects: home.disconnects.get() + edge.disconnects.get(),
        server_dropped: totals[0] as u64,
        cluster_dropped: totals[1] as u64,
        resyncs: totals[2] as u64,
    }
}

/// Listener i joins through node i % k, 64 handshakes at a time; its reader records into
/// the home's or the edges' histogram. Returns the write halves, to keep the connections.
async fn join_listeners(
    addrs: &[String],
    room: &str,
    tokens: &[String],
    home: &Rc<Stats>,
    edge: &Rc<Stats>,
    stop: &CancellationToken,
) -> Vec<OwnedWriteHalf> {
    let k = addrs.len();
    futures_util::stream::iter(0..tokens.len())
        .map(move |i| {
            let addr = addrs[i % k].as_str();
            let token = tokens[i].as_str();
            let stats = if i % k == 0 {
                home.clone()
            } else {
                edge.clone()
            };
            let stop = stop.clone();
            async move {
                let ws = Ws::join(addr, room, token).await;
                let (reader, write) = ws.split();
                tokio::task::spawn_local(reader.run(stats, true, stop));
                write
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<OwnedWriteHalf>>()
        .await
}

/// Sends one packet every 20 ms until `end`, each stamped with its send time on `stats`'
/// clock (the home's).
async fn speak(
    mut mouth: OwnedWriteHalf,
    packets: Rc<Vec<Packet>>,
    stats: Rc<Stats>,
    end: tokio::time::Instant,
) -> OwnedWriteHalf {
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out = Vec::with_capacity(2048);
    let mut seq = 0u32;
    // Bounded: one packet per tick until the end of the run.
    while ticks.tick().await < end {
        let packet = &packets[seq as usize % packets.len()];
        let sent_us = stats.now_us();
        hallway_wire::audio_frame(&mut out, seq, sent_us, packet.level, &packet.opus);
        if mouth.write_all(&out).await.is_err() {
            break;
        }
        stats.on_sent(sent_us);
        seq = seq.wrapping_add(1);
    }
    mouth
}

/// `count` new accounts made on `addr`, signed in: (token, user id).
async fn sign_ups(
    http: &reqwest::Client,
    addr: &str,
    prefix: &str,
    count: usize,
) -> Vec<(String, u32)> {
    futures_util::stream::iter(0..count)
        .map(|i| async move { accounts::sign_up(http, addr, &format!("{prefix}{i}")).await })
        .buffered(32)
        .collect()
        .await
}

async fn get_json(http: &reqwest::Client, addr: &str, path: &str) -> Option<Value> {
    http.get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Polls `path` on every node until each answer satisfies `ok`; panics after [`PATIENCE`].
async fn wait_on_every_node(
    http: &reqwest::Client,
    addrs: &[String],
    path: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut ready = true;
        for addr in addrs {
            if !get_json(http, addr, path).await.is_some_and(|v| ok(&v)) {
                ready = false;
                break;
            }
        }
        if ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each of `names` from /metrics, summed over the nodes (0 where missing).
async fn counters(http: &reqwest::Client, addrs: &[String], names: &[&str]) -> Vec<f64> {
    let mut totals = vec![0.0; names.len()];
    for addr in addrs {
        let Ok(answer) = http.get(format!("http://{addr}/metrics")).send().await else {
            continue;
        };
        let Ok(text) = answer.text().await else {
            continue;
        };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            if let Some(at) = names.iter().position(|n| *n == key) {
                totals[at] += value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    totals
}

/// The median of each figure across runs (NaN, shown as "–", where a run had none).
fn median(outs: &[Outcome]) -> Outcome {
    let pick = |f: fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = outs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Outcome {
        sent: pick(|o| o.sent as f64) as u64,
        home_listeners: pick(|o| o.home_listeners as f64) as u64,
        edge_listeners: pick(|o| o.edge_listeners as f64) as u64,
        home_delivered: pick(|o| o.home_delivered as f64) as u64,
        edge_delivered: pick(|o| o.edge_delivered as f64) as u64,
        dropped: pick(|o| o.dropped as f64) as u64,
        home_p50_ms: pick(|o| o.home_p50_ms),
        home_p99_ms: pick(|o| o.home_p99_ms),
        edge_p50_ms: pick(|o| o.edge_p50_ms),
        edge_p99_ms: pick(|o| o.edge_p99_ms),
        hop_p50_ms: pick(|o| o.hop_p50_ms),
        hop_p99_ms: pick(|o| o.hop_p99_ms),
        home_cpu_s: pick(|o| o.home_cpu_s),
        edges_cpu_s: pick(|o| o.edges_cpu_s),
        nats_cpu_s: pick(|o| o.nats_cpu_s),
        frames_per_cpu_s: pick(|o| o.frames_per_cpu_s),
        home_us_per_delivery: pick(|o| o.home_us_per_delivery),
        edge_us_per_delivery: pick(|o| o.edge_us_per_delivery),
        edge_cost_ratio: pick(|o| o.edge_cost_ratio),
        generator_pct: pick(|o| o.generator_pct),
        disconnects: pick(|o| o.disconnects as f64) as u64,
        server_dropped: pick(|o| o.server_dropped as f64) as u64,
        cluster_dropped: pick(|o| o.cluster_dropped as f64) as u64,
        resyncs: pick(|o| o.resyncs as f64) as u64,
    }
}

/// A figure with `decimals` decimals, or "–" when there is none (NaN).
fn fig(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".to_string()
    }
}

/// One node count's medians, in full.
fn report_line(k: usize, args: &Args, m: &Outcome) {
    println!(
        "{k} node(s), 1x{} (median of {}): sent {} | delivered {} (home {}, edges {}) dropped {} | \
         {} frames/CPU-s (nodes + NATS) | CPU over {} s: home {} s, edges {} s, NATS {} s, \
         generator {} % of a core | per delivery: home {} us, edge {} us (x{}) | latency ms: \
         home p50 {} p99 {}, edge p50 {} p99 {}, hop +{} / +{} | disconnects {}, \
         server-dropped {}, NATS-dropped {}, resyncs {}",
        args.listeners,
        args.runs,
        m.sent,
        m.home_delivered + m.edge_delivered,
        m.home_delivered,
        m.edge_delivered,
        m.dropped,
        fig(m.frames_per_cpu_s, 0),
        args.seconds,
        fig(m.home_cpu_s, 2),
        fig(m.edges_cpu_s, 2),
        fig(m.nats_cpu_s, 2),
        fig(m.generator_pct, 0),
        fig(m.home_us_per_delivery, 2),
        fig(m.edge_us_per_delivery, 2),
        fig(m.edge_cost_ratio, 2),
        fig(m.home_p50_ms, 2),
        fig(m.home_p99_ms, 2),
        fig(m.edge_p50_ms, 2),
        fig(m.edge_p99_ms, 2),
        fig(m.hop_p50_ms, 2),
        fig(m.hop_p99_ms, 2),
        m.disconnects,
        m.server_dropped,
        m.cluster_dropped,
        m.resyncs,
    );
}

/// The markdown table for docs/benchmarks.md, the command line, and the budgets.
fn table(args: &Args, cores: usize, medians: &[(usize, Outcome)]) {
    println!();
    println!(
        "1 speaker x {} listeners, listener i on node i % k (n1 is the home); {} s measured, \
         median of {} runs; generator, nats-server, PostgreSQL and nodes share {cores} cores \
         (nothing pinned). Command: `{}`",
        args.listeners,
        args.seconds,
        args.runs,
        args.command()
    );
    println!();
    println!(
        "| nodes | listeners home / edges | delivered home / edges | dropped | frames per CPU-s \
         (nodes + NATS) | home CPU-s | edges CPU-s | NATS CPU-s | µs per delivery home / edge \
         (edge ÷ home) | p50 ms home / edge | p99 ms home / edge | hop adds p50 / p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (k, m) in medians {
        println!(
            "| {k} | {} / {} | {} / {} | {} | {} | {} | {} | {} | {} / {} ({}) | {} / {} | \
             {} / {} | {} / {} |",
            m.home_listeners,
            m.edge_listeners,
            m.home_delivered,
            m.edge_delivered,
            m.dropped,
            fig(m.frames_per_cpu_s, 0),
            fig(m.home_cpu_s, 2),
            fig(m.edges_cpu_s, 2),
            fig(m.nats_cpu_s, 2),
            fig(m.home_us_per_delivery, 2),
            fig(m.edge_us_per_delivery, 2),
            fig(m.edge_cost_ratio, 2),
            fig(m.home_p50_ms, 2),
            fig(m.edge_p50_ms, 2),
            fig(m.home_p99_ms, 2),
            fig(m.edge_p99_ms, 2),
            fig(m.hop_p50_ms, 2),
            fig(m.hop_p99_ms, 2),
        );
    }
    println!();
    for (k, m) in medians.iter().filter(|(k, _)| *k > 1) {
        let verdict = |v: f64, budget: f64| {
            if !v.is_finite() {
                "no data"
            } else if v <= budget {
                "within"
            } else {
                "OVER"
            }
        };
        println!(
            "budgets, {k} nodes: hop +p50 {} ms ({} {HOP_P50_BUDGET_MS} ms), hop +p99 {} ms \
             ({} {HOP_P99_BUDGET_MS} ms), edge ÷ home CPU per delivery {} ({} {EDGE_COST_BUDGET})",
            fig(m.hop_p50_ms, 2),
            verdict(m.hop_p50_ms, HOP_P50_BUDGET_MS),
            fig(m.hop_p99_ms, 2),
            verdict(m.hop_p99_ms, HOP_P99_BUDGET_MS),
            fig(m.edge_cost_ratio, 2),
            verdict(m.edge_cost_ratio, EDGE_COST_BUDGET),
        );
    }
}
