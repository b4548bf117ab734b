//! Kafka output: the idempotent rdkafka producer, error classification, the
//! forwarder that drains the spool, the dead-letter place, a broker
//! reachability probe, and a bounded flush on shutdown.
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
pub mod produce;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

use crate::config::KafkaSettings;
use crate::metrics::Metrics;

/// Builds the librdkafka producer configuration: our defaults, then the
/// user's properties, then our safety settings, which win.
pub fn producer_config(settings: &KafkaSettings, brokers: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    // Topics are created by operators; a metadata probe or a produce to a
    // missing topic must not create one with broker defaults.
    cfg.set("allow.auto.create.topics", "false")
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
        .set(
            "client.id",
            concat!("presence-bridge/", env!("CARGO_PKG_VERSION")),
        )
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &settings.compression)
        .set("linger.ms", settings.linger.as_millis().to_string())
        // Never give up on a retriable error: the spool keeps the event and
        // idempotence keeps the order.
        .set("message.timeout.ms", "0");
    cfg
}

/// Forwards librdkafka's client-level errors to the log, and the growth of
/// its connection attempts and request retries to the metrics. Reachability
/// is decided by the metadata probe alone, so the gauge and `/readyz` agree.
pub struct BridgeContext {
    metrics: Metrics,
    /// This client's totals at its previous statistics report.
    seen: std::sync::Mutex<(u64, u64)>,
}

impl ClientContext for BridgeContext {
    fn stats(&self, stats: rdkafka::Statistics) {
        let (mut connects, mut retries) = (0u64, 0u64);
        for b in stats.brokers.values() {
            connects += b.connects.unwrap_or(0).max(0) as u64;
            retries += b.txretries;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        self.metrics.kafka_client_activity(
            connects.saturating_sub(seen.0),
            retries.saturating_sub(seen.1),
        );
        *seen = (seen.0.max(connects), seen.1.max(retries));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        match error.rdkafka_error_code() {
            // Repeated many times a second during an outage; the probe logs the
            // transition once and the reachability gauge shows it.
            Some(C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve) => {
                tracing::debug!(error = %error, reason, "kafka connection error");
            }
            _ => tracing::warn!(error = %error, reason, "kafka client error"),
        }
    }
}

/// The Kafka producer and its helpers. Cheap to clone.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer<BridgeContext>,
    metrics: Metrics,
}

impl KafkaPublisher {
    /// Creates the producer (no network I/O happens here).
    pub fn new(settings: &KafkaSettings, brokers: &str, metrics: Metrics) -> KafkaResult<Self> {
        let context = BridgeContext {
            metrics: metrics.clone(),
            seen: std::sync::Mutex::new((0, 0)),
        };
        let producer = producer_config(settings, brokers).create_with_context(context)?;
        Ok(Self { producer, metrics })
    }

    pub fn producer(&self) -> &FutureProducer<BridgeContext> {
        &self.producer
    }

    /// Fails every queued and in-flight message at once (their delivery
    /// futures resolve with a purge error); used before a producer is replaced.
    pub fn purge(&self) {
        self.producer.purge(
            rdkafka::producer::PurgeConfig::default()
                .queue()
                .inflight()
                .non_blocking(),
        );
    }

    /// Asks a broker for the topic's metadata, off the async threads. `Ok(true)`
    /// when a broker answered and the topic exists.
    pub async fn probe(&self, topic: &str, timeout: Duration) -> Result<bool, KafkaError> {
        let producer = self.producer.clone();
        let topic = topic.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            let md = producer
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
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            let _ = producer.flush(Timeout::After(timeout));
            producer.in_flight_count()
        })
        .await
        .unwrap_or(-1)
    }
}
