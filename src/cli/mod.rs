//! The command line: `serve` (default), `check-config`, `tail`, `spool`,
//! `dead-letter`. Each command
//! loads the configuration the same way, then runs; exit codes are 0 on
//! success, 1 on a runtime failure, 2 on a configuration error, and for
//! `serve` 3 when a supervised task failed and the bridge stopped itself
//! ([`EXIT_TASK_FAILED`]; see [`crate::app`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Settings};
use crate::dev::EmbeddedBroker;
use crate::health::{DevBroker, DEV_WARNING};
use crate::tail::{self, TailOptions};

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
    /// Operator tools for the spool directory (read-only; meant for a stopped bridge).
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// List the events Kafka refused for good, or put them back into the stream.
    #[command(subcommand)]
    DeadLetter(DeadLetterCommand),
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
    let settings = match config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            errln!("presence-bridge: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::CheckConfig => check_config(&settings),
        Command::Serve(args) => serve(settings, args),
        Command::Tail(args) => run_tail(settings, args),
        Command::Spool(cmd) => spool_tool(&settings, cmd),
        Command::DeadLetter(cmd) => dead_letter_tool(&settings, cli.config.as_deref(), cmd),
    }
}

fn dead_letter_tool(
    settings: &Settings,
    config: Option<&std::path::Path>,
    cmd: DeadLetterCommand,
) -> ExitCode {
    use crate::publisher::dead_letter::tools::{self, Filter, Line, ReplayOptions};
    use crate::spool::store::{self, Store, StoreOptions};
    use crate::spool::SpoolError;
    let dir = &settings.spool.dir;
    let filter = |f: DeadLetterFilterArgs| Filter {
        reason: f.reason,
        topic: f.topic,
    };
    match cmd {
        DeadLetterCommand::List(args) => {
            let filter = filter(args.filter);
            let mut lines = match tools::Lines::open(dir) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    errln!(
                        "no dead letters ({} does not exist)",
                        tools::path(dir).display()
                    );
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    errln!("presence-bridge dead-letter list: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if !args.json {
                outln!(
                    "{:<8} {:<36} {:<24} {:<14} {:<24} KEY",
                    "SEQ",
                    "ID",
                    "TOPIC",
                    "REASON",
                    "DEAD-LETTERED AT"
                );
            }
            let (mut shown, mut total, mut unreadable) = (0u64, 0u64, 0u64);
            loop {
                let line = match lines.next_line() {
                    Ok(Some((_, line))) => line,
                    Ok(None) => break,
                    Err(e) => {
                        errln!("presence-bridge dead-letter list: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let l = match line {
                    Line::Letter(l) => l,
                    Line::Unreadable { line, why } => {
                        unreadable += 1;
                        errln!("line {line}: unreadable: {why} (left in the file)");
                        continue;
                    }
                };
                total += 1;
                if !filter.matches(&l) {
                    continue;
                }
                shown += 1;
                let dash = || "-".to_owned();
                if args.json {
                    let value_bytes = match &l.value {
                        tools::Value::Exact(b) => Some(b.len()),
                        tools::Value::Legacy(_) => None,
                    };
                    let row = serde_json::json!({
                        "line": l.line,
                        "format": l.format,
                        "seq": l.seq,
                        "id": l.id.map(|i| i.hyphenated().to_string()),
                        "topic": l.topic,
                        "reason": l.reason,
                        "error": l.error,
                        "dead_lettered_at": l.dead_lettered_at,
                        "arrival_ms": l.arrival_ms,
                        "key_masked": l.masked_key(),
                        "value_bytes": value_bytes,
                        "replayable": l.to_record(false).is_some(),
                    });
                    outln!("{row}");
                } else {
                    outln!(
                        "{:<8} {:<36} {:<24} {:<14} {:<24} {}",
                        l.seq.map_or_else(dash, |s| s.to_string()),
                        l.id.map_or_else(dash, |i| i.hyphenated().to_string()),
                        l.topic,
                        l.reason,
                        l.dead_lettered_at.clone().unwrap_or_else(dash),
                        l.masked_key(),
                    );
                }
            }
            errln!("{shown} of {total} dead letter(s) shown; {unreadable} unreadable line(s)");
            ExitCode::SUCCESS
        }
        DeadLetterCommand::Replay(args) => {
            let mut again = String::from("presence-bridge");
            if let Some(c) = config {
                again += &format!(" --config {}", c.display());
            }
            again += " dead-letter replay";
            if let Some(r) = &args.filter.reason {
                again += &format!(" --reason {r}");
            }
            if let Some(t) = &args.filter.topic {
                again += &format!(" --topic {t}");
            }
            if args.include_legacy {
                again += " --include-legacy";
            }
            let opts = ReplayOptions {
                filter: filter(args.filter),
                include_legacy: args.include_legacy,
            };
            if args.dry_run {
                return match tools::plan(dir, &opts) {
                    Ok(r) => {
                        outln!("{}", serde_json::to_string(&r).unwrap_or_default());
                        errln!(
                            "dry run: {} of {} selected dead letter(s) would be put back into the spool; {} format-1 line(s) would stay (--include-legacy)",
                            r.replayed, r.selected, r.skipped_legacy
                        );
                        if store::is_locked(dir) {
                            errln!("note: a running bridge holds {}/LOCK: stop it before the real replay", dir.display());
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        errln!("presence-bridge dead-letter replay: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            let opened = Store::open(StoreOptions {
                dir: dir.clone(),
                max_bytes: settings.spool.max_bytes,
                segment_bytes: settings.spool.segment_bytes,
                fsync: settings.spool.fsync,
            });
            let store = match opened {
                Ok((s, _)) => s,
                Err(SpoolError::Locked { dir: d, .. }) => {
                    errln!(
                        "presence-bridge dead-letter replay: a running bridge holds {}/LOCK.\n  \
                         Replay appends to the spool, which one process writes at a time: stop the bridge \
                         (it keeps its spool), run\n    {again}\n  \
                         with the same configuration and environment, then start the bridge again; it \
                         sends the replayed events. Nothing was changed.",
                        d.display(),
                    );
                    return ExitCode::from(2);
                }
                Err(e) => {
                    errln!("presence-bridge dead-letter replay: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match tools::replay(&store, &opts) {
                Ok(r) => {
                    outln!("{}", serde_json::to_string(&r).unwrap_or_default());
                    errln!(
                        "replayed {} dead letter(s) into the spool (seq {}); {} already there; {} format-1 line(s) left (--include-legacy); the bridge sends them at its next start",
                        r.replayed,
                        match (r.first_seq, r.last_seq) {
                            (Some(a), Some(b)) => format!("{a}..{b}"),
                            _ => "-".into(),
                        },
                        r.already_in_spool,
                        r.skipped_legacy
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    errln!("presence-bridge dead-letter replay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn spool_tool(settings: &Settings, cmd: SpoolCommand) -> ExitCode {
    use crate::spool::store;
    let dir = &settings.spool.dir;
    // Exit 2 (the configuration points elsewhere), never "all checksums ok".
    if let Err(e) = crate::spool::dir::recognise(dir) {
        errln!("presence-bridge spool: spool.dir: {e}");
        return ExitCode::from(2);
    }
    let running = store::is_locked(dir);
    if running {
        errln!(
            "warning: a running bridge holds {}/LOCK: figures may change while they are read",
            dir.display()
        );
    }
    let (watermark, checkpoint_lost, segments) = match store::inspect(dir) {
        Ok(r) => r,
        Err(e) => {
            errln!("presence-bridge spool: spool.dir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pending: u64 = segments.iter().map(|s| s.pending).sum();
    let damaged: Vec<&store::SegmentReport> = segments
        .iter()
        .filter(|s| s.torn_bytes > 0 || s.corrupt_regions > 0)
        .collect();
    let dead_letters = std::fs::read_to_string(dir.join(crate::publisher::dead_letter::FILE_NAME))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    match cmd {
        SpoolCommand::Inspect => {
            let oldest = store::oldest_pending(dir, watermark).ok().flatten();
            let report = serde_json::json!({
                "dir": dir.display().to_string(),
                "bridge_running": running,
                "watermark": watermark,
                "checkpoint_lost": checkpoint_lost,
                "pending_events": pending,
                "oldest_pending_arrival": oldest.map(|ms| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .map(crate::presence::format_millis)
                        .unwrap_or_default()
                }),
                "bytes": segments.iter().map(|s| s.bytes).sum::<u64>(),
                "dead_letters": dead_letters,
                "segments": segments,
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        SpoolCommand::Verify => {
            for s in &segments {
                let state = if s.torn_bytes > 0 || s.corrupt_regions > 0 {
                    "DAMAGED"
                } else {
                    "ok"
                };
                outln!(
                    "{state:8} {} records {}..{} bytes {} torn_bytes {} corrupt_regions {}",
                    s.file,
                    s.first_seq,
                    s.last_seq.map_or("-".to_owned(), |l| l.to_string()),
                    s.bytes,
                    s.torn_bytes,
                    s.corrupt_regions
                );
            }
            if checkpoint_lost {
                outln!(
                    "DAMAGED  acked (checkpoint unreadable: every stored event will be sent again)"
                );
            }
            if damaged.is_empty() && !checkpoint_lost {
                outln!(
                    "spool verify: {} segment(s), {pending} pending event(s), all checksums ok",
                    segments.len()
                );
                ExitCode::SUCCESS
            } else {
                outln!(
                    "spool verify: {} damaged segment(s); the bridge cuts torn tails and skips damaged records at start",
                    damaged.len()
                );
                ExitCode::FAILURE
            }
        }
    }
}

fn check_config(settings: &Settings) -> ExitCode {
    // librdkafka checked every property at load (config::load).
    if let Some(tls) = &settings.http.tls {
        if let Err(e) = crate::tls::Tls::check(tls) {
            errln!("presence-bridge: configuration error: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(code) = check_spool_dir(&settings.spool.dir) {
        return code;
    }
    let text = serde_json::to_string_pretty(&settings.redacted_json()).unwrap_or_default();
    outln!("{text}");
    for w in &settings.warnings {
        errln!("warning: {w}");
    }
    if settings.kafka.brokers.is_empty() {
        errln!("note: kafka.brokers is empty: `serve` will refuse to start unless run with --dev");
    }
    ExitCode::SUCCESS
}

/// `check-config`'s check of `spool.dir` ([`crate::spool::dir::check_dir`]):
/// an error is a configuration error (exit 2); a running bridge holding the
/// lock is normal beside it, so only a warning.
fn check_spool_dir(dir: &std::path::Path) -> Result<(), ExitCode> {
    match crate::spool::dir::check_dir(dir) {
        Ok(c) if c.in_use => {
            let pid = c.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            errln!(
                "warning: spool.dir {}: a running presence-bridge{pid} holds its lock; `serve` with this configuration would refuse to start beside it",
                dir.display()
            );
            Ok(())
        }
        Ok(c) if !c.exists => {
            errln!(
                "note: spool.dir {} does not exist yet; `serve` creates it",
                dir.display()
            );
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            errln!("presence-bridge: configuration error: spool.dir: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn serve(settings: Settings, args: ServeArgs) -> ExitCode {
    crate::logging::init(settings.log.format, &settings.log.level);
    for w in &settings.warnings {
        tracing::warn!(warning = %w, "configuration");
    }
    // Lives on this thread until the runtime is gone.
    let mut embedded = None;
    let (brokers, dev) = if args.dev {
        // Every configured topic, as the probe checks them.
        let topics = crate::app::configured_topics(&settings);
        match EmbeddedBroker::start(topics.iter().map(String::as_str)) {
            Ok(b) => {
                let bootstrap = b.bootstrap_servers();
                tracing::warn!(bootstrap = %bootstrap, "{DEV_WARNING}");
                embedded = Some(b);
                let dev = DevBroker {
                    bootstrap: bootstrap.clone(),
                    topic: settings.kafka.topic.clone(),
                };
                (bootstrap, Some(dev))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the embedded development broker");
                return ExitCode::FAILURE;
            }
        }
    } else if settings.kafka.brokers.is_empty() {
        errln!(
            "presence-bridge: no Kafka brokers configured.\n  Set kafka.brokers in the --config file \
             (brokers = [\"kafka-1:9092\"]) or PRESENCE_BRIDGE__KAFKA__BROKERS=kafka-1:9092,kafka-2:9092,\n  \
             or run `presence-bridge serve --dev` for an embedded development broker that keeps nothing."
        );
        return ExitCode::from(2);
    } else {
        (settings.kafka.brokers.join(","), None)
    };
    if settings.auth.tokens.is_empty() && settings.auth.instances.is_empty() {
        tracing::warn!(
            "auth.tokens and auth.instances are empty: the webhook accepts requests without a token"
        );
    }

    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("presence-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = settings.shutdown.deadline;
    let code = rt.block_on(async move {
        let running = match crate::app::start(settings, brokers, dev).await {
            Ok(r) => r,
            Err(e) if e.is_config() => {
                tracing::error!(error = %e, "cannot start: configuration error");
                errln!("presence-bridge: configuration error: {e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        // A signal, or a supervised task that failed (which starts the shutdown itself).
        let stopping = running.shutdown_token();
        tokio::select! {
            signal = shutdown_signal() => {
                tracing::info!(signal, "signal received");
                running.shutdown();
            }
            _ = stopping.cancelled() => {}
        }
        let health = running.health.clone();
        // The app bounds each step by the deadline; this is a last guard.
        let finished = tokio::time::timeout(deadline + Duration::from_secs(2), running.wait())
            .await
            .is_ok();
        if !finished {
            tracing::error!("shutdown did not finish within the deadline");
        }
        ExitCode::from(serve_exit_code(finished, &health.failed()))
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(embedded);
    code
}

/// `serve`'s exit code when a supervised task failed: the bridge stopped
/// itself so that the orchestrator restarts it over its intact spool.
pub const EXIT_TASK_FAILED: u8 = 3;

/// `serve`'s exit code after the shutdown: 3 if a supervised task failed
/// (whether or not the drain finished), else 0 for a drain that finished, 1
/// for one cut by the last guard.
fn serve_exit_code(finished: bool, failed: &[crate::health::Component]) -> u8 {
    match (failed.is_empty(), finished) {
        (false, _) => EXIT_TASK_FAILED,
        (true, true) => 0,
        (true, false) => 1,
    }
}

fn run_tail(settings: Settings, args: TailArgs) -> ExitCode {
    crate::logging::init(settings.log.format, "warn");
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("presence-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = TailOptions {
        topic: args.topic,
        from: args.from,
        limit: args.limit,
        idle_timeout: args.idle_timeout,
    };
    let result = rt.block_on(async move {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            on_signal.cancel();
        });
        tail::run(&settings, opts, stop).await
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("presence-bridge tail: {e}");
            ExitCode::FAILURE
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Component;

    #[test]
    fn a_failed_task_exits_3_whether_or_not_the_drain_finished() {
        assert_eq!(serve_exit_code(true, &[]), 0);
        assert_eq!(serve_exit_code(false, &[]), 1);
        assert_eq!(serve_exit_code(true, &[Component::Forwarder]), 3);
        assert_eq!(serve_exit_code(false, &[Component::SpoolWriter]), 3);
    }
}
