//! The wire contract with every downstream team: a validated
//! [`PresenceEvent`](crate::presence::PresenceEvent) wrapped in a CloudEvents 1.0
//! envelope (structured JSON mode of the Kafka protocol binding), plus the
//! Kafka key and headers that go with it.
//!
//! Each major version lives in its own frozen file (`v1.rs`) next to its JSON
//! Schema in `deploy/schemas/`. Within a major version fields are only added,
//! and only optional ones; a breaking change is a new `vN.rs`, a new `type`
//! and a new topic.
//!
//! The output of this module is an [`OutboundRecord`]: everything the
//! publisher (and, later, the spool) needs, already encoded. Nothing
//! downstream re-encodes or re-assigns the id, so retries never change it.

mod cloudevent;
pub mod rejected;
pub mod v1;

pub use cloudevent::ce_type_of;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::presence::PresenceEvent;

/// Kafka header names and the content type of structured-mode CloudEvents.
pub const HEADER_CONTENT_TYPE: &str = "content-type";
pub const HEADER_CE_ID: &str = "ce_id";
pub const HEADER_CE_TYPE: &str = "ce_type";
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";

/// A record ready for Kafka: topic, key, headers and encoded value.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    /// The CloudEvents id (UUIDv7, assigned on arrival).
    pub id: Uuid,
    pub topic: String,
    /// The normalized phone: all events of one phone go to one partition, in order.
    pub key: String,
    /// The encoded envelope (JSON).
    pub value: Vec<u8>,
    /// When the webhook arrived, Unix milliseconds (the envelope's `time`).
    pub arrival_ms: i64,
    /// The presence status as a metric label (a closed set); `None` for
    /// records that are not presence events (captured rejected input).
    pub status_label: Option<&'static str>,
}

impl OutboundRecord {
    /// Wraps `event` in the current envelope version. `id` and `time` are the
    /// arrival's, decided once by the caller.
    pub fn new(event: &PresenceEvent, topic: &str, id: Uuid, time: OffsetDateTime) -> Self {
        Self {
            id,
            topic: topic.to_owned(),
            key: event.phone.as_str().to_owned(),
            value: v1::encode(event, id, time),
            arrival_ms: (time.unix_timestamp_nanos() / 1_000_000) as i64,
            status_label: Some(event.status.label()),
        }
    }

    /// A captured rejected request (see [`rejected`]), keyed by the path's
    /// instance id when there was one.
    pub fn rejected(
        input: &rejected::RejectedInput<'_>,
        max_bytes: usize,
        topic: &str,
        id: Uuid,
        time: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            topic: topic.to_owned(),
            key: input.path_instance.unwrap_or("unknown").to_owned(),
            value: rejected::encode(input, max_bytes, id, time),
            arrival_ms: (time.unix_timestamp_nanos() / 1_000_000) as i64,
            status_label: None,
        }
    }
}

/// A new event id: UUIDv7, so ids sort by arrival time.
pub fn new_event_id() -> Uuid {
    Uuid::now_v7()
}
