//! Configuration: built-in defaults < optional TOML file < environment
//! (`PRESENCE_BRIDGE__SECTION__KEY`), loaded with the `config` crate into
//! loosely typed [`raw`] structs that reject unknown keys, then validated once
//! into [`Settings`], whose fields can only hold valid values.
//!
//! Every error names the key it is about. Nothing here reads the process
//! environment directly: callers pass the variables in ([`load`]), so tests
//! never call `set_var`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use crate::spool::FsyncPolicy;

/// Environment variable prefix; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "PRESENCE_BRIDGE";

/// librdkafka properties the bridge sets itself, with the only value allowed
/// in `kafka.properties` (None: not settable there at all) and what to use
/// instead. Aliases are listed too. Every other property is passed as is and
/// wins over the bridge's defaults (`client.id`, backoffs, ...).
pub const OWNED_PROPERTIES: &[(&str, Option<&str>, &str)] = &[
    ("bootstrap.servers", None, "use kafka.brokers"),
    ("metadata.broker.list", None, "use kafka.brokers"),
    (
        "enable.idempotence",
        Some("true"),
        "the bridge always produces idempotently",
    ),
    (
        "acks",
        Some("all"),
        "the bridge always waits for all replicas",
    ),
    (
        "request.required.acks",
        Some("all"),
        "the bridge always waits for all replicas",
    ),
    (
        "message.timeout.ms",
        None,
        "the spool retries until delivered",
    ),
    (
        "delivery.timeout.ms",
        None,
        "the spool retries until delivered",
    ),
    (
        "transactional.id",
        None,
        "the bridge does not use transactions",
    ),
    ("linger.ms", None, "use kafka.linger"),
    ("queue.buffering.max.ms", None, "use kafka.linger"),
    ("compression.type", None, "use kafka.compression"),
    ("compression.codec", None, "use kafka.compression"),
    (
        "group.id",
        None,
        "the bridge only produces; `tail` uses a group of its own",
    ),
    (
        "enable.auto.commit",
        None,
        "the bridge only produces; `tail` never commits",
    ),
    (
        "enable.partition.eof",
        None,
        "the bridge only produces; `tail` sets it itself",
    ),
];

/// Words in a property name that mark its value as secret. They cover
/// librdkafka's sensitive properties (`sasl.password`, `ssl.key.pem`,
/// `sasl.oauthbearer.client.secret`, ...) and common misspellings
/// (`sasl.pasword`, `ssl.key.passwd`, `sasl.jass.config`).
const SECRET_WORDS: &[&str] = &[
    "pass", "pasw", "pwd", "secret", "secert", "token", "key", "pem", "jaas", "jass", "cred",
    "user", "private",
];

/// Whether the value of librdkafka property `key` is a secret: never printed,
/// scrubbed from librdkafka's texts. File paths (`*.location`, `*.file`, the
/// Kerberos keytab) are not secrets; SASL `*.config` strings are (OAUTHBEARER's
/// carries `clientSecret=`).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let path = k.ends_with(".location") || k.ends_with(".file") || k.ends_with(".keytab");
    if path {
        return false;
    }
    let sasl_config = k.starts_with("sasl") && k.contains("conf");
    sasl_config || SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// Variables that start like ours but belong to the project's tooling
/// (`docker-compose.yml`, the test suite, CI), so are not warned about.
const NOT_SETTINGS: &[&str] = &[
    "PRESENCE_BRIDGE_TOKEN",
    "PRESENCE_BRIDGE_TEST_BIN",
    "PRESENCE_BRIDGE_CI_VENV",
];

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

/// Validated settings. Built only by [`load`] / [`Settings::from_raw`].
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
    /// Things accepted but worth a word: a value adjusted, a variable that
    /// looks like ours and is ignored. `check-config` prints them, `serve`
    /// logs them at start.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: NonZeroUsize,
    #[serde(with = "human")]
    pub header_read_timeout: Duration,
    #[serde(with = "human")]
    pub body_read_timeout: Duration,
    /// Over 90 % of the connection slots taken, a connection with no request
    /// in flight (idle, or its head still arriving) is closed after this.
    #[serde(with = "human")]
    pub pressure_idle_timeout: Duration,
    /// Over 90 % of the connection slots or of the body budget taken, a body
    /// still arriving after this is cut off (the shorter timeout applies).
    #[serde(with = "human")]
    pub pressure_body_read_timeout: Duration,
    pub max_connections: NonZeroUsize,
    /// Connections one client address (an IPv6 /64) may hold at once.
    pub max_connections_per_client: NonZeroUsize,
    /// HTTP/1.1 and HTTP/2 connections are closed gracefully after this many requests.
    pub max_requests_per_connection: NonZeroUsize,
    /// Native HTTPS; None: plain HTTP (behind a TLS-terminating proxy).
    pub tls: Option<TlsSettings>,
}

