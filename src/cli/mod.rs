//! The command line: `serve` (default), `check-config`, `tail`, `spool`,
//! `dead-letter`, `zapi` (webhook registration at the provider; it reads no
//! configuration). Each other command
//! loads the configuration the same way, then runs; exit codes are 0 on
//! success, 1 on a runtime failure, 2 on a configuration error, and for
//! `serve` 3 when a supervised task failed and the bridge stopped itself
//! ([`EXIT_TASK_FAILED`]; see [`crate::app`]).
//!
//! This file holds the clap definitions and the dispatch; each command group
//! runs in its own file (`serve`, `check_config`, `tail_cmd`, `spool`,
//! `dead_letter`), and the spool tools' figures come from
//! [`crate::spool::operator`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::tail;

/// `eprintln!` that never panics: a closed stderr (`2>&1 | head`, a log
/// collector gone) loses the line, the command still exits with its code.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `println!` that never panics: a reader that stops early (`| head`) ends
/// the output, not the process.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod check_config;
mod dead_letter;
mod presence;
mod serve;
mod spool;
mod tail_cmd;
mod zapi;

pub use serve::EXIT_TASK_FAILED;

#[derive(Debug, Parser)]
#[command(
    name = "presence-bridge",
    version,
    about = "Z-API chat-presence webhooks in, CloudEvents in Kafka out"
)]
pub struct Cli {
    /// TOML configuration file (defaults < file < PRESENCE_BRIDGE__* environment).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge (the default command).
    Serve(ServeArgs),
    /// Load and validate the configuration, print it with secrets redacted.
    CheckConfig,
    /// Print each message of the topic as one JSON line (key, headers, value).
    Tail(TailArgs),
    /// Operator tools for the spool directory: inspect and verify (read-only), and
    /// forward (delivers a spool whose bridge is gone).
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// List the events Kafka refused for good, or put them back into the stream.
    #[command(subcommand)]
    DeadLetter(DeadLetterCommand),
    /// Register the instance's webhooks at Z-API, or check them for drift.
    #[command(subcommand)]
    Zapi(zapi::ZapiCommand),
    /// The latest-presence topic: delete a contact's state.
    #[command(subcommand)]
    Presence(PresenceCommand),
}

#[derive(Debug, Subcommand)]
pub enum PresenceCommand {
    /// Write a tombstone (the contact's key, a null value) to the compacted
    /// latest-presence topic, e.g. for a data-erasure request; exits 0 once
    /// the broker acknowledged it. A state the bridge writes afterwards (a
    /// new event, a typing expiry) puts the contact back.
    Forget(ForgetArgs),
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The Z-API instance id.
    #[arg(long)]
    pub instance: String,
    /// The contact's phone, as the provider sends it (normalized like the bridge does).
    #[arg(long)]
    pub phone: String,
    /// How long to wait for the broker's acknowledgement.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// One line per dead letter: seq, id, topic, reason, when, masked key.
    List(DeadLetterListArgs),
    /// Append the selected dead letters to the spool (original ids, order and
    /// bytes) and remove them from the file. Needs the bridge stopped.
    Replay(DeadLetterReplayArgs),
}

#[derive(Debug, Args)]
pub struct DeadLetterFilterArgs {
    /// Only dead letters with this reason (too_large, rejected; files from older
    /// versions may also hold not_authorized, unknown_topic).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters for this topic.
    #[arg(long)]
    pub topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeadLetterListArgs {
    #[command(flatten)]
    pub filter: DeadLetterFilterArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeadLetterReplayArgs {
    #[command(flatten)]
    pub filter: DeadLetterFilterArgs,
    /// Say what would be replayed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also replay lines written before version 2 of the file format (their
    /// value is re-encoded from parsed JSON: same content, maybe other bytes).
    #[arg(long)]
    pub include_legacy: bool,
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Counts, oldest pending event, per-segment health, as JSON.
    Inspect,
    /// Checks every record's checksum; exit 1 if anything is damaged.
    Verify,
    /// Delivers an orphaned spool directory (a volume whose bridge is gone) to Kafka, in
    /// order, with the configuration's brokers; exits 0 once it is empty, 1 if it cannot
    /// finish. Refuses a directory a running bridge holds.
    Forward(SpoolForwardArgs),
}

#[derive(Debug, Args)]
pub struct SpoolForwardArgs {
    /// The spool directory to forward (not spool.dir: the orphan's own).
    #[arg(long, value_name = "PATH")]
    pub dir: PathBuf,
    /// Give up (exit 1) when no event was delivered for this long (e.g. 2m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Also start an embedded in-memory Kafka broker (development only: keeps nothing).
    #[arg(long)]
    pub dev: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read (default: kafka.topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Where to start reading.
    #[arg(long, value_enum, default_value = "beginning")]
    pub from: tail::StartAt,
    /// Exit after this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Exit when no message arrived for this long (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
}

/// Runs the parsed command line with the process environment.
pub fn run(cli: Cli) -> ExitCode {
    let command = match cli.command {
        // Talks to the provider only: no configuration to load.
        Some(Command::Zapi(cmd)) => {
            if cli.config.is_some() {
                errln!("presence-bridge zapi: --config is ignored: `zapi` reads no configuration");
            }
            return zapi::zapi_tool(cmd);
        }
        other => other,
    };
    let settings = match config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            errln!("presence-bridge: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::CheckConfig => check_config::check_config(&settings),
        Command::Serve(args) => serve::serve(settings, args),
        Command::Tail(args) => tail_cmd::run_tail(settings, args),
        Command::Spool(cmd) => spool::spool_tool(&settings, cmd),
        Command::DeadLetter(cmd) => {
            dead_letter::dead_letter_tool(&settings, cli.config.as_deref(), cmd)
        }
        Command::Zapi(cmd) => zapi::zapi_tool(cmd),
        Command::Presence(cmd) => presence::presence_tool(&settings, cmd),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Resolves on SIGTERM or SIGINT, naming which.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
