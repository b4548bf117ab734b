//! `[shutdown]`: how long a graceful stop may take, and how long it may spend
//! emptying the spool to Kafka before the process exits.

use std::time::Duration;

use serde::Serialize;

use super::values::{human, Dur, DurOrOff};
use super::ConfigError;

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownSettings {
    /// Draining requests and the final producer flush finish within this.
    #[serde(with = "human")]
    pub deadline: Duration,
    /// After the requests drained, the forwarder keeps delivering until the
    /// spool is empty or this much time passed (zero: off). Added to
    /// `deadline`: a stop takes at most `deadline + drain_spool`.
    #[serde(with = "human")]
    pub drain_spool: Duration,
}

raw_section! {
    /// `[shutdown]` as read.
    pub struct RawShutdown {
        deadline: Dur = Dur::secs(20),
        drain_spool: DurOrOff = DurOrOff(Duration::from_secs(20)),
    }
}

impl TryFrom<RawShutdown> for ShutdownSettings {
    type Error = ConfigError;

    fn try_from(raw: RawShutdown) -> Result<Self, ConfigError> {
        Ok(Self {
            deadline: raw.deadline.0,
            drain_spool: raw.drain_spool.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    fn load(drain: Option<&str>) -> Result<super::ShutdownSettings, String> {
        let env = drain.map(|v| {
            (
                "PRESENCE_BRIDGE__SHUTDOWN__DRAIN_SPOOL".to_owned(),
                v.to_owned(),
            )
        });
        crate::config::load(None, env)
            .map(|s| s.shutdown)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn drain_spool_defaults_to_20s_and_zero_turns_it_off() {
        assert_eq!(load(None).unwrap().drain_spool, Duration::from_secs(20));
        assert_eq!(load(Some("0")).unwrap().drain_spool, Duration::ZERO);
        assert_eq!(load(Some("0s")).unwrap().drain_spool, Duration::ZERO);
        assert_eq!(
            load(Some("90s")).unwrap().drain_spool,
            Duration::from_secs(90)
        );
        let e = load(Some("soon")).unwrap_err();
        assert!(
            e.contains("shutdown.drain_spool") && e.contains("`soon` is not a duration"),
            "{e}"
        );
    }
}