/// `http.tls`: PEM files of the webhook listener's certificate chain and key.
#[derive(Debug, Clone, Serialize)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for changes (SIGHUP also reloads).
    #[serde(with = "human")]
    pub reload_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct KafkaSettings {
    /// Empty means "not configured": `serve` refuses to start without `--dev`.
    pub brokers: Vec<String>,
    pub topic: String,
    pub topic_by_instance: BTreeMap<String, String>,
    /// Passed to librdkafka as is; values of secret-looking keys are redacted
    /// when serialized.
    #[serde(serialize_with = "redacted_properties")]
    pub properties: BTreeMap<String, String>,
    pub compression: String,
    #[serde(with = "human")]
    pub linger: Duration,
    /// How often a metadata request checks that a broker answers (readiness,
    /// `presence_bridge_kafka_broker_reachable`).
    #[serde(with = "human")]
    pub probe_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthSettings {
    /// Global tokens: valid for every (allowed) instance.
    pub tokens: Vec<Secret>,
    /// Tenant tokens by instance id: each valid for its own instance only.
    /// No token appears twice (neither under two instances nor also global).
    pub instances: BTreeMap<String, Vec<Secret>>,
    /// Empty: every instance may post; otherwise only these.
    pub allowed_instances: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccessSettings {
    /// Client networks allowed to call the webhook; empty: everyone.
    pub allowed_clients: Vec<ipnet::IpNet>,
    /// Direct peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitsSettings {
    /// Token bucket per instance id; None: no limit.
    pub per_instance: Option<RateSettings>,
    /// Token bucket per client address; None: no limit.
    pub per_client: Option<RateSettings>,
    /// Buckets each limiter keeps at most (idle, full ones are evicted first).
    pub max_tracked: NonZeroUsize,
    /// Bytes of request bodies in flight at once, all clients together.
    pub body_budget_bytes: u64,
    /// Bytes of request bodies in flight at once from one client address.
    pub body_budget_per_client_bytes: u64,
}

/// A token bucket: `rate` requests per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateSettings {
    pub rate: f64,
    pub burst: u32,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Capture of rejected input (opt-in): see [`crate::envelope::rejected`].
#[derive(Debug, Clone, Serialize)]
pub struct RejectedSettings {
    /// Where captured requests go; `None` (the default) turns capture off.
    pub topic: Option<String>,
    /// Body bytes kept per captured request, at most.
    pub max_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownSettings {
    /// Everything (draining requests, flushing the producer) finishes within this.
    #[serde(with = "human")]
    pub deadline: Duration,
}

impl KafkaSettings {
    /// The topic for an event of this instance.
    pub fn topic_for(&self, instance_id: &str) -> &str {
        self.topic_by_instance
            .get(instance_id)
            .map_or(self.topic.as_str(), String::as_str)
    }
}

/// Loads the configuration from the defaults, the optional file, and the given
/// environment variables (pass `std::env::vars()` in production).
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let mut warnings = Vec::new();
    let mut ours = config::Map::new();
    for (var, value) in env {
        if var.starts_with(&format!("{ENV_PREFIX}__")) {
            ours.insert(var, value);
        } else if looks_like_ours(&var) {
            warnings.push(format!(
                "environment variable {var} is ignored: it looks like a presence-bridge \
                 setting, but settings are {ENV_PREFIX}__SECTION__KEY with two underscores{}",
                suggest_variable(&var)
            ));
        }
    }
    // Each variable alone first, so an error names the variable, not only the key.
    for (var, value) in &ours {
        let one = config::Config::builder()
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .separator("__")
                    .source(Some(config::Map::from([(var.clone(), value.clone())]))),
            )
            .build()
            .and_then(|c| c.try_deserialize::<raw::Root>());
        if let Err(e) = one {
            return Err(ConfigError::Env {
                var: var.clone(),
                reason: without_value(&e.to_string(), value),
            });
        }
    }
    let env = ours;
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
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .separator("__")
            .source(Some(env)),
    );
    let raw: raw::Root = builder.build()?.try_deserialize()?;
    let mut settings = Settings::from_raw(raw)?;
    settings.warnings.extend(warnings);
    Ok(settings)
}

