//! `[spool]`: where the durable log lives, its size and segment size, when
//! appends are made durable ([`FsyncPolicy`]), how long a request waits for
//! it, and the dead-letter topic.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::values::{deserialize_setting, human, topic_name, ByteSize, Dur, Setting};
use super::{invalid, ConfigError};

/// When appends reach the disk (`spool.fsync`): the spool's type.
pub use crate::spool::FsyncPolicy;

/// `spool.fsync` as read: its words, case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fsync(pub FsyncPolicy);

impl Setting for Fsync {
    fn parse(v: &str) -> Result<Self, String> {
        match v.to_ascii_lowercase().as_str() {
            "always" => Ok(Self(FsyncPolicy::Always)),
            "interval" => Ok(Self(FsyncPolicy::Interval)),
            "never" => Ok(Self(FsyncPolicy::Never)),
            other => Err(format!("`{other}` is not `always`, `interval` or `never`")),
        }
    }
}

deserialize_setting!(Fsync);

#[derive(Debug, Clone, Serialize)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    /// Bytes of segments on disk at most; appends beyond answer 503.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: how often.
    #[serde(with = "human")]
    pub fsync_interval: Duration,
    /// Longest a request waits for the spool before a 503.
    #[serde(with = "human")]
    pub append_timeout: Duration,
    /// Also copy dead letters to this Kafka topic.
    pub dead_letter_topic: Option<String>,
}

raw_section! {
    /// `[spool]` as read.
    pub struct RawSpool {
        dir: PathBuf = PathBuf::from("data/spool"),
        max_bytes: ByteSize = ByteSize(1 << 30),
        /// None: 64MiB, or an eighth of `max_bytes` if that is less.
        segment_bytes: Option<ByteSize> = None,
        fsync: Fsync = Fsync(FsyncPolicy::Always),
        fsync_interval: Dur = Dur::millis(100),
        append_timeout: Dur = Dur::secs(5),
        dead_letter_topic: Option<String> = None,
    }
}

impl TryFrom<RawSpool> for SpoolSettings {
    type Error = ConfigError;

    fn try_from(sp: RawSpool) -> Result<Self, ConfigError> {
        if sp.dir.as_os_str().is_empty() {
            return Err(invalid("spool.dir", "must not be empty"));
        }
        let max_bytes = sp.max_bytes.0;
        if max_bytes < 1024 * 1024 {
            return Err(invalid("spool.max_bytes", "must be at least 1MiB"));
        }
        // A segment is at most an eighth of the spool, so deleting delivered
        // segments always frees room: the default (64MiB) follows a small
        // spool.max_bytes, a value set explicitly is shrunk (the loader warns).
        let segment_bytes = match sp.segment_bytes {
            None => (64u64 << 20).min(max_bytes / 8),
            Some(ByteSize(b)) if b < 64 * 1024 => {
                return Err(invalid("spool.segment_bytes", "must be at least 64KiB"))
            }
            Some(ByteSize(b)) => b.min(max_bytes / 8),
        };
        if let Some(t) = &sp.dead_letter_topic {
            topic_name("spool.dead_letter_topic", t)?;
        }
        Ok(Self {
            dir: sp.dir,
            max_bytes,
            segment_bytes,
            fsync: sp.fsync.0,
            fsync_interval: sp.fsync_interval.0,
            append_timeout: sp.append_timeout.0,
            dead_letter_topic: sp.dead_letter_topic,
        })
    }
}

impl SpoolSettings {
    /// The warning when `spool.segment_bytes` was set to `asked` and shrunk.
    pub(super) fn shrunk_segment(&self, asked: Option<u64>) -> Option<String> {
        let (b, max_bytes) = (asked?, self.max_bytes);
        (b != self.segment_bytes).then(|| {
            format!(
                "spool.segment_bytes: {b} bytes is more than an eighth of \
                 spool.max_bytes ({max_bytes} bytes); using {} bytes. Set \
                 spool.segment_bytes to at most {} to silence this",
                max_bytes / 8,
                max_bytes / 8
            )
        })
    }
}
