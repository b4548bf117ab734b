//! The seam between the forwarder and the Kafka client: what the forwarder
//! needs from a producer, and the rdkafka implementation. The deterministic
//! simulation (`tests/simulation.rs`) puts a seeded fake behind the same
//! trait, so every schedule of deliveries, errors, outages and crashes the
//! fake can produce runs through the real forwarder.
//!
//! The record is laid out here, at send time, in its topic's content mode
//! (`kafka.content_mode`): the spool holds the structured envelope, binary
//! mode takes it apart (`events::binary`). An empty value is a tombstone
//! (null value, no headers) in either mode.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::KafkaPublisher;
use crate::config::{ContentMode, KafkaSettings};
use crate::envelope::{CONTENT_TYPE, HEADER_CONTENT_TYPE, HEADER_EVENT_ID, HEADER_EVENT_TYPE};
use crate::spool::format::StoredRecord;

/// A boxed future, for the object-safe parts of the seams.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the forwarder needs from a Kafka producer.
pub trait Produce: Send + Sync + 'static {
    /// Resolves once the broker acknowledged the record (`Ok`) or the client
    /// gave up on it (`Err`; [`KafkaError::Canceled`] when the result was lost).
    type Delivery: Future<Output = Result<(), KafkaError>> + Send + Unpin + 'static;

    /// Hands one record to the client. `Err` when it was refused before it
    /// was queued (too large, queue full, unknown topic...).
    fn send(&self, rec: &StoredRecord, ce_type: &'static str)
        -> Result<Self::Delivery, KafkaError>;

    /// Fails everything queued and in flight at once (their deliveries resolve
    /// with an error); used before a producer is replaced.
    fn purge(&self);

    /// Waits until everything queued is delivered or `timeout` passes; returns
    /// how many records are still queued.
    fn flush(&self, timeout: Duration) -> BoxFuture<'static, i32>;
}

/// [`DeliveryFuture`] with the result reduced to what the forwarder uses.
pub struct RdDelivery(DeliveryFuture);

impl Future for RdDelivery {
    type Output = Result<(), KafkaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        })
    }
}

/// The content mode of every topic, from the configuration (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct ContentModes {
    by_topic: Arc<BTreeMap<String, ContentMode>>,
    default: ContentMode,
}

impl ContentModes {
    pub fn new(settings: &KafkaSettings) -> Self {
        Self {
            by_topic: Arc::new(
                settings
                    .topic_modes
                    .iter()
                    .map(|(topic, (_, mode))| (topic.clone(), *mode))
                    .collect(),
            ),
            default: settings.content_mode,
        }
    }

    /// The mode of `topic`; `kafka.content_mode` for a topic not configured.
    pub fn of(&self, topic: &str) -> ContentMode {
        self.by_topic.get(topic).copied().unwrap_or(self.default)
    }
}

/// The headers and value of a record in its topic's content mode: in both,
/// `event-id` and `event-type` (for routing without parsing); structured adds
/// `content-type: application/cloudevents+json` and keeps the envelope as the
/// value; binary puts every attribute in a `ce_` header and the `data` in the
/// value. A value binary mode cannot take apart (never one the bridge wrote)
/// is sent structured, with a warning (and
/// `presence_bridge_kafka_binary_mode_fallbacks_total`): a CloudEvents reader
/// still reads it.
pub fn layout(
    rec: &StoredRecord,
    ce_type: &str,
    mode: ContentMode,
) -> (Vec<(String, String)>, Option<Vec<u8>>) {
    let mut headers = Vec::with_capacity(10);
    let mut data = None;
    match mode {
        ContentMode::Binary => match events::binary::to_binary(&rec.value) {
            Ok(b) => {
                headers = b.headers;
                data = Some(b.data);
            }
            Err(e) => {
                tracing::warn!(seq = rec.seq, topic = %rec.topic, error = %e, "a record cannot be written in binary content mode; sent in structured mode");
            }
        },
        ContentMode::Structured => {}
    }
    if data.is_none() {
        headers.push((HEADER_CONTENT_TYPE.to_owned(), CONTENT_TYPE.to_owned()));
    }
    headers.push((HEADER_EVENT_ID.to_owned(), rec.id.hyphenated().to_string()));
    headers.push((HEADER_EVENT_TYPE.to_owned(), ce_type.to_owned()));
    (headers, data)
}

