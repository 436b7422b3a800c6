//! The command line: subcommands, logging set-up, and the runtime each command runs on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::client::{self, ClientOptions};
use crate::config::Config;
use crate::demo::{self, Demo};
use crate::headless::{self, PlayTarget};
use crate::net::{Api, Target};
use crate::protocol::text::terminal_safe;
use crate::server::{DEFAULT_LISTEN, Server, ServerConfig, TlsFiles, TrustedProxies};

/// Live audio rooms in the terminal.
///
/// With no command, opens the terminal client on the configured server; with no server
/// configured, on a private server started in this process.
#[derive(Debug, Parser)]
#[command(name = "hallway", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Write logs to this file (default: stderr for `serve`, a file in the state directory
    /// for the terminal client). Filter with RUST_LOG.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where to connect and as whom; flags win over the config file.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server URL, or a room link (URL/rooms/ID) to go straight into that room.
    #[arg(long, global = true, env = "HALLWAY_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Your display name, for a new account.
    #[arg(long, global = true, env = "HALLWAY_NAME")]
    pub name: Option<String>,
    /// Your handle, for a new account (default: made from the display name).
    #[arg(long, global = true, env = "HALLWAY_HANDLE")]
    pub handle: Option<String>,
    /// This device's key file (default: device.key in the config directory; made on first
    /// use). Another file is another identity, e.g. for a bot.
    #[arg(long, global = true, env = "HALLWAY_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Go straight into this room, skipping the hallway.
    #[arg(long, value_name = "ID")]
    pub room: Option<String>,
    /// Microphone: default, cpal:NAME (see `hallway devices`), tone[:HZ], a .wav/.ogg file, or null.
    #[arg(
        long,
        global = true,
        env = "HALLWAY_INPUT",
        default_value = "default",
        value_name = "DEVICE"
    )]
    pub input: String,
    /// Speakers: default, cpal:NAME, a .wav/.ogg file to record to, or null.
    #[arg(
        long,
        global = true,
        env = "HALLWAY_OUTPUT",
        default_value = "default",
        value_name = "DEVICE"
    )]
    pub output: String,
    /// Turn off noise suppression on the microphone.
    #[arg(long, global = true)]
    pub no_noise_suppression: bool,
    /// Config file (default: $XDG_CONFIG_HOME/hallway/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also trust this PEM CA certificate for https:// and wss:// servers (a private CA);
    /// repeatable. The system's certificate store is always trusted.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the room server.
    Serve(Box<ServeArgs>),
    /// List the rooms live now.
    Rooms {
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the audio input and output devices.
    Devices,
    /// Open the live demo: a private server with rooms full of bots, and the client on it.
    Demo,
    /// Stream a WAV or Ogg Opus file into a room as a speaker, in real time.
    Play(PlayArgs),
    /// Record a room's mix to a WAV or Ogg Opus file (by extension).
    Record(RecordArgs),
    /// Your account on the server: handle, devices, invitations left (or a subcommand).
    Account(AccountArgs),
    /// Print a single-use invitation link to the server (expires in 7 days).
    Invite {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show someone's profile card.
    Profile {
        /// Their handle, e.g. @ada.
        #[arg(value_name = "HANDLE")]
        who: String,
        #[arg(long)]
        json: bool,
    },
    /// Follow someone: rooms with them on stage are listed first.
    Follow {
        #[arg(value_name = "HANDLE")]
        who: String,
    },
    /// Stop following someone.
    Unfollow {
        #[arg(value_name = "HANDLE")]
        who: String,
    },
    /// Block someone: you no longer hear them, and they cannot join rooms you run.
    Block {
        #[arg(value_name = "HANDLE")]
        who: String,
    },
    /// Unblock someone.
    Unblock {
        #[arg(value_name = "HANDLE")]
        who: String,
    },
    /// Report someone to the server's admins.
    Report {
        #[arg(value_name = "HANDLE")]
        who: String,
        /// What happened (at most 500 characters).
        #[arg(long)]
        reason: String,
    },
    /// Schedule a room ahead (--title, --at), or list, start, cancel or export scheduled
    /// rooms.
    Schedule(crate::schedule_cli::ScheduleArgs),
    /// The replays of rooms that ended (rooms whose host turned replays on).
    Replays {
        #[arg(long)]
        json: bool,
    },
    /// One replay: download it mixed into one file, or delete it (its host only).
    #[command(subcommand)]
    Replay(crate::replay_cli::ReplayCommand),
    /// Server administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// A cluster of servers (`hallway serve --cluster`).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print shell completions (for example: hallway completions bash > ~/.local/share/bash-completion/completions/hallway).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (for example: hallway man > ~/.local/share/man/man1/hallway.1).
    Man,
}

#[derive(Debug, Args)]
// A group named on the struct with `#[group]` takes in every field, which made FILE,
// --loop and the rest conflict with --room/--create; built this way it holds only the two
// fields that name it.
#[command(group = clap::ArgGroup::new("where").required(true).multiple(false))]
pub struct PlayArgs {
    /// The room to speak in (a moderator must invite you unless you run it).
    #[arg(long, value_name = "ID", group = "where")]
    pub room: Option<String>,
    /// Create a room with this title and speak in it as its host; prints its link.
    #[arg(long, value_name = "TITLE", group = "where")]
    pub create: Option<String>,
    /// With --create: a private room, its audio end-to-end encrypted, listed to and joined
    /// by only those it is shared with (--share; by default, whoever has its link, which is
    /// printed).
    #[arg(long, requires = "create")]
    pub private: bool,
    /// Who a private room is shared with, comma-separated: handles (`@bob,@carol`),
    /// `followers` (everyone you follow) and `link` (whoever has the printed link).
    #[arg(long, value_name = "WHO", requires = "private", value_parser = parse_share)]
    pub share: Option<crate::protocol::Share>,
    /// With --create: the server keeps a replay of the room, which everyone is told of
    /// before joining and sees while in it (`hallway replays`). Not with --private.
    #[arg(long, requires = "create", conflicts_with = "private")]
    pub replay: bool,
    /// Start again at the end, until stopped.
    #[arg(long = "loop")]
    pub looping: bool,
    /// With --room: give up unless a moderator invites you within this many seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = headless::INVITE_PATIENCE.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub invite_timeout: u64,
    /// The file to play (.wav, .ogg, .opus).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct AccountArgs {
    #[command(subcommand)]
    pub command: Option<AccountCommand>,
    /// JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account for this device: --handle (ASCII letters, digits and _, 3 to 20
    /// characters), --name, and an invitation on an invite-only server.
    Create {
        /// An invitation code or link.
        #[arg(long, value_name = "CODE")]
        invite: Option<String>,
    },
    /// Without CODE: print a one-time code that adds another device to your account. With
    /// CODE (run on the new device): add this device.
    Link { code: Option<String> },
    /// Sign a device out of your account for good (its id from `hallway account`).
    Revoke { device: i64 },
    /// Change your display name or bio.
    Edit {
        #[arg(long = "display-name", value_name = "NAME")]
        display_name: Option<String>,
        #[arg(long)]
        bio: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Reports, newest first.
    Reports {
        #[arg(long)]
        json: bool,
    },
    /// Suspend an account: its connections close and its devices cannot sign in.
    Suspend {
        #[arg(value_name = "HANDLE")]
        who: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift a suspension.
    Unsuspend {
        #[arg(value_name = "HANDLE")]
        who: String,
    },
    /// Copy the server's database (SQLite's online backup; safe while the server runs).
    Backup {
        /// Where to write the copy.
        out: PathBuf,
        /// The server's database (default: as `hallway serve`).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The cluster's nodes as the server (--server) sees them: rooms and members on each,
    /// and its round trip to NATS.
    Status {
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The room to record.
    #[arg(long, value_name = "ID")]
    pub room: String,
    /// Stop after this many seconds (default: until the room ends or Ctrl-C).
    #[arg(long, value_name = "N")]
    pub seconds: Option<f64>,
    /// Also write one file per speaker into this directory.
    #[arg(long, value_name = "DIR")]
    pub tracks: Option<PathBuf>,
    /// The file to write (.wav, .ogg, .opus).
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_LISTEN, env = "HALLWAY_LISTEN")]
    pub listen: SocketAddr,
    /// Most people on a room's stage at once.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub stage_limit: u16,
    /// Also host the demo rooms, kept alive by bots (not with --tls-cert: the bots connect
    /// to the listen address, which a certificate does not name; nor with --invite-only:
    /// the bots make accounts of their own).
    #[arg(long, conflicts_with_all = ["tls_cert", "invite_only"])]
    pub demo: bool,
    /// Serve https:// and wss:// with this PEM certificate chain (with --tls-key; both are
    /// read again on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A reverse proxy (an address or a CIDR such as 10.0.0.0/8) whose X-Forwarded-For or
    /// Forwarded header names the client. Repeat for several. Without it those headers are
    /// ignored and the client is the socket's peer.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub trusted_proxy: Vec<ipnet::IpNet>,
    /// Only people with an invitation may create accounts. At first start (and each start
    /// until it is used) the server prints a one-time owner code that makes an admin.
    #[arg(long)]
    pub invite_only: bool,
    /// Invitations each new member may send (admins: unlimited).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub invitations: u32,
    /// The database file for accounts (default: $XDG_DATA_HOME/hallway/server.db);
    /// `:memory:` keeps nothing (for trials and benchmarks); a postgres://USER@HOST:PORT/DB
    /// URL keeps them in PostgreSQL, shared by the nodes of a cluster.
    #[arg(long, value_name = "FILE", env = "HALLWAY_DATA")]
    pub data: Option<PathBuf>,
    /// A URL people reach this server at (https://rooms.example.org); repeat for several.
    /// Sign-ins are signed for the name the client reached, so a server reached by a name
    /// (or through a proxy) needs it; invitation links use the first. The listen address,
    /// and localhost on loopback, need none.
    #[arg(long, value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Vec<String>,
    /// Serve /metrics on this address (e.g. 127.0.0.1:9600) instead of the public one.
    /// Without it, an invite-only server does not serve /metrics at all.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Join a cluster of Hallway servers through these NATS servers
    /// (nats://HOST:4222, comma-separated or repeated; NATS with JetStream, `-js`). Every node
    /// lists every room and serves any room; each room's rules run on the node it was made on.
    #[arg(long, value_name = "URLS", value_delimiter = ',', value_parser = parse_nats_url)]
    pub cluster: Vec<String>,
    /// This node's name in the cluster, unique among its nodes (letters, digits, - and _)
    /// [default: the host name and the listen port].
    #[arg(long, value_name = "NAME", requires = "cluster", value_parser = parse_node_name)]
    pub node_name: Option<String>,
    /// Spread a big room's fan-out over this many shards, one per core (1: none)
    /// [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub fanout_shards: Option<u16>,
    /// Members a room has before newcomers are served by its shards.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub shard_from: usize,
    /// Where replays of rooms whose host turned them on are kept [default: `replays`
    /// beside the database file; none with `:memory:` or PostgreSQL unless given].
    #[arg(long, value_name = "DIR")]
    pub replays: Option<PathBuf>,
    /// The most disk all replays may take, in MB; a replay that would pass it stops and is
    /// marked incomplete.
    #[arg(long, value_name = "MB", default_value_t = 2048)]
    pub replay_quota_mb: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
}

fn parse_nats_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("{e}; write nats://HOST:PORT"))?;
    if !matches!(url.scheme(), "nats" | "tls") || url.host_str().is_none() {
        return Err("write nats://HOST:PORT".into());
    }
    Ok(text.trim().to_string())
}

fn parse_node_name(text: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(text.to_string())
    } else {
        Err("1 to 64 letters, digits, - or _".into())
    }
}

