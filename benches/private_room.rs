//! What end-to-end encryption costs a private room (#13), against a public one, with the
//! real client library, a real `hallway serve` and a real `hallway play` as the key leader.
//!
//! - **frame**: sealing and opening one 60-byte Opus frame in the live session's key agent
//!   (the whole per-frame path: SFrame, the replay window, the new frame's allocation).
//! - **join**: from a new listener's `LiveSession::start` to the first frame it plays, while
//!   the host speaks (a frame every 20 ms): the join, the leader's batched wrap, the key
//!   message and the first sealed frame. A public room's join is the baseline.
//! - **storm**: 1,000 listeners join within a second or two; the key leader (the host's
//!   `hallway play`, its own process) wraps the key to each. Its CPU from the storm's start
//!   until every listener holds a key, as a share of one core and per join, against the same
//!   storm in a public room.
//!
//! - **fan-out**: one speaker (the client library, sealing in a private room) and 500
//!   listeners on raw connections for 10 s: the server's CPU per delivered frame, private
//!   against public. The server forwards sealed frames as it forwards any: the difference
//!   is 24 more bytes a frame, and the key messages.
//!
//! ```sh
//! cargo bench --bench private_room -- --runs 5
//! ```
//!
//! Rotations (wrapping one key to 100, 1,000 and 5,000 members: time and bytes) are in
//! `benches/e2e_wrap.rs`. `cargo test --all-targets` runs this without `--bench`: a few
//! frames, one join and a storm of 20, asserting only that each listener got its key.
#![allow(clippy::unwrap_used)]

#[path = "support/accounts.rs"]
mod accounts;
// Only its lifted limits.
#[allow(dead_code)]
#[path = "support/packets.rs"]
mod packets;
#[path = "support/server.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hallway::e2e::agent::KeyAgent;
use hallway::identity::DeviceKey;
use hallway::net::live::Backoff;
use hallway::net::{Api, Credentials, Enroll, LiveSession, NetEvent};
use hallway::protocol::{
    AudioFrame, AudioHeader, CreateRoom, PROTOCOL_VERSION, RoomDetail, ServerMessage, Share,
};
use support::Server;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let (frames, joins, storm) = if bench {
        (200_000, 30, 1_000)
    } else {
        (1_000, 2, 20)
    };
    frame_costs(frames, if bench { runs } else { 1 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (listeners, seconds) = if bench { (500, 10) } else { (10, 1) };
        let mut per_frame = [Vec::new(), Vec::new()];
        for _ in 0..if bench { runs } else { 1 } {
            for private in [false, true] {
                let (us, frames) = fan_out(private, listeners, seconds).await;
                eprintln!(
                    "fan-out run ({}): {us:.2} µs of server CPU per delivered frame, {frames} frames",
                    kind(private)
                );
                per_frame[usize::from(private)].push(us);
            }
        }
        let public = median(&mut per_frame[0]);
        let private = median(&mut per_frame[1]);
        println!(
            "fanout 1 speaker x {listeners} listeners, {seconds} s: server CPU per delivered frame {public:.2} µs public, {private:.2} µs private ({:.2}x; medians of {})",
            private / public,
            per_frame[0].len()
        );
        for private in [false, true] {
            let mut waits = Vec::new();
            for _ in 0..if bench { runs } else { 1 } {
                waits.extend(join_to_first_audio(private, joins).await);
            }
            report_joins(private, &mut waits);
        }
        for private in [false, true] {
            let mut shares = Vec::new();
            for run in 0..if bench { runs } else { 1 } {
                let (cpu_s, wall_s) = leader_in_a_storm(private, storm).await;
                eprintln!(
                    "storm run {run} ({}): leader {:.0} ms CPU over {:.2} s",
                    kind(private),
                    cpu_s * 1e3,
                    wall_s
                );
                shares.push((cpu_s, wall_s));
            }
            shares.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
            let (cpu_s, wall_s) = shares[shares.len() / 2];
            println!(
                "storm  {:7}  {storm} joins: the leader's CPU {:.1} % of one core over {:.2} s, {:.3} ms per join (median of {})",
                kind(private),
                100.0 * cpu_s / wall_s,
                wall_s,
                cpu_s * 1e3 / storm as f64,
                shares.len()
            );
        }
    });
}

