//! Voice over a bad network, as a listener hears it: `hallway play --loop` speaks the four
//! speech clips into a room, and the interactive client (in a tmux pane, writing its real
//! playout to a WAV with `--output`) listens through an impairment relay that delays,
//! jitters, holds (like TCP retransmissions) and stalls what the server sends it.
//! `benches/impaired/score.py` scores each 4 s window with PESQ (wide band) against the
//! source and counts speech frames lost.
//!
//! ```text
//! pip install pesq scipy numpy
//! cargo bench --bench impaired                        # every profile, both roles, 30 s each
//! cargo bench --bench impaired -- --seconds 60 --profiles mobile,wifi --roles stage
//! ```
//! The stage is measured with `latency = "low"` (what a speaker's client plays with), the
//! audience with `latency = "smooth"`. Under `cargo test --all-targets` it runs one short
//! clean pass that checks sound came out (no PESQ).

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/relay.rs"]
mod relay;
#[path = "support/server.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relay::Impairment;

struct Profile {
    name: &'static str,
    impairment: Impairment,
}

fn profiles() -> Vec<Profile> {
    let base = Impairment {
        rto_ms: 200,
        ..Impairment::CLEAN
    };
    vec![
        Profile {
            name: "clean",
            impairment: base,
        },
        Profile {
            name: "broadband",
            impairment: Impairment {
                delay_ms: 20,
                jitter_ms: 5,
                loss: 0.001,
                ..base
            },
        },
        Profile {
            name: "mobile",
            impairment: Impairment {
                delay_ms: 40,
                jitter_ms: 15,
                loss: 0.01,
                ..base
            },
        },
        Profile {
            name: "wifi",
            impairment: Impairment {
                delay_ms: 50,
                jitter_ms: 30,
                loss: 0.02,
                stall_every_ms: 15_000,
                stall_ms: 500,
                ..base
            },
        },
    ]
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hallway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hallway"))
}

/// The four speech clips, one after another: the source the speaker loops.
fn source(dir: &Path) -> PathBuf {
    let clips: Vec<String> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|c| format!("{}/assets/speech/{c}.wav", env!("CARGO_MANIFEST_DIR")))
        .collect();
    let out = dir.join("source.wav");
    let status = Command::new("sox")
        .args(&clips)
        .arg(&out)
        .status()
        .expect("sox (installed by .ci/deps)");
    assert!(status.success());
    out
}

/// The `unix_us` of the last log line in `log` that contains `what`.
fn logged_unix_us(log: &Path, what: &str) -> Option<u128> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.contains(what))?;
    let at = line.find("unix_us=")? + "unix_us=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Starts `hallway play --create --loop`: returns it and the room id.
fn speaker(server: &str, clip: &Path, dir: &Path) -> (Proc, String) {
    let mut child = hallway()
        .arg("--log-file")
        .arg(dir.join("speaker.log"))
        .args([
            "play",
            "--server",
            &format!("http://{server}"),
            "--name",
            "Speaker",
        ])
        .args(["--create", "Impaired bench", "--loop"])
        .arg(clip)
        .env("XDG_CONFIG_HOME", dir.join("speaker-config"))
        .env("XDG_STATE_HOME", dir.join("speaker-state"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hallway play");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the room link");
    let room = line
        .trim()
        .rsplit('/')
        .next()
        .expect("a room link")
        .to_string();
    (Proc(child), room)
}

/// The interactive client in a tmux pane of its own, listening to `link` for `seconds`
/// with `latency`, its playout written to `out`.
fn listen(link: &str, latency: &str, seconds: u64, out: &Path, dir: &Path) {
    let config = dir.join("listener-config/hallway");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        format!("latency = \"{latency}\"\n"),
    )
    .unwrap();
    let socket = format!("hallway-bench-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .env("TMUX_TMPDIR", dir)
            .args(["-L", &socket])
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("tmux (installed by .ci/deps)")
    };
    let command = format!(
        "XDG_CONFIG_HOME={} XDG_STATE_HOME={} HALLWAY_INPUT=null {} --log-file {} --server {link} --name Listener --output {}",
        dir.join("listener-config").display(),
        dir.join("listener-state").display(),
        env!("CARGO_BIN_EXE_hallway"),
        out.with_extension("log").display(),
        out.display()
    );
    assert!(
        tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            &command
        ])
        .success()
    );
    std::thread::sleep(Duration::from_secs(seconds));
    tmux(&["send-keys", "q"]);
    std::thread::sleep(Duration::from_secs(2));
    tmux(&["kill-server"]);
}