/// Per-address limits and timeouts; each defaults to a value no household or office behind
/// one address meets in normal use (README, "Deploying").
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Open connections one address may hold [default: 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: Option<u32>,
    /// Sessions one address may create per minute, sustained [default: 60, burst 200; the
    /// burst scales with the rate].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub sessions_per_minute: Option<f64>,
    /// Room joins one address may make per second, sustained [default: 20, burst 200; the
    /// burst scales with the rate].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub joins_per_second: Option<f64>,
    /// Rooms one address may create per hour, sustained [default: 30, burst 10; the burst
    /// scales with the rate].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub rooms_per_hour: Option<f64>,
    /// Wrong invitation or link codes one address may try before each further try waits,
    /// doubling [default: 5].
    #[arg(long, value_name = "N")]
    pub code_free_tries: Option<u32>,
    /// The longest an address waits after wrong codes, in seconds [default: 900].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub code_lockout: Option<Duration>,
    /// Seconds a request (or WebSocket message, or TLS handshake) may take from its first
    /// byte to its last [default: 10].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub request_timeout: Option<Duration>,
    /// Seconds an HTTP connection may sit idle between requests [default: 60].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub idle_timeout: Option<Duration>,
    /// Seconds of silence after which a WebSocket is pinged; it is closed if nothing comes
    /// back within as long again [default: 30, and 20 to answer].
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub ping_after: Option<Duration>,
}

