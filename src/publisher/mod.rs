//! Kafka output: an idempotent rdkafka producer, error classification, a broker
//! reachability probe, and a bounded flush on shutdown.
//!
//! Safety settings (`enable.idempotence=true`, hence `acks=all` and ordered
//! retries per partition) are set last so nothing in `kafka.properties` can
//! override them; `config` rejects conflicting values before we get here.
//! Every wait is bounded: `message.timeout.ms` is `kafka.delivery_timeout`, and
//! blocking librdkafka calls (metadata, flush) run on the blocking pool.

pub mod classify;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

use crate::config::KafkaSettings;
use crate::envelope::{
    OutboundRecord, CONTENT_TYPE, HEADER_CE_ID, HEADER_CE_TYPE, HEADER_CONTENT_TYPE,
};
use crate::metrics::{DeliveryResult, Metrics};
use crate::sink::{Sink, SinkError};
use classify::{classify, ErrorClass};

/// How long `send` may wait for room in librdkafka's local queue.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds the librdkafka producer configuration: our defaults, then the
/// user's properties, then our safety settings, which win.
pub fn producer_config(settings: &KafkaSettings, brokers: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    // Topics are created by operators; a metadata probe or a produce to a
    // missing topic must not create one with broker defaults.
    cfg.set("allow.auto.create.topics", "false");
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
        .set(
            "message.timeout.ms",
            settings.delivery_timeout.as_millis().to_string(),
        );
    cfg
}

/// Forwards librdkafka's client-level errors to the log and the reachability gauge.
pub struct BridgeContext {
    metrics: Metrics,
}

impl ClientContext for BridgeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.metrics.broker_reachability(false);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

/// The Kafka publisher. Cheap to clone.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer<BridgeContext>,
    metrics: Metrics,
    delivery_timeout: Duration,
}

impl KafkaPublisher {
    /// Creates the producer (no network I/O happens here).
    pub fn new(settings: &KafkaSettings, brokers: &str, metrics: Metrics) -> KafkaResult<Self> {
        let producer = producer_config(settings, brokers).create_with_context(BridgeContext {
            metrics: metrics.clone(),
        })?;
        Ok(Self {
            producer,
            metrics,
            delivery_timeout: settings.delivery_timeout,
        })
    }

    /// Sends one record and waits for the broker's acknowledgement, at most
    /// `kafka.delivery_timeout` plus a small margin.
    pub async fn publish(&self, rec: &OutboundRecord) -> Result<(), (ErrorClass, KafkaError)> {
        let id = rec.id_header();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_CONTENT_TYPE,
                value: Some(CONTENT_TYPE),
            })
            .insert(Header {
                key: HEADER_CE_ID,
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: HEADER_CE_TYPE,
                value: Some(rec.ce_type),
            });
        let record = FutureRecord::to(&rec.topic)
            .key(rec.key.as_str())
            .payload(rec.value.as_slice())
            .headers(headers);
        let bound = self.delivery_timeout + ENQUEUE_TIMEOUT + Duration::from_secs(1);
        let outcome = match tokio::time::timeout(
            bound,
            self.producer.send(record, Timeout::After(ENQUEUE_TIMEOUT)),
        )
        .await
        {
            Ok(Ok(_delivery)) => Ok(()),
            Ok(Err((err, _message))) => Err((classify(&err), err)),
            // librdkafka bounds delivery itself; this is a guard against a lost callback.
            Err(_) => Err((
                ErrorClass::Retriable,
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::MessageTimedOut),
            )),
        };
        let result = match &outcome {
            Ok(()) => DeliveryResult::Delivered,
            Err((ErrorClass::Retriable, _)) => DeliveryResult::RetriableError,
            Err((ErrorClass::Permanent, _)) => DeliveryResult::PermanentError,
        };
        self.metrics
            .delivery_finished(result, Some(rec.arrived.elapsed()));
        if outcome.is_ok() {
            self.metrics.broker_reachability(true);
        }
        outcome
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

impl Sink for KafkaPublisher {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        self.publish(&record)
            .await
            .map_err(|(class, err)| match class {
                ErrorClass::Retriable => SinkError::Unavailable(err.to_string()),
                ErrorClass::Permanent => SinkError::Permanent(err.to_string()),
            })
    }
}
