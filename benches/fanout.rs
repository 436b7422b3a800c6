//! Fan-out load generator: Hallway's server and Mumble's, side by side, on loopback.
//!
//! Starts the server as a child process pinned to core 0 (the generator pins itself to core
//! 1), opens M speaker and N listener connections, replays pre-encoded Opus packets at 50 a
//! second per speaker with each packet's send time inside it, and reports frames sent,
//! delivered and dropped, send→receive latency (HDR histogram), the server's CPU seconds
//! and peak RSS from /proc, and delivered frames per server CPU-second. Every figure is the
//! median of `--runs` runs, each on a fresh server.
//!
//! ```sh
//! cargo bench --bench fanout -- --listeners 100,1000,5000            # 1 speaker, both servers
//! cargo bench --bench fanout -- --speakers 13 --listeners 2000
//! cargo bench --bench fanout -- --scenario idle --rooms 1000 --connections 5000
//! cargo bench --bench fanout -- --scenario storm --listeners 1000 --storm 1000
//! cargo bench --bench fanout -- --scenario client --seconds 60
//! ```
//!
//! `cargo test --all-targets` runs this without `--bench`: then it is a 2 s smoke run
//! (1 speaker × 5 listeners against Hallway only) that asserts frames were delivered.
#![allow(clippy::unwrap_used)]

#[path = "support/accounts.rs"]
mod accounts;
#[path = "fanout/hallway_wire.rs"]
mod hallway_wire;
#[path = "fanout/mumble.rs"]
mod mumble;
#[path = "support/packets.rs"]
mod packets;
#[path = "fanout/stats.rs"]
mod stats;

use std::any::Any;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use hallway_wire::HallwayServer;
use mumble::MumbleServer;
use packets::{Packet, load_packets};
use stats::{ProcSample, Stats, sample};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// M speakers × N listeners in one room, for each N in --listeners.
    Fanout,
    /// Many idle rooms and connections: CPU and wake-ups when nothing happens.
    Idle,
    /// A join storm while one speaker talks: do existing listeners' latencies hold?
    Storm,
    /// A headless `hallway record` client listening to 3 of 10 speakers: its CPU and RSS.
    Client,
}

#[derive(Debug, Parser)]
#[command(about = "Hallway fan-out benchmark (with Mumble's server for comparison)")]
struct Args {
    /// Set by `cargo bench`; without it this is a smoke run.
    #[arg(long)]
    bench: bool,
    #[arg(long, value_enum, default_value = "fanout")]
    scenario: Scenario,
    /// Listener counts (comma-separated) for fanout; base listeners for storm.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    listeners: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    speakers: usize,
    /// Seconds measured per run (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip Mumble's server.
    #[arg(long)]
    no_mumble: bool,
    /// Idle scenario: rooms, and connections spread over them.
    #[arg(long, default_value_t = 1000)]
    rooms: usize,
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Storm scenario: newcomers, joining evenly over --storm-seconds.
    #[arg(long, default_value_t = 1000)]
    storm: usize,
    #[arg(long, default_value_t = 10)]
    storm_seconds: u64,
    /// Spread the room's fan-out over this many shards, every listener in one (1: none, the
    /// room's actor writes to everyone). Either way the server is then not pinned to a core:
    /// shards are for using more than one.
    #[arg(long)]
    shards: Option<u16>,
    /// Append result rows here (CSV).
    #[arg(long, default_value = "target/fanout.csv")]
    csv: PathBuf,
    /// Ignored: cargo may pass a filter.
    #[arg(hide = true)]
    _filter: Vec<String>,
}

const WARMUP: Duration = Duration::from_secs(2);
/// Frames still in flight after the window closes get this long to arrive.
const GRACE: Duration = Duration::from_secs(1);
const SERVER_CPU: usize = 0;
const GENERATOR_CPU: usize = 1;

