//! A throwaway PostgreSQL for tests: a new cluster (`initdb`) in a temporary directory, a
//! server on a free loopback port with one empty database, stopped and deleted when dropped.
//!
//! PostgreSQL refuses to run as root, and CI runs the tests as root: then `initdb` and
//! `postgres` run as the `postgres` user (which the distribution's package creates), through
//! `setpriv`. Not `runuser`: it stays behind as the server's parent, so killing the child we
//! hold would leave PostgreSQL running; `setpriv` execs, and the child we hold is the server.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to tell someone whose machine lacks PostgreSQL.
const INSTALL: &str = "install PostgreSQL's server (`apt-get install postgresql` on Debian or \
    Ubuntu), or set HALLWAY_TEST_PG_BIN to the directory holding its initdb and postgres";

/// The cluster's superuser, trusted without a password (the server listens on loopback only).
const USER: &str = "hallway";

/// How long a new server may take to accept connections. Generous: CI is slow.
const STARTUP: Duration = Duration::from_secs(30);

/// How long a server may take to stop before it is killed.
const SHUTDOWN: Duration = Duration::from_secs(10);

/// A PostgreSQL server of our own, with an empty database at [`TestPostgres::url`].
pub struct TestPostgres {
    /// `postgres://hallway@127.0.0.1:PORT/hallway`.
    pub url: String,
    pub port: u16,
    // Field order is drop order: the server stops before its directory goes.
    server: Postmaster,
    /// The cluster, the server's socket and its logs.
    dir: tempfile::TempDir,
}

impl TestPostgres {
    /// Makes a cluster and starts its server; panics, saying what to install, when PostgreSQL
    /// is missing.
    pub fn start() -> Self {
        let bin = bin_dir();
        let as_postgres = running_as_root();
        // Under /tmp whatever TMPDIR says: the postgres user must reach it, and a Unix socket's
        // path must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("hallway-pg.")
            .tempdir_in("/tmp")
            .expect("a temporary directory for PostgreSQL");
        if as_postgres {
            let chown = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(
                chown.success(),
                "cannot give {} to the postgres user; running as root, the tests run PostgreSQL \
                 as `postgres`, the user its package creates: {INSTALL}",
                dir.path().display()
            );
        }
        let data = dir.path().join("data");
        let initdb = as_user(as_postgres, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "--no-locale", "--encoding=UTF8"])
            .arg("--no-sync")
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/initdb: {e}; {INSTALL}", bin.display()));
        assert!(
            initdb.status.success(),
            "initdb failed ({}): {}",
            initdb.status,
            String::from_utf8_lossy(&initdb.stderr)
        );
        // A port free a moment ago may be taken by the time the server binds it: try another.
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("postgres-{port}.log"));
            let mut server = Postmaster::spawn(
                as_user(as_postgres, &bin.join("postgres"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-k")
                    .arg(dir.path())
                    .arg("-p")
                    .arg(port.to_string())
                    .args(["-c", "listen_addresses=127.0.0.1", "-F"])
                    .current_dir(dir.path()),
                &log,
            );
            let Some(mut admin) = server.wait_ready(port, &log) else {
                continue;
            };
            admin
                .batch_execute("CREATE DATABASE hallway")
                .expect("create the test database");
            return Self {
                url: url(port, "hallway"),
                port,
                server,
                dir,
            };
        }
        panic!("PostgreSQL found no free port on 127.0.0.1 in five tries");
    }

    /// A new empty database on this server; its URL.
    pub fn create_database(&self, name: &str) -> String {
        let mut admin = postgres::Client::connect(&url(self.port, "postgres"), postgres::NoTls)
            .expect("connect to the test PostgreSQL");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create a test database");
        url(self.port, name)
    }

    /// The server's log so far, for a failing test to show.
    pub fn log(&self) -> String {
        read_logs(self.dir.path())
    }
}

/// A running `postgres`, stopped when dropped (also when a test panics).
struct Postmaster(Child);

impl Postmaster {
    fn spawn(command: &mut Command, log: &Path) -> Self {
        let out = File::create(log).expect("create the PostgreSQL log");
        let err = out.try_clone().expect("share the PostgreSQL log");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}; {INSTALL}"));
        Self(child)
    }

    /// Waits until the server accepts connections and returns one to its `postgres`
    /// database; `None` when the port was taken. Panics when the server cannot start.
    fn wait_ready(&mut self, port: u16, log: &Path) -> Option<postgres::Client> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.0.try_wait().expect("poll postgres") {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if text.contains("could not create any TCP/IP sockets") {
                    return None;
                }
                panic!("postgres exited ({status}) before accepting connections:\n{text}");
            }
            match postgres::Client::connect(
                &format!("{} connect_timeout=2", key_values(port, "postgres")),
                postgres::NoTls,
            ) {
                Ok(client) => return Some(client),
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "postgres did not accept connections within {STARTUP:?} ({e}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        // One that exited (and was reaped) has no pid any more to signal.
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster stops its children and
        // waits for them, so nothing is left writing into the directory about to be deleted
        // (after SIGKILL they would only find out later). Nothing here needs to be kept.
        let pid = self.0.id().to_string();
        let quit = Command::new("sh")
            .args(["-c", "kill -QUIT \"$0\"", pid.as_str()])
            .status();
        let deadline = Instant::now() + SHUTDOWN;
        if quit.is_ok_and(|s| s.success()) {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The directory of `initdb` and `postgres`: `HALLWAY_TEST_PG_BIN`, or the newest
/// `/usr/lib/postgresql/VERSION/bin` that has them (Debian and Ubuntu keep versions apart).
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HALLWAY_TEST_PG_BIN") {
        return dir.into();
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| {
            panic!("PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb); {INSTALL}")
        })
}

fn running_as_root() -> bool {
    let id = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// `program`, as the `postgres` user when we are root.
fn as_user(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A loopback port free at the moment.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

fn url(port: u16, database: &str) -> String {
    format!("postgres://{USER}@127.0.0.1:{port}/{database}")
}

fn key_values(port: u16, database: &str) -> String {
    format!("host=127.0.0.1 port={port} user={USER} dbname={database}")
}

fn read_logs(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".log") {
            text += &std::fs::read_to_string(entry.path()).unwrap_or_default();
        }
    }
    text
}
