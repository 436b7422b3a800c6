//! The headless commands (`play`, `record`, `rooms`, `devices`) run as real processes against
//! a real `hallway serve`: what a script sees, exit codes and one-line errors included.
//!
//! Every child gets its own config and state directories (a fresh temp dir), so nothing from
//! the machine's config or kept tokens leaks in, and is killed if the test fails.
#![allow(clippy::unwrap_used)]

mod audio_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Live, TestServer};
use futures_util::StreamExt;
use hallway::audio::files::{AudioSource, WavSource, read_all};
use hallway::protocol::{Role, ServerMessage, UserId};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

/// The most any child may take, startup to exit, for work that should take seconds: generous,
/// for a slow shared CI machine. Only a hang should ever reach it.
const DEADLINE: Duration = Duration::from_secs(90);
/// Samples per second of the engine and of every file here.
const RATE: usize = 48_000;

/// The tests that stream audio in real time run one at a time: two at once on two shared
/// cores can starve the jitter buffers and blur the recordings being measured.
static REAL_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn speech_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/speech")
        .join(format!("{name}.wav"))
}

/// A running `hallway` child with its own config and state directories; stdout and stderr go
/// to files there (a pipe nobody reads could stall it). Killed when dropped.
struct Hallway {
    child: Child,
    dir: TempDir,
    what: String,
}

impl Hallway {
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hallway"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            // Only the flags given here: nothing from the environment the tests run in.
            .env_remove("HALLWAY_SERVER")
            .env_remove("HALLWAY_NAME")
            .env_remove("HALLWAY_HANDLE")
            .env_remove("HALLWAY_KEY")
            .env_remove("HALLWAY_DATA")
            .env_remove("HALLWAY_INPUT")
            .env_remove("HALLWAY_OUTPUT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start hallway");
        Self {
            child,
            dir,
            what: format!("hallway {}", args.join(" ")),
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to exit; panics (with its output) if it outlives [`DEADLINE`].
    async fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` still running after {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                self.what,
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for exit and panics unless it succeeded.
    async fn succeeds(&mut self) {
        let status = self.wait().await;
        assert!(
            status.success(),
            "`{}` failed with {status}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        );
        self.assert_no_panic();
    }

    fn assert_no_panic(&self) {
        let stderr = self.stderr();
        assert!(
            !stderr.contains("panicked"),
            "`{}` panicked:\n{stderr}",
            self.what
        );
    }

    /// Waits for the first complete stdout line that satisfies `wanted`.
    async fn stdout_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self.stdout();
            // Only whole lines: the last one may still be being written.
            if let Some(line) = out.split_inclusive('\n').find_map(|l| {
                let line = l.strip_suffix('\n')?;
                wanted(line).then(|| line.to_string())
            }) {
                return line;
            }
            let exited = self.exited();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "`{}` printed no such line (exit: {exited:?})\nstdout:\n{out}\nstderr:\n{}",
                self.what,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Hallway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hallway` to the end; returns the finished child (for its output) and its status.
async fn run(args: &[&str]) -> (Hallway, ExitStatus) {
    let mut child = Hallway::start(args);
    let status = child.wait().await;
    (child, status)
}

/// Runs `hallway`, expects it to fail with one line on stderr starting `hallway:` and no
/// panic; returns that line.
async fn fails(args: &[&str]) -> String {
    let (child, status) = run(args).await;
    let stderr = child.stderr();
    assert!(
        !status.success(),
        "`{}` succeeded\nstdout:\n{}\nstderr:\n{stderr}",
        child.what,
        child.stdout()
    );
    child.assert_no_panic();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("hallway: "),
        "`{}`: stderr should be one line starting \"hallway: \", got:\n{stderr}",
        child.what
    );
    lines[0].to_string()
}

/// An address nothing listens on: a port bound but not listening, so connections to it are
/// refused. Keep the socket while the address is used: it holds the port, so no other test
/// can take it and start listening there.
fn dead_server() -> (socket2::Socket, String) {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any_port.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, format!("http://{addr}"))
}

/// Reads any WAV the engine writes, as mono samples at 48 kHz.
fn read_wav(path: &Path) -> Vec<f32> {
    let mut source =
        WavSource::open(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(
        source.format(),
        hallway::audio::DeviceFormat::ENGINE,
        "{}",
        path.display()
    );
    read_all(&mut source).unwrap()
}

/// Samples per envelope block: 5 ms.
const BLOCK: usize = 240;

/// Mean absolute value per block: a cheap shape to align by.
fn envelope(samples: &[f32]) -> Vec<f64> {
    samples
        .chunks(BLOCK)
        .map(|b| b.iter().map(|s| f64::from(s.abs())).sum::<f64>() / b.len() as f64)
        .collect()
}

/// Pearson correlation of `a[i]` with `b[i + offset]`, over the overlap.
fn envelope_match(a: &[f64], b: &[f64], offset: isize) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .enumerate()
        .filter_map(|(i, x)| {
            let j = usize::try_from(i as isize + offset).ok()?;
            Some((*x, *b.get(j)?))
        })
        .collect();
    let n = pairs.len().max(1) as f64;
    let (mean_x, mean_y) = pairs
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        xy += (x - mean_x) * (y - mean_y);
        xx += (x - mean_x).powi(2);
        yy += (y - mean_y).powi(2);
    }
    if xx > 0.0 && yy > 0.0 {
        xy / (xx * yy).sqrt()
    } else {
        0.0
    }
}

