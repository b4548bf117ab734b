//! `presence-bridge check-config`: validates the TLS files and `spool.dir`
//! beside the loaded configuration, then prints it with secrets redacted.

use std::process::ExitCode;

use crate::config::Settings;

pub(super) fn check_config(settings: &Settings) -> ExitCode {
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