fn kind(private: bool) -> &'static str {
    if private { "private" } else { "public" }
}

/// Seals and opens `frames` frames through two key agents that share a room key.
fn frame_costs(frames: usize, runs: usize) {
    let (mut speaker, mut listener) = agents();
    let header = AudioHeader {
        speaker_id: 0,
        sequence: 0,
        timestamp_48k: 0,
        level: 30,
        voice: true,
    };
    let opus = [0x5a; 60];
    let mut seal_ns = Vec::new();
    let mut open_ns = Vec::new();
    for _ in 0..runs {
        let plain: Vec<AudioFrame> = (0..frames as u32)
            .map(|s| {
                let header = AudioHeader {
                    sequence: s,
                    timestamp_48k: s * 960,
                    ..header
                };
                AudioFrame::new(header, &opus).unwrap()
            })
            .collect();
        let started = Instant::now();
        let sealed: Vec<AudioFrame> = plain
            .iter()
            .map(|f| speaker.seal(f).unwrap().stamped(1))
            .collect();
        seal_ns.push(started.elapsed().as_nanos() as f64 / frames as f64);
        let started = Instant::now();
        for frame in &sealed {
            std::hint::black_box(listener.open(frame).unwrap());
        }
        open_ns.push(started.elapsed().as_nanos() as f64 / frames as f64);
        // The next run's counters go on from here: a fresh speaker key would need a new
        // listener window, which these two agents already have.
        let (s, l) = agents();
        speaker = s;
        listener = l;
    }
    println!(
        "frame  seal {:.0} ns, open {:.0} ns per 60-byte frame (median of {runs} runs of {frames}); 24 bytes added",
        median(&mut seal_ns),
        median(&mut open_ns)
    );
}

/// A host's agent and a listener's, the listener given the host's key.
fn agents() -> (KeyAgent, KeyAgent) {
    use hallway::protocol::{Participant, Role, RoomSummary};
    let (host_key, listener_key) = (DeviceKey::generate(), DeviceKey::generate());
    let person = |id: u32, role: Role, key: &DeviceKey| Participant {
        id,
        handle: format!("u{id}"),
        name: format!("u{id}"),
        role,
        muted: false,
        hand_raised_at_ms: None,
        invited: false,
        speaking: false,
        recording: false,
        device_key: Some(hallway::identity::b64(&key.public().agree)),
        key_epoch: None,
        chat_silenced: false,
    };
    let detail = RoomDetail {
        summary: RoomSummary {
            id: "bench".into(),
            title: "bench".into(),
            host: None,
            speakers: Vec::new(),
            listener_count: 1,
            created_at_ms: 0,
            recording: false,
            followed: false,
            private: true,
            replay: false,
        },
        participants: vec![
            person(1, Role::Host, &host_key),
            person(2, Role::Listener, &listener_key),
        ],
        unlisted: 0,
        hands: Vec::new(),
        stage_limit: 20,
        share_secret: None,
        life: Default::default(),
    };
    let snapshot = |you| ServerMessage::RoomSnapshot {
        protocol_version: PROTOCOL_VERSION,
        you,
        room: detail.clone(),
    };
    let mut host = KeyAgent::new("bench", &host_key, 0);
    let mut listener = KeyAgent::new("bench", &listener_key, 0);
    listener.on_message(&snapshot(2), 0);
    for command in host.on_message(&snapshot(1), 0) {
        if let hallway::protocol::ClientCommand::ShareKey { epoch, keys } = command {
            for key in keys {
                listener.on_message(
                    &ServerMessage::Key {
                        from: 1,
                        epoch,
                        sealed: key.sealed,
                    },
                    0,
                );
            }
        }
    }
    assert!(
        listener.status().epoch.is_some(),
        "the listener got the key"
    );
    (host, listener)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[i.min(values.len() - 1)]
}

