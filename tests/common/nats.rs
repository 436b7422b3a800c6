//! Test harness: real `nats-server` processes with JetStream on loopback, one alone or
//! several in a cluster, each with its own client, cluster and monitoring port and its own
//! store under a temporary directory; all killed when dropped.
//!
//! The server is Debian's `nats-server` (2.9.x; `apt-get install nats-server`, which puts it
//! in /usr/sbin), or the binary named by `NATS_SERVER_BIN`. Servers are named `n0`, `n1`, ...
//! and a cluster is named `hallway`.
//!
//! What a 3-server cluster does on 2.9 when one server is SIGKILLed (measured on loopback):
//! clients of the killed server reconnect to another URL of their list within ~5 ms, and
//! core pub/sub works again at once; KV reads work again within ~1 s (direct get); KV writes
//! fail (no responders / timeout) until the bucket's stream elects a new leader, 4-8 s when
//! the killed server led it; bucket creation and other JetStream API calls wait for a new
//! meta leader (4-6 s) when the killed server was the meta leader. `/healthz` keeps saying
//! ok through all of this, so after a kill a test retries its KV writes rather than waiting
//! on the monitor; [`NatsCluster::wait_ready`] waits only for a live meta leader.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long servers get to become ready (start, form the cluster, elect a meta leader).
/// It takes well under a second on an idle machine.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Start attempts: a port found free can be taken by someone else before the server binds it.
const ATTEMPTS: usize = 3;

/// One `nats-server` of the cluster.
struct Server {
    name: String,
    port: u16,
    monitor: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Real `nats-server` processes with JetStream; killed when dropped.
pub struct NatsCluster {
    servers: Vec<Server>,
    bin: PathBuf,
    /// Holds the configurations, logs and JetStream stores.
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `servers` servers (1: a lone JetStream server, where only replicas 1 is
    /// possible; 3: a cluster, where a bucket can have 3 replicas) and waits until every one
    /// answers `/healthz` with ok and, in a cluster, all agree on a meta leader.
    pub fn start(servers: usize) -> NatsCluster {
        assert!(servers >= 1, "a NATS cluster needs at least one server");
        let bin = binary();
        let mut failures = String::new();
        for _ in 0..ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("hallway-nats-")
                .tempdir()
                .expect("a temporary directory for nats-server");
            let mut cluster = NatsCluster {
                servers: configure(dir.path(), servers),
                bin: bin.clone(),
                dir,
            };
            for i in 0..servers {
                cluster.spawn(i);
            }
            match cluster.try_wait_ready() {
                Ok(()) => return cluster,
                Err(why) => {
                    let logs = cluster.logs();
                    let port_taken = logs.contains("address already in use");
                    failures.push_str(&format!("{why}\n{logs}\n"));
                    drop(cluster);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        panic!("nats-server did not start:\n{failures}");
    }

    /// Every server's client URL, killed ones included (a client is given the whole list,
    /// as a deployment would give it).
    pub fn urls(&self) -> Vec<String> {
        (0..self.servers.len()).map(|i| self.url(i)).collect()
    }

    /// [`Self::urls`] joined with commas, as a `--nats` flag or an environment variable
    /// would carry them.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// Server `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].port)
    }

    /// Server `i`'s monitoring base URL (`/healthz`, `/jsz`, `/routez`, `/connz`, `/varz`).
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.servers[i].monitor)
    }