impl LimitArgs {
    fn apply(&self, limits: &mut crate::server::Limits) {
        let a = &mut limits.address;
        if let Some(n) = self.max_connections_per_address {
            a.connections = n as usize;
        }
        // A burst scales with its rate: ten times the rate, ten times the burst.
        let scaled =
            |burst: f64, default_rate: f64, rate: f64| (burst * rate / default_rate).max(1.0);
        if let Some(n) = self.sessions_per_minute {
            a.sessions_burst = scaled(a.sessions_burst, a.sessions_per_minute, n);
            a.sessions_per_minute = n;
        }
        if let Some(n) = self.joins_per_second {
            a.joins_burst = scaled(a.joins_burst, a.joins_per_second, n);
            a.joins_per_second = n;
        }
        if let Some(n) = self.rooms_per_hour {
            a.rooms_burst = scaled(a.rooms_burst, a.rooms_per_hour, n);
            a.rooms_per_hour = n;
        }
        if let Some(n) = self.code_free_tries {
            a.free_code_failures = n;
        }
        if let Some(d) = self.code_lockout {
            a.code_lockout = d;
        }
        let t = &mut limits.timeouts;
        if let Some(d) = self.request_timeout {
            t.request = d;
        }
        if let Some(d) = self.idle_timeout {
            t.idle = d;
        }
        if let Some(d) = self.ping_after {
            t.ping_after = d;
            t.pong = d;
        }
    }
}

fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR such as 10.0.0.0/8"))
}

fn parse_public_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
            Ok(text.trim_end_matches('/').to_string())
        }
        _ => Err(format!(
            "{text:?} is not a server URL such as https://rooms.example.org"
        )),
    }
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    positive(text).and_then(|s| {
        Duration::try_from_secs_f64(s).map_err(|_| format!("{text:?} seconds is too long"))
    })
}

