//! The `presence-bridge` binary: parses the command line and hands over to
//! [`presence_bridge::cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    presence_bridge::cli::run(presence_bridge::cli::Cli::parse())
}