fn main() {
    let args = Args::parse();
    if let Some(shards) = args.shards {
        let _ = hallway_wire::SHARDS.set(shards);
    }
    let pin = args.bench
        && args.shards.is_none()
        && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if pin {
        // Before the runtime starts threads; -a covers any that exist already.
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &GENERATOR_CPU.to_string()])
            .arg(std::process::id().to_string())
            .stdout(std::process::Stdio::null())
            .status();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let packets = Rc::new(load_packets());
        if !args.bench {
            smoke(packets).await;
            return;
        }
        let cpu = pin.then_some(SERVER_CPU);
        match args.scenario {
            Scenario::Fanout => {
                for &listeners in &args.listeners {
                    fanout(&args, cpu, args.speakers, listeners, &packets).await;
                }
            }
            Scenario::Idle => idle(&args, cpu).await,
            Scenario::Storm => storm(&args, cpu, &packets).await,
            Scenario::Client => client(&args, cpu, &packets).await,
        }
    });
}

async fn smoke(packets: Rc<Vec<Packet>>) {
    mumble::self_check();
    let server = HallwayServer::start(None);
    let out = run_fanout(&Target::hallway(server), 1, 5, 2, &packets).await;
    println!(
        "fanout smoke: sent {} delivered {} p99 {:.2} ms",
        out.sent, out.delivered, out.p99_ms
    );
    assert!(out.sent > 0, "the speaker sent nothing");
    assert!(out.delivered > 0, "no frame was delivered");
    assert_eq!(out.disconnects, 0, "connections were dropped");
}

/// The server under test, with what it needs to let people in.
enum Target {
    Hallway {
        server: HallwayServer,
        room: RefCell<String>,
        tokens: RefCell<Vec<String>>,
    },
    Mumble {
        server: MumbleServer,
        connector: tokio_rustls::TlsConnector,
    },
}

/// A write half kept open: dropping it would half-close the connection.
type Keep = RefCell<Vec<Box<dyn Any>>>;