/// Runs the parsed command line; the exit code says whether it worked.
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Error chains can carry a server's words: shown escaped, never interpreted.
            eprintln!("hallway: {}", terminal_safe(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    crate::net::tls::trust(&cli.client.ca)?;
    match cli.command {
        Some(Command::Serve(args)) => {
            init_logging(cli.log_file.as_deref())?;
            serve(*args)
        }
        Some(Command::Play(play_args)) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(play(&cli.client, play_args))
        }
        Some(Command::Record(record_args)) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(record(&cli.client, record_args))
        }
        Some(Command::Demo) => {
            let log_file = match cli.log_file {
                Some(path) => path,
                None => default_log_file()?,
            };
            init_logging(Some(&log_file))?;
            let _stderr = quiet_stderr(&log_file);
            runtime()?.block_on(tui(cli.client, true))
        }
        Some(Command::Devices) => {
            print!("{}", crate::audio::list_devices());
            Ok(())
        }
        Some(Command::Completions { shell }) => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "hallway", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Man) => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .context("cannot write the manual page"),
        Some(Command::Rooms { json }) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(rooms(&cli.client, json))
        }
        Some(Command::Admin(AdminCommand::Backup { out, data })) => backup(data, &out),
        Some(Command::Schedule(args)) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(crate::schedule_cli::run(&cli.client, args))
        }
        Some(Command::Replays { json }) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(crate::replay_cli::list(&cli.client, json))
        }
        Some(Command::Replay(command)) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(crate::replay_cli::run(&cli.client, command))
        }
        Some(Command::Cluster(ClusterCommand::Status { json })) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(cluster_status(&cli.client, json))
        }
        Some(
            command @ (Command::Account(_)
            | Command::Invite { .. }
            | Command::Profile { .. }
            | Command::Follow { .. }
            | Command::Unfollow { .. }
            | Command::Block { .. }
            | Command::Unblock { .. }
            | Command::Report { .. }
            | Command::Admin(_)),
        ) => {
            init_logging(cli.log_file.as_deref())?;
            runtime()?.block_on(crate::account_cli::run(&cli.client, command))
        }
        None => {
            // The terminal client draws on the screen: logs must go to a file.
            let log_file = match cli.log_file {
                Some(path) => path,
                None => default_log_file()?,
            };
            init_logging(Some(&log_file))?;
            let _stderr = quiet_stderr(&log_file);
            client_runtime()?.block_on(tui(cli.client, false))
        }
    }
}

/// While the terminal client runs, what C libraries print (alsa-lib, on a machine without a
/// sound card) goes to the log, not over the screen; see `client::stderr`.
fn quiet_stderr(log_file: &Path) -> Option<crate::client::stderr::StderrToLog> {
    match crate::client::stderr::to_log(log_file) {
        Ok(guard) => Some(guard),
        Err(e) => {
            tracing::warn!("standard error stays on the terminal: {e}");
            None
        }
    }
}

fn init_logging(file: Option<&Path>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // Our own news; the NATS and PostgreSQL clients' only when something is wrong
        // (their info lines are every connection and every NOTICE).
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,async_nats=warn,postgres=warn,tokio_postgres=warn",
            )
        });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// `$XDG_STATE_HOME/hallway/hallway.log` (or the cache directory where there is no state one).
fn default_log_file() -> anyhow::Result<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "hallway")
        .context("cannot find a home directory for the log file: pass --log-file")?;
    let dir = dirs.state_dir().unwrap_or_else(|| dirs.cache_dir());
    Ok(dir.join("hallway.log"))
}

