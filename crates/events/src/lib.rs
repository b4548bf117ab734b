//! The CloudEvents envelope of presence-bridge's Kafka records: what the bridge
//! writes, and what a Rust consumer of the topic reads back. No I/O: the
//! bridge encodes with it, a consumer decodes with it (see [Reading the
//! topic](#reading-the-topic-a-rust-consumer)). It also publishes the
//! envelopes' JSON Schemas ([`schema`], the files in `schemas/`), and its
//! golden files (`tests/golden/`) pin the record written for each of the
//! provider's examples.
//!
//! # The envelope
//!
//! Every record's value is a CloudEvents 1.0 envelope in structured JSON mode
//! (CloudEvents Kafka protocol binding): `specversion`, `id` (a UUIDv7 assigned
//! on arrival, never changed afterwards, so retries keep it), `source`, `type`,
//! `time` (the arrival, RFC 3339 UTC with milliseconds), `datacontenttype`,
//! `dataschema`, an optional `partitionkey`, then `data`. The headers carry
//! `content-type` ([`CONTENT_TYPE`]), and `event-id` and `event-type` (the
//! event's `id` and `type`, for routing without parsing). No header starts
//! with `ce_`: the CloudEvents Kafka binding (and its SDKs' auto-detecting
//! readers) take any `ce_` header for binary mode.
//!
//! A topic may instead be written in binary content mode ([`binary`]): the
//! value is the `data` alone, every attribute a `ce_<name>` header, and
//! `content-type` the data's (`application/json`); `event-id` and
//! `event-type` are there too. [`binary::decode_any`] reads either mode.
//!
//! # The kinds
//!
//! | kind | CloudEvents `type` | key | schema ([`schema`], `schemas/`) |
//! |---|---|---|---|
//! | [`v1`]: a presence event | `io.presence-bridge.zapi.chat-presence.v1` | the normalized phone | [`schema::PRESENCE_V1`] |
//! | [`rejected`]: captured rejected input | `io.presence-bridge.zapi.rejected-input.v1` | the path's instance id, or `unknown` | [`schema::REJECTED_V1`] |
//! | [`received`]: a `ReceivedCallback` | `io.presence-bridge.zapi.message-received.v1` | the chat | [`schema::RECEIVED_V1`] |
//! | [`delivery`]: a `DeliveryCallback` | `io.presence-bridge.zapi.message-delivery.v1` | the chat | [`schema::DELIVERY_V1`] |
//! | [`message_status`]: a `MessageStatusCallback` | `io.presence-bridge.zapi.message-status.v1` | the chat | [`schema::MESSAGE_STATUS_V1`] |
//! | [`connected`]: a `ConnectedCallback` | `io.presence-bridge.zapi.instance-connected.v1` | the instance id | [`schema::CONNECTED_V1`] |
//! | [`disconnected`]: a `DisconnectedCallback` | `io.presence-bridge.zapi.instance-disconnected.v1` | the instance id | [`schema::DISCONNECTED_V1`] |
//! | [`expired`]: a typing state that expired (written by the bridge) | `io.presence-bridge.zapi.chat-presence-expired.v1` | the normalized phone | [`schema::EXPIRED_V1`] |
//! | [`state`]: a contact's latest presence (the compacted topic) | `io.presence-bridge.zapi.presence-state.v1` | `<instanceId>:<phone>` | [`schema::STATE_V1`] |
//!
//! [`OutboundRecord::from_callback`] wraps any [`zapi::Callback`] in its
//! kind's envelope. The callbacks other than presence carry, next to the
//! fields the bridge normalized, the provider's object byte for byte as
//! `data.payload` ([`zapi::Payload`]).
//!
//! Every kind is written by one generic CloudEvent type and read back into
//! one generic [`Envelope`], so the header attributes are the same for all of
//! them. Each kind's frozen file declares the kind once, by its `Data` (the
//! [`Kind`] trait: its `type` and `dataschema`), and fills in its `source`
//! and `data`.
//!
//! # Compatibility rules
//!
//! Each major version lives in its own frozen file (`v1.rs`, `rejected.rs`,
//! `received.rs`, ...)
//! next to its JSON Schema in `schemas/` (this crate's folder, also published
//! as `deploy/schemas/`). Within a major version fields are only ever added,
//! and only optional ones; nothing is renamed, removed or retyped. Consumers must ignore fields they do not know and tolerate status
//! values they do not know (the decoding types here do both). A breaking
//! change is a new `vN.rs`, a new `type`, a new schema file and a new topic,
//! produced side by side until consumers have moved.
//!
//! # Reading the topic: a Rust consumer
//!
//! Read the records with any Kafka client (rdkafka, ...) and pass each
//! record's value (its payload bytes) to [`decode`]: it says which kind the
//! record is and gives its attributes and data, typed; fields it does not
//! know are ignored. A consumer of one kind only calls that kind's
//! [`Envelope::decode`] (`v1::Envelope::decode`, `rejected::Envelope::decode`;
//! another kind is a [`DecodeError::WrongType`]). The
//! `event-type` header names the kind too, for routing without parsing. A
//! topic in binary content mode is read with [`binary::decode_binary`] (or
//! [`binary::decode_any`], for either mode) from the record's headers and value.
//! Deduplicate on `id`: retries keep it. To check a value against its
//! published JSON Schema, see [`schema`].
//!
//! ```
//! use events::{DecodeError, Record};
//!
//! /// What a consumer does with one record's value.
//! fn handle(value: &[u8]) -> Result<String, DecodeError> {
//!     match events::decode(value) {
//!         Ok(Record::Presence(e)) => Ok(format!("{} is {}", e.data.phone, e.data.status)),
//!         Ok(Record::Rejected(e)) => Ok(format!("a capture: {}", e.data.reason)),
//!         Ok(Record::Received(e)) => Ok(format!("a message in {}", e.data.chat)),
//!         // The other kinds (statuses, deliveries, connection events, and
//!         // kinds added later: `Record` is non-exhaustive).
//!         Ok(_) => Ok("another kind".to_owned()),
//!         // A kind this version does not know (a newer major version): skip it.
//!         Err(DecodeError::UnknownType(kind)) => Ok(format!("skipped {kind}")),
//!         // Not an envelope at all: the consumer's dead letter.
//!         Err(e) => Err(e),
//!     }
//! }
//!
//! // A record's value, as the bridge writes it.
//! let value = br#"{"specversion":"1.0","id":"0193a1b2-0000-7000-8000-000000000000","source":"/zapi/instances/i1","type":"io.presence-bridge.zapi.chat-presence.v1","time":"2026-11-24T12:00:00.000Z","datacontenttype":"application/json","dataschema":"urn:presence-bridge:schema:presence-envelope:v1","partitionkey":"5544999999999","data":{"instanceId":"i1","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"isGroup":false,"phoneKind":"person","statusKnown":true}}"#;
//! assert_eq!(handle(value)?, "5544999999999 is COMPOSING");
//!
//! // One kind only, with every attribute typed.
//! let event = events::v1::Envelope::decode(value)?;
//! assert_eq!(event.id.to_string(), "0193a1b2-0000-7000-8000-000000000000");
//! assert_eq!(event.data.phone_kind, "person");
//! assert!(events::rejected::Envelope::decode(value).is_err());
//! assert!(handle(b"not json").is_err());
//! # Ok::<(), DecodeError>(())
//! ```
//!
//! # Encoding
//!
//! The bridge's side is an [`OutboundRecord`]: everything the publisher (and
//! the spool) needs, already encoded. Nothing downstream re-encodes or
//! re-assigns the id, so retries never change it.