/// A speaker's sending half.
enum Mouth {
    Hallway(tokio::net::tcp::OwnedWriteHalf),
    Mumble(tokio::io::WriteHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl Target {
    fn hallway(server: HallwayServer) -> Self {
        Self::Hallway {
            server,
            room: RefCell::default(),
            tokens: RefCell::default(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Self::Hallway { server, .. } => server.pid(),
            Self::Mumble { server, .. } => server.pid(),
        }
    }

    /// Puts `speakers` on the stage (Hallway) or in the root channel (Mumble), with readers
    /// running, and makes `listeners` listener sessions ready to join.
    async fn stage(
        &self,
        speakers: usize,
        listeners: usize,
        stats: &Rc<Stats>,
        stop: &CancellationToken,
    ) -> Vec<Mouth> {
        match self {
            Self::Hallway {
                server,
                room,
                tokens,
            } => {
                let (id, conns) = hallway_wire::stage(server, speakers).await;
                *room.borrow_mut() = id;
                *tokens.borrow_mut() = server
                    .sessions("listener", listeners)
                    .await
                    .into_iter()
                    .map(|(token, _)| token)
                    .collect();
                conns
                    .into_iter()
                    .map(|(reader, write)| {
                        tokio::task::spawn_local(reader.run(stats.clone(), true, stop.clone()));
                        Mouth::Hallway(write)
                    })
                    .collect()
            }
            Self::Mumble { server, connector } => {
                let mut mouths = Vec::new();
                for i in 0..speakers {
                    let (reader, write) =
                        mumble::join(connector, &server.addr, &format!("speaker{i}"))
                            .await
                            .expect("a speaker joins mumble");
                    tokio::task::spawn_local(reader.run(stats.clone(), true, stop.clone()));
                    mouths.push(Mouth::Mumble(write));
                }
                mouths
            }
        }
    }

    /// Listener `i` joins; its reader runs until `stop`.
    async fn join_listener(
        &self,
        i: usize,
        stats: &Rc<Stats>,
        measure: bool,
        stop: &CancellationToken,
        keep: &Keep,
    ) {
        match self {
            Self::Hallway {
                server,
                room,
                tokens,
            } => {
                let token = tokens.borrow()[i].clone();
                let room = room.borrow().clone();
                let ws = hallway_wire::Ws::join(&server.addr, &room, &token).await;
                let (reader, write) = ws.split();
                tokio::task::spawn_local(reader.run(stats.clone(), measure, stop.clone()));
                keep.borrow_mut().push(Box::new(write));
            }
            Self::Mumble { server, connector } => {
                match mumble::join(connector, &server.addr, &format!("listener{i}")).await {
                    Ok((reader, write)) => {
                        tokio::task::spawn_local(reader.run(stats.clone(), measure, stop.clone()));
                        keep.borrow_mut().push(Box::new(write));
                    }
                    // A saturated Mumble resets handshakes; counted, and the run goes on.
                    Err(e) => {
                        eprintln!("  listener{i} could not join mumble: {e}");
                        stats.disconnects.set(stats.disconnects.get() + 1);
                    }
                }
            }
        }
    }

    /// Listeners `range` join, 64 handshakes at a time.
    async fn join_listeners(
        &self,
        range: std::ops::Range<usize>,
        stats: &Rc<Stats>,
        stop: &CancellationToken,
        keep: &Keep,
    ) {
        futures_util::stream::iter(range)
            .map(|i| self.join_listener(i, stats, true, stop, keep))
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
    }
}

/// Sends one packet every 20 ms from `start` until `end`, each stamped with its send time.
async fn speak(
    mut mouth: Mouth,
    packets: Rc<Vec<Packet>>,
    stats: Rc<Stats>,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
) -> Mouth {
    let mut ticks = tokio::time::interval_at(start, Duration::from_millis(20));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out = Vec::with_capacity(2048);
    let mut seq = 0u32;
    // Bounded: one packet per tick until the end of the run.
    while ticks.tick().await < end {
        let packet = &packets[seq as usize % packets.len()];
        let sent_us = stats.now_us();
        let ok = match &mut mouth {
            Mouth::Hallway(w) => {
                hallway_wire::audio_frame(&mut out, seq, sent_us, packet.level, &packet.opus);
                w.write_all(&out).await.is_ok()
            }
            Mouth::Mumble(w) => {
                mumble::audio_message(&mut out, sent_us, &packet.opus);
                w.write_all(&out).await.is_ok() && w.flush().await.is_ok()
            }
        };
        if !ok {
            break;
        }
        stats.on_sent(sent_us);
        seq = seq.wrapping_add(1);
    }
    mouth
}

/// What one run measured.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    sent: u64,
    delivered: u64,
    dropped: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The join storm's p99 for existing listeners (storm scenario only).
    storm_p99_ms: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
    frames_per_cpu_s: f64,
    disconnects: u64,
    /// The generator's own CPU use over the window, % of one core: near 100 means the
    /// generator, not the server, set the pace and the latencies include its queueing.
    generator_pct: f64,
}

/// One fan-out run: speakers talk to everyone for `seconds` after the warm-up.
async fn run_fanout(
    target: &Target,
    speakers: usize,
    listeners: usize,
    seconds: u64,
    packets: &Rc<Vec<Packet>>,
) -> Outcome {
    let stats = Rc::new(Stats::new());
    let stop = CancellationToken::new();
    let keep = Keep::default();
    let mouths = target.stage(speakers, listeners, &stats, &stop).await;
    target
        .join_listeners(0..listeners, &stats, &stop, &keep)
        .await;
    let t0 = stats.now_us() + WARMUP.as_micros() as u64;
    let t1 = t0 + seconds * 1_000_000;
    stats.set_window(t0, t1);
    let end = tokio::time::Instant::from_std(stats.at_us(t1)) + Duration::from_millis(100);
    let speaking: Vec<_> = mouths
        .into_iter()
        .enumerate()
        .map(|(i, mouth)| {
            // Spread speakers over the 20 ms period, as real ones would be.
            let start = tokio::time::Instant::now()
                + Duration::from_micros((20_000 * i / speakers.max(1)) as u64);
            tokio::task::spawn_local(speak(mouth, packets.clone(), stats.clone(), start, end))
        })
        .collect();
    let (before, gen_before) = measure_between(&stats, t0, target.pid()).await;
    let (after, gen_after) = measure_between(&stats, t1, target.pid()).await;
    let mut mouths = Vec::new();
    for s in speaking {
        mouths.push(s.await);
    }
    tokio::time::sleep(GRACE).await;
    stop.cancel();
    drop(mouths);
    let receivers = (speakers + listeners - 1) as u64;
    let expected = stats.sent.get() * receivers;
    let cpu_s = after.cpu_s - before.cpu_s;
    let (p50_ms, p99_ms, max_ms) = stats.latency_ms(0);
    Outcome {
        sent: stats.sent.get(),
        delivered: stats.delivered.get(),
        dropped: expected.saturating_sub(stats.delivered.get()),
        p50_ms,
        p99_ms,
        max_ms,
        storm_p99_ms: f64::NAN,
        cpu_s,
        peak_rss_mib: after.peak_rss_mib,
        frames_per_cpu_s: stats.delivered.get() as f64 / cpu_s.max(0.01),
        disconnects: stats.disconnects.get(),
        generator_pct: 100.0 * (gen_after.cpu_s - gen_before.cpu_s) / seconds as f64,
    }
}

/// Waits until `at_us` and samples the server and the generator.
async fn measure_between(stats: &Stats, at_us: u64, pid: u32) -> (ProcSample, ProcSample) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(stats.at_us(at_us))).await;
    (sample(pid), sample(std::process::id()))
}