/// The terminal client's runtime: one thread for the screen and the network. One room's
/// traffic is a few hundred small messages a second and a frame is drawn in well under a
/// millisecond; more threads would only add wake-ups (work and timers handed between
/// threads), not speed. Audio has threads of its own.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `hallway admin backup`: a consistent copy of the database, while the server may run.
fn backup(data: Option<PathBuf>, out: &Path) -> anyhow::Result<()> {
    let data = match data {
        Some(path) => path,
        None => match crate::server::DataLocation::default_file() {
            crate::server::DataLocation::File(path) => path,
            _ => anyhow::bail!("pass --data FILE"),
        },
    };
    if let crate::server::DataLocation::Postgres(_) =
        crate::server::DataLocation::parse(data.as_os_str())
    {
        anyhow::bail!(
            "a PostgreSQL store is backed up with PostgreSQL's tools: pg_dump DATABASE_URL > FILE"
        );
    }
    if !data.exists() {
        anyhow::bail!(
            "no database at {}; pass the server's --data FILE",
            data.display()
        );
    }
    if out.exists() {
        anyhow::bail!("{} exists; pick a new file for the backup", out.display());
    }
    crate::server::store::sqlite::backup_file(&data, out)?;
    println!("backed up {} to {}", data.display(), out.display());
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.cluster.is_empty() && args.listen.ip().is_unspecified() && args.public_url.is_empty() {
        anyhow::bail!(
            "a cluster node listening on {} needs --public-url URL: the other nodes send clients to it there",
            args.listen
        );
    }
    let mut config = ServerConfig {
        listen: args.listen,
        invite_only: args.invite_only,
        invitation_quota: args.invitations,
        data: match &args.data {
            Some(path) => crate::server::DataLocation::parse(path.as_os_str()),
            None => crate::server::DataLocation::default_file(),
        },
        public_urls: args.public_url.clone(),
        trusted_proxies: TrustedProxies::new(args.trusted_proxy.clone()),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        metrics_listen: args.metrics_listen,
        cluster: (!args.cluster.is_empty()).then(|| crate::server::cluster::ClusterConfig {
            nats: args.cluster.clone(),
            node: args.node_name.clone().unwrap_or_else(|| {
                let host = rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect::<String>();
                format!("{host}-{}", args.listen.port())
            }),
        }),
        ..ServerConfig::default()
    };
    config.limits.room.stage_limit = usize::from(args.stage_limit);
    if let Some(shards) = args.fanout_shards {
        config.fanout_shards = usize::from(shards);
    }
    config.shard_from = args.shard_from;
    config.replays = match (&args.replays, &config.data) {
        (Some(dir), _) => Some(dir.clone()),
        (None, crate::server::DataLocation::File(db)) => db.parent().map(|d| d.join("replays")),
        (None, _) => None,
    };
    config.replay_quota_bytes = args.replay_quota_mb.saturating_mul(1 << 20);
    args.limits.apply(&mut config.limits);
    let with_demo = args.demo;
    runtime()?.block_on(async move {
        let server = Server::bind(config).await?;
        let addr = server
            .local_addr()
            .context("cannot read the bound address")?;
        // Bound to every address, this machine reaches it on loopback (a name it knows).
        let reach = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let scheme = if server.is_tls() { "https" } else { "http" };
        if let Some(tls) = server.tls_reloader() {
            tokio::spawn(reload_on_sighup(tls));
        }
        if let Some(metrics) = server.metrics_addr() {
            tracing::info!("metrics on http://{metrics}/metrics");
        }
        let shutdown = server.shutdown_token();
        // Listen for signals before telling anyone the server is up, so an early Ctrl-C
        // still shuts down gracefully.
        let signals = stop_signal();
        tokio::spawn(async move {
            let signal = signals.await;
            tracing::info!("{signal}: shutting down, telling every client");
            shutdown.cancel();
        });
        let owner_code = server.owner_code().map(str::to_string);
        let running = tokio::spawn(server.run());
        let demo = if with_demo {
            Some(start_demo(&format!("{scheme}://{reach}")).await?)
        } else {
            None
        };
        // The one line scripts and tests read to find the port.
        println!("hallway server listening on {scheme}://{addr}");
        if let Some(code) = owner_code {
            let base = args.public_url.first().map_or_else(
                || format!("{scheme}://{reach}"),
                |u| u.trim_end_matches('/').to_string(),
            );
            println!(
                "owner invitation (works once; its account is the server's admin): hallway --server {base}/invite/{code}"
            );
        }
        running.await.context("the server task failed")??;
        drop(demo);
        tracing::info!("server stopped");
        anyhow::Ok(())
    })
}

/// The config file's path and contents.
pub(crate) fn load_config(args: &ClientArgs) -> anyhow::Result<(Option<PathBuf>, Config)> {
    let path = match &args.config {
        Some(path) => Some(path.clone()),
        None => Config::default_path().ok(),
    };
    let config = match &path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    Ok((path, config))
}

/// The server to use, from flags then the config file; None when nothing is configured.
fn configured_target(args: &ClientArgs, config: &Config) -> anyhow::Result<Option<Target>> {
    let Some(text) = args.server.as_ref().or(config.server.as_ref()) else {
        return Ok(None);
    };
    let mut target = Target::parse(text)?;
    if let Some(room) = &args.room {
        target.room = Some(room.clone());
    }
    Ok(Some(target))
}

fn display_name(args: &ClientArgs, config: &Config) -> String {
    args.name
        .clone()
        .or_else(|| config.name.clone())
        .or_else(|| {
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty() && u != "root")
        })
        .unwrap_or_else(|| "guest".to_string())
}

/// This device's key: `--key FILE`, or `device.key` in the config directory (made on
/// first use).
pub fn device_key(args: &ClientArgs) -> anyhow::Result<std::sync::Arc<crate::identity::DeviceKey>> {
    use crate::identity::DeviceKey;
    let key = match &args.key {
        Some(path) => DeviceKey::load_or_create_file(path)?,
        None => {
            let dir = Config::default_path()?
                .parent()
                .map(Path::to_path_buf)
                .context("cannot find the config directory: pass --key FILE")?;
            DeviceKey::load_or_create(&dir)?
        }
    };
    Ok(std::sync::Arc::new(key))
}

/// How to sign in to `target` as this device.
pub fn client_options(
    args: &ClientArgs,
    config: &Config,
    target: Target,
    config_path: Option<PathBuf>,
    enroll: bool,
) -> anyhow::Result<ClientOptions> {
    Ok(ClientOptions {
        target,
        name: display_name(args, config),
        key: device_key(args)?,
        handle: args.handle.clone(),
        enroll,
        config: config.clone(),
        config_path,
    })
}

