//! A `hallway serve` child process for the benchmarks: started on 127.0.0.1:0, its address
//! read from its first line, killed when dropped.
// Each benchmark uses what it needs of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    /// `hallway serve` with `extra` flags, keeping its accounts in memory.
    pub fn start(extra: &[&str]) -> Self {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_hallway")),
            ":memory:".as_ref(),
            extra,
        )
    }

    /// The same on the database at `data`.
    pub fn start_on(data: &std::path::Path, extra: &[&str]) -> Self {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_hallway")),
            data.as_os_str(),
            extra,
        )
    }

    /// The same, pinned to one CPU with `taskset`.
    pub fn start_pinned(cpu: usize, extra: &[&str]) -> Self {
        let mut command = Command::new("taskset");
        command.args(["-c", &cpu.to_string(), env!("CARGO_BIN_EXE_hallway")]);
        Self::spawn(command, ":memory:".as_ref(), extra)
    }

    fn spawn(mut command: Command, data: &std::ffi::OsStr, extra: &[&str]) -> Self {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hallway serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|u| u.strip_prefix("http://"))
            .expect("listening line")
            .to_string();
        Self { child, addr }
    }

    /// utime + stime of the server process so far, in seconds.
    pub fn cpu_s(&self) -> f64 {
        cpu_s_of(self.child.id())
    }
}

/// utime + stime of process `pid` so far, in seconds.
pub fn cpu_s_of(pid: u32) -> f64 {
    cpu_s_in(&format!("/proc/{pid}/stat"))
}

/// utime + stime of one thread `tid` of process `pid` so far, in seconds.
pub fn thread_cpu_s(pid: u32, tid: u32) -> f64 {
    cpu_s_in(&format!("/proc/{pid}/task/{tid}/stat"))
}

fn cpu_s_in(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command name: utime is the 12th, stime the 13th (0-based 11, 12).
    (ticks(11) + ticks(12)) / 100.0
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
