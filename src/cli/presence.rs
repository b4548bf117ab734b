//! `presence-bridge presence forget`: the tombstone of one contact in the
//! latest-presence topic ([`crate::state::forget`]), with its exit codes.

use std::process::ExitCode;

use crate::config::Settings;

use super::{runtime, PresenceCommand};

pub(super) fn presence_tool(settings: &Settings, cmd: PresenceCommand) -> ExitCode {
    let PresenceCommand::Forget(args) = cmd;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("presence-bridge presence forget: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(crate::state::forget(
        settings,
        &args.instance,
        &args.phone,
        args.timeout,
    ));
    match result {
        Ok(f) => {
            let line = serde_json::json!({
                "tombstone": "written",
                "topic": f.topic,
                "key": f.masked_key,
                "partition": f.partition,
                "offset": f.offset,
            });
            outln!("{line}");
            ExitCode::SUCCESS
        }
        Err(e @ (crate::state::ForgetError::Instance(_) | crate::state::ForgetError::Phone(_))) => {
            errln!("presence-bridge presence forget: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            errln!("presence-bridge presence forget: {e}");
            ExitCode::FAILURE
        }
    }
}
