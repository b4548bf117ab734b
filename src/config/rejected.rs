//! `[rejected]`: the opt-in capture of rejected input to a topic of its own
//! (the envelope is `envelope::rejected`); that the topic is not also used for
//! events or dead letters is checked by the loader.

use serde::Serialize;

use super::kafka::ContentMode;
use super::values::{topic_name, ByteSize};
use super::{invalid, ConfigError};

/// Capture of rejected input (opt-in).
#[derive(Debug, Clone, Serialize)]
pub struct RejectedSettings {
    /// Where captured requests go; `None` (the default) turns capture off.
    pub topic: Option<String>,
    /// Body bytes kept per captured request, at most.
    pub max_bytes: usize,
    /// How the captures carry their CloudEvent; `None` in the section means
    /// `kafka.content_mode`, which the loader fills in.
    pub content_mode: Option<ContentMode>,
}

raw_section! {
    /// `[rejected]` as read.
    pub struct RawRejected {
        topic: Option<String> = None,
        max_bytes: ByteSize = ByteSize(16 << 10),
        content_mode: Option<ContentMode> = None,
    }
}

impl TryFrom<RawRejected> for RejectedSettings {
    type Error = ConfigError;

    fn try_from(raw: RawRejected) -> Result<Self, ConfigError> {
        if let Some(t) = &raw.topic {
            topic_name("rejected.topic", t)?;
        }
        let max_bytes = raw.max_bytes.0;
        if max_bytes > 1024 * 1024 {
            return Err(invalid("rejected.max_bytes", "must be between 1B and 1MiB"));
        }
        Ok(Self {
            topic: raw.topic,
            max_bytes: max_bytes as usize,
            content_mode: raw.content_mode,
        })
    }
}