/// `reason` with `value` taken out; when it cannot be (a short value that
/// also occurs in the words), a reason that does not quote it.
fn without_value(reason: &str, value: &str) -> String {
    let r = reason.replace(&format!("\"{value}\""), "<value>");
    // Fewer than four characters are no secret and would match ordinary words.
    if value.len() < 4 || !r.contains(value) {
        r
    } else {
        "cannot be read as this setting (value not shown)".to_owned()
    }
}

/// A variable that is not `PRESENCE_BRIDGE__...` but was likely meant to be:
/// one underscore, other letter case, or a prefix a typo or two away.
fn looks_like_ours(var: &str) -> bool {
    if NOT_SETTINGS.contains(&var) {
        return false;
    }
    let upper = var.to_ascii_uppercase();
    if upper.starts_with(ENV_PREFIX) {
        return true;
    }
    // The closest prefix of the name, one or two characters longer or shorter.
    let name: Vec<char> = upper.chars().collect();
    let lo = ENV_PREFIX.len().saturating_sub(2);
    (lo..=ENV_PREFIX.len() + 2)
        .filter(|n| *n <= name.len())
        .any(|n| edit_distance(&name[..n], ENV_PREFIX) <= 2)
}

fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let swap = i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb;
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            if swap {
                // A transposition counts once (`BRIGDE`).
                cur[j + 1] = cur[j + 1].min(prev[j].saturating_sub(1) + 1);
            }
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `; did you mean PRESENCE_BRIDGE__HTTP__LISTEN?` when the rest of the name
/// starts with a section.
fn suggest_variable(var: &str) -> String {
    const SECTIONS: &[&str] = &[
        "HTTP", "ADMIN", "KAFKA", "AUTH", "ACCESS", "LIMITS", "SPOOL", "LOG", "SHUTDOWN",
        "REJECTED",
    ];
    let upper = var.to_ascii_uppercase();
    let rest = upper
        .strip_prefix(ENV_PREFIX)
        .unwrap_or("")
        .trim_start_matches('_');
    for section in SECTIONS {
        if let Some(key) = rest.strip_prefix(section) {
            let key = key.trim_start_matches('_');
            if !key.is_empty() {
                return format!("; did you mean {ENV_PREFIX}__{section}__{key}?");
            }
        }
    }
    String::new()
}

