//! `[shutdown]`: how long a graceful stop may take.

use std::time::Duration;

use serde::Serialize;

use super::values::{human, Dur};
use super::ConfigError;

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownSettings {
    /// Everything (draining requests, flushing the producer) finishes within this.
    #[serde(with = "human")]
    pub deadline: Duration,
}

raw_section! {
    /// `[shutdown]` as read.
    pub struct RawShutdown {
        deadline: Dur = Dur::secs(20),
    }
}

impl TryFrom<RawShutdown> for ShutdownSettings {
    type Error = ConfigError;

    fn try_from(raw: RawShutdown) -> Result<Self, ConfigError> {
        Ok(Self {
            deadline: raw.deadline.0,
        })
    }
}