/// Of these candidates, the one `score` rates highest, and its score.
fn best<T: Copy>(
    candidates: impl Iterator<Item = T>,
    score: impl Fn(T) -> f64,
) -> Option<(T, f64)> {
    candidates
        .map(|c| (c, score(c)))
        .reduce(|a, b| if b.1 > a.1 { b } else { a })
}

/// Normalised correlation of `clip[i]` with `recording[i + offset]` over their overlap.
fn correlation_at_offset(clip: &[f32], recording: &[f32], offset: isize) -> f64 {
    match usize::try_from(offset) {
        Ok(lag) => audio_support::correlation_at(clip, recording, lag),
        Err(_) => {
            let skip = offset.unsigned_abs().min(clip.len());
            audio_support::correlation_at(&clip[skip..], recording, 0)
        }
    }
}

/// How well a recording holds a clip.
struct Match {
    /// Normalised correlation of the clip with the recording, over their overlap, at the
    /// one offset where they match best.
    correlation: f64,
    /// The share of the clip's energy inside the recording, 0..=1.
    found: f64,
    /// That offset: recording minus clip, in ms.
    offset_ms: i64,
}

/// Finds `clip` in `recording`.
///
/// The delay is unknown (the recorder is a separate process that may join after the clip
/// started), so the offset may be negative and is first searched over the whole recording
/// by envelope, then to the sample. There is one offset for the whole clip: the recorder
/// places every frame by the sender's own clock, so a frame skipped, held or moved on the
/// way shows as a drop in correlation.
fn align(clip: &[f32], recording: &[f32]) -> Match {
    let (a, b) = (envelope(clip), envelope(recording));
    // Any offset leaving at least a second of overlap.
    let second = (RATE / BLOCK) as isize;
    let no_match = Match {
        correlation: 0.0,
        found: 0.0,
        offset_ms: 0,
    };
    let Some((coarse, _)) = best(
        -(a.len() as isize) + second..b.len() as isize - second,
        |offset| envelope_match(&a, &b, offset),
    ) else {
        return no_match;
    };
    let block = BLOCK as isize;
    let Some((base, correlation)) = best((coarse - 2) * block..=(coarse + 2) * block, |offset| {
        correlation_at_offset(clip, recording, offset)
    }) else {
        return no_match;
    };
    // The part of the clip the recording spans.
    let first = usize::try_from(-base).unwrap_or(0).min(clip.len());
    let last = usize::try_from(recording.len() as isize - base)
        .unwrap_or(0)
        .clamp(first, clip.len());
    let energy = |part: &[f32]| part.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
    Match {
        correlation,
        found: energy(&clip[first..last]) / energy(clip).max(f64::MIN_POSITIVE),
        offset_ms: base as i64 * 1000 / RATE as i64,
    }
}

/// Checks that `recording` holds `clip`: recognisably, and most of it.
#[track_caller]
fn assert_holds(clip: &[f32], recording: &[f32], what: &str) {
    let found = align(clip, recording);
    let report = format!(
        "{what}: correlation {:.3}, {:.0} % of the clip found, at {} ms",
        found.correlation,
        found.found * 100.0,
        found.offset_ms
    );
    eprintln!("{report}");
    // Opus at 24 kb/s and a decoder that joins mid-stream keep it under 1; a single frame
    // skipped or held shifts everything after it and costs far more than the margin
    // (measured: 0.96 on an idle machine, 0.94 with six busy loops on its two cores).
    assert!(found.correlation >= 0.88, "{report}");
    // The recorder may join a moment after the player starts; most must still be there.
    assert!(found.found >= 0.75, "{report}");
}

/// The next control message within `wait` (skipping audio and speaking indicators), or None.
async fn next_control(live: &mut Live, wait: Duration) -> Option<ServerMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, live.ws.next())
            .await
            .ok()?
            .expect("connection closed")
            .expect("websocket error");
        if let Message::Text(text) = msg {
            let msg = ServerMessage::decode(&text).unwrap();
            if !matches!(msg, ServerMessage::Speaking { .. }) {
                return Some(msg);
            }
        }
    }
}

