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
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::reports::RdDelivery;
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

/// A record laid out in its topic's content mode: in both, `event-id` and
/// `event-type` headers (for routing without parsing); structured adds
/// `content-type: application/cloudevents+json` and keeps the envelope as the
/// value; binary puts every attribute in a `ce_` header and the `data` in the
/// value. A value binary mode cannot take apart (never one the bridge wrote)
/// is sent structured, with a warning (and
/// `presence_bridge_kafka_binary_mode_fallbacks_total`): a CloudEvents reader
/// still reads it.
///
/// Structured mode, the default, borrows every header from the record and
/// constants: sending costs no allocation of ours besides the client's copy.
pub struct Layout<'a> {
    rec: &'a StoredRecord,
    ce_type: &'a str,
    /// The event id, hyphenated, in [`Layout::id`].
    id: [u8; uuid::fmt::Hyphenated::LENGTH],
    binary: Option<events::binary::BinaryRecord>,
}

impl<'a> Layout<'a> {
    pub fn new(rec: &'a StoredRecord, ce_type: &'a str, mode: ContentMode) -> Self {
        let binary = match mode {
            ContentMode::Binary => match events::binary::to_binary(&rec.value) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(seq = rec.seq, topic = %rec.topic, error = %e, "a record cannot be written in binary content mode; sent in structured mode");
                    None
                }
            },
            ContentMode::Structured => None,
        };
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        rec.id.hyphenated().encode_lower(&mut id);
        Self {
            rec,
            ce_type,
            id,
            binary,
        }
    }

    /// True when the record goes in binary mode (false for a fallback).
    pub fn is_binary(&self) -> bool {
        self.binary.is_some()
    }

    /// The event id, hyphenated (ASCII by construction).
    fn id(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or_default()
    }

    /// The headers, in order: the binary attributes (sorted by name) or
    /// `content-type`, then `event-id` and `event-type`.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let attributes = self
            .binary
            .iter()
            .flat_map(|b| b.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let structured = self
            .binary
            .is_none()
            .then_some((HEADER_CONTENT_TYPE, CONTENT_TYPE));
        attributes.chain(structured).chain([
            (HEADER_EVENT_ID, self.id()),
            (HEADER_EVENT_TYPE, self.ce_type),
        ])
    }

    /// How many headers [`Layout::headers`] yields.
    pub fn header_count(&self) -> usize {
        self.binary.as_ref().map_or(1, |b| b.headers.len()) + 2
    }

    /// The record's value: the `data` in binary mode, else the envelope.
    pub fn value(&self) -> &[u8] {
        match &self.binary {
            Some(b) => &b.data,
            None => &self.rec.value,
        }
    }
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
            return self.enqueue(BaseRecord::to(&rec.topic).key(rec.key.as_str()));
        }
        let mode = self.content_modes().of(&rec.topic);
        let layout = Layout::new(rec, ce_type, mode);
        if mode == ContentMode::Binary && !layout.is_binary() {
            self.metrics().binary_mode_fallback();
        }
        let mut headers = OwnedHeaders::new_with_capacity(layout.header_count());
        for (key, value) in layout.headers() {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        self.enqueue(
            BaseRecord::to(&rec.topic)
                .key(rec.key.as_str())
                .payload(layout.value())
                .headers(headers),
        )
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
        let names = |l: &Layout| l.headers().map(|(n, _)| n.to_owned()).collect::<Vec<_>>();
        let rec = record("t", ENVELOPE);
        let l = Layout::new(&rec, "t", ContentMode::Structured);
        assert_eq!(names(&l), ["content-type", "event-id", "event-type"]);
        assert_eq!(l.header_count(), 3);
        let headers: Vec<_> = l.headers().collect();
        assert_eq!(headers[0].1, CONTENT_TYPE);
        assert_eq!(headers[1].1, rec.id.hyphenated().to_string());
        assert_eq!(headers[2].1, "t");
        assert!(!l.is_binary());
        assert_eq!(l.value(), ENVELOPE, "the stored envelope is the value");

        let l = Layout::new(&rec, "t", ContentMode::Binary);
        assert_eq!(
            names(&l),
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
        assert_eq!(l.header_count(), 7);
        assert!(l.is_binary());
        assert_eq!(l.value(), br#"{"a":1}"#);

        let rec = record("t", b"not an envelope");
        let l = Layout::new(&rec, "t", ContentMode::Binary);
        assert_eq!(names(&l), ["content-type", "event-id", "event-type"]);
        assert!(!l.is_binary());
        assert_eq!(l.value(), b"not an envelope");
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