fn report_joins(private: bool, waits: &mut [f64]) {
    waits.sort_by(f64::total_cmp);
    println!(
        "join   {:7}  first frame played {:.0} ms p50, {:.0} ms p95 after start ({} joins)",
        kind(private),
        percentile(waits, 0.5),
        percentile(waits, 0.95),
        waits.len()
    );
}

fn device_api(addr: &str, name: &str) -> Api {
    Api::new(url::Url::parse(&format!("http://{addr}")).unwrap()).with_credentials(Credentials {
        key: Arc::new(DeviceKey::generate()),
        enroll: Some(Enroll {
            name: name.into(),
            ..Enroll::default()
        }),
    })
}

fn frame(sequence: u32) -> AudioFrame {
    let header = AudioHeader {
        speaker_id: 0,
        sequence,
        timestamp_48k: sequence.wrapping_mul(960),
        level: 20,
        voice: true,
    };
    AudioFrame::new(header, &[0x5a; 60]).unwrap()
}

/// A room (private, shared by link, or public) whose host is in it, unmuted, on the client
/// library: the host's session, the room and its share secret.
async fn hosted_room(
    server: &Server,
    private: bool,
    title: &str,
) -> (LiveSession, String, Option<String>) {
    let host_api = device_api(&server.addr, "Hera");
    host_api.sign_in().await.unwrap();
    let detail = host_api
        .create(&CreateRoom {
            title: title.into(),
            private: private.then(|| Share {
                link: true,
                ..Share::default()
            }),
            replay: false,
        })
        .await
        .unwrap();
    let (room, share) = (detail.summary.id.clone(), detail.share_secret.clone());
    let (tx, mut events) = mpsc::channel(4096);
    let host = LiveSession::start(&host_api, &room, tx, Box::new(|_| {}), Backoff::default());
    loop {
        if let Some(NetEvent::Server(ServerMessage::RoomSnapshot { .. })) = events.recv().await {
            break;
        }
    }
    host.send(hallway::protocol::ClientCommand::Unmute);
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    (host, room, share)
}

