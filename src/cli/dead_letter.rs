//! `presence-bridge dead-letter list` and `dead-letter replay`: filters the
//! dead-letter file ([`crate::publisher::dead_letter::tools`]), prints it as
//! a table or JSON lines, and replays into the spool with exit codes and
//! messages for a bridge that still holds the lock.

use std::process::ExitCode;

use crate::config::Settings;

use super::{DeadLetterCommand, DeadLetterFilterArgs};

pub(super) fn dead_letter_tool(
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
