//! What chat and reactions cost a big room (#15): 5,000 listeners on a real `hallway
//! serve` (pinned to one core), in alternating phases of the same room, so both are
//! measured under the same conditions:
//!
//! - **quiet**: nobody chats or reacts;
//! - **busy**: listeners write 10 chat lines and send 100 reactions a second (each from a
//!   different listener, round the room).
//!
//! First with nobody talking (what chat and reactions cost alone), then with one speaker
//! sending a frame every 20 ms (the issue's room; there the generator, reading 250,000
//! frames a second, may fall behind).
//!
//! For each phase: the control messages each listener received per second (median and the
//! most any listener got), the chat and reaction messages among them, and the server's CPU
//! (share of one core). Medians over `--runs` pairs of phases.
//!
//! ```sh
//! cargo bench --bench room_life -- --listeners 5000 --seconds 10 --runs 3
//! ```
//!
//! `cargo test --all-targets` runs this without `--bench`: 20 listeners, 2 s phases,
//! asserting that the chat and the reactions reached every listener batched.
#![allow(clippy::unwrap_used)]

#[path = "support/accounts.rs"]
mod accounts;
// Only its lifted limits.
#[allow(dead_code)]
#[path = "support/packets.rs"]
mod packets;
#[path = "support/server.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use hallway::protocol::chat::Reaction;
use hallway::protocol::{AudioFrame, AudioHeader, ServerMessage};
use serde_json::json;
use support::Server;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

const CHAT_PER_S: u64 = 10;
const REACTIONS_PER_S: u64 = 100;

struct Args {
    bench: bool,
    listeners: usize,
    seconds: u64,
    runs: usize,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let bench = argv.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Args {
        bench,
        listeners: value("--listeners").unwrap_or(if bench { 5_000 } else { 20 }) as usize,
        seconds: value("--seconds").unwrap_or(if bench { 10 } else { 2 }),
        runs: value("--runs").unwrap_or(if bench { 3 } else { 1 }) as usize,
    }
}

/// What one listener counted in the current phase.
#[derive(Default)]
struct Counts {
    control: AtomicU64,
    chat: AtomicU64,
    reactions: AtomicU64,
    chat_lines: AtomicU64,
}

impl Counts {
    fn take(&self) -> [u64; 4] {
        [
            self.control.swap(0, Ordering::Relaxed),
            self.chat.swap(0, Ordering::Relaxed),
            self.reactions.swap(0, Ordering::Relaxed),
            self.chat_lines.swap(0, Ordering::Relaxed),
        ]
    }
}

