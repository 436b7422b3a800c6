//! What the load generator counts (frames sent and delivered, send→receive latency) and what
//! it reads about the server process from /proc (CPU seconds, peak RSS, context switches).
//!
//! The generator runs on one thread, so counters are `Cell`s shared by `Rc`.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Counters for one run. Only frames *sent* inside the measurement window count, wherever
/// they are received, so frames in flight at the window's edges are neither lost nor doubled.
pub struct Stats {
    epoch: Instant,
    /// Send times (µs since `epoch`) that count: `[start, end)`; empty until measuring.
    window_us: Cell<(u64, u64)>,
    /// Which latency histogram receives: 0 before a join storm, 1 during it.
    pub phase: Cell<usize>,
    pub sent: Cell<u64>,
    pub delivered: Cell<u64>,
    /// Connections the server closed (or that failed) after setup.
    pub disconnects: Cell<u64>,
    latency_us: RefCell<[Histogram<u64>; 2]>,
}

impl Stats {
    pub fn new() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Self {
            epoch: Instant::now(),
            window_us: Cell::new((u64::MAX, u64::MAX)),
            phase: Cell::new(0),
            sent: Cell::new(0),
            delivered: Cell::new(0),
            disconnects: Cell::new(0),
            latency_us: RefCell::new([histogram(), histogram()]),
        }
    }

    /// Microseconds since the generator started: the clock carried in every frame.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn at_us(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    pub fn set_window(&self, start_us: u64, end_us: u64) {
        self.window_us.set((start_us, end_us));
    }

    fn in_window(&self, sent_us: u64) -> bool {
        let (start, end) = self.window_us.get();
        (start..end).contains(&sent_us)
    }

    /// A speaker sent a frame stamped `sent_us`.
    pub fn on_sent(&self, sent_us: u64) {
        if self.in_window(sent_us) {
            self.sent.set(self.sent.get() + 1);
        }
    }

    /// A receiver got a frame stamped `sent_us`.
    pub fn on_received(&self, sent_us: u64) {
        if self.in_window(sent_us) {
            self.delivered.set(self.delivered.get() + 1);
            let latency = self.now_us().saturating_sub(sent_us).max(1);
            let _ = self.latency_us.borrow_mut()[self.phase.get()].record(latency);
        }
    }

    /// Reconstructs a full send time from the low 32 bits carried in a Hallway frame.
    pub fn unwrap_us(&self, low: u32) -> u64 {
        let now = self.now_us();
        now.saturating_sub(u64::from((now as u32).wrapping_sub(low)))
    }

    /// (p50, p99, max) in ms of one phase.
    pub fn latency_ms(&self, phase: usize) -> (f64, f64, f64) {
        let h = &self.latency_us.borrow()[phase];
        if h.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        let ms = |us: u64| us as f64 / 1000.0;
        (
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        )
    }

    pub fn latency_count(&self, phase: usize) -> u64 {
        self.latency_us.borrow()[phase].len()
    }
}

/// A process's counters read from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime of all threads, seconds.
    pub cpu_s: f64,
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Current resident set (VmRSS), MiB.
    pub rss_mib: f64,
    /// Voluntary context switches summed over threads (each one is a sleep: a wake-up).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Reads a process's CPU, memory and context switches; zeros when it is gone.
pub fn sample(pid: u32) -> ProcSample {
    let ticks = clock_ticks();
    let cpu_s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| field(&status, key) as f64 / 1024.0;
    let (mut voluntary, mut involuntary) = (0, 0);
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            voluntary += field(&text, "voluntary_ctxt_switches:");
            involuntary += field(&text, "nonvoluntary_ctxt_switches:");
        }
    }
    ProcSample {
        cpu_s,
        peak_rss_mib: kib("VmHWM:"),
        rss_mib: kib("VmRSS:"),
        voluntary_switches: voluntary,
        involuntary_switches: involuntary,
    }
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second for /proc times (`getconf CLK_TCK`; 100 on Linux in practice).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
