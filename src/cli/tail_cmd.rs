//! `presence-bridge tail`: runs the operator's topic reader
//! ([`crate::tail`]) until its limit, its idle timeout or a signal.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::tail::{self, TailOptions};

use super::{runtime, shutdown_signal, TailArgs};

pub(super) fn run_tail(settings: Settings, args: TailArgs) -> ExitCode {
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