impl Produce for KafkaPublisher {
    type Delivery = RdDelivery;

    fn send(
        &self,
        rec: &StoredRecord,
        ce_type: &'static str,
    ) -> Result<Self::Delivery, KafkaError> {
        if rec.value.is_empty() {
            // A tombstone: a null value and no headers, whatever the mode.
            let record = FutureRecord::<str, [u8]>::to(&rec.topic).key(rec.key.as_str());
            return self
                .producer()
                .send_result(record)
                .map(RdDelivery)
                .map_err(|(e, _)| e);
        }
        let mode = self.content_modes().of(&rec.topic);
        let (pairs, data) = layout(rec, ce_type, mode);
        if mode == ContentMode::Binary && data.is_none() {
            self.metrics().binary_mode_fallback();
        }
        let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
        for (key, value) in &pairs {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        let record = FutureRecord::to(&rec.topic)
            .key(rec.key.as_str())
            .payload(data.as_deref().unwrap_or(rec.value.as_slice()))
            .headers(headers);
        self.producer()
            .send_result(record)
            .map(RdDelivery)
            .map_err(|(e, _)| e)
    }

    fn purge(&self) {
        KafkaPublisher::purge(self);
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'static, i32> {
        let me = self.clone();
        Box::pin(async move { KafkaPublisher::flush(&me, timeout).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::spool::format::RecordKind;

    fn record(topic: &str, value: &[u8]) -> StoredRecord {
        StoredRecord {
            seq: 7,
            arrival_ms: 0,
            id: uuid::Uuid::now_v7(),
            kind: RecordKind(1),
            topic: topic.to_owned(),
            key: "5544999999999".to_owned(),
            value: value.to_vec(),
        }
    }

    const ENVELOPE: &[u8] = br#"{"specversion":"1.0","id":"x","source":"/s","type":"t","datacontenttype":"application/json","data":{"a":1}}"#;

    #[test]
    fn each_mode_lays_the_record_out_and_binary_falls_back_to_structured() {
        let names = |h: &[(String, String)]| h.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let (h, data) = layout(&record("t", ENVELOPE), "t", ContentMode::Structured);
        assert_eq!(names(&h), ["content-type", "event-id", "event-type"]);
        assert_eq!(h[0].1, CONTENT_TYPE);
        assert_eq!(data, None, "the stored envelope is the value");

        let (h, data) = layout(&record("t", ENVELOPE), "t", ContentMode::Binary);
        assert_eq!(
            names(&h),
            [
                "ce_id",
                "ce_source",
                "ce_specversion",
                "ce_type",
                "content-type",
                "event-id",
                "event-type"
            ]
        );
        assert_eq!(data.as_deref(), Some(&br#"{"a":1}"#[..]));

        let (h, data) = layout(&record("t", b"not an envelope"), "t", ContentMode::Binary);
        assert_eq!(names(&h), ["content-type", "event-id", "event-type"]);
        assert_eq!(data, None);
    }

    #[tokio::test]
    async fn a_binary_fallback_is_counted() {
        let settings = crate::config::load(
            None,
            [(
                "PRESENCE_BRIDGE__KAFKA__CONTENT_MODE".to_owned(),
                "binary".to_owned(),
            )],
        )
        .unwrap();
        let (registry, metrics) = Metrics::standalone();
        // No I/O at creation; send only queues.
        let publisher = KafkaPublisher::new(&settings.kafka, "127.0.0.1:1", metrics).unwrap();
        let count = || {
            let text = String::from_utf8(crate::metrics::render(&registry)).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("presence_bridge_kafka_binary_mode_fallbacks_total "))
                .map(|v| v.trim().to_owned())
        };
        assert_eq!(count().as_deref(), Some("0"));
        let _queued = publisher.send(&record("whatsapp.presence.v1", ENVELOPE), "t");
        assert_eq!(count().as_deref(), Some("0"));
        let _queued = publisher.send(&record("whatsapp.presence.v1", b"{\"data\":[]"), "t");
        assert_eq!(count().as_deref(), Some("1"));
        publisher.purge();
    }
}
