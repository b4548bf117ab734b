//! `presence-bridge serve`: starts the bridge (optionally beside the embedded
//! development broker), waits for a signal or a failed task, drains, and
//! maps the outcome to an exit code ([`EXIT_TASK_FAILED`]).

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Settings;
use crate::dev::EmbeddedBroker;
use crate::health::{DevBroker, DEV_WARNING};

use super::{runtime, shutdown_signal, ServeArgs};

pub(super) fn serve(settings: Settings, args: ServeArgs) -> ExitCode {
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
    // The spool drain has its own bound on top of the deadline.
    let deadline = settings.shutdown.deadline + settings.shutdown.drain_spool;
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
