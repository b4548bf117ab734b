//! Kafka output: the idempotent rdkafka producer, error classification, the
//! forwarder that drains the spool, the dead-letter place, a broker
//! reachability probe, and a bounded flush on shutdown.
//!
//! Every text from librdkafka passes a [`Scrubber`] that removes the values
//! of secret properties; a property librdkafka refuses is named by its key
//! only ([`PropertyError`]).
//!
//! Safety settings (`enable.idempotence=true`, hence `acks=all` and ordered
//! retries per partition; `message.timeout.ms=0`, so librdkafka never drops a
//! retriable message: the spool holds it) are set last so nothing in
//! `kafka.properties` can override them; `config` rejects conflicting values
//! before we get here. Blocking librdkafka calls (metadata, flush) run on the
//! blocking pool.

pub mod classify;
pub mod dead_letter;
pub mod destination;
pub mod forward;
pub mod metrics;
pub mod produce;
pub mod reports;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

use crate::config::properties::property_error;
pub use crate::config::properties::{check_config, check_property, producer_config, PropertyError};
use crate::config::KafkaSettings;
use crate::metrics::Metrics;

/// Takes the values of secret properties out of librdkafka's texts (client
/// creation errors, error events, log lines) before they reach an output.
/// librdkafka may quote part of a value (`Unrecognized
/// sasl.oauthbearer.config beginning at: clientSecret=...`), so each word and
/// each `name=value` half of a secret value is removed too.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a value is removed before any part of it.
    secrets: Arc<Vec<String>>,
}

impl Scrubber {
    pub fn new(properties: &BTreeMap<String, String>) -> Self {
        let mut secrets = Vec::new();
        for (k, v) in properties {
            if !crate::config::is_secret_property(k) || trivial(v) {
                continue;
            }
            secrets.push(v.clone());
            for word in v.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
                secrets.push(word.to_owned());
                secrets.extend(word.split('=').map(str::to_owned));
            }
        }
        // Parts shorter than four characters (`=`, `on`) would mangle the
        // text without hiding anything; whole values are always removed.
        let whole: Vec<&String> = properties
            .iter()
            .filter(|(k, v)| crate::config::is_secret_property(k) && !trivial(v))
            .map(|(_, v)| v)
            .collect();
        secrets.retain(|s| s.len() >= 4 || whole.contains(&s));
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self {
            secrets: Arc::new(secrets),
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out
    }

    /// The same error with no secret in its text; a refused property is
    /// named by its key only.
    pub fn error(&self, e: KafkaError) -> KafkaError {
        match e {
            KafkaError::ClientConfig(_, _, ref key, ref value) => {
                let why = property_error(&e, value);
                KafkaError::ClientCreation(format!("kafka.properties.{key}: {why}"))
            }
            KafkaError::ClientCreation(text) => KafkaError::ClientCreation(self.scrub(&text)),
            other => other,
        }
    }
}

/// A value that hides nothing and would blank ordinary words (`true`).
fn trivial(v: &str) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")
}

/// Forwards librdkafka's client-level errors and log lines to the log, with
/// secret values scrubbed, and (for the producer) the growth of its
/// connection attempts and request retries to the metrics. Reachability is
/// decided by the metadata probe alone, so the gauge and `/readyz` agree.
#[derive(Default)]
pub struct BridgeContext {
    scrubber: Scrubber,
    metrics: Option<Metrics>,
    /// This client's totals at its previous statistics report.
    seen: std::sync::Mutex<(u64, u64)>,
}

impl BridgeContext {
    pub fn new(scrubber: Scrubber) -> Self {
        Self {
            scrubber,
            ..Self::default()
        }
    }

