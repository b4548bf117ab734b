//! Configuration: built-in defaults < optional TOML file < environment
//! (`PRESENCE_BRIDGE__SECTION__KEY`), loaded with the `config` crate into one
//! raw struct per section that rejects unknown keys and reads each value in
//! its type ([`values`]: durations, byte sizes, addresses, networks, enums),
//! then validated once into [`Settings`] (`TryFrom` per section, then the
//! checks across sections), whose fields can only hold valid values.
//!
//! One file per section (`http`, `admin`, `kafka`, `auth`, `access`,
//! `limits`, `spool`, `rejected`, `log`, `shutdown`); [`properties`] owns the
//! rules of `kafka.properties`, `env` the warnings about variables.
//!
//! Every error names the key it is about. Nothing here reads the process
//! environment directly: callers pass the variables in ([`load`]), so tests
//! never call `set_var`. This module imports nothing from the crate but the
//! leaf modules `bounds` (shared limits) and `presence` (instance ids).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A section's raw form: each key with its type and default, unknown keys
/// refused, a missing key taking its default.
macro_rules! raw_section {
    (
        $(#[$m:meta])*
        pub struct $name:ident {
            $($(#[$fm:meta])* $field:ident : $ty:ty = $default:expr),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                }
            }
        }
    };
}

mod access;
mod admin;
mod auth;
mod env;
mod http;
mod kafka;
mod limits;
mod log;
mod presence;
pub mod properties;
mod rejected;
mod shutdown;
mod spool;
pub mod values;

#[cfg(test)]
mod tests;

pub use access::{AccessSettings, RawAccess};
pub use admin::{AdminSettings, RawAdmin};
pub use auth::{AuthSettings, InstanceTokens, RawAuth, TokenTree};
pub use http::{HttpSettings, RawHttp, RawTls, TlsSettings};
pub use kafka::{
    Compression, ContentMode, Destination, KafkaSettings, Nested, RawDestination, RawKafka, Stream,
};
pub use limits::{LimitsSettings, RateSettings, RawLimits, RawRate};
pub use log::{LogFormat, LogSettings, RawLog};
pub use presence::{PresenceSettings, RawPresence};
pub use properties::{is_secret_property, OWNED_PROPERTIES};
pub use rejected::{RawRejected, RejectedSettings};
pub use shutdown::{RawShutdown, ShutdownSettings};
pub use spool::{FsyncPolicy, RawSpool, SpoolSettings};

/// Environment variable prefix; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "PRESENCE_BRIDGE";

/// A configuration error; the message always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// A `PRESENCE_BRIDGE__*` variable maps to no key or holds a value of the
    /// wrong shape; its value is not repeated.
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A value's own error ([`values::MARK`]) as `key: reason`, like every other
/// invalid value; serde's structural errors (unknown key, wrong type) are
/// given back as they are.
fn value_error(e: config::ConfigError) -> Result<ConfigError, config::ConfigError> {
    if let config::ConfigError::At {
        error,
        key: Some(key),
        ..
    } = &e
    {
        if let config::ConfigError::Message(m) = error.as_ref() {
            if let Some(reason) = m.strip_prefix(values::MARK) {
                return Ok(invalid(key, reason));
            }
        }
    }
    Err(e)
}

/// A secret value: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Validated settings. Built only by [`load`] / `Settings::try_from(RawRoot)`.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub http: HttpSettings,
    pub admin: AdminSettings,
    pub kafka: KafkaSettings,
    pub auth: AuthSettings,
    pub access: AccessSettings,
    pub limits: LimitsSettings,
    pub spool: SpoolSettings,
    pub log: LogSettings,
    pub shutdown: ShutdownSettings,
    pub rejected: RejectedSettings,
    pub presence: PresenceSettings,
    /// Things accepted but worth a word: a value adjusted, a variable that
    /// looks like ours and is ignored. `check-config` prints them, `serve`
    /// logs them at start.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The whole file and environment as read: every key has a default, unknown
/// keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoot {
    pub http: RawHttp,
    pub admin: RawAdmin,
    pub kafka: RawKafka,
    pub auth: RawAuth,
    pub access: RawAccess,
    pub limits: RawLimits,
    pub spool: RawSpool,
    pub log: RawLog,
    pub shutdown: RawShutdown,
    pub rejected: RawRejected,
    pub presence: RawPresence,
}

/// Loads the configuration from the defaults, the optional file, and the given
/// environment variables (pass `std::env::vars()` in production).
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let (ours, warnings) = env::ours(env);
    let source = |vars| {
        config::Environment::with_prefix(ENV_PREFIX)
            .separator("__")
            .source(Some(vars))
    };
    // Each variable alone first, so an error names the variable, not only the key.
    for (var, value) in &ours {
        let one = config::Config::builder()
            .add_source(source(config::Map::from([(var.clone(), value.clone())])))
            .build()
            .and_then(|c| c.try_deserialize::<RawRoot>());
        if let Err(e) = one {
            return Err(value_error(e).unwrap_or_else(|e| ConfigError::Env {
                var: var.clone(),
                reason: env::without_value(&e.to_string(), value),
            }));
        }
    }
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(invalid(
                "--config",
                format!("{} is not a readable file", path.display()),
            ));
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    builder = builder.add_source(source(ours));
    let raw: RawRoot = builder
        .build()?
        .try_deserialize()
        .map_err(|e| value_error(e).unwrap_or_else(ConfigError::Load))?;
    let mut settings = Settings::try_from(raw)?;
    settings.warnings.extend(warnings);
    Ok(settings)
}

impl TryFrom<RawRoot> for Settings {
    type Error = ConfigError;

    /// Each section on its own, then the checks across sections.
    fn try_from(raw: RawRoot) -> Result<Self, ConfigError> {
        let http = HttpSettings::try_from(raw.http)?;
        let admin = AdminSettings::try_from(raw.admin)?;
        if admin.listen == http.listen && http.listen.port() != 0 {
            return Err(invalid(
                "admin.listen",
                "must differ from http.listen: /metrics never shares the webhook port",
            ));
        }
        let mut kafka = KafkaSettings::try_from(raw.kafka)?;
        let auth = AuthSettings::try_from(raw.auth)?;
        let access = AccessSettings::try_from(raw.access)?;
        let limits = LimitsSettings::try_from(raw.limits)?;
        limits.check_budgets(http.max_message_body_bytes.get() as u64)?;
        let asked_segment = raw.spool.segment_bytes.map(|b| b.0);
        let spool = SpoolSettings::try_from(raw.spool)?;
        let warnings = spool.shrunk_segment(asked_segment).into_iter().collect();
        let mut rejected = RejectedSettings::try_from(raw.rejected)?;
        let rejected_mode = *rejected.content_mode.get_or_insert(kafka.content_mode);
        if let Some(t) = &rejected.topic {
            let taken = kafka.event_topics().chain(spool.dead_letter_topic.as_ref());
            for other in taken {
                if other == t {
                    return Err(invalid(
                        "rejected.topic",
                        format!("`{t}` is already used for events or dead letters; use a topic of its own"),
                    ));
                }
            }
            kafka.claim_topic_mode("rejected.content_mode", t, rejected_mode)?;
        }
        Ok(Self {
            http,
            admin,
            kafka,
            auth,
            access,
            limits,
            spool,
            log: LogSettings::try_from(raw.log)?,
            shutdown: ShutdownSettings::try_from(raw.shutdown)?,
            rejected,
            presence: PresenceSettings::try_from(raw.presence)?,
            warnings,
        })
    }
}

impl Settings {
    /// The effective configuration as TOML-like JSON, secrets redacted.
    pub fn redacted_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