pub mod binary;
mod cloudevent;
pub mod connected;
mod connection;
pub mod delivery;
pub mod disconnected;
pub mod expired;
mod kind;
pub mod message_status;
pub mod received;
pub mod rejected;
pub mod schema;
pub mod state;
pub mod v1;

pub use cloudevent::{
    ce_type_of, decode, DecodeError, Envelope, Kind, Record, DATACONTENTTYPE, SPECVERSION,
};
pub use kind::EventKind;

use time::OffsetDateTime;
use uuid::Uuid;

use zapi::{Callback, PresenceEvent};

/// Kafka header names and the content type of structured-mode CloudEvents.
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// The event's `id`, on every record in both content modes (never `ce_id` in
/// structured mode: a `ce_` header means binary mode to a CloudEvents reader).
pub const HEADER_EVENT_ID: &str = "event-id";
/// The event's `type`, on every record in both content modes.
pub const HEADER_EVENT_TYPE: &str = "event-type";
/// The binary-mode headers of `id` and `type` (binary mode only).
pub const HEADER_CE_ID: &str = "ce_id";
pub const HEADER_CE_TYPE: &str = "ce_type";
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";

/// A record ready for Kafka: topic, key, headers and encoded value.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    /// The CloudEvents id (UUIDv7, assigned on arrival).
    pub id: Uuid,
    pub topic: String,
    /// The partition key: the normalized phone of a presence event, the chat
    /// of a message, delivery or status event, the instance id of a
    /// connection event (see [`Callback::key`]); all events of one key go to
    /// one partition, in order.
    pub key: String,
    /// The encoded envelope (JSON).
    pub value: Vec<u8>,
    /// When the webhook arrived, Unix milliseconds (the envelope's `time`).
    pub arrival_ms: i64,
    /// What the record holds (stored with it in the spool).
    pub kind: EventKind,
    /// The presence status as a metric label (a closed set); `None` for
    /// records that are not presence events (other callbacks, captured
    /// rejected input).
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
            kind: EventKind::Presence,
            status_label: Some(event.status.label()),
        }
    }

    /// [`OutboundRecord::new`] with when a typing status expires (the
    /// envelope's `typingExpiresAt`, Unix milliseconds; see [`v1::encode_typing`]).
    pub fn new_typing(
        event: &PresenceEvent,
        topic: &str,
        id: Uuid,
        time: OffsetDateTime,
        typing_expires_ms: Option<i64>,
    ) -> Self {
        Self {
            value: v1::encode_typing(event, id, time, typing_expires_ms),
            ..Self::new_unencoded(event, topic, id, time)
        }
    }

    fn new_unencoded(event: &PresenceEvent, topic: &str, id: Uuid, time: OffsetDateTime) -> Self {
        Self {
            id,
            topic: topic.to_owned(),
            key: event.phone.as_str().to_owned(),
            value: Vec::new(),
            arrival_ms: unix_ms(time),
            kind: EventKind::Presence,
            status_label: Some(event.status.label()),
        }
    }

    /// A contact's latest presence for the compacted topic, keyed
    /// `<instanceId>:<phone>` ([`state::key`]).
    pub fn state(s: &state::State<'_>, topic: &str, id: Uuid, time: OffsetDateTime) -> Self {
        let key = state::key(s.instance_id, s.phone.as_str());
        Self {
            id,
            topic: topic.to_owned(),
            value: state::encode(s, &key, id, time),
            key,
            arrival_ms: unix_ms(time),
            kind: EventKind::PresenceState,
            status_label: None,
        }
    }

    /// A typing state that expired, keyed by the phone like the presence
    /// events it follows.
    pub fn expired(e: &expired::Expiry<'_>, topic: &str, id: Uuid, time: OffsetDateTime) -> Self {
        Self {
            id,
            topic: topic.to_owned(),
            key: e.phone.as_str().to_owned(),
            value: expired::encode(e, id, time),
            arrival_ms: unix_ms(time),
            kind: EventKind::PresenceExpired,
            status_label: None,
        }
    }

    /// Wraps any callback in its kind's current envelope version, keyed as
    /// [`Callback::key`] says. A presence event is written exactly as by
    /// [`OutboundRecord::new`]; only presence events have a `status_label`.
    pub fn from_callback(cb: &Callback, topic: &str, id: Uuid, time: OffsetDateTime) -> Self {
        let value = match cb {
            Callback::Presence(e) => return Self::new(e, topic, id, time),
            Callback::Received(e) => received::encode(e, id, time),
            Callback::Delivery(e) => delivery::encode(e, id, time),
            Callback::MessageStatus(e) => message_status::encode(e, id, time),
            Callback::Connected(e) => connected::encode(e, id, time),
            Callback::Disconnected(e) => disconnected::encode(e, id, time),
        };
        Self {
            id,
            topic: topic.to_owned(),
            key: cb.key().to_owned(),
            value,
            arrival_ms: (time.unix_timestamp_nanos() / 1_000_000) as i64,
            kind: EventKind::of_callback(cb.kind()),
            status_label: None,
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
            kind: EventKind::Rejected,
            status_label: None,
        }
    }
}

/// `time` as Unix milliseconds.
fn unix_ms(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A new event id: UUIDv7, so ids sort by arrival time.
pub fn new_event_id() -> Uuid {
    Uuid::now_v7()
}
