//! An impairment relay: a loopback TCP proxy that delays what the server sends to a client
//! the way a real network does to a TCP stream. Each chunk gets a base delay plus jitter,
//! but never overtakes the chunk before it (TCP delivers in order); with a small probability
//! a chunk is held for a retransmission timeout, and everything behind it waits too (that is
//! what a lost packet does to a TCP stream); and every so often the whole path stalls.
//! What the client sends goes through untouched. Seeded, so a run can be repeated.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How the server-to-client direction is impaired (one-way figures).
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    pub delay_ms: u64,
    /// Each chunk's delay varies by up to this much either way.
    pub jitter_ms: u64,
    /// The share of chunks held for a retransmission timeout.
    pub loss: f64,
    pub rto_ms: u64,
    /// A stall of `stall_ms` every `stall_every_ms` (0: none), the first `stall_every_ms`
    /// after the relay starts.
    pub stall_every_ms: u64,
    pub stall_ms: u64,
    pub seed: u64,
}

impl Impairment {
    pub const CLEAN: Self = Self {
        delay_ms: 0,
        jitter_ms: 0,
        loss: 0.0,
        rto_ms: 200,
        stall_every_ms: 0,
        stall_ms: 0,
        seed: 1,
    };
}

/// Starts a relay to `upstream`; returns the address clients should use.
pub async fn start(upstream: SocketAddr, down: Impairment) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok((client, _)) = listener.accept().await {
            n += 1;
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let impairment = Impairment {
                seed: down.seed.wrapping_add(n),
                ..down
            };
            tokio::spawn(pump(client, server, impairment, started));
        }
    });
    addr
}

async fn pump(client: TcpStream, server: TcpStream, down: Impairment, started: Instant) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(down.seed);
        let mut last_release = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            let jitter = if down.jitter_ms > 0 {
                rng.random_range(0..=2 * down.jitter_ms)
            } else {
                down.jitter_ms
            };
            let delay = (down.delay_ms + jitter).saturating_sub(down.jitter_ms);
            let mut release = now + Duration::from_millis(delay);
            if down.loss > 0.0 && rng.random_bool(down.loss.min(1.0)) {
                release += Duration::from_millis(down.rto_ms);
            }
            if down.stall_every_ms > 0 {
                let since = now.duration_since(started).as_millis() as u64;
                let into = since % down.stall_every_ms;
                if since >= down.stall_every_ms && into < down.stall_ms {
                    release = release.max(now + Duration::from_millis(down.stall_ms - into));
                }
            }
            // In order, as TCP delivers.
            release = release.max(last_release);
            last_release = release;
            if tx.send((release, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let write = async move {
        let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        while let Some(item) = rx.recv().await {
            pending.push_back(item);
            while let Some((release, _)) = pending.front() {
                tokio::time::sleep_until(*release).await;
                while let Ok(item) = rx.try_recv() {
                    pending.push_back(item);
                }
                let Some((_, bytes)) = pending.pop_front() else {
                    break;
                };
                if client_write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, read, write);
}
