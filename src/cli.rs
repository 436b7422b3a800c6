//! The command line: subcommands, logging set-up, and the runtime each command runs on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::server::{DEFAULT_LISTEN, Server, ServerConfig};

/// Live audio rooms in the terminal.
#[derive(Debug, Parser)]
#[command(name = "hallway", version, about)]
pub struct Cli {
    /// Write logs to this file (default: stderr for `serve`). Filter with RUST_LOG.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the room server.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_LISTEN, env = "HALLWAY_LISTEN")]
    pub listen: SocketAddr,
    /// Make the server invite-only: sessions need this code.
    #[arg(long, env = "HALLWAY_ACCESS_CODE", value_name = "CODE")]
    pub access_code: Option<String>,
    /// Most people on a room's stage at once.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=200))]
    pub stage_limit: u16,
}

/// Runs the parsed command line; the exit code says whether it worked.
pub fn main(cli: Cli) -> ExitCode {
    if let Err(e) = init_logging(cli.log_file.as_deref()) {
        eprintln!("hallway: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hallway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig {
        listen: args.listen,
        access_code: args.access_code.filter(|c| !c.is_empty()),
        ..ServerConfig::default()
    };
    config.limits.room.stage_limit = usize::from(args.stage_limit);
    runtime()?.block_on(async move {
        let server = Server::bind(config).await?;
        let addr = server
            .local_addr()
            .context("cannot read the bound address")?;
        // The one line scripts and tests read to find the port.
        println!("hallway server listening on http://{addr}");
        let shutdown = server.shutdown_token();
        tokio::spawn(async move {
            let signal = stop_signal().await;
            tracing::info!("{signal}: shutting down, telling every client");
            shutdown.cancel();
        });
        server.run().await?;
        tracing::info!("server stopped");
        anyhow::Ok(())
    })
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM and names the one that came. A signal that cannot be
/// listened for is waited on forever rather than taken as a request to stop.
async fn stop_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => "Ctrl-C",
        () = term => "SIGTERM",
    }
}