/// Waits for a control message that `wanted` picks out, within [`DEADLINE`]; if `player`
/// exits first, fails as soon as the host has read what was already on its way.
async fn host_sees<T>(
    host: &mut Live,
    player: &mut Hallway,
    what: &str,
    mut wanted: impl FnMut(&ServerMessage) -> Option<T>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = next_control(host, Duration::from_millis(200))
            .await
            .as_ref()
            .and_then(&mut wanted)
        {
            return found;
        }
        let exited = player.exited();
        if exited.is_some() {
            // The player is gone, but what it did may still be queued behind other messages.
            while let Some(msg) = next_control(host, Duration::from_millis(500)).await {
                if let Some(found) = wanted(&msg) {
                    return found;
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "the host never saw {what} (player exit: {exited:?})\nplayer stderr:\n{}",
            player.stderr()
        );
    }
}

/// Waits for the player's hand to go up; returns its id.
async fn hand_raised(host: &mut Live, player: &mut Hallway) -> UserId {
    host_sees(host, player, "a hand go up", |msg| match msg {
        ServerMessage::HandRaised { user_id, .. } => Some(*user_id),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn played_speech_is_recorded_in_the_mix_and_in_the_speakers_track() {
    let _one_at_a_time = REAL_TIME.lock().await;
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out.wav");
    let tracks = work.path().join("tracks");
    let clip = audio_support::speech_clip("alice");
    let clip_s = clip.len() as f64 / RATE as f64;

    let alice = speech_path("alice");
    let mut player = Hallway::start(&[
        "play",
        "--server",
        &server.base,
        "--name",
        "alice",
        "--create",
        "Read aloud",
        alice.to_str().unwrap(),
    ]);
    let link = player
        .stdout_line(|l| l.starts_with(&format!("{}/rooms/", server.base)))
        .await;
    let room = link.rsplit('/').next().unwrap().to_string();

    // Long enough to hold the whole clip whenever the recorder joins within two seconds.
    let seconds = format!("{:.1}", clip_s + 2.0);
    let mut recorder = Hallway::start(&[
        "record",
        "--server",
        &server.base,
        "--name",
        "rec",
        "--room",
        &room,
        "--seconds",
        &seconds,
        "--tracks",
        tracks.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);

    // While it runs, the room says who is recording it.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = server.get(&format!("/api/v2/rooms/{room}"), None).await;
        let announced = status == 200
            && body["recording"] == json!(true)
            && body["participants"].as_array().is_some_and(|people| {
                people
                    .iter()
                    .any(|p| p["name"] == "rec" && p["recording"] == json!(true))
            });
        if announced {
            break;
        }
        assert!(
            recorder.exited().is_none() && Instant::now() < deadline,
            "the room never showed the recorder recording; last: {status} {body}\nrecorder stderr:\n{}",
            recorder.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    player.succeeds().await;
    recorder.succeeds().await;
    assert!(
        recorder.stderr().contains("recorded "),
        "the recorder says what it wrote:\n{}",
        recorder.stderr()
    );

    let mix = read_wav(&out);
    assert_holds(&clip, &mix, "the mix");
    // The measure tells voices apart: another speaker's clip is not found in this mix.
    let other = align(&audio_support::speech_clip("bob"), &mix);
    assert!(
        other.correlation < 0.5,
        "bob's clip matched alice's recording: {:.3}",
        other.correlation
    );
    let track_files: Vec<PathBuf> = std::fs::read_dir(&tracks)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(
        track_files.len(),
        1,
        "one speaker, one track: {track_files:?}"
    );
    let track = &track_files[0];
    let name = track.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("speaker-") && name.ends_with("-alice.wav"),
        "the track is named after its speaker: {name}"
    );
    assert_holds(&clip, &read_wav(track), "the speaker's track");
}

#[tokio::test]
async fn a_listener_playing_raises_a_hand_and_streams_once_invited() {
    let _one_at_a_time = REAL_TIME.lock().await;
    let server = TestServer::start();
    let (room, mut host, _) = common::room_with(&server, &[]).await;
    let bob = speech_path("bob");
    let mut player = Hallway::start(&[
        "play",
        "--server",
        &server.base,
        "--name",
        "bob",
        "--room",
        &room,
        bob.to_str().unwrap(),
    ]);

    let bob_id = hand_raised(&mut host, &mut player).await;
    host.command(json!({"type": "invite_to_speak", "user_id": bob_id}))
        .await;
    let role = host_sees(
        &mut host,
        &mut player,
        "the player go on stage",
        |msg| match msg {
            ServerMessage::RoleChanged { user_id, role, .. } if *user_id == bob_id => Some(*role),
            _ => None,
        },
    )
    .await;
    assert_eq!(role, Role::Speaker);

    // The host hears the clip until the player is done with it.
    let deadline = Instant::now() + DEADLINE;
    let mut frames_from_bob = 0;
    while player.exited().is_none() {
        assert!(Instant::now() < deadline, "the player never finished");
        if let Ok(Some(Ok(Message::Binary(bytes)))) =
            tokio::time::timeout(Duration::from_millis(100), host.ws.next()).await
        {
            let frame = hallway::protocol::AudioFrame::parse(bytes).unwrap();
            if frame.header.speaker_id == bob_id {
                frames_from_bob += 1;
            }
        }
    }
    player.succeeds().await;
    // About 260 frames of speech; DTX leaves pauses out and a slow machine may drop some.
    assert!(
        frames_from_bob > 100,
        "only {frames_from_bob} audio frames came from the player"
    );
}

#[tokio::test]
async fn a_listener_playing_gives_up_when_nobody_invites_it() {
    let server = TestServer::start();
    let (room, mut host, _) = common::room_with(&server, &[]).await;
    let bob = speech_path("bob");
    let mut player = Hallway::start(&[
        "play",
        "--server",
        &server.base,
        "--name",
        "bob",
        "--room",
        &room,
        "--invite-timeout",
        "2",
        bob.to_str().unwrap(),
    ]);
    hand_raised(&mut host, &mut player).await;
    let status = player.wait().await;
    assert!(!status.success());
    player.assert_no_panic();
    let stderr = player.stderr();
    assert!(
        stderr.lines().count() == 1
            && stderr.starts_with(&format!(
                "hallway: no permission to speak in room {room}: a moderator has to invite you"
            )),
        "{stderr}"
    );
}

#[tokio::test]
async fn rooms_lists_live_rooms_as_a_table_and_as_json() {
    let server = TestServer::start();
    let host = server.session("Hera").await;
    let room = server.create_room(&host, "Morning standup").await;
    let _host_live = Live::join(&server, &room, &host).await;

    let (table, status) = run(&["rooms", "--server", &server.base, "--name", "lister"]).await;
    assert!(status.success(), "{}", table.stderr());
    let stdout = table.stdout();
    assert!(stdout.lines().next().unwrap().starts_with("ID"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&room) && l.contains("Morning standup") && l.contains("Hera")),
        "{stdout}"
    );

    let (json, status) = run(&[
        "rooms",
        "--json",
        "--server",
        &server.base,
        "--name",
        "lister",
    ])
    .await;
    assert!(status.success(), "{}", json.stderr());
    let listing: Value = serde_json::from_str(&json.stdout())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", json.stdout()));
    let rooms = listing["rooms"].as_array().expect("a rooms array");
    assert!(
        rooms
            .iter()
            .any(|r| r["id"] == room.as_str() && r["title"] == "Morning standup"),
        "{listing}"
    );
}

#[tokio::test]
async fn devices_lists_the_audio_host_even_without_a_sound_card() {
    let (devices, status) = run(&["devices"]).await;
    assert!(status.success(), "{}", devices.stderr());
    devices.assert_no_panic();
    assert!(
        devices.stdout().starts_with("Audio host: "),
        "{}",
        devices.stdout()
    );
}

#[tokio::test]
async fn completions_and_the_manual_page_name_every_command() {
    let (bash, status) = run(&["completions", "bash"]).await;
    assert!(status.success(), "{}", bash.stderr());
    let (man, status) = run(&["man"]).await;
    assert!(status.success(), "{}", man.stderr());
    assert!(
        man.stdout().starts_with(".ie"),
        "roff: {}",
        &man.stdout()[..40]
    );
    for command in ["serve", "rooms", "devices", "demo", "play", "record"] {
        assert!(
            bash.stdout().contains(command),
            "bash completion lacks {command}"
        );
        assert!(man.stdout().contains(command), "the manual lacks {command}");
    }
    let (_, status) = run(&["completions", "tcsh"]).await;
    assert!(!status.success(), "an unknown shell is refused");
}

#[tokio::test]
async fn play_refuses_missing_and_unreadable_files_before_creating_a_room() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("missing.wav");
    let text = work.path().join("notes.txt");
    std::fs::write(&text, "not audio at all\n").unwrap();
    let garbage = work.path().join("garbage.wav");
    std::fs::write(&garbage, b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunkjunk").unwrap();

    for file in [&missing, &text, &garbage] {
        let line = fails(&[
            "play",
            "--server",
            &server.base,
            "--name",
            "p",
            "--create",
            "Never",
            file.to_str().unwrap(),
        ])
        .await;
        let name = file.to_str().unwrap();
        assert!(line.contains(name), "names the file: {line}");
        assert_eq!(line.matches(name).count(), 1, "says it once: {line}");
    }
    let (_, listing) = server.get("/api/v2/rooms", None).await;
    assert_eq!(listing["rooms"], json!([]), "no room was left behind");
}

#[tokio::test]
async fn a_room_that_does_not_exist_is_a_clear_error() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out.wav");
    let bob = speech_path("bob");
    let line = fails(&[
        "play",
        "--server",
        &server.base,
        "--name",
        "p",
        "--room",
        "nosuchroom",
        bob.to_str().unwrap(),
    ])
    .await;
    assert!(line.contains("hallway rooms"), "says what to do: {line}");
    let line = fails(&[
        "record",
        "--server",
        &server.base,
        "--name",
        "r",
        "--room",
        "nosuchroom",
        "--seconds",
        "5",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(line.contains("hallway rooms"), "says what to do: {line}");
    assert!(!out.exists(), "no empty recording left behind");
}

#[tokio::test]
async fn a_server_that_is_down_is_a_clear_error() {
    let (_port_held, server) = dead_server();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out.wav");
    let bob = speech_path("bob");
    let commands: [&[&str]; 3] = [
        &["rooms", "--server", &server],
        &[
            "play",
            "--server",
            &server,
            "--name",
            "p",
            "--create",
            "T",
            bob.to_str().unwrap(),
        ],
        &[
            "record",
            "--server",
            &server,
            "--name",
            "r",
            "--room",
            "abc",
            "--seconds",
            "5",
            out.to_str().unwrap(),
        ],
    ];
    for args in commands {
        let line = fails(args).await;
        assert!(
            line.contains("cannot reach the Hallway server") && line.contains(&server),
            "{line}"
        );
        assert_eq!(
            line.matches("cannot reach").count(),
            1,
            "says it once: {line}"
        );
    }
    assert!(!out.exists(), "no recording written");
}

#[tokio::test]
async fn record_refuses_bad_arguments() {
    let server = TestServer::start();
    let host = server.session("Hera").await;
    let room = server.create_room(&host, "Recorded").await;
    let _host_live = Live::join(&server, &room, &host).await;
    let work = tempfile::tempdir().unwrap();
    let mp3 = work.path().join("out.mp3");
    let wav = work.path().join("out.wav");

    let line = fails(&[
        "record",
        "--server",
        &server.base,
        "--name",
        "r",
        "--room",
        &room,
        "--seconds",
        "5",
        mp3.to_str().unwrap(),
    ])
    .await;
    assert!(line.contains("out.mp3") && line.contains(".wav"), "{line}");
    assert!(!mp3.exists(), "nothing written");

    for seconds in ["0", "-1", "NaN", "inf"] {
        let line = fails(&[
            "record",
            "--server",
            &server.base,
            "--name",
            "r",
            "--room",
            &room,
            &format!("--seconds={seconds}"),
            wav.to_str().unwrap(),
        ])
        .await;
        assert!(line.contains("--seconds"), "{seconds}: {line}");
    }
    assert!(!wav.exists(), "nothing written");
}

#[tokio::test]
async fn rooms_without_a_server_says_how_to_name_one() {
    let line = fails(&["rooms"]).await;
    assert!(line.contains("--server"), "{line}");
}

/// The account commands end to end, as one person on one device key: create, show, follow,
/// the room list with followed rooms first, a profile card, an invitation, errors.
#[tokio::test]
async fn account_commands_make_follow_and_list_followed_rooms_first() {
    fn argv(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fan.key");
    let key = key.to_str().unwrap();
    let star = server.session("Star").await;
    let star_room = server.create_room(&star, "The star's room").await;
    let _star_live = Live::join(&server, &star_room, &star).await;
    let other = server.session("Other").await;
    let newer = server.create_room(&other, "A newer room").await;
    let _other_live = Live::join(&server, &newer, &other).await;
    let with = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--server".into(),
            server.base.clone(),
            "--key".into(),
            key.into(),
        ]);
        all
    };

    let created = with(&["account", "create", "--handle", "fan_1", "--name", "Fan"]);
    let (made, status) = run(&argv(&created)).await;
    assert!(status.success(), "{}", made.stderr());
    assert!(
        made.stdout().contains("created @fan_1 (Fan)"),
        "{}",
        made.stdout()
    );
    // The same device again: it has an account already.
    let line = fails(&argv(&created)).await;
    assert!(line.contains("already has an account"), "{line}");

    let follow = with(&["follow", &format!("@{}", star.user.handle)]);
    let (followed, status) = run(&argv(&follow)).await;
    assert!(status.success(), "{}", followed.stderr());
    assert!(
        followed.stdout().contains("following @"),
        "{}",
        followed.stdout()
    );

    let (table, status) = run(&argv(&with(&["rooms"]))).await;
    assert!(status.success(), "{}", table.stderr());
    let stdout = table.stdout();
    let rows: Vec<&str> = stdout.lines().skip(1).take(2).collect();
    assert!(
        rows[0].starts_with(&star_room) && rows[0].contains("★ The star's room"),
        "followed first:\n{stdout}"
    );
    assert!(rows[1].starts_with(&newer), "then the rest:\n{stdout}");

    let (card, status) = run(&argv(&with(&["profile", &star.user.handle]))).await;
    assert!(status.success(), "{}", card.stderr());
    assert!(
        card.stdout()
            .contains("1 followers, 0 following; you follow them"),
        "{}",
        card.stdout()
    );

    let (me, status) = run(&argv(&with(&["account", "--json"]))).await;
    assert!(status.success(), "{}", me.stderr());
    let me: serde_json::Value = serde_json::from_str(&me.stdout()).unwrap();
    assert_eq!(me["user"]["handle"], "fan_1");
    assert_eq!(me["following"], json!([star.user.id]));
    assert_eq!(me["devices"].as_array().unwrap().len(), 1);

    let line = fails(&argv(&with(&["follow", "@nobody_here"]))).await;
    assert!(
        line.contains("nobody on this server is @nobody_here"),
        "{line}"
    );
    let line = fails(&argv(&with(&["block", "@fan_1"]))).await;
    assert!(line.contains("that is you"), "{line}");
    let line = fails(&argv(&with(&["follow", "not a handle!"]))).await;
    assert!(line.contains("is not a handle"), "{line}");

    // Two keys, one config file: each key keeps its own token, so a bot's key never signs
    // in as (or replaces) the person's own account.
    let config = dir.path().join("shared.toml");
    let config = config.to_str().unwrap();
    for (key, handle) in [("alpha.key", "alpha_1"), ("beta.key", "beta_1")] {
        let key = dir.path().join(key);
        let (made, status) = run(&[
            "account",
            "create",
            "--handle",
            handle,
            "--server",
            &server.base,
            "--config",
            config,
            "--key",
            key.to_str().unwrap(),
        ])
        .await;
        assert!(status.success(), "{}", made.stderr());
    }
    let alpha = dir.path().join("alpha.key");
    let (me, status) = run(&[
        "account",
        "--json",
        "--server",
        &server.base,
        "--config",
        config,
        "--key",
        alpha.to_str().unwrap(),
    ])
    .await;
    assert!(status.success(), "{}", me.stderr());
    let me: serde_json::Value = serde_json::from_str(&me.stdout()).unwrap();
    assert_eq!(
        me["user"]["handle"], "alpha_1",
        "the token kept for beta's key is beta's"
    );
    let kept = std::fs::read_to_string(config).unwrap();
    assert_eq!(kept.matches(server.base.as_str()).count(), 2, "{kept}");
}

/// A private room (#13): `play --private` prints a share link; `record` with that link
/// holds the key and gets the speech; a member's raw connection without the key gets
/// frames that are not the speech whatever an Opus decoder makes of them.
#[tokio::test]
async fn speech_in_a_private_room_is_recorded_by_a_member_and_is_noise_on_the_wire() {
    let _one_at_a_time = REAL_TIME.lock().await;
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("private.wav");
    let clip = audio_support::speech_clip("alice");
    let clip_s = clip.len() as f64 / RATE as f64;
    let alice = speech_path("alice");
    let mut player = Hallway::start(&[
        "play",
        "--server",
        &server.base,
        "--name",
        "alice",
        "--create",
        "Read aloud, privately",
        "--private",
        "--share",
        "link",
        alice.to_str().unwrap(),
    ]);
    let link = player
        .stdout_line(|l| l.starts_with(&format!("{}/rooms/", server.base)))
        .await;
    let target = hallway::net::Target::parse(&link).unwrap();
    let (room, secret) = (target.room.unwrap(), target.share.unwrap());

    // Someone let in by the link, on a raw connection: no key agent, no key.
    let spy = server.session("spy").await;
    let url = format!("{}?share={secret}", server.ws_url(&room));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", spy.token).parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut spy = Live::joined(ws, &spy).await;
    assert!(spy.snapshot.summary.private);

    let seconds = format!("{:.1}", clip_s + 2.0);
    let mut recorder = Hallway::start(&[
        "record",
        "--server",
        &server.base,
        "--name",
        "rec",
        "--room",
        &link,
        "--seconds",
        &seconds,
        out.to_str().unwrap(),
    ]);
    player.succeeds().await;
    recorder.succeeds().await;
    assert_holds(
        &clip,
        &read_wav(&out),
        "a member's recording of a private room",
    );

    // What the wire carried, decoded as if it were Opus.
    let mut decoder = hallway::audio::codec::OpusDecoder::new().unwrap();
    let mut wire = Vec::new();
    let (mut frames, mut not_opus) = (0, 0);
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(500), spy.ws.next()).await
    {
        if let Message::Binary(bytes) = message {
            let frame = hallway::protocol::AudioFrame::parse(bytes).unwrap();
            frames += 1;
            if opus::packet::get_nb_samples(frame.opus(), 48_000).ok() != Some(960) {
                not_opus += 1;
            }
            let mut pcm = vec![0.0f32; 960];
            decoder.decode(frame.opus(), &mut pcm).unwrap();
            wire.extend_from_slice(&pcm);
        }
    }
    assert!(
        frames as f64 > clip_s * 40.0,
        "the spy got the room's frames: {frames}"
    );
    let found = align(&clip, &wire);
    assert!(
        found.correlation < 0.5,
        "the speech is in what the wire carried: correlation {:.3} ({not_opus} of {frames} frames not even Opus)",
        found.correlation
    );
}

/// Scheduled rooms (#15) through the binary: `schedule --title --at`, the list (text and
/// JSON), `export` to an iCalendar file at the room's time, `start`, and a clear error for
/// a time that cannot be read or has passed.
#[tokio::test]
async fn schedule_list_export_and_start_through_the_binary() {
    fn argv(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host.key");
    let key = key.to_str().unwrap().to_string();
    let with = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--server".into(),
            server.base.clone(),
            "--key".into(),
            key.clone(),
        ]);
        all
    };
    let (made, status) = run(&argv(&with(&[
        "account", "create", "--handle", "hera_1", "--name", "Hera",
    ])))
    .await;
    assert!(status.success(), "{}", made.stderr());

    // A month ahead, to the minute; an offset makes the instant the same on every machine.
    let at = chrono::Utc::now() + chrono::Duration::days(30);
    let at = at - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&at)));
    let typed = at.format("%Y-%m-%dT%H:%M:00+00:00").to_string();
    let (scheduled, status) = run(&argv(&with(&[
        "schedule",
        "--title",
        "Rust office hours",
        "--at",
        &typed,
        "--description",
        "Bring questions",
        "--json",
    ])))
    .await;
    assert!(status.success(), "{}", scheduled.stderr());
    let room: serde_json::Value = serde_json::from_str(&scheduled.stdout()).unwrap();
    assert_eq!(
        room["starts_at_ms"].as_i64().unwrap() / 60_000,
        at.timestamp_millis() / 60_000
    );
    let id = room["id"].as_u64().unwrap().to_string();

    let (list, status) = run(&argv(&with(&["schedule", "list"]))).await;
    assert!(status.success(), "{}", list.stderr());
    assert!(
        list.stdout().contains("Rust office hours") && list.stdout().contains("(@hera_1)"),
        "{}",
        list.stdout()
    );

    let ics = dir.path().join("talk.ics");
    let (export, status) = run(&argv(&with(&[
        "schedule",
        "export",
        &id,
        ics.to_str().unwrap(),
    ])))
    .await;
    assert!(status.success(), "{}", export.stderr());
    let calendar = std::fs::read_to_string(&ics).unwrap();
    let start = format!("DTSTART:{}", at.format("%Y%m%dT%H%M00Z"));
    let end = format!(
        "DTEND:{}",
        (at + chrono::Duration::hours(1)).format("%Y%m%dT%H%M00Z")
    );
    for want in [
        "BEGIN:VCALENDAR",
        "SUMMARY:Rust office hours",
        start.as_str(),
        end.as_str(),
    ] {
        assert!(calendar.contains(want), "{want} missing:\n{calendar}");
    }

    let line = fails(&argv(&with(&[
        "schedule",
        "--title",
        "Soon",
        "--at",
        "next tuesday",
    ])))
    .await;
    assert!(line.contains("2026-12-03 18:00"), "{line}");
    let line = fails(&argv(&with(&[
        "schedule",
        "--title",
        "Gone",
        "--at",
        "2001-01-01T00:00:00+00:00",
    ])))
    .await;
    assert!(line.contains("that time has passed"), "{line}");
    let line = fails(&argv(&with(&["schedule", "export", "999999", "x.ics"]))).await;
    assert!(line.contains("no such scheduled room"), "{line}");

    let (started, status) = run(&argv(&with(&["schedule", "start", &id]))).await;
    assert!(status.success(), "{}", started.stderr());
    assert!(
        started.stdout().contains("Rust office hours is live"),
        "{}",
        started.stdout()
    );
    let live = server.get("/api/v2/rooms", None).await.1;
    assert_eq!(live["rooms"][0]["title"], "Rust office hours", "{live}");
}