impl Settings {
    pub fn from_raw(raw: raw::Root) -> Result<Self, ConfigError> {
        let http = raw.http;
        let max_body_bytes = nonzero("http.max_body_bytes", http.max_body_bytes)?;
        if max_body_bytes.get() > 16 * 1024 * 1024 {
            return Err(invalid(
                "http.max_body_bytes",
                "must be at most 16777216 (16 MiB)",
            ));
        }
        let http = HttpSettings {
            listen: socket_addr("http.listen", &http.listen)?,
            max_body_bytes,
            header_read_timeout: duration("http.header_read_timeout", &http.header_read_timeout)?,
            body_read_timeout: duration("http.body_read_timeout", &http.body_read_timeout)?,
            pressure_idle_timeout: duration(
                "http.pressure_idle_timeout",
                &http.pressure_idle_timeout,
            )?,
            pressure_body_read_timeout: duration(
                "http.pressure_body_read_timeout",
                &http.pressure_body_read_timeout,
            )?,
            max_connections: nonzero("http.max_connections", http.max_connections)?,
            max_connections_per_client: nonzero(
                "http.max_connections_per_client",
                http.max_connections_per_client,
            )?,
            max_requests_per_connection: nonzero(
                "http.max_requests_per_connection",
                http.max_requests_per_connection,
            )?,
            tls: tls_settings(http.tls)?,
        };
        let admin = AdminSettings {
            listen: socket_addr("admin.listen", &raw.admin.listen)?,
        };
        if admin.listen == http.listen && http.listen.port() != 0 {
            return Err(invalid(
                "admin.listen",
                "must differ from http.listen: /metrics never shares the webhook port",
            ));
        }

        let k = raw.kafka;
        let brokers = k.brokers.into_vec();
        for b in &brokers {
            if b.is_empty() || b.contains(char::is_whitespace) || !b.contains(':') {
                return Err(invalid("kafka.brokers", format!("`{b}` is not HOST:PORT")));
            }
        }
        topic_name("kafka.topic", &k.topic)?;
        let topic_by_instance = flatten("kafka.topic_by_instance", k.topic_by_instance)?;
        for (instance, topic) in &topic_by_instance {
            topic_name(&format!("kafka.topic_by_instance.{instance}"), topic)?;
        }
        let properties = flatten("kafka.properties", k.properties)?;
        for (key, value) in &properties {
            if let Some((_, allowed, instead)) = OWNED_PROPERTIES.iter().find(|(k, ..)| k == key) {
                if allowed.is_none_or(|a| a != value) {
                    return Err(invalid(
                        format!("kafka.properties.{key}"),
                        format!("is set by the bridge itself; {instead}"),
                    ));
                }
            }
            crate::publisher::check_property(key, value)
                .map_err(|e| invalid(format!("kafka.properties.{key}"), e.to_string()))?;
        }
        let compression = k.compression.to_ascii_lowercase();
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str()) {
            return Err(invalid(
                "kafka.compression",
                "must be one of none, gzip, snappy, lz4, zstd",
            ));
        }
        let linger = duration("kafka.linger", &k.linger)?;
        if linger.subsec_nanos() % 1_000_000 != 0 || linger > Duration::from_secs(900) {
            return Err(invalid(
                "kafka.linger",
                "must be whole milliseconds, at most 900s (librdkafka's linger.ms)",
            ));
        }
        let kafka = KafkaSettings {
            brokers,
            topic: k.topic,
            topic_by_instance,
            properties,
            compression,
            linger,
            probe_interval: duration("kafka.probe_interval", &k.probe_interval)?,
        };
        // The whole producer configuration, as `serve` will build it.
        crate::publisher::check_config(&crate::publisher::producer_config(
            &kafka,
            "localhost:9092",
        ))
        .map_err(|(key, e)| {
            let key = if kafka.properties.contains_key(&key) {
                format!("kafka.properties.{key}")
            } else {
                format!("kafka (librdkafka property {key})")
            };
            invalid(key, e.to_string())
        })?;
        let mut warnings = Vec::new();

        let auth = auth_settings(raw.auth)?;
        let access = AccessSettings {
            allowed_clients: networks("access.allowed_clients", raw.access.allowed_clients)?,
            trusted_proxies: networks("access.trusted_proxies", raw.access.trusted_proxies)?,
        };
        let limits = LimitsSettings {
            per_instance: rate_settings("limits.per_instance", &raw.limits.per_instance)?,
            per_client: rate_settings("limits.per_client", &raw.limits.per_client)?,
            max_tracked: nonzero("limits.max_tracked", raw.limits.max_tracked)?,
            body_budget_bytes: raw.limits.body_budget_bytes,
            body_budget_per_client_bytes: raw.limits.body_budget_per_client_bytes,
        };
        if limits.max_tracked.get() > 10_000_000 {
            return Err(invalid("limits.max_tracked", "must be at most 10000000"));
        }
        let max_body = http.max_body_bytes.get() as u64;
        if limits.body_budget_per_client_bytes < max_body {
            return Err(invalid(
                "limits.body_budget_per_client_bytes",
                format!(
                    "must be at least http.max_body_bytes ({max_body}), or no body could be read"
                ),
            ));
        }
        if limits.body_budget_bytes < limits.body_budget_per_client_bytes {
            return Err(invalid(
                "limits.body_budget_bytes",
                format!(
                    "must be at least limits.body_budget_per_client_bytes ({})",
                    limits.body_budget_per_client_bytes
                ),
            ));
        }
        if limits.body_budget_bytes > 1 << 40 {
            return Err(invalid("limits.body_budget_bytes", "must be at most 1 TiB"));
        }