/// Signed in when this device has an account on the server; else, on an open server, as
/// anyone (what is public reads the same). Also the server's target.
pub(crate) async fn signed_in_or_anonymous(args: &ClientArgs) -> anyhow::Result<(Api, Target)> {
    let (config_path, config) = load_config(args)?;
    let target = configured_target(args, &config)?
        .context("no server configured: pass --server URL (or set `server` in the config file)")?;
    let options = client_options(args, &config, target.clone(), config_path, false)?;
    let api = match client::sign_in(&options).await {
        Ok(api) => api,
        Err(e) => {
            let api = Api::new(target.server.clone());
            if api.info().await?.invite_only {
                return Err(e);
            }
            api
        }
    };
    Ok((api, target))
}

async fn rooms(args: &ClientArgs, json: bool) -> anyhow::Result<()> {
    // Signed in, the list puts rooms with people you follow first; a device without an
    // account here lists them as anyone may (unless the server is invite-only).
    let (api, target) = signed_in_or_anonymous(args).await?;
    let rooms = api.rooms().await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::protocol::RoomList { rooms })?
        );
        return Ok(());
    }
    print!("{}", rooms_table(&rooms, &target));
    Ok(())
}

/// `hallway cluster status`.
async fn cluster_status(args: &ClientArgs, json: bool) -> anyhow::Result<()> {
    let (_, config) = load_config(args)?;
    let target = configured_target(args, &config)?
        .context("no server configured: pass --server URL (or set `server` in the config file)")?;
    let status = Api::new(target.server.clone()).cluster_status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print!("{}", cluster_table(&status, crate::server::unix_ms_now()));
    Ok(())
}

/// The cluster's nodes as a plain table.
pub fn cluster_table(status: &crate::protocol::ClusterStatus, now_ms: u64) -> String {
    let safe = |text: &str| crate::protocol::text::terminal_safe(text).to_string();
    let mut out = format!(
        "{:<20} {:<32} {:>6} {:>8} {:>9}\n",
        "NODE", "URL", "ROOMS", "MEMBERS", "UP"
    );
    for node in &status.nodes {
        let up_s = now_ms.saturating_sub(node.started_ms) / 1000;
        let up = if up_s >= 3600 {
            format!("{}h{:02}m", up_s / 3600, up_s % 3600 / 60)
        } else {
            format!("{}m{:02}s", up_s / 60, up_s % 60)
        };
        let me = if node.name == status.node { " *" } else { "" };
        out.push_str(&format!(
            "{:<20} {:<32} {:>6} {:>8} {:>9}{me}\n",
            safe(&node.name),
            safe(&node.url),
            node.rooms,
            node.members,
            up
        ));
    }
    out.push_str(&format!(
        "{} node(s); * answered; its NATS round trip: {:.2} ms\n",
        status.nodes.len(),
        status.nats_rtt_ms
    ));
    out
}

/// The room list as a plain table.
pub fn rooms_table(rooms: &[crate::protocol::RoomSummary], target: &Target) -> String {
    if rooms.is_empty() {
        return "No rooms are live.\n".to_string();
    }
    let mut out = format!(
        "{:<10} {:<32} {:<16} {:>9}  {}\n",
        "ID", "TITLE", "HOST", "LISTENERS", "ON STAGE"
    );
    for room in rooms {
        // Every field comes from the server, which may be hostile: escaped before printing.
        let host = room.host.as_ref().map_or("-", |h| h.name.as_str());
        let stage: Vec<String> = room
            .speakers
            .iter()
            .map(|s| {
                let name = terminal_safe(&s.name);
                if s.speaking {
                    format!("{name}*")
                } else {
                    name.into_owned()
                }
            })
            .collect();
        // Rooms with someone you follow on stage come first (the server orders them), marked.
        let title = if room.followed {
            format!("★ {}", room.title)
        } else {
            room.title.clone()
        };
        out.push_str(&format!(
            "{:<10} {:<32} {:<16} {:>9}  {}\n",
            terminal_safe(&room.id),
            truncate(&title, 32),
            truncate(host, 16),
            room.listener_count,
            stage.join(", ")
        ));
    }
    out.push_str(&format!(
        "\nJoin with: hallway --server {}\n",
        Target::room_link(&target.server, "ID")
    ));
    out
}

fn truncate(text: &str, max: usize) -> String {
    let text = terminal_safe(text);
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('\u{2026}');
        out
    }
}

/// Starts the demo rooms on the server at `base`.
async fn start_demo(base: &str) -> anyhow::Result<Demo> {
    let clips = tokio::task::spawn_blocking(demo::built_in_clips)
        .await
        .context("encoding the demo clips failed")??;
    let url = Target::parse(base)?.server;
    Ok(Demo::start(url, demo::PLAN, clips).await?)
}