/// Milliseconds from each newcomer's start to the first frame it plays.
async fn join_to_first_audio(private: bool, joins: usize) -> Vec<f64> {
    let server = Server::start(packets::LIFTED_LIMITS);
    let (host, room, share) = hosted_room(&server, private, "join bench").await;
    let speaking = Arc::new(AtomicBool::new(true));
    let talk = {
        let speaking = speaking.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut sequence = 0;
            while speaking.load(Ordering::Relaxed) {
                tick.tick().await;
                host.send_audio(&frame(sequence));
                sequence += 1;
            }
            host
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waits = Vec::new();
    for i in 0..joins {
        let api = device_api(&server.addr, &format!("listener{i}"));
        api.sign_in().await.unwrap();
        let (first_tx, mut first_rx) = mpsc::channel::<Instant>(1);
        let on_audio = Box::new(move |_frame: AudioFrame| {
            let _ = first_tx.try_send(Instant::now());
        });
        let (tx, mut events) = mpsc::channel(4096);
        let started = Instant::now();
        let live =
            LiveSession::start_shared(&api, &room, share.clone(), tx, on_audio, Backoff::default());
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let heard = tokio::time::timeout(PATIENCE, first_rx.recv())
            .await
            .expect("the newcomer heard the host")
            .unwrap();
        waits.push((heard - started).as_secs_f64() * 1e3);
        live.leave().await;
        // The leader rotates after each leave; the next join waits out the bound so that
        // it measures a join, not a rotation.
        tokio::time::sleep(Duration::from_millis(if private { 2_200 } else { 100 })).await;
    }
    speaking.store(false, Ordering::Relaxed);
    let _host = talk.await;
    waits
}

/// The server's CPU per frame delivered to `listeners` raw listeners over `seconds`, while
/// one client-library speaker talks (sealing, in a private room); and the frames counted.
async fn fan_out(private: bool, listeners: usize, seconds: u64) -> (f64, u64) {
    let server = Server::start(packets::LIFTED_LIMITS);
    let (host, room, share) = hosted_room(&server, private, "fan-out").await;
    let share = share.map(|s| format!("?share={s}")).unwrap_or_default();
    let http = reqwest::Client::new();
    let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    for i in 0..listeners {
        let token = accounts::sign_up(&http, &server.addr, &format!("l{i}"))
            .await
            .0;
        let url = format!("ws://{}/api/v2/rooms/{room}/live{share}", server.addr);
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let (frames, counting) = (frames.clone(), counting.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if matches!(message, Message::Binary(_)) && counting.load(Ordering::Relaxed) {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Keys handed out, everyone settled.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let talk = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for sequence in 0..(seconds * 50 + 100) as u32 {
            tick.tick().await;
            host.send_audio(&frame(sequence));
        }
        host
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let cpu = server.cpu_s();
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    counting.store(false, Ordering::Relaxed);
    let cpu = server.cpu_s() - cpu;
    let _host = talk.await;
    let delivered = frames.load(Ordering::Relaxed);
    assert!(delivered > 0, "the listeners got frames");
    (cpu * 1e6 / delivered as f64, delivered)
}

/// A `hallway play` child: the room's host, and in a private room its key leader.
struct Player {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Player {
    fn cpu_s(&self) -> f64 {
        support::cpu_s_of(self.child.id())
    }
}

/// The leader's CPU (s) and the storm's length (s), from the first join until every
/// listener has its key (private) or its snapshot (public).
async fn leader_in_a_storm(private: bool, listeners: usize) -> (f64, f64) {
    let server = Server::start(packets::LIFTED_LIMITS);
    let dir = tempfile::tempdir().unwrap();
    let clip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech/alice.wav");
    let mut args = vec![
        "play".to_string(),
        "--server".into(),
        format!("http://{}", server.addr),
        "--name".into(),
        "Hera".into(),
        "--create".into(),
        "storm".into(),
        "--loop".into(),
    ];
    if private {
        args.extend(["--private".into(), "--share".into(), "link".into()]);
    }
    args.push(clip.to_str().unwrap().into());
    let stdout = dir.path().join("stdout");
    let mut player = Player {
        child: Command::new(env!("CARGO_BIN_EXE_hallway"))
            .args(&args)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        _dir: dir,
    };
    let deadline = Instant::now() + PATIENCE;
    let link = loop {
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("/rooms/")) {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline && player.child.try_wait().unwrap().is_none(),
            "the player printed no link"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let target = hallway::net::Target::parse(&link).unwrap();
    let room = target.room.unwrap();
    let share = target
        .share
        .map(|s| format!("?share={s}"))
        .unwrap_or_default();
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..listeners {
        tokens.push(
            accounts::sign_up(&http, &server.addr, &format!("l{i}"))
                .await
                .0,
        );
    }
    // Let the player settle (joined, on stage, speaking).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let cpu_before = player.cpu_s();
    let started = Instant::now();
    let mut joins = Vec::new();
    for token in tokens {
        let url = format!("ws://{}/api/v2/rooms/{room}/live{share}", server.addr);
        joins.push(tokio::spawn(async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            // Until this listener holds what it needs: its key, or in a public room its
            // snapshot. Then it stays, silent, reading nothing more.
            let wanted = if private {
                "\"type\":\"key\""
            } else {
                "room_snapshot"
            };
            loop {
                match tokio::time::timeout(PATIENCE, ws.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) if text.contains(wanted) => break,
                    Ok(Some(Ok(_))) => {}
                    other => panic!("a listener never got its key: {other:?}"),
                }
            }
            ws
        }));
    }
    let mut open = Vec::new();
    for join in joins {
        open.push(join.await.unwrap());
    }
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = player.cpu_s() - cpu_before;
    for mut ws in open {
        let _ = ws.close(None).await;
    }
    drop(server);
    (cpu_s, wall_s)
}