        let format = match raw.log.format.to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("`{other}` is not `text` or `json`"),
                ))
            }
        };
        let sp = raw.spool;
        if sp.dir.as_os_str().is_empty() {
            return Err(invalid("spool.dir", "must not be empty"));
        }
        let max_bytes = byte_size("spool.max_bytes", &sp.max_bytes)?;
        if max_bytes < 1024 * 1024 {
            return Err(invalid("spool.max_bytes", "must be at least 1MiB"));
        }
        // A segment is at most an eighth of the spool, so deleting delivered
        // segments always frees room: the default (64MiB) follows a small
        // spool.max_bytes, a value set explicitly is shrunk with a warning.
        let segment_bytes = match &sp.segment_bytes {
            None => (64u64 << 20).min(max_bytes / 8),
            Some(v) => {
                let b = byte_size("spool.segment_bytes", v)?;
                if b < 64 * 1024 {
                    return Err(invalid("spool.segment_bytes", "must be at least 64KiB"));
                }
                if b > max_bytes / 8 {
                    warnings.push(format!(
                        "spool.segment_bytes: {b} bytes is more than an eighth of \
                         spool.max_bytes ({max_bytes} bytes); using {} bytes. Set \
                         spool.segment_bytes to at most {} to silence this",
                        max_bytes / 8,
                        max_bytes / 8
                    ));
                    max_bytes / 8
                } else {
                    b
                }
            }
        };
        let fsync = match sp.fsync.to_ascii_lowercase().as_str() {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::Interval,
            "never" => FsyncPolicy::Never,
            other => {
                return Err(invalid(
                    "spool.fsync",
                    format!("`{other}` is not `always`, `interval` or `never`"),
                ))
            }
        };
        if let Some(t) = &sp.dead_letter_topic {
            topic_name("spool.dead_letter_topic", t)?;
        }
        let rejected = raw.rejected;
        if let Some(t) = &rejected.topic {
            topic_name("rejected.topic", t)?;
            let taken = std::iter::once(&kafka.topic)
                .chain(kafka.topic_by_instance.values())
                .chain(sp.dead_letter_topic.as_ref());
            for other in taken {
                if other == t {
                    return Err(invalid(
                        "rejected.topic",
                        format!("`{t}` is already used for events or dead letters; use a topic of its own"),
                    ));
                }
            }
        }
        let rejected_max = byte_size("rejected.max_bytes", &rejected.max_bytes)?;
        if !(1..=1024 * 1024).contains(&rejected_max) {
            return Err(invalid("rejected.max_bytes", "must be between 1B and 1MiB"));
        }
        let rejected = RejectedSettings {
            topic: rejected.topic,
            max_bytes: rejected_max as usize,
        };
        let spool = SpoolSettings {
            dir: sp.dir,
            max_bytes,
            segment_bytes,
            fsync,
            fsync_interval: duration("spool.fsync_interval", &sp.fsync_interval)?,
            append_timeout: duration("spool.append_timeout", &sp.append_timeout)?,
            dead_letter_topic: sp.dead_letter_topic,
        };
        Ok(Self {
            http,
            admin,
            kafka,
            auth,
            access,
            limits,
            spool,
            log: LogSettings {
                format,
                level: log_level("log.level", &raw.log.level)?,
            },
            shutdown: ShutdownSettings {
                deadline: duration("shutdown.deadline", &raw.shutdown.deadline)?,
            },
            rejected,
            warnings,
        })
    }

    /// The effective configuration as TOML-like JSON, secrets redacted.
    pub fn redacted_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn token(key: &str, t: String) -> Result<Secret, ConfigError> {
    let max = crate::ingress::auth::MAX_TOKEN_BYTES;
    if t.len() < 16 || t.len() > max || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            key,
            format!("each token must be 16 to {max} visible ASCII characters (no spaces)"),
        ));
    }
    Ok(Secret(t))
}

fn instance_id(key: &str, id: &str) -> Result<(), ConfigError> {
    crate::presence::InstanceId::parse(id)
        .map(drop)
        .map_err(|_| {
            invalid(
                key,
                format!("`{id}` is not an instance id (1 to 128 of A-Z a-z 0-9 . _ -)"),
            )
        })
}

