//! `presence-bridge spool inspect` and `spool verify`: checks that
//! `spool.dir` is a spool, warns about a running bridge, and prints what
//! [`crate::spool::operator`] computes, with its exit code. `spool forward`:
//! runs [`crate::app::forward_orphan`] on another directory and prints its
//! progress.

use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{ForwardOptions, ForwardOutcome, Progress};
use crate::config::Settings;

use super::{runtime, shutdown_signal, SpoolCommand, SpoolForwardArgs};

pub(super) fn spool_tool(settings: &Settings, cmd: SpoolCommand) -> ExitCode {
    use crate::spool::{operator, store};
    let cmd = match cmd {
        SpoolCommand::Forward(args) => return forward(settings, args),
        other => other,
    };
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
    let survey = match operator::survey(dir) {
        Ok(r) => r,
        Err(e) => {
            errln!("presence-bridge spool: spool.dir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dead_letters = std::fs::read_to_string(dir.join(crate::publisher::dead_letter::FILE_NAME))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    match cmd {
        SpoolCommand::Inspect => {
            let report = survey.inspect_report(dir, running, dead_letters, |ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                    .map(crate::presence::format_millis)
                    .unwrap_or_default()
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        SpoolCommand::Verify => {
            let verdict = survey.verify();
            for line in &verdict.lines {
                outln!("{line}");
            }
            if verdict.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        SpoolCommand::Forward(_) => unreachable!("dispatched above"),
    }
}

/// `spool forward --dir PATH`: 0 once the spool is empty, 1 when it cannot
/// finish (stalled, interrupted, the lock held), 2 for a wrong directory or
/// configuration.
fn forward(settings: &Settings, args: SpoolForwardArgs) -> ExitCode {
    crate::logging::init(settings.log.format, &settings.log.level);
    let dir = args.dir.display().to_string();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("presence-bridge spool forward: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = ForwardOptions {
        dir: args.dir,
        idle_timeout: args.idle_timeout,
        progress_every: Duration::from_secs(2),
    };
    let code = rt.block_on(async {
        let stop = CancellationToken::new();
        let on_signal = tokio::spawn({
            let stop = stop.clone();
            async move {
                let signal = shutdown_signal().await;
                errln!("presence-bridge spool forward: {signal}: stopping (what was delivered is kept)");
                stop.cancel();
            }
        });
        let result = crate::app::forward_orphan(settings, &opts, stop, |p| match p {
            Progress::Start { pending: 0, .. } => {
                outln!("{dir}: the spool is empty, nothing to forward")
            }
            Progress::Start { pending, topics } => {
                let topics: Vec<String> =
                    topics.iter().map(|(t, n)| format!("{t}: {n}")).collect();
                outln!(
                    "{dir}: forwarding {pending} events to Kafka ({})",
                    topics.join(", ")
                )
            }
            Progress::Left { left, pending } => {
                outln!("{dir}: {} of {pending} forwarded, {left} left", pending - left.min(pending))
            }
        })
        .await;
        on_signal.abort();
        match result {
            Err(e) if e.is_locked() => {
                errln!("presence-bridge spool forward: {e}\n  A running bridge owns this spool and delivers its events itself: forward only a spool whose bridge is gone.");
                ExitCode::FAILURE
            }
            Err(e) if e.is_config() => {
                errln!("presence-bridge spool forward: {dir}: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                errln!("presence-bridge spool forward: {dir}: {e}");
                ExitCode::FAILURE
            }
            Ok(f) => {
                let delivered = f.pending_at_start - f.left.min(f.pending_at_start);
                let dead = if f.dead_lettered > 0 {
                    format!(
                        " ({} of them refused for good by Kafka: see `presence-bridge dead-letter list` with spool.dir={dir})",
                        f.dead_lettered
                    )
                } else {
                    String::new()
                };
                match f.outcome {
                    ForwardOutcome::Emptied => {
                        if f.pending_at_start > 0 {
                            outln!("{dir}: done: {delivered} events forwarded in {:.1}s{dead}; the spool is empty", f.took.as_secs_f64());
                        }
                        ExitCode::SUCCESS
                    }
                    ForwardOutcome::Stalled { why } => {
                        errln!("presence-bridge spool forward: {dir}: gave up: nothing delivered for {}: {why}; {delivered} forwarded{dead}, {} left in the spool (run it again once Kafka takes them)", humantime::format_duration(opts.idle_timeout), f.left);
                        ExitCode::FAILURE
                    }
                    ForwardOutcome::Interrupted => {
                        errln!("presence-bridge spool forward: {dir}: interrupted: {delivered} forwarded{dead}, {} left in the spool", f.left);
                        ExitCode::FAILURE
                    }
                    ForwardOutcome::ForwarderFailed => {
                        errln!("presence-bridge spool forward: {dir}: the forwarder stopped (see the log above): {delivered} forwarded{dead}, {} left in the spool", f.left);
                        ExitCode::FAILURE
                    }
                }
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}
