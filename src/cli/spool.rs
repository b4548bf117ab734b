//! `presence-bridge spool inspect` and `spool verify`: checks that
//! `spool.dir` is a spool, warns about a running bridge, and prints what
//! [`crate::spool::operator`] computes, with its exit code.

use std::process::ExitCode;

use crate::config::Settings;

use super::SpoolCommand;

pub(super) fn spool_tool(settings: &Settings, cmd: SpoolCommand) -> ExitCode {
    use crate::spool::{operator, store};
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
    }
}