fn auth_settings(raw: raw::Auth) -> Result<AuthSettings, ConfigError> {
    let tokens = raw
        .tokens
        .into_vec()
        .into_iter()
        .map(|t| token("auth.tokens", t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen: std::collections::HashSet<String> =
        tokens.iter().map(|t| t.expose().to_owned()).collect();
    let mut instances = BTreeMap::new();
    for (id, list) in raw
        .instances
        .into_map()
        .map_err(|r| invalid("auth.instances", r))?
    {
        let key = format!("auth.instances.{id}");
        instance_id(&key, &id)?;
        if list.is_empty() {
            return Err(invalid(&key, "needs at least one token"));
        }
        let mut secrets = Vec::with_capacity(list.len());
        for t in list {
            let secret = token(&key, t)?;
            if !seen.insert(secret.expose().to_owned()) {
                return Err(invalid(
                    &key,
                    "a token belongs to one instance only and is not also in auth.tokens",
                ));
            }
            secrets.push(secret);
        }
        instances.insert(id, secrets);
    }
    let allowed_instances = raw.allowed_instances.into_vec();
    for id in &allowed_instances {
        instance_id("auth.allowed_instances", id)?;
    }
    Ok(AuthSettings {
        tokens,
        instances,
        allowed_instances,
    })
}

/// CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses; host bits set
/// after the prefix are an error, as they are usually a typo for a narrower net.
fn networks(key: &str, list: raw::StringOrList) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.into_vec()
        .into_iter()
        .map(|v| {
            let net = match v.parse::<ipnet::IpNet>() {
                Ok(net) => net,
                Err(_) => v
                    .parse::<std::net::IpAddr>()
                    .map(ipnet::IpNet::from)
                    .map_err(|_| {
                        invalid(
                            key,
                            format!("`{v}` is not a CIDR such as 10.0.0.0/8 or an IP address"),
                        )
                    })?,
            };
            if net.trunc() != net {
                return Err(invalid(
                    key,
                    format!("`{v}` has host bits set; did you mean {}?", net.trunc()),
                ));
            }
            Ok(net)
        })
        .collect()
}

fn rate_settings(key: &str, raw: &raw::Rate) -> Result<Option<RateSettings>, ConfigError> {
    if !raw.rate.is_finite() || raw.rate < 0.0 || raw.rate > 1e6 {
        return Err(invalid(
            format!("{key}.rate"),
            "must be a number of requests per second from 0 (off) to 1000000",
        ));
    }
    if raw.burst > 1_000_000 {
        return Err(invalid(format!("{key}.burst"), "must be at most 1000000"));
    }
    if raw.rate == 0.0 {
        if raw.burst != 0 {
            return Err(invalid(
                format!("{key}.rate"),
                "must be above 0 when burst is set (rate 0 turns the limit off)",
            ));
        }
        return Ok(None);
    }
    let burst = if raw.burst == 0 {
        // One second's worth, at least one request.
        raw.rate.ceil().max(1.0) as u32
    } else {
        raw.burst as u32
    };
    Ok(Some(RateSettings {
        rate: raw.rate,
        burst,
    }))
}

/// Both `http.tls.cert` and `http.tls.key`, or neither.
fn tls_settings(tls: raw::Tls) -> Result<Option<TlsSettings>, ConfigError> {
    let set = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    let reload_interval = duration("http.tls.reload_interval", &tls.reload_interval)?;
    match (set(tls.cert), set(tls.key)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(
            "http.tls.key",
            "must be set when http.tls.cert is (both or neither)",
        )),
        (None, Some(_)) => Err(invalid(
            "http.tls.cert",
            "must be set when http.tls.key is (both or neither)",
        )),
        (Some(cert), Some(key)) => Ok(Some(TlsSettings {
            cert,
            key,
            reload_interval,
        })),
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

fn socket_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| {
        invalid(
            key,
            format!("`{v}` is not a socket address (IP:PORT, e.g. 0.0.0.0:8080)"),
        )
    })
}

fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v).map_err(|e| {
        invalid(
            key,
            format!("`{v}` is not a duration such as 250ms or 10s ({e})"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
fn byte_size(key: &str, v: &str) -> Result<u64, ConfigError> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(invalid(
                key,
                format!("`{v}` is not a size such as 1073741824, 512MiB or 1GiB"),
            ))
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            invalid(
                key,
                format!("`{v}` is not a size such as 1073741824, 512MiB or 1GiB"),
            )
        })
}

fn nonzero(key: &str, v: u64) -> Result<NonZeroUsize, ConfigError> {
    usize::try_from(v)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| invalid(key, "must be a positive integer"))
}

