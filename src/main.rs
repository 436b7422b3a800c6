//! The `hallway` binary: parse the command line and run it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    hallway::cli::main(hallway::cli::Cli::parse())
}