async fn start(server: &str, cpu: Option<usize>) -> Target {
    match server {
        "hallway" => Target::hallway(HallwayServer::start(cpu)),
        _ => Target::Mumble {
            server: MumbleServer::start(cpu).await,
            connector: mumble::connector(),
        },
    }
}

fn servers(args: &Args) -> Vec<&'static str> {
    if args.no_mumble {
        vec!["hallway"]
    } else {
        vec!["hallway", "mumble"]
    }
}

async fn fanout(
    args: &Args,
    cpu: Option<usize>,
    speakers: usize,
    listeners: usize,
    packets: &Rc<Vec<Packet>>,
) {
    let mut medians = Vec::new();
    for name in servers(args) {
        let mut outs = Vec::new();
        for run in 0..args.runs {
            let target = start(name, cpu).await;
            let out = run_fanout(&target, speakers, listeners, args.seconds, packets).await;
            eprintln!("  {name} {speakers}x{listeners} run {run}: {out:?}");
            outs.push(out);
        }
        let m = median(&outs);
        report(
            args,
            "fanout",
            name,
            speakers,
            listeners,
            args.seconds,
            &outs,
            &m,
        );
        medians.push((name, m));
    }
    ratios(&medians);
}

/// Ours ÷ Mumble's, when both ran.
fn ratios(medians: &[(&str, Outcome)]) {
    if let [(_, ours), (_, theirs)] = medians {
        let per_frame = |o: &Outcome| o.cpu_s / o.delivered.max(1) as f64;
        println!(
            "  ratio hallway/mumble: CPU per delivered frame {:.2}, p50 {:.2}, p99 {:.2}",
            per_frame(ours) / per_frame(theirs),
            ours.p50_ms / theirs.p50_ms,
            ours.p99_ms / theirs.p99_ms,
        );
    }
}

fn median(outs: &[Outcome]) -> Outcome {
    let pick = |f: &dyn Fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = outs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Outcome {
        sent: pick(&|o| o.sent as f64) as u64,
        delivered: pick(&|o| o.delivered as f64) as u64,
        dropped: pick(&|o| o.dropped as f64) as u64,
        p50_ms: pick(&|o| o.p50_ms),
        p99_ms: pick(&|o| o.p99_ms),
        max_ms: pick(&|o| o.max_ms),
        storm_p99_ms: pick(&|o| o.storm_p99_ms),
        cpu_s: pick(&|o| o.cpu_s),
        peak_rss_mib: pick(&|o| o.peak_rss_mib),
        frames_per_cpu_s: pick(&|o| o.frames_per_cpu_s),
        disconnects: pick(&|o| o.disconnects as f64) as u64,
        generator_pct: pick(&|o| o.generator_pct),
    }
}