fn topic_name(key: &str, t: &str) -> Result<(), ConfigError> {
    let ok = (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{t}` is not a valid Kafka topic name"),
        ))
    }
}

/// Maps may arrive nested when their keys contain dots (`security.protocol`
/// becomes `{security: {protocol: ..}}` through the environment); joins them back.
fn flatten(
    key: &str,
    map: HashMap<String, raw::Nested>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    fn walk(prefix: &str, map: HashMap<String, raw::Nested>, out: &mut BTreeMap<String, String>) {
        for (k, v) in map {
            let full = if prefix.is_empty() {
                k
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                raw::Nested::Leaf(s) => {
                    out.insert(full, s);
                }
                raw::Nested::Int(i) => {
                    out.insert(full, i.to_string());
                }
                raw::Nested::Bool(b) => {
                    out.insert(full, b.to_string());
                }
                raw::Nested::Map(m) => walk(&full, m, out),
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", map, &mut out);
    if let Some(empty) = out.keys().find(|k| k.is_empty()) {
        return Err(invalid(key, format!("empty key `{empty}`")));
    }
    Ok(out)
}

fn redacted_properties<S: serde::Serializer>(
    p: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = p
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if is_secret_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                },
            )
        })
        .collect();
    shown.serialize(s)
}

mod human {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// The shapes serde reads before validation: every key has a default, unknown
/// keys are errors.
pub mod raw {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Root {
        pub http: Http,
        pub admin: Admin,
        pub kafka: Kafka,
        pub auth: Auth,
        pub access: Access,
        pub limits: Limits,
        pub spool: Spool,
        pub log: Log,
        pub shutdown: Shutdown,
        pub rejected: Rejected,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Http {
        pub listen: String,
        pub max_body_bytes: u64,
        pub header_read_timeout: String,
        pub body_read_timeout: String,
        pub pressure_idle_timeout: String,
        pub pressure_body_read_timeout: String,
        pub max_connections: u64,
        pub max_connections_per_client: u64,
        pub max_requests_per_connection: u64,
        pub tls: Tls,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Tls {
        pub cert: Option<PathBuf>,
        pub key: Option<PathBuf>,
        pub reload_interval: String,
    }

    impl Default for Tls {
        fn default() -> Self {
            Self {
                cert: None,
                key: None,
                reload_interval: "10s".into(),
            }
        }
    }

    impl Default for Http {
        fn default() -> Self {
            Self {
                listen: "0.0.0.0:8080".into(),
                max_body_bytes: 65_536,
                header_read_timeout: "5s".into(),
                body_read_timeout: "10s".into(),
                pressure_idle_timeout: "1s".into(),
                pressure_body_read_timeout: "2s".into(),
                max_connections: 4096,
                max_connections_per_client: 64,
                max_requests_per_connection: 1000,
                tls: Tls::default(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Admin {
        pub listen: String,
    }

    impl Default for Admin {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:9090".into(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Kafka {
        pub brokers: StringOrList,
        pub topic: String,
        pub topic_by_instance: HashMap<String, Nested>,
        pub properties: HashMap<String, Nested>,
        pub compression: String,
        pub linger: String,
        pub probe_interval: String,
    }

    impl Default for Kafka {
        fn default() -> Self {
            Self {
                brokers: StringOrList::default(),
                topic: "whatsapp.presence.v1".into(),
                topic_by_instance: HashMap::new(),
                properties: HashMap::new(),
                compression: "lz4".into(),
                linger: "5ms".into(),
                probe_interval: "5s".into(),
            }
        }
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Auth {
        pub tokens: StringOrList,
        pub instances: InstanceTokens,
        pub allowed_instances: StringOrList,
    }

    /// Tenant tokens: a table `{ "INSTANCE" = ["token", ...] }`, or one string
    /// `INSTANCE=token,token;INSTANCE2=token` (for the environment, whose keys
    /// the config crate lowercases and splits at dots).
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub enum InstanceTokens {
        Table(HashMap<String, TokenTree>),
        Inline(String),
    }

    impl Default for InstanceTokens {
        fn default() -> Self {
            Self::Table(HashMap::new())
        }
    }

    /// An instance's tokens, or a nested table when the id had dots in it.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub enum TokenTree {
        Tokens(StringOrList),
        Nested(HashMap<String, TokenTree>),
    }

    impl InstanceTokens {
        /// Instance id → tokens; the error says what is wrong with the string form.
        pub fn into_map(self) -> Result<Vec<(String, Vec<String>)>, String> {
            fn walk(
                prefix: &str,
                map: HashMap<String, TokenTree>,
                out: &mut Vec<(String, Vec<String>)>,
            ) {
                for (k, v) in map {
                    let full = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    match v {
                        TokenTree::Tokens(t) => out.push((full, t.into_vec())),
                        TokenTree::Nested(m) => walk(&full, m, out),
                    }
                }
            }
            let mut out = Vec::new();
            match self {
                Self::Table(map) => walk("", map, &mut out),
                Self::Inline(s) => {
                    for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                        let (id, tokens) = entry.split_once('=').ok_or_else(|| {
                            "expected INSTANCE=token[,token...] entries separated by `;`".to_owned()
                        })?;
                        out.push((
                            id.trim().to_owned(),
                            StringOrList::One(tokens.to_owned()).into_vec(),
                        ));
                    }
                }
            }
            out.sort();
            if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(format!("instance `{}` appears twice", w[0].0));
            }
            Ok(out)
        }
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Access {
        pub allowed_clients: StringOrList,
        pub trusted_proxies: StringOrList,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Limits {
        pub per_instance: Rate,
        pub per_client: Rate,
        pub max_tracked: u64,
        pub body_budget_bytes: u64,
        pub body_budget_per_client_bytes: u64,
    }

    impl Default for Limits {
        fn default() -> Self {
            Self {
                per_instance: Rate::default(),
                per_client: Rate::default(),
                max_tracked: 65_536,
                body_budget_bytes: crate::ingress::budget::DEFAULT_BUDGET_BYTES,
                body_budget_per_client_bytes: crate::ingress::budget::DEFAULT_PER_CLIENT_BYTES,
            }
        }
    }

    /// `rate` per second (0: off), `burst` (0: one second's worth).
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Rate {
        pub rate: f64,
        pub burst: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Spool {
        pub dir: PathBuf,
        pub max_bytes: String,
        /// None: 64MiB, or an eighth of `max_bytes` if that is less.
        pub segment_bytes: Option<String>,
        pub fsync: String,
        pub fsync_interval: String,
        pub append_timeout: String,
        pub dead_letter_topic: Option<String>,
    }

    impl Default for Spool {
        fn default() -> Self {
            Self {
                dir: PathBuf::from("data/spool"),
                max_bytes: "1GiB".into(),
                segment_bytes: None,
                fsync: "always".into(),
                fsync_interval: "100ms".into(),
                append_timeout: "5s".into(),
                dead_letter_topic: None,
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Log {
        pub format: String,
        pub level: String,
    }

    impl Default for Log {
        fn default() -> Self {
            Self {
                format: "text".into(),
                level: "info".into(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Shutdown {
        pub deadline: String,
    }

    impl Default for Shutdown {
        fn default() -> Self {
            Self {
                deadline: "20s".into(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Rejected {
        pub topic: Option<String>,
        pub max_bytes: String,
    }

    impl Default for Rejected {
        fn default() -> Self {
            Self {
                topic: None,
                max_bytes: "16KiB".into(),
            }
        }
    }

    /// A list, or one comma-separated string (handy in environment variables).
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub enum StringOrList {
        List(Vec<String>),
        One(String),
    }

    impl Default for StringOrList {
        fn default() -> Self {
            Self::List(Vec::new())
        }
    }

    impl StringOrList {
        pub fn into_vec(self) -> Vec<String> {
            let items = match self {
                Self::List(v) => v,
                Self::One(s) => s.split(',').map(str::to_owned).collect(),
            };
            items
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        }
    }

    /// A map value: a string, or a nested map when the key had dots in it.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub enum Nested {
        Leaf(String),
        Int(i64),
        Bool(bool),
        Map(HashMap<String, Nested>),
    }
}