/// Replays (#15): a room with its replay on, two speakers played one after the other by
/// `hallway play`, then `hallway replay get` mixes the server's tracks into one file in
/// which each speech is found, and at its speaker's time on the room's timeline.
#[tokio::test]
async fn a_replay_holds_each_speech_at_its_speakers_time() {
    let _one_at_a_time = REAL_TIME.lock().await;
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let hera = server.session("Hera").await;
    let (status, created) = server
        .post_json(
            "/api/v2/rooms",
            Some(&hera.token),
            json!({"title": "On the record", "replay": true}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["replay"], true, "everyone sees it before joining");
    let room = created["id"].as_str().unwrap().to_string();
    let mut host = Live::join(&server, &room, &hera).await;
    assert!(host.snapshot.summary.replay);
    // A private room is never replayed.
    let (status, refused) = server
        .post_json(
            "/api/v2/rooms",
            Some(&hera.token),
            json!({"title": "Secret", "replay": true, "private": {"link": true}}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    let mut spoken = Vec::new();
    // When the host heard each speaker start: the wall clock, not the replay's own index.
    let mut heard_at = Vec::new();
    for name in ["alice", "bob"] {
        let speech = speech_path(name);
        let mut player = Hallway::start(&[
            "play",
            "--server",
            &server.base,
            "--name",
            name,
            "--room",
            &room,
            speech.to_str().unwrap(),
        ]);
        let raised = host
            .wait_for(|m| matches!(m, ServerMessage::HandRaised { .. }))
            .await;
        let ServerMessage::HandRaised { user_id, .. } = raised else {
            unreachable!()
        };
        host.command(json!({"type": "invite_to_speak", "user_id": user_id}))
            .await;
        // Speaking indicators are skipped by `Live::next`: read the socket for the first.
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), host.ws.next())
                .await
                .expect("no speaking indicator")
                .expect("the host's connection closed")
                .unwrap();
            if let Message::Text(text) = message
                && matches!(
                    ServerMessage::decode(&text),
                    Ok(ServerMessage::Speaking { user_id: u, speaking: true }) if u == user_id
                )
            {
                break;
            }
        }
        heard_at.push(Instant::now());
        player.succeeds().await;
        spoken.push((name, user_id));
    }
    host.command(json!({"type": "end_room"})).await;

    // The replay is listed once the room has ended.
    let listed_by = Instant::now() + Duration::from_secs(20);
    let replay = loop {
        assert!(Instant::now() < listed_by, "the replay was not listed");
        let (_, list) = server.get("/api/v2/replays", None).await;
        if let Some(r) = list["replays"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == room.as_str()))
        {
            break r.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(replay["title"], "On the record");
    // `?limit=N` lists the newest N; anything but a number is a clear JSON error.
    let (_, none) = server.get("/api/v2/replays?limit=0", None).await;
    assert_eq!(none["replays"], json!([]));
    let (_, one) = server.get("/api/v2/replays?limit=1", None).await;
    assert_eq!(one["replays"][0]["id"], room.as_str());
    let refused = server.get("/api/v2/replays?limit=lots", None).await;
    common::assert_api_error(&refused, 400, "bad_request");
    assert_eq!(replay["incomplete"], Value::Null, "{replay}");
    let tracks = replay["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2, "{replay}");

    let out = work.path().join("replay.wav");
    let (got, status) = run(&[
        "replay",
        "get",
        &room,
        out.to_str().unwrap(),
        "--server",
        &server.base,
        "--name",
        "listener",
    ])
    .await;
    assert!(status.success(), "{}", got.stderr());
    let mixed = read_wav(&out);
    let started = replay["started_at_ms"].as_u64().unwrap();
    let mut found_at = Vec::new();
    for (name, user_id) in spoken {
        let track = tracks
            .iter()
            .find(|t| t["user"]["id"] == user_id)
            .unwrap_or_else(|| panic!("no track for {name}: {replay}"));
        assert_eq!(track["user"]["name"], name);
        let at_ms = track["first_ms"].as_u64().unwrap() - started;
        // The player sends nothing in silence (DTX): a track starts at the first frame
        // with speech in it, so the clip is compared from its first speech too.
        let clip = audio_support::speech_clip(name);
        let first_speech = clip
            .chunks(960)
            .position(|frame| {
                (frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32).sqrt() > 0.01
            })
            .unwrap_or(0);
        let clip = clip[first_speech * 960..].to_vec();
        let found = align(&clip, &mixed);
        eprintln!(
            "{name}: correlation {:.3}, found {:.0} %, at {} ms (track starts at {at_ms} ms)",
            found.correlation,
            found.found * 100.0,
            found.offset_ms
        );
        assert!(
            found.correlation >= 0.85,
            "{name}: {:.3}",
            found.correlation
        );
        assert!(found.found >= 0.9, "{name}: {:.2}", found.found);
        // At the speaker's time: within a few frames of where their track starts.
        assert!(
            (found.offset_ms - at_ms as i64).abs() <= 150,
            "{name} found at {} ms, the track starts at {at_ms} ms",
            found.offset_ms
        );
        found_at.push(found.offset_ms);
    }
    // And at the speakers' times as the room heard them: bob started as long after alice in
    // the file as the host heard him start after her (speaking indicators, the wall clock).
    let heard_gap = (heard_at[1] - heard_at[0]).as_millis() as i64;
    let file_gap = found_at[1] - found_at[0];
    assert!(
        (heard_gap - file_gap).abs() <= 250,
        "bob came {heard_gap} ms after alice in the room, {file_gap} ms in the replay"
    );

    // The host deletes it; someone else cannot.
    let bob = server.session("Bobby").await;
    let path = format!("/api/v2/replays/{room}");
    let (status, _) = server
        .request(reqwest::Method::DELETE, &path, Some(&bob.token), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .request(reqwest::Method::DELETE, &path, Some(&hera.token), None)
        .await;
    assert_eq!(status, 204);
    let line = fails(&[
        "replay",
        "get",
        &room,
        out.to_str().unwrap(),
        "--server",
        &server.base,
        "--name",
        "listener",
    ])
    .await;
    assert!(line.contains("no replay"), "{line}");
}