async fn tui(args: ClientArgs, force_demo: bool) -> anyhow::Result<()> {
    let (config_path, config) = load_config(&args)?;
    let keys = config.keymap().with_context(|| match &config_path {
        Some(path) => format!("in {}", path.display()),
        None => "in the config".to_string(),
    })?;
    let name = display_name(&args, &config);
    let mut embedded = None;
    let mut demo = None;
    let configured = if force_demo {
        None
    } else {
        configured_target(&args, &config)?
    };
    let target = match configured {
        Some(target) => target,
        None => {
            // Nothing configured: a private server in this process, on loopback only.
            let server = Server::bind(ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..ServerConfig::default()
            })
            .await?;
            let addr = server.local_addr()?;
            tracing::info!("no server configured: started a private server on {addr}");
            let shutdown = server.shutdown_token();
            let task = tokio::spawn(server.run());
            embedded = Some((shutdown, task));
            // Nothing configured means first run: make the rooms alive.
            demo = Some(start_demo(&format!("http://{addr}")).await?);
            Target::parse(&format!("http://{addr}"))?
        }
    };
    // Tokens for a private server die with it: keep none.
    let config_path = if embedded.is_some() {
        None
    } else {
        config_path
    };
    // The terminal client makes an account when the device has none: on an open server
    // (and the embedded one) at once, on an invite-only one with the invitation link.
    let mut options = client_options(&args, &config, target.clone(), config_path, true)?;
    let api = match newcomer_handle(&args, &config, &target, &name, &options).await? {
        Newcomer::SignedIn(api) => api,
        Newcomer::Handle(handle) => {
            options.handle = handle;
            client::sign_in(&options).await?
        }
    };
    let input: crate::audio::InputDevice = args.input.parse()?;
    let output: crate::audio::OutputDevice = args.output.parse()?;
    let audio = client::AudioLink::start(&input, &output, !args.no_noise_suppression);
    let result = client::run(
        api,
        audio,
        client::RunOptions {
            my_name: name,
            room: target.room,
            share: target.share,
            latency: config.latency,
            keys,
            config_path: options.config_path.clone(),
            config,
        },
    )
    .await;
    if let Some(demo) = demo {
        demo.stop().await;
    }
    if let Some((shutdown, task)) = embedded {
        shutdown.cancel();
        let _ = task.await;
    }
    result
}

/// Whether the client is signed in already, or what handle a new account takes.
enum Newcomer {
    SignedIn(Api),
    Handle(Option<String>),
}

/// With an invitation link and no `--handle`, at a terminal: a device that has an account
/// there signs in; one that has none is asked for a handle ([`ask_handle`]).
async fn newcomer_handle(
    args: &ClientArgs,
    config: &Config,
    target: &Target,
    name: &str,
    options: &ClientOptions,
) -> anyhow::Result<Newcomer> {
    use std::io::IsTerminal;
    if target.invitation.is_none() || options.handle.is_some() || !std::io::stdin().is_terminal() {
        return Ok(Newcomer::Handle(options.handle.clone()));
    }
    let existing = client_options(
        args,
        config,
        target.clone(),
        options.config_path.clone(),
        false,
    )?;
    match client::sign_in(&existing).await {
        Ok(api) => Ok(Newcomer::SignedIn(api)),
        Err(_) => Ok(Newcomer::Handle(Some(ask_handle(target, name)?))),
    }
}

/// A newcomer with an invitation picks a handle, before the screen is taken: a suggestion
/// from their name, taken with Enter; a handle the rules refuse is asked again, saying why.
/// (One that is taken is refused by the server, with what to do.)
fn ask_handle(target: &Target, name: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    let suggested = crate::protocol::handle::handle_from_name(name, "");
    let mut out = std::io::stdout();
    writeln!(
        out,
        "You are invited to {}. Pick your handle: how people there find and tell you apart",
        terminal_safe(target.server.as_str().trim_end_matches('/'))
    )?;
    writeln!(
        out,
        "(3 to 20 letters, digits or _; it cannot be changed later)."
    )?;
    let stdin = std::io::stdin();
    for _ in 0..5 {
        write!(out, "handle [{}]: ", suggested.as_str())?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            anyhow::bail!("no handle given: pass --handle NAME");
        }
        let line = line.trim();
        if line.is_empty() {
            return Ok(suggested.as_str().to_string());
        }
        match crate::protocol::handle::Handle::parse(line) {
            Ok(handle) => return Ok(handle.as_str().to_string()),
            Err(e) => writeln!(out, "{e}; try again")?,
        }
    }
    anyhow::bail!("no valid handle given: pass --handle NAME")
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM and names the one that came. The handlers are
/// installed when this is called, not when the future is first polled, so a signal that
/// arrives right after start is not lost. A signal that cannot be listened for is waited
/// on forever rather than taken as a request to stop.
/// Reads the TLS certificate and key again on every SIGHUP.
async fn reload_on_sighup(tls: std::sync::Arc<crate::server::tls::Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => tracing::warn!("SIGHUP: {e}; still using the previous certificate"),
        }
    }
}

fn stop_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(interrupt) => "Ctrl-C",
            () = wait(terminate) => "SIGTERM",
        }
    }
}

/// With a room link for `--room` and no `--server`, the link names the server too.
fn server_from_link(args: &ClientArgs, room: Option<&str>) -> ClientArgs {
    let mut args = args.clone();
    if args.server.is_none()
        && let Some(link) = room.filter(|r| r.contains("://"))
    {
        args.server = Some(link.to_string());
        args.room = None;
    }
    args
}