    /// Also counts librdkafka's connection attempts and retries in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl ClientContext for BridgeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let message = self.scrubber.scrub(log_message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
        }
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let (mut connects, mut retries) = (0u64, 0u64);
        for b in stats.brokers.values() {
            connects += b.connects.unwrap_or(0).max(0) as u64;
            retries += b.txretries;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        metrics.kafka_client_activity(
            connects.saturating_sub(seen.0),
            retries.saturating_sub(seen.1),
        );
        *seen = (seen.0.max(connects), seen.1.max(retries));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        let reason = self.scrubber.scrub(reason);
        let code = error.rdkafka_error_code();
        let error = self.scrubber.scrub(&error.to_string());
        match code {
            // Repeated many times a second during an outage; the probe logs the
            // transition once and the reachability gauge shows it.
            Some(C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve) => {
                tracing::debug!(error = %error, reason, "kafka connection error");
            }
            _ => tracing::warn!(error = %error, reason, "kafka client error"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for BridgeContext {}

/// The Kafka producer and its helpers. Cheap to clone. Its delivery reports
/// are served on the async runtime ([`reports`]), so it is created inside one.
#[derive(Clone)]
pub struct KafkaPublisher {
    served: Arc<reports::Served>,
    metrics: Metrics,
    /// Each topic's CloudEvents content mode (`kafka.content_mode`).
    content_modes: produce::ContentModes,
}

impl KafkaPublisher {
    /// Creates the producer (no network I/O happens here). Must be called
    /// inside a tokio runtime.
    pub fn new(settings: &KafkaSettings, brokers: &str, metrics: Metrics) -> KafkaResult<Self> {
        let scrubber = Scrubber::new(&settings.properties);
        let context = reports::ReportContext::new(
            BridgeContext::new(scrubber.clone()).with_metrics(metrics.clone()),
        );
        let producer: BaseProducer<reports::ReportContext> = producer_config(settings, brokers)
            .create_with_context(context)
            .map_err(|e| scrubber.error(e))?;
        let served = reports::Served::start(producer)
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        Ok(Self {
            served,
            metrics,
            content_modes: produce::ContentModes::new(settings),
        })
    }

    /// Hands `record` to librdkafka; the delivery resolves with the broker's
    /// answer. `Err` when it was refused before it was queued.
    pub fn enqueue(
        &self,
        record: BaseRecord<'_, str, [u8]>,
    ) -> Result<reports::RdDelivery, KafkaError> {
        self.served.enqueue(record)
    }

    pub fn content_modes(&self) -> &produce::ContentModes {
        &self.content_modes
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Fails every queued and in-flight message at once (their delivery
    /// futures resolve with a purge error); used before a producer is replaced.
    pub fn purge(&self) {
        self.served.producer.purge(
            rdkafka::producer::PurgeConfig::default()
                .queue()
                .inflight()
                .non_blocking(),
        );
    }

    /// Asks a broker for the topic's metadata, off the async threads. `Ok(true)`
    /// when a broker answered and the topic exists.
    pub async fn probe(&self, topic: &str, timeout: Duration) -> Result<bool, KafkaError> {
        let served = self.served.clone();
        let topic = topic.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            let md = served
                .producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))?;
            Ok(md
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled));
        self.metrics.broker_reachability(result.is_ok());
        result
    }

    /// Waits until every queued message is delivered or `timeout` passes, off
    /// the async threads. Returns the number of messages still queued.
    pub async fn flush(&self, timeout: Duration) -> i32 {
        let served = self.served.clone();
        tokio::task::spawn_blocking(move || {
            let _ = served.producer.flush(Timeout::After(timeout));
            served.producer.in_flight_count()
        })
        .await
        .unwrap_or(-1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_scrubber_removes_secret_values_and_their_parts() {
        let s = Scrubber::new(&props(&[
            (
                "sasl.oauthbearer.config",
                "principal=svc clientSecret=Zq9-oauth-secret scope=x",
            ),
            ("sasl.password", "hunter2hunter2"),
            ("ssl.keystore.location", "/etc/kafka/ks.p12"),
            ("security.protocol", "SASL_SSL"),
        ]));
        // librdkafka quotes the rest of a value it cannot parse.
        let text = s.scrub(
            "Unrecognized sasl.oauthbearer.config beginning at: clientSecret=Zq9-oauth-secret scope=x; pw hunter2hunter2",
        );
        assert!(!text.contains("Zq9"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("Unrecognized sasl.oauthbearer.config"),
            "{text}"
        );
        // Paths and plain settings stay readable.
        let text = s.scrub("ssl.keystore.location /etc/kafka/ks.p12 over SASL_SSL");
        assert_eq!(
            text,
            "ssl.keystore.location /etc/kafka/ks.p12 over SASL_SSL"
        );
    }

    #[test]
    fn a_refused_property_is_named_without_its_value() {
        let e = check_property("sasl.pasword", "hunter2hunter2").unwrap_err();
        assert_eq!(e, PropertyError::Unknown);
        let e = check_property("linger.ms", "hunter2hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let mut cfg = ClientConfig::new();
        cfg.set("sasl.pasword", "hunter2hunter2");
        let Err(e) = cfg.create_native_config() else {
            panic!("librdkafka took an unknown property");
        };
        let e = Scrubber::default().error(e);
        assert!(e.to_string().contains("sasl.pasword"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