/// Prints a median row (with the spread of p99 and CPU across runs) and appends it to CSV.
#[allow(clippy::too_many_arguments)] // one CSV row's columns
fn report(
    args: &Args,
    scenario: &str,
    server: &str,
    speakers: usize,
    listeners: usize,
    window_s: u64,
    outs: &[Outcome],
    m: &Outcome,
) {
    let range = |f: &dyn Fn(&Outcome) -> f64| {
        let v: Vec<f64> = outs.iter().map(f).collect();
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let (p99_lo, p99_hi) = range(&|o| o.p99_ms);
    let (cpu_lo, cpu_hi) = range(&|o| o.cpu_s);
    println!(
        "{scenario} {server} {speakers}x{listeners} (median of {}): sent {} delivered {} dropped {} | \
         latency p50 {:.2} p99 {:.2} (runs {:.2}..{:.2}) max {:.2} ms | storm p99 {:.2} ms | \
         server CPU {:.2} s over {} s (runs {:.2}..{:.2}) = {:.0} frames/CPU-s | peak RSS {:.1} MiB | \
         disconnects {} | generator {:.0} % of a core",
        outs.len(),
        m.sent,
        m.delivered,
        m.dropped,
        m.p50_ms,
        m.p99_ms,
        p99_lo,
        p99_hi,
        m.max_ms,
        m.storm_p99_ms,
        m.cpu_s,
        window_s,
        cpu_lo,
        cpu_hi,
        m.frames_per_cpu_s,
        m.peak_rss_mib,
        m.disconnects,
        m.generator_pct,
    );
    let new = !args.csv.exists();
    if let Some(dir) = args.csv.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut line = String::new();
    if new {
        line.push_str(
            "scenario,server,speakers,listeners,seconds,runs,sent,delivered,dropped,p50_ms,p99_ms,\
             p99_min_ms,p99_max_ms,max_ms,storm_p99_ms,cpu_s,cpu_min_s,cpu_max_s,frames_per_cpu_s,\
             peak_rss_mib,disconnects,generator_pct\n",
        );
    }
    line.push_str(&format!(
        "{scenario},{server},{speakers},{listeners},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},\
         {:.3},{:.3},{:.3},{:.3},{:.0},{:.1},{},{:.0}\n",
        window_s,
        outs.len(),
        m.sent,
        m.delivered,
        m.dropped,
        m.p50_ms,
        m.p99_ms,
        p99_lo,
        p99_hi,
        m.max_ms,
        m.storm_p99_ms,
        m.cpu_s,
        cpu_lo,
        cpu_hi,
        m.frames_per_cpu_s,
        m.peak_rss_mib,
        m.disconnects,
        m.generator_pct
    ));
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.csv)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

/// CPU seconds, voluntary and involuntary switches a second, RSS, peak RSS, disconnects.
type IdleRow = (f64, f64, f64, f64, f64, u64);

/// Idle: rooms with connections in them and nobody talking. Mumble gets the same number of
/// connections in its root channel (making channels needs an admin account).
async fn idle(args: &Args, cpu: Option<usize>) {
    for name in servers(args) {
        let mut rows = Vec::new();
        for _ in 0..args.runs {
            let target = start(name, cpu).await;
            let stats = Rc::new(Stats::new());
            let stop = CancellationToken::new();
            let keep = Keep::default();
            match &target {
                Target::Hallway { server, .. } => {
                    let hosts = server.sessions("host", args.rooms).await;
                    let others = server
                        .sessions("idle", args.connections.saturating_sub(args.rooms))
                        .await;
                    let rooms: Vec<String> = futures_util::stream::iter(&hosts)
                        .map(|(token, _)| server.create_room(token, "idle"))
                        .buffered(32)
                        .collect()
                        .await;
                    let joins = hosts
                        .iter()
                        .zip(rooms.iter())
                        .map(|((token, _), room)| (token, room))
                        .chain(
                            others
                                .iter()
                                .enumerate()
                                .map(|(i, (token, _))| (token, &rooms[i % rooms.len()])),
                        );
                    futures_util::stream::iter(joins)
                        .map(|(token, room)| {
                            let (stats, stop, keep) = (&stats, &stop, &keep);
                            async move {
                                let ws = hallway_wire::Ws::join(&server.addr, room, token).await;
                                let (reader, write) = ws.split();
                                tokio::task::spawn_local(reader.run(
                                    stats.clone(),
                                    false,
                                    stop.clone(),
                                ));
                                keep.borrow_mut().push(Box::new(write));
                            }
                        })
                        .buffered(64)
                        .collect::<Vec<()>>()
                        .await;
                }
                Target::Mumble { .. } => {
                    target
                        .join_listeners(0..args.connections, &stats, &stop, &keep)
                        .await;
                }
            }
            // Let the joins' events drain before measuring quiet.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let a = sample(target.pid());
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
            let b = sample(target.pid());
            stop.cancel();
            let row = (
                b.cpu_s - a.cpu_s,
                (b.voluntary_switches - a.voluntary_switches) as f64 / args.seconds as f64,
                (b.involuntary_switches - a.involuntary_switches) as f64 / args.seconds as f64,
                b.rss_mib,
                b.peak_rss_mib,
                stats.disconnects.get(),
            );
            eprintln!("  {name} idle run: {row:?}");
            rows.push(row);
        }
        let med = |f: &dyn Fn(&IdleRow) -> f64| {
            let mut v: Vec<f64> = rows.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let rss = med(&|r| r.3);
        println!(
            "idle {name} {} rooms, {} connections (median of {}): CPU {:.3} s over {} s | \
             voluntary switches {:.1}/s, involuntary {:.1}/s | RSS {:.1} MiB ({:.1} KiB per \
             connection), peak {:.1} MiB | disconnects {}",
            if name == "hallway" { args.rooms } else { 1 },
            args.connections,
            rows.len(),
            med(&|r| r.0),
            args.seconds,
            med(&|r| r.1),
            med(&|r| r.2),
            rss,
            rss * 1024.0 / args.connections as f64,
            med(&|r| r.4),
            med(&|r| r.5 as f64),
        );
    }
}

/// A join storm: 1 speaker and `listeners` listeners for `seconds`, then `storm` newcomers
/// join evenly over `storm_seconds` while the speaker goes on. Existing listeners' latency
/// is kept apart for the two phases.
async fn storm(args: &Args, cpu: Option<usize>, packets: &Rc<Vec<Packet>>) {
    let base = args.listeners.first().copied().unwrap_or(1000);
    let mut medians = Vec::new();
    for name in servers(args) {
        let mut outs = Vec::new();
        for _ in 0..args.runs {
            let target = start(name, cpu).await;
            let stats = Rc::new(Stats::new());
            let stop = CancellationToken::new();
            let keep = Keep::default();
            let mouths = target.stage(1, base + args.storm, &stats, &stop).await;
            target.join_listeners(0..base, &stats, &stop, &keep).await;
            let t0 = stats.now_us() + WARMUP.as_micros() as u64;
            let t_storm = t0 + args.seconds * 1_000_000;
            let t1 = t_storm + args.storm_seconds * 1_000_000;
            stats.set_window(t0, t1);
            let end = tokio::time::Instant::from_std(stats.at_us(t1));
            let speaking: Vec<_> = mouths
                .into_iter()
                .map(|m| {
                    tokio::task::spawn_local(speak(
                        m,
                        packets.clone(),
                        stats.clone(),
                        tokio::time::Instant::now(),
                        end,
                    ))
                })
                .collect();
            let (before, _) = measure_between(&stats, t0, target.pid()).await;
            tokio::time::sleep_until(tokio::time::Instant::from_std(stats.at_us(t_storm))).await;
            stats.phase.set(1);
            let every = Duration::from_secs(args.storm_seconds) / args.storm.max(1) as u32;
            let mut ticks = tokio::time::interval(every);
            let joining = futures_util::stream::FuturesUnordered::new();
            for i in base..base + args.storm {
                ticks.tick().await;
                joining.push(target.join_listener(i, &stats, false, &stop, &keep));
            }
            // Joins still in progress finish concurrently with the rest.
            let (_, _) = tokio::join!(joining.collect::<Vec<()>>(), tokio::time::sleep_until(end));
            let after = sample(target.pid());
            let mut mouths = Vec::new();
            for s in speaking {
                mouths.push(s.await);
            }
            tokio::time::sleep(GRACE).await;
            stop.cancel();
            drop(mouths);
            let (p50_ms, p99_ms, max_ms) = stats.latency_ms(0);
            let (_, storm_p99_ms, storm_max) = stats.latency_ms(1);
            let out = Outcome {
                sent: stats.sent.get(),
                delivered: stats.delivered.get(),
                dropped: 0,
                p50_ms,
                p99_ms,
                max_ms: max_ms.max(storm_max),
                storm_p99_ms,
                cpu_s: after.cpu_s - before.cpu_s,
                peak_rss_mib: after.peak_rss_mib,
                frames_per_cpu_s: stats.delivered.get() as f64
                    / (after.cpu_s - before.cpu_s).max(0.01),
                disconnects: stats.disconnects.get(),
                generator_pct: f64::NAN,
            };
            eprintln!(
                "  {name} storm run: {out:?} ({} and {} samples)",
                stats.latency_count(0),
                stats.latency_count(1)
            );
            outs.push(out);
        }
        let m = median(&outs);
        report(
            args,
            "storm",
            name,
            1,
            base,
            args.seconds + args.storm_seconds,
            &outs,
            &m,
        );
        medians.push((name, m));
    }
}

/// Client footprint: `hallway record` in a room where 3 of 10 speakers on the stage talk.
async fn client(args: &Args, cpu: Option<usize>, packets: &Rc<Vec<Packet>>) {
    let mut rows = Vec::new();
    for _ in 0..args.runs {
        let target = Target::hallway(HallwayServer::start(cpu));
        let stats = Rc::new(Stats::new());
        let stop = CancellationToken::new();
        let mouths = target.stage(10, 0, &stats, &stop).await;
        let (url, room) = match &target {
            Target::Hallway { server, room, .. } => (server.url(), room.borrow().clone()),
            Target::Mumble { .. } => unreachable!("the client scenario is Hallway's"),
        };
        let end = tokio::time::Instant::now() + Duration::from_secs(args.seconds + 8);
        let mut speaking = Vec::new();
        let mut silent = Vec::new();
        for (i, mouth) in mouths.into_iter().enumerate() {
            if i < 3 {
                let start = tokio::time::Instant::now() + Duration::from_millis(7 * i as u64);
                speaking.push(tokio::task::spawn_local(speak(
                    mouth,
                    packets.clone(),
                    stats.clone(),
                    start,
                    end,
                )));
            } else {
                silent.push(mouth);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var("HALLWAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hallway").to_string());
        // On the generator's core: the server keeps its own.
        let mut command = match cpu {
            Some(_) => {
                let mut c = std::process::Command::new("taskset");
                c.args(["-c", &GENERATOR_CPU.to_string(), &bin]);
                c
            }
            None => std::process::Command::new(&bin),
        };
        let mut child = command
            .args([
                "record", "--server", &url, "--name", "recorder", "--room", &room,
            ])
            .args(["--seconds", &(args.seconds + 6).to_string()])
            .arg(dir.path().join("mix.wav"))
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_STATE_HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start hallway record");
        let pid = child.id();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let a = sample(pid);
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let b = sample(pid);
        let _ = child.kill();
        let _ = child.wait();
        stop.cancel();
        let row = (
            100.0 * (b.cpu_s - a.cpu_s) / args.seconds as f64,
            b.peak_rss_mib,
            b.rss_mib,
        );
        eprintln!("  client run: {row:?}");
        rows.push(row);
        drop(silent);
    }
    let med = |f: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "client hallway record, 3 of 10 speakers talking, {} s (median of {}): CPU {:.2} % of \
         one core | peak RSS {:.1} MiB, RSS at end {:.1} MiB",
        args.seconds,
        rows.len(),
        med(&|r| r.0),
        med(&|r| r.1),
        med(&|r| r.2),
    );
}