/// A room given as an id, or as a room link (a private room's share link carries its
/// secret); a bare id on the server's own link takes that link's secret.
fn room_and_share(room: &str, server: &Target) -> anyhow::Result<(String, Option<String>)> {
    if room.contains('/') {
        let link = Target::parse(room)?;
        // A share secret goes only to the server it is for.
        if link.server != server.server {
            anyhow::bail!(
                "that link is for {}, but the server is {}: leave out --server (and HALLWAY_SERVER) to use the link's",
                link.server,
                server.server
            );
        }
        let id = link
            .room
            .context("that link names no room: give a room id or a link like URL/rooms/ID")?;
        return Ok((id, link.share));
    }
    let share = server
        .share
        .clone()
        .filter(|_| server.room.as_deref() == Some(room));
    Ok((room.to_string(), share))
}

/// `--share`: handles, `followers` and `link`, comma-separated.
fn parse_share(text: &str) -> Result<crate::protocol::Share, String> {
    let mut share = crate::protocol::Share::default();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item {
            "followers" => share.followers = true,
            "link" => share.link = true,
            handle => share
                .handles
                .push(handle.trim_start_matches('@').to_string()),
        }
    }
    if share.handles.is_empty() && !share.followers && !share.link {
        return Err("say who: @handles, `followers` or `link`, comma-separated".into());
    }
    Ok(share)
}

/// Signs in for a headless command as this device (`--key FILE` for another identity, so
/// a player and a recorder on one machine can be two people), making an account when the
/// device has none. It keeps no token: signing in with the key is one request more.
pub(crate) async fn headless_api(args: &ClientArgs) -> anyhow::Result<(Api, Target)> {
    let (_, config) = load_config(args)?;
    let target = configured_target(args, &config)?
        .context("no server configured: pass --server URL (or set `server` in the config file)")?;
    let options = client_options(args, &config, target.clone(), None, true)?;
    Ok((client::sign_in(&options).await?, target))
}

async fn play(args: &ClientArgs, play: PlayArgs) -> anyhow::Result<()> {
    let args = &server_from_link(args, play.room.as_deref());
    let (api, target) = headless_api(args).await?;
    let private = play.private.then(|| {
        play.share.unwrap_or(crate::protocol::Share {
            link: true,
            ..Default::default()
        })
    });
    let where_to = match (play.create, play.room) {
        (Some(title), _) => PlayTarget::Create {
            title,
            private,
            replay: play.replay,
        },
        (None, Some(room)) => {
            let (id, share) = room_and_share(&room, &target)?;
            PlayTarget::Room { id, share }
        }
        (None, None) => match target.room {
            Some(id) => PlayTarget::Room {
                id,
                share: target.share,
            },
            None => anyhow::bail!("say where to play: --room ID or --create TITLE"),
        },
    };
    let stop = stop_signal();
    tokio::select! {
        result = headless::play(
            &api,
            where_to,
            &play.file,
            play.looping,
            Duration::from_secs(play.invite_timeout),
        ) => Ok(result?),
        signal = stop => {
            tracing::info!("{signal}: stopping");
            Ok(())
        }
    }
}

async fn record(args: &ClientArgs, record: RecordArgs) -> anyhow::Result<()> {
    if record.seconds.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
        anyhow::bail!("--seconds must be a positive number");
    }
    let args = &server_from_link(args, Some(&record.room));
    let (api, target) = headless_api(args).await?;
    let (room, share) = room_and_share(&record.room, &target)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        stop_signal().await;
        on_signal.cancel();
    });
    let recorded = headless::record(
        &api,
        &room,
        share,
        &record.out,
        record.tracks.as_deref(),
        record.seconds,
        stop,
    )
    .await?;
    let stats = recorded.stats;
    let lost = match stats.lost {
        0 => String::new(),
        n => format!(", {n} lost on the way"),
    };
    eprintln!(
        "recorded {:.1} s to {} ({} audio frames from {} {}{lost})",
        recorded.seconds,
        record.out.display(),
        stats.frames,
        stats.speakers,
        if stats.speakers == 1 {
            "speaker"
        } else {
            "speakers"
        },
    );
    for track in &recorded.tracks {
        eprintln!("  track {}", track.display());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_share_link_goes_only_to_its_own_server() {
        let target = Target::parse("http://a:1").unwrap();
        assert!(room_and_share("http://b:2/rooms/x?share=s", &target).is_err());
        let (id, share) = room_and_share("http://a:1/rooms/x?share=s", &target).unwrap();
        assert_eq!((id.as_str(), share.as_deref()), ("x", Some("s")));
        let (id, share) = room_and_share("x", &target).unwrap();
        assert_eq!((id.as_str(), share), ("x", None));
    }

    /// Node names and URLs come from other servers: shown escaped.
    #[test]
    fn the_cluster_table_escapes_what_nodes_say() {
        let status = crate::protocol::ClusterStatus {
            node: "a".into(),
            nodes: vec![crate::protocol::ClusterNode {
                name: "a\u{1b}[2J".into(),
                url: "http://x\u{202e}y".into(),
                rooms: 1,
                members: 2,
                started_ms: 0,
            }],
            nats_rtt_ms: 0.5,
        };
        let table = cluster_table(&status, 90_000);
        assert!(
            !table.contains('\u{1b}') && !table.contains('\u{202e}'),
            "{table}"
        );
        assert!(table.contains("1m30s"), "{table}");
    }
}