async fn connect(
    addr: &str,
    room: &str,
    token: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let url = format!("ws://{addr}/api/v2/rooms/{room}/live");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

fn frame(sequence: u32) -> Message {
    let header = AudioHeader {
        speaker_id: 0,
        sequence,
        timestamp_48k: sequence.wrapping_mul(960),
        level: 20,
        voice: true,
    };
    Message::Binary(
        AudioFrame::new(header, &[0x5a; 60])
            .unwrap()
            .bytes()
            .clone(),
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One phase's figures: per listener per second (median, max) of control, chat and
/// reaction messages, chat lines per listener per second, and the server's share of a core.
struct Phase {
    control: (f64, f64),
    chat: (f64, f64),
    reactions: (f64, f64),
    lines: f64,
    cpu: f64,
    /// Seconds measured; messages were counted for [`GRACE`] more.
    seconds: f64,
}

/// Batches still due when a phase ends arrive within this.
const GRACE: Duration = Duration::from_millis(1_100);

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let pinned = args.bench && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    // The room keeps a replay: what writing it costs is measured on its own thread.
    let replays = tempfile::tempdir().unwrap();
    let mut flags: Vec<&str> = packets::LIFTED_LIMITS.to_vec();
    flags.extend(["--replays", replays.path().to_str().unwrap()]);
    let server = if pinned {
        Server::start_pinned(0, &flags)
    } else {
        Server::start(&flags)
    };
    let http = reqwest::Client::new();
    let addr = server.addr.clone();
    let (host_token, _) = accounts::sign_up(&http, &addr, "Hera").await;
    let room: serde_json::Value = http
        .post(format!("http://{addr}/api/v2/rooms"))
        .bearer_auth(&host_token)
        .json(&json!({"title": "room life bench", "replay": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = room["id"].as_str().unwrap().to_string();
    let host = connect(&addr, &room, &host_token).await;
    let (mut host_tx, mut host_rx) = host.split();
    tokio::spawn(async move { while host_rx.next().await.is_some() {} });
    host_tx
        .send(Message::Text(json!({"type": "unmute"}).to_string().into()))
        .await
        .unwrap();

    // Sign-ups in parallel, then every listener connects and counts what it receives.
    let tokens: Vec<String> = futures_util::stream::iter(0..args.listeners)
        .map(|i| {
            let (http, addr) = (http.clone(), addr.clone());
            async move { accounts::sign_up(&http, &addr, &format!("fan{i}")).await.0 }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let counting = Arc::new(AtomicBool::new(false));
    let mut sinks: Vec<Sink> = Vec::with_capacity(args.listeners);
    let mut counts: Vec<Arc<Counts>> = Vec::with_capacity(args.listeners);
    for token in &tokens {
        let (tx, mut rx) = connect(&addr, &room, token).await.split();
        sinks.push(tx);
        let mine = Arc::new(Counts::default());
        counts.push(mine.clone());
        let counting = counting.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = rx.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                if !counting.load(Ordering::Relaxed) {
                    continue;
                }
                mine.control.fetch_add(1, Ordering::Relaxed);
                match ServerMessage::decode(&text) {
                    Ok(ServerMessage::Chat { lines }) => {
                        mine.chat.fetch_add(1, Ordering::Relaxed);
                        mine.chat_lines
                            .fetch_add(lines.len() as u64, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::Reactions { .. }) => {
                        mine.reactions.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
    }
    eprintln!("{} listeners in the room", args.listeners);

    // The speaker talks while `talking` is set; the frames go on being sent in order.
    let talking = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let talk = {
        let (talking, stop) = (talking.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut sequence = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if !talking.load(Ordering::Relaxed) {
                    continue;
                }
                if host_tx.send(frame(sequence)).await.is_err() {
                    break;
                }
                sequence += 1;
            }
        })
    };

    let mut next_sender = 0;
    let mut speaking_s = 0.0;
    println!(
        "room_life 1 x {} listeners, {} s phases, medians of {}:",
        args.listeners, args.seconds, args.runs
    );
    // A silent room first: chat and reactions alone. Then with the speaker talking, the
    // issue's room (there the generator, reading 50 frames a second on each of the
    // listeners' sockets, may fall behind: compare lines received with the 10 sent).
    for speaking in [false, true] {
        talking.store(speaking, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut quiet = Vec::new();
        let mut busy = Vec::new();
        for run in 0..args.runs {
            for chatter in [false, true] {
                let phase = phase(
                    &args,
                    &server,
                    &counting,
                    &counts,
                    &mut sinks,
                    chatter,
                    &mut next_sender,
                )
                .await;
                eprintln!(
                    "run {run} {} {}: control {:.2}/s per listener (max {:.2}), chat {:.2}/s, reactions {:.2}/s, {:.1} lines/s, server {:.1} % of a core",
                    if speaking { "speaking" } else { "silent" },
                    if chatter { "busy " } else { "quiet" },
                    phase.control.0,
                    phase.control.1,
                    phase.chat.0,
                    phase.reactions.0,
                    phase.lines,
                    phase.cpu * 100.0
                );
                if chatter {
                    busy.push(phase);
                } else {
                    quiet.push(phase);
                }
            }
        }
        report(speaking, &quiet, &busy);
        if speaking {
            speaking_s = quiet
                .iter()
                .chain(&busy)
                .map(|p| p.seconds + GRACE.as_secs_f64())
                .sum();
        }
        if !args.bench {
            check_batched(&busy[0]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = talk.await;
    replay_cost(&server, replays.path(), speaking_s);
}

/// The replay writer's CPU (its own thread in the server) and the disk the speaker's track
/// took, per hour of speech.
fn replay_cost(server: &Server, dir: &std::path::Path, speaking_s: f64) {
    let pid = server.child.id();
    let writer = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "hallway-replays")
        });
    let cpu_s = writer
        .and_then(|task| task.file_name().to_str()?.parse::<u32>().ok())
        .map_or(0.0, |tid| support::thread_cpu_s(pid, tid));
    let bytes: u64 = walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "opus"))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "  replay writing: {:.0} ms of CPU over {speaking_s:.0} s of speech ({:.3} % of a core), {:.1} MB a speaker-hour ({bytes} bytes)",
        cpu_s * 1e3,
        100.0 * cpu_s / speaking_s.max(1.0),
        bytes as f64 / speaking_s.max(1.0) * 3_600.0 / 1e6
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn report(speaking: bool, quiet: &[Phase], busy: &[Phase]) {
    let summary = |phases: &[Phase]| {
        let pick =
            |f: &dyn Fn(&Phase) -> f64| median(&mut phases.iter().map(f).collect::<Vec<_>>());
        (
            pick(&|p| p.control.0),
            pick(&|p| p.control.1),
            pick(&|p| p.chat.0),
            pick(&|p| p.reactions.0),
            pick(&|p| p.lines),
            pick(&|p| p.cpu),
        )
    };
    let q = summary(quiet);
    let b = summary(busy);
    let room = if speaking {
        "one speaker talking"
    } else {
        "nobody talking"
    };
    println!(
        "  {room}, quiet: {:.2} control messages/s per listener (max {:.2}); server {:.1} % of a core",
        q.0,
        q.1,
        q.5 * 100.0
    );
    println!(
        "  {room}, busy ({CHAT_PER_S} lines + {REACTIONS_PER_S} reactions/s sent): {:.2} control messages/s per listener (max {:.2}), of which chat {:.2}/s carrying {:.1} lines/s and reactions {:.2}/s; server {:.1} % of a core (+{:.1} points)",
        b.0,
        b.1,
        b.2,
        b.4,
        b.3,
        b.5 * 100.0,
        (b.5 - q.5) * 100.0
    );
}

/// The smoke run's check: every listener got the chat and the reactions, batched, never
/// one message a line or a reaction.
fn check_batched(busy: &Phase) {
    assert!(
        busy.lines > 0.0 && busy.reactions.0 > 0.0,
        "nothing arrived"
    );
    // The most messages the pacing allows in the window and its grace: one per period,
    // and the first at once.
    let window = busy.seconds + GRACE.as_secs_f64();
    let most = |every_s: f64| ((window / every_s).ceil() + 1.0) / busy.seconds;
    assert!(
        busy.chat.1 <= most(0.5),
        "chat not batched: {:?}",
        busy.chat
    );
    assert!(
        busy.reactions.1 <= most(1.0),
        "reactions not batched: {:?}",
        busy.reactions
    );
    // Without batching each listener would get every line and reaction.
    let unbatched = (CHAT_PER_S + REACTIONS_PER_S) as f64;
    assert!(busy.control.1 < unbatched / 10.0, "{:?}", busy.control);
}

/// One phase: `seconds` of the speaker alone, or with chat and reactions.
#[allow(clippy::too_many_arguments)]
async fn phase(
    args: &Args,
    server: &Server,
    counting: &AtomicBool,
    counts: &[Arc<Counts>],
    sinks: &mut [Sink],
    chatter: bool,
    next_sender: &mut usize,
) -> Phase {
    for c in counts {
        c.take();
    }
    counting.store(true, Ordering::Relaxed);
    let cpu = server.cpu_s();
    let started = tokio::time::Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    // A reaction every 10 ms, and a chat line with every tenth.
    let mut tick = tokio::time::interval(Duration::from_millis(1_000 / REACTIONS_PER_S));
    let mut sent = 0u64;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        if !chatter {
            continue;
        }
        let who = *next_sender % sinks.len();
        *next_sender += 1;
        let reaction = Reaction::ALL[(sent % 5) as usize];
        let mut message = json!({"type": "react", "reaction": reaction.name()}).to_string();
        let _ = sinks[who].send(Message::Text(message.into())).await;
        // Lines come from listeners in turn too (one person may write a line every 2 s).
        if sent.is_multiple_of(REACTIONS_PER_S / CHAT_PER_S) {
            let writer = (sent / (REACTIONS_PER_S / CHAT_PER_S)) as usize % sinks.len();
            message =
                json!({"type": "chat", "text": format!("line {sent}: what a talk")}).to_string();
            let _ = sinks[writer].send(Message::Text(message.into())).await;
        }
        sent += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (server.cpu_s() - cpu) / elapsed;
    // Batches still due arrive within a second.
    tokio::time::sleep(GRACE).await;
    counting.store(false, Ordering::Relaxed);
    let taken: Vec<[u64; 4]> = counts.iter().map(|c| c.take()).collect();
    let per_s = |i: usize| {
        let mut v: Vec<f64> = taken.iter().map(|t| t[i] as f64 / elapsed).collect();
        let max = v.iter().copied().fold(0.0, f64::max);
        (median(&mut v), max)
    };
    Phase {
        control: per_s(0),
        chat: per_s(1),
        reactions: per_s(2),
        lines: per_s(3).0,
        cpu,
        seconds: elapsed,
    }
}
