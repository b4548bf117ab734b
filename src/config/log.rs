//! `[log]`: text or JSON lines, and the level filter.

use serde::Serialize;

use super::values::{deserialize_setting, Setting};
use super::{invalid, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Setting for LogFormat {
    fn parse(v: &str) -> Result<Self, String> {
        match v.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("`{other}` is not `text` or `json`")),
        }
    }
}

deserialize_setting!(LogFormat);

#[derive(Debug, Clone, Serialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

raw_section! {
    /// `[log]` as read.
    pub struct RawLog {
        format: LogFormat = LogFormat::Text,
        level: String = "info".into(),
    }
}

impl TryFrom<RawLog> for LogSettings {
    type Error = ConfigError;

    fn try_from(raw: RawLog) -> Result<Self, ConfigError> {
        Ok(Self {
            format: raw.format,
            level: log_level("log.level", &raw.level)?,
        })
    }
}

/// A level (`info`) or comma-separated `TARGET=LEVEL` directives with an
/// optional level alone (`warn,presence_bridge=debug`). `EnvFilter` would take
/// `warning` as a target name and log nothing, so only real levels pass.
fn log_level(key: &str, v: &str) -> Result<String, ConfigError> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let v = v.trim();
    if v.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    for d in v.split(',').map(str::trim) {
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (Some(t.trim()), l.trim()),
            None => (None, d),
        };
        let target_ok = target.is_none_or(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
        });
        if !target_ok || !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                key,
                format!(
                    "`{d}` is not a level (off, error, warn, info, debug, trace) \
                     or TARGET=LEVEL; directives are separated by commas"
                ),
            ));
        }
    }
    Ok(v.to_owned())
}
