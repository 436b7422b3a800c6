//! The kernel's floor under the server's fan-out: what one `write` of one audio frame to
//! each of N loopback TCP sockets costs, with nothing else (no WebSocket, no tokio on the
//! writing side), and how long a whole fan-out takes. No server can deliver a frame to N
//! listeners over TCP faster than this on the same machine; docs/benchmarks.md compares
//! the server with it.
//!
//! `cargo bench --bench kernel_floor -- [LISTENERS] [ROUNDS]` (default 2000 and 250): the
//! writer thread is pinned to core 0 and the receivers (a tokio current-thread runtime, like
//! the fan-out generator's) to core 1. Every 20 ms the writer writes a 100-byte message
//! to each socket (TCP_NODELAY, non-blocking). Without `--bench` (under `cargo test`) it
//! makes a tiny run and checks every byte arrived.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

const MESSAGE: [u8; 100] = [7; 100];

/// Pins the calling thread to `core` (with `taskset`, on the thread's id).
fn pin_this_thread(core: usize) {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()) else {
        return;
    };
    let _ = std::process::Command::new("taskset")
        .args(["-p", "-c", &core.to_string(), tid])
        .stdout(std::process::Stdio::null())
        .status();
}

/// CPU time (user + system) of the calling thread, from /proc (10 ms resolution).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')' (0-based).
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (listeners, rounds) = if bench {
        (
            numbers.first().copied().unwrap_or(2000),
            numbers.get(1).copied().unwrap_or(250),
        )
    } else {
        (10, 5)
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    let receivers = std::thread::spawn(move || {
        if bench {
            pin_this_thread(1);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..listeners {
                let mut socket = tokio::net::TcpStream::connect(addr)
                    .await
                    .expect("connect over loopback");
                tasks.push(tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut total = 0usize;
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        total += n;
                    }
                    total
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await.unwrap_or(0);
            }
            total
        })
    });
    if bench {
        pin_this_thread(0);
    }
    let mut sockets: Vec<TcpStream> = (0..listeners)
        .map(|_| {
            let (socket, _) = listener.accept().expect("accept a receiver");
            socket.set_nodelay(true).expect("TCP_NODELAY");
            socket.set_nonblocking(true).expect("non-blocking");
            socket
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let mut fan_outs = Vec::with_capacity(rounds);
    let mut refused = 0usize;
    let cpu_before = thread_cpu();
    let mut next = Instant::now();
    for _ in 0..rounds {
        next += Duration::from_millis(20);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        for socket in &mut sockets {
            if !matches!(socket.write(&MESSAGE), Ok(n) if n == MESSAGE.len()) {
                refused += 1;
            }
        }
        fan_outs.push(started.elapsed());
    }
    let cpu = thread_cpu() - cpu_before;
    drop(sockets);
    let received = receivers.join().expect("the receiver thread");
    let expected = (rounds * listeners - refused) * MESSAGE.len();
    assert_eq!(received, expected, "every byte written arrived");
    if !bench {
        println!("kernel floor smoke: {received} bytes to {listeners} sockets, all arrived");
        return;
    }
    fan_outs.sort();
    let writes = (rounds * listeners) as f64;
    println!(
        "kernel floor, {listeners} sockets x {rounds} rounds: {:.2} us of CPU per write; whole fan-out median {:.2} ms, p99 {:.2} ms; {refused} writes refused (socket full)",
        cpu.as_secs_f64() * 1e6 / writes,
        fan_outs[rounds / 2].as_secs_f64() * 1e3,
        fan_outs[(rounds * 99 / 100).min(rounds - 1)].as_secs_f64() * 1e3,
    );
}
