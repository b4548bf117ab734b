//! `kafka.properties`: the librdkafka properties the bridge owns and refuses
//! there ([`OWNED_PROPERTIES`]), the rule for which values are secrets
//! ([`is_secret_property`]), and librdkafka's own check of each property and
//! of the whole producer configuration, as `serve` builds it
//! ([`producer_config`]), so `check-config` refuses what the producer would.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use serde::Serialize;

use super::{invalid, ConfigError, KafkaSettings};

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

/// The owned properties (with a value other than the one allowed) and the
/// ones librdkafka refuses, each named `kafka.properties.KEY`.
pub(super) fn check_properties(properties: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (key, value) in properties {
        if let Some((_, allowed, instead)) = OWNED_PROPERTIES.iter().find(|(k, ..)| k == key) {
            if allowed.is_none_or(|a| a != value) {
                return Err(invalid(
                    format!("kafka.properties.{key}"),
                    format!("is set by the bridge itself; {instead}"),
                ));
            }
        }
        check_property(key, value)
            .map_err(|e| invalid(format!("kafka.properties.{key}"), e.to_string()))?;
    }
    Ok(())
}

/// The whole producer configuration, as `serve` will build it.
pub(super) fn check_producer(kafka: &KafkaSettings) -> Result<(), ConfigError> {
    check_config(&producer_config(kafka, "localhost:9092")).map_err(|(key, e)| {
        let key = if kafka.properties.contains_key(&key) {
            format!("kafka.properties.{key}")
        } else {
            format!("kafka (librdkafka property {key})")
        };
        invalid(key, e.to_string())
    })
}

/// Builds the librdkafka producer configuration: our defaults (which
/// `kafka.properties` may override, `client.id` among them), then the user's
/// properties, then the settings the bridge owns, which win. `config` refuses
/// the owned ones in `kafka.properties` ([`OWNED_PROPERTIES`]),
/// so nothing set there is silently replaced.
pub fn producer_config(settings: &KafkaSettings, brokers: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    // Topics are created by operators; a metadata probe or a produce to a
    // missing topic must not create one with broker defaults.
    cfg.set("allow.auto.create.topics", "false")
        .set(
            "client.id",
            concat!("presence-bridge/", env!("CARGO_PKG_VERSION")),
        )
        // Capped exponential backoff (librdkafka adds jitter) between
        // reconnects and between retries while the broker is away.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "10000")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "5000")
        // A topic missing from the metadata fails its queued records after
        // this (librdkafka waits 30 s by default), so a missing destination
        // is held and shown within seconds; its lane retries with backoff,
        // so a topic created a moment ago loses nothing by failing once.
        .set("topic.metadata.propagation.max.ms", "5000")
        // Feeds presence_bridge_kafka_connection_attempts_total and
        // _request_retries_total (BridgeContext::stats).
        .set("statistics.interval.ms", "1000");
    for (k, v) in &settings.properties {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &settings.compression)
        .set("linger.ms", settings.linger.as_millis().to_string())
        // Never give up on a retriable error: the spool keeps the event and
        // idempotence keeps the order.
        .set("message.timeout.ms", "0");
    cfg
}

/// Why librdkafka refused a property. Carries no value: the value of a
/// misspelled `sasl.password` is a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("not a librdkafka property (check the spelling; value not shown)")]
    Unknown,
    #[error("librdkafka refuses its value (value not shown){}", explain(.0))]
    Invalid(String),
}

fn explain(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

/// Asks librdkafka whether it takes `key = value`, without creating a client.
pub fn check_property(key: &str, value: &str) -> Result<(), PropertyError> {
    let mut cfg = ClientConfig::new();
    cfg.set(key, value);
    match cfg.create_native_config() {
        Ok(_) => Ok(()),
        Err(e) => Err(property_error(&e, value)),
    }
}

/// The check of a whole configuration, with the key librdkafka refused.
pub fn check_config(cfg: &ClientConfig) -> Result<(), (String, PropertyError)> {
    match cfg.create_native_config() {
        Ok(_) => Ok(()),
        Err(e) => {
            let key = match &e {
                KafkaError::ClientConfig(_, _, key, _) => key.clone(),
                _ => String::new(),
            };
            let value = cfg.get(&key).unwrap_or_default();
            Err((key, property_error(&e, value)))
        }
    }
}

pub(crate) fn property_error(e: &KafkaError, value: &str) -> PropertyError {
    use rdkafka::types::RDKafkaConfRes as R;
    match e {
        KafkaError::ClientConfig(R::RD_KAFKA_CONF_UNKNOWN, ..) => PropertyError::Unknown,
        KafkaError::ClientConfig(_, desc, _, _) => {
            // librdkafka writes `Invalid value "VALUE" for configuration
            // property "KEY"`; its explanation is kept only once the value is
            // out of it.
            let desc = desc.replace(&format!("\"{value}\""), "\"<value>\"");
            // Fewer than four characters are no secret and would match
            // ordinary words.
            if value.len() < 4 || !desc.contains(value) {
                PropertyError::Invalid(desc)
            } else {
                PropertyError::Invalid(String::new())
            }
        }
        _ => PropertyError::Invalid(String::new()),
    }
}

pub(super) fn redacted_properties<S: serde::Serializer>(
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