/// The listener's own account of its playout (its `playout summary` log line at exit):
/// frames concealed, late, skipped, and played faster or slower.
fn playout_summary(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(line) = text.lines().rev().find(|l| l.contains("playout summary")) else {
        return "no playout summary".into();
    };
    let field = |name: &str| {
        let key = format!(" {name}=");
        line.find(&key)
            .map(|at| &line[at + key.len()..])
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "played {} concealed {} late {} skipped {} faster {} slower {}",
        field("played"),
        field("concealed"),
        field("late"),
        field("skipped"),
        field("faster"),
        field("slower")
    )
}

/// Where the sender's timestamp 0 and the listener's first output sample sit on the
/// wall clock, for score.py's mouth-to-ear (none if either line is missing).
fn mouth_to_ear_args(dir: &Path, out: &Path) -> Vec<String> {
    let sent = logged_unix_us(&dir.join("speaker.log"), "timestamp 0 sent");
    let heard = logged_unix_us(&out.with_extension("log"), "output started");
    match (sent, heard) {
        (Some(sent), Some(heard)) => vec![
            "--sent-at-us".into(),
            sent.to_string(),
            "--heard-at-us".into(),
            heard.to_string(),
        ],
        _ => {
            eprintln!("no clock lines in the logs: mouth-to-ear not measured");
            Vec::new()
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: u64 = value("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 30 } else { 6 });
    let wanted: Option<Vec<String>> =
        value("--profiles").map(|p| p.split(',').map(str::to_string).collect());
    let dir = tempfile::tempdir().unwrap();
    let clip = source(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = support::Server::start(&[]);
    let server_addr = server.addr.clone();
    let (_speaker, room) = speaker(&server_addr, &clip, dir.path());
    let wanted_roles: Option<Vec<String>> =
        value("--roles").map(|p| p.split(',').map(str::to_string).collect());
    let all_roles: &[(&str, &str)] = if bench {
        &[("audience", "smooth"), ("stage", "low")]
    } else {
        &[("audience", "smooth")]
    };
    let roles: Vec<(&str, &str)> = all_roles
        .iter()
        .copied()
        .filter(|(role, _)| {
            wanted_roles
                .as_ref()
                .is_none_or(|w| w.iter().any(|r| r == role))
        })
        .collect();
    for profile in profiles() {
        if !bench && profile.name != "clean" {
            continue;
        }
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|n| n == profile.name))
        {
            continue;
        }
        for &(role, latency) in &roles {
            let upstream = server_addr.parse().unwrap();
            let relay = runtime.block_on(relay::start(upstream, profile.impairment));
            let out = dir.path().join(format!("{}-{role}.wav", profile.name));
            listen(
                &format!("http://{relay}/rooms/{room}"),
                latency,
                seconds,
                &out,
                dir.path(),
            );
            if !bench {
                let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
                assert!(size > 48_000, "the listener wrote {size} bytes");
                println!("impaired smoke: the listener played {size} bytes of audio");
                continue;
            }
            let scored = Command::new("python3")
                .arg(format!(
                    "{}/benches/impaired/score.py",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .arg(&clip)
                .arg(&out)
                .args(mouth_to_ear_args(dir.path(), &out))
                .output()
                .expect("python3 with pesq, scipy and numpy (pip install pesq scipy numpy)");
            let report = String::from_utf8_lossy(&scored.stdout);
            if !scored.status.success() {
                eprintln!("{}", String::from_utf8_lossy(&scored.stderr));
            }
            println!(
                "{:<10} {:<9} {} | frames {}",
                profile.name,
                role,
                report.trim(),
                playout_summary(&out.with_extension("log"))
            );
        }
    }
}