    /// Server `i`'s name (`n0`, `n1`, ...), as `/jsz` and stream infos name leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.servers[i].name
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].child.is_some()
    }

    /// Kills server `i` with SIGKILL, as a crash would (no lame-duck mode, no leader
    /// hand-over); its clients see their connection drop at once. Its store is kept, for
    /// [`Self::restart`]. Killing a killed server does nothing.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts killed server `i` again on its ports and store, and waits until the cluster
    /// is ready again.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "server {i} is still running");
        self.spawn(i);
        self.wait_ready();
    }

    /// Waits until every running server answers `/healthz` with ok and, in a cluster, names
    /// a running server as its meta leader (after the meta leader is killed the others go
    /// on naming it for some seconds). Blocks the thread: from a current-thread tokio test,
    /// run it in `spawn_blocking` if clients must make progress meanwhile.
    pub fn wait_ready(&mut self) {
        if let Err(why) = self.try_wait_ready() {
            panic!("nats-server not ready: {why}\n{}", self.logs());
        }
    }

    /// The tail of every server's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for server in &self.servers {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!(
                "--- {} ({}) ---\n",
                server.name,
                server.log.display()
            ));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn spawn(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&server.log)
            .expect("open the nats-server log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&server.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        server.child = Some(child);
    }

    fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let clustered = self.servers.len() > 1;
        loop {
            let last = match self.ready(clustered) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if self.any_exited() {
                return Err(format!("a nats-server exited while starting ({last})"));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {READY_WITHIN:?}: {last}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether a server that should be running has exited.
    fn any_exited(&mut self) -> bool {
        self.servers.iter_mut().any(|server| {
            server
                .child
                .as_mut()
                .is_some_and(|child| !matches!(child.try_wait(), Ok(None)))
        })
    }

    fn ready(&self, clustered: bool) -> Result<(), String> {
        let live: Vec<&Server> = self.servers.iter().filter(|s| s.child.is_some()).collect();
        for server in &live {
            match http_get(server.monitor, "/healthz") {
                Some((200, _)) => {}
                Some((status, body)) => {
                    return Err(format!(
                        "{} /healthz {status}: {}",
                        server.name,
                        body.trim()
                    ));
                }
                None => return Err(format!("{} /healthz: no answer", server.name)),
            }
        }
        if !clustered {
            return Ok(());
        }
        let mut leaders = Vec::new();
        for server in &live {
            let (status, body) = http_get(server.monitor, "/jsz")
                .ok_or_else(|| format!("{} /jsz: no answer", server.name))?;
            if status != 200 {
                return Err(format!("{} /jsz {status}", server.name));
            }
            let jsz: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| format!("{} /jsz is not JSON ({e}): {body}", server.name))?;
            let leader = jsz["meta_cluster"]["leader"]
                .as_str()
                .unwrap_or("")
                .to_string();
            leaders.push(leader);
        }
        let first = &leaders[0];
        let alive = live.iter().any(|s| &s.name == first);
        if alive && leaders.iter().all(|l| l == first) {
            Ok(())
        } else {
            Err(format!("no agreed live meta leader yet: {leaders:?}"))
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// Writes one configuration file per server; returns the servers, not yet started.
fn configure(dir: &Path, n: usize) -> Vec<Server> {
    // All ports are taken at once so that they differ, then let go for the servers.
    let listeners: Vec<TcpListener> = (0..3 * n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect();
    drop(listeners);
    let (client, rest) = ports.split_at(n);
    let (monitor, cluster) = rest.split_at(n);
    let routes = cluster
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    (0..n)
        .map(|i| {
            let name = format!("n{i}");
            let store = dir.join(&name);
            let mut text = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{}\n\
                 http: 127.0.0.1:{}\n\
                 jetstream {{\n  store_dir: {:?}\n}}\n",
                client[i],
                monitor[i],
                store.display().to_string(),
            );
            if n > 1 {
                // Every server lists every route, itself included (it ignores that one).
                text.push_str(&format!(
                    "cluster {{\n  name: hallway\n  listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
                    cluster[i]
                ));
            }
            let config = dir.join(format!("{name}.conf"));
            std::fs::write(&config, text).expect("write the nats-server configuration");
            Server {
                log: dir.join(format!("{name}.log")),
                name,
                port: client[i],
                monitor: monitor[i],
                config,
                child: None,
            }
        })
        .collect()
}

/// `NATS_SERVER_BIN`, else `nats-server` on PATH, else Debian's /usr/sbin/nats-server
/// (/usr/sbin is not on every user's PATH).
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed (not on PATH nor in /usr/sbin): \
                 install it with `apt-get install nats-server` (.ci/deps does), \
                 or set NATS_SERVER_BIN"
            )
        })
}

/// A plain HTTP/1.0 GET on a loopback port: the status and the body, or None when nothing
/// answers. The monitor closes the connection after an HTTP/1.0 answer.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((status, body))
}
