//! The CloudEvents 1.0 attributes every envelope carries (structured JSON
//! mode), written once for every kind of event: each kind's frozen file
//! (`v1.rs`, `rejected.rs`) fills in its `type`, `source`, `dataschema` and
//! `data`. Also the generic [`Envelope`] a consumer decodes any kind into, and
//! [`decode`], which reads a record of any kind.

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

use zapi::Millis;

/// `specversion` of every envelope.
pub const SPECVERSION: &str = "1.0";
/// `datacontenttype` of every envelope: the data is JSON.
pub const DATACONTENTTYPE: &str = "application/json";

/// One envelope. Fields in this order on the wire (golden files pin it).
#[derive(Serialize)]
pub(crate) struct CloudEvent<'a, S: Display, D: Serialize> {
    specversion: &'static str,
    id: uuid::fmt::Hyphenated,
    #[serde(serialize_with = "display")]
    source: S,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "display")]
    time: Millis,
    datacontenttype: &'static str,
    dataschema: &'static str,
    /// CloudEvents Kafka binding extension: the value used as the record key
    /// (absent for kinds not keyed by their data).
    #[serde(skip_serializing_if = "Option::is_none")]
    partitionkey: Option<&'a str>,
    data: D,
}

/// One kind of event, declared once by the `data` a consumer reads: what
/// its envelope's `type` and `dataschema` are. [`Envelope::decode`] reads a
/// record of any kind; the bridge writes each kind with its attributes.
pub trait Kind: DeserializeOwned {
    /// The CloudEvents `type` (also the `event-type` Kafka header).
    const TYPE: &'static str;
    /// `dataschema`: the `$id` of its JSON Schema (see [`crate::schema`]).
    const DATASCHEMA: &'static str;
}

/// Declares a kind's module-level items: its `TYPE` and `DATASCHEMA`
/// constants, the [`Kind`] of its `Data`, and its `Envelope`.
macro_rules! declare_kind {
    ($ty:literal, $schema:literal) => {
        /// The CloudEvents `type` (also the `event-type` Kafka header).
        pub const TYPE: &str = $ty;
        /// `dataschema`: the `$id` of its JSON Schema (see [`crate::schema`]).
        pub const DATASCHEMA: &str = $schema;

        impl $crate::cloudevent::Kind for Data {
            const TYPE: &'static str = TYPE;
            const DATASCHEMA: &'static str = DATASCHEMA;
        }

        /// An envelope of this kind as a consumer reads it.
        pub type Envelope = $crate::Envelope<Data>;
    };
}
pub(crate) use declare_kind;

impl<'a, S: Display, D: Serialize> CloudEvent<'a, S, D> {
    /// An envelope of kind `K` (whose read-side `data` is `K`) around the
    /// wire `data`.
    pub(crate) fn new<K: Kind>(
        id: Uuid,
        source: S,
        time: OffsetDateTime,
        partitionkey: Option<&'a str>,
        data: D,
    ) -> Self {
        Self {
            specversion: SPECVERSION,
            id: id.hyphenated(),
            source,
            kind: K::TYPE,
            time: millis(time),
            datacontenttype: DATACONTENTTYPE,
            dataschema: K::DATASCHEMA,
            partitionkey,
            data,
        }
    }

    /// The envelope as JSON, in a buffer of `capacity` to start with.
    pub(crate) fn encode(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity);
        // Plain fields into a Vec: serializing cannot fail.
        let _ = serde_json::to_writer(&mut out, self);
        out
    }
}

/// `source` of an event from an instance: `/zapi/instances/<instanceId>`,
/// written straight into the output.
pub(crate) struct InstanceSource<'a>(pub &'a str);

impl Display for InstanceSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/zapi/instances/{}", self.0)
    }
}

/// `time` at millisecond precision (the envelope's `time` attribute).
pub(crate) fn millis(time: OffsetDateTime) -> Millis {
    Millis(i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(0))
}

/// Serializes a value through its `Display`, without an intermediate String.
pub(crate) fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// [`display`] for an optional value (`null` when absent).
pub(crate) fn display_opt<T: Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// The CloudEvents `type` an encoded envelope declares: read back from the
/// record itself, so a record is labelled by what it is, not by the topic
/// it happens to be in. None when `value` is not an envelope of ours.
pub fn ce_type_of(value: &[u8]) -> Option<&'static str> {
    // Our encoder writes `"type":"…"` once, among the first attributes; data
    // comes last and may hold anything, so look only before it. The
    // attributes before `data` take at most ~380 bytes (a 128-character
    // instance id in `source`, the longest type, the schema's URN).
    let head = &value[..value.len().min(HEAD_BYTES)];
    let data = find(head, b",\"data\":").unwrap_or(head.len());
    let head = &head[..data];
    // The attribute's value, up to its closing quote: one scan, no copy.
    const ATTRIBUTE: &[u8] = b"\"type\":\"";
    let start = find(head, ATTRIBUTE)? + ATTRIBUTE.len();
    let len = head[start..].iter().position(|&b| b == b'"')?;
    let declared = &head[start..start + len];
    crate::EventKind::ALL
        .into_iter()
        .map(crate::EventKind::ce_type)
        .find(|t| t.as_bytes() == declared)
}

/// How far [`ce_type_of`] looks for the `type` attribute.
const HEAD_BYTES: usize = 512;

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An envelope as a consumer reads it back: the CloudEvents attributes as
/// written, with the kind's `data` ([`crate::v1::Data`],
/// [`crate::rejected::Data`]; [`Envelope::decode`] reads one). Fields
/// this version does not know are ignored, as the compatibility rules ask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope<D> {
    /// Always [`SPECVERSION`].
    pub specversion: String,
    /// The event id: a UUIDv7 assigned on arrival (also the `event-id` header).
    pub id: Uuid,
    pub source: String,
    /// The CloudEvents `type` (also the `event-type` header).
    #[serde(rename = "type")]
    pub kind: String,
    /// The arrival, RFC 3339 UTC with three fractional digits.
    pub time: String,
    /// Always [`DATACONTENTTYPE`].
    pub datacontenttype: String,
    pub dataschema: String,
    /// The record's key, for kinds keyed by their data (the presence event).
    #[serde(default)]
    pub partitionkey: Option<String>,
    pub data: D,
}

/// A record's value decoded, by kind. Non-exhaustive: a later version may
/// add kinds, so a consumer's `match` needs a catch-all arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// `io.presence-bridge.zapi.chat-presence.v1`.
    Presence(crate::v1::Envelope),
    /// `io.presence-bridge.zapi.rejected-input.v1`.
    Rejected(crate::rejected::Envelope),
    /// `io.presence-bridge.zapi.message-received.v1`.
    Received(crate::received::Envelope),
    /// `io.presence-bridge.zapi.message-delivery.v1`.
    Delivery(crate::delivery::Envelope),
    /// `io.presence-bridge.zapi.message-status.v1`.
    MessageStatus(crate::message_status::Envelope),
    /// `io.presence-bridge.zapi.instance-connected.v1`.
    Connected(crate::connected::Envelope),
    /// `io.presence-bridge.zapi.instance-disconnected.v1`.
    Disconnected(crate::disconnected::Envelope),
    /// `io.presence-bridge.zapi.presence-state.v1` (the latest-presence topic).
    PresenceState(crate::state::Envelope),
    /// `io.presence-bridge.zapi.chat-presence-expired.v1`.
    PresenceExpired(crate::expired::Envelope),
}

/// Why a record's value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON without the attributes and data of its kind.
    #[error("not a valid envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// An envelope of a `type` this version does not know (a newer major
    /// version, or another producer's event).
    #[error("unknown CloudEvents type `{0}`")]
    UnknownType(String),
    /// An envelope of another kind than the one asked for.
    #[error("expected CloudEvents type `{expected}`, found `{found}`")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    /// A binary-mode record whose headers and value are not an event
    /// (see [`crate::binary`]).
    #[error("not a binary-mode CloudEvent: {0}")]
    Binary(#[from] crate::binary::BinaryError),
}

/// Decodes a record's value of any kind this version knows.
pub fn decode(value: &[u8]) -> Result<Record, DecodeError> {
    let head: Head = serde_json::from_slice(value)?;
    match head.kind.as_str() {
        crate::v1::TYPE => Ok(Record::Presence(crate::v1::Envelope::decode(value)?)),
        crate::rejected::TYPE => Ok(Record::Rejected(crate::rejected::Envelope::decode(value)?)),
        crate::received::TYPE => Ok(Record::Received(crate::received::Envelope::decode(value)?)),
        crate::delivery::TYPE => Ok(Record::Delivery(crate::delivery::Envelope::decode(value)?)),
        crate::message_status::TYPE => Ok(Record::MessageStatus(
            crate::message_status::Envelope::decode(value)?,
        )),
        crate::connected::TYPE => Ok(Record::Connected(crate::connected::Envelope::decode(
            value,
        )?)),
        crate::disconnected::TYPE => Ok(Record::Disconnected(
            crate::disconnected::Envelope::decode(value)?,
        )),
        crate::state::TYPE => Ok(Record::PresenceState(crate::state::Envelope::decode(
            value,
        )?)),
        crate::expired::TYPE => Ok(Record::PresenceExpired(crate::expired::Envelope::decode(
            value,
        )?)),
        _ => Err(DecodeError::UnknownType(head.kind)),
    }
}

impl<D: Kind> Envelope<D> {
    /// Decodes a record's value as an envelope of kind `D`; an envelope of
    /// another kind is a [`DecodeError::WrongType`].
    pub fn decode(value: &[u8]) -> Result<Self, DecodeError> {
        // The type first: a record of another kind is named as such, not as
        // data that does not fit.
        let head: Head = serde_json::from_slice(value)?;
        if head.kind != D::TYPE {
            return Err(DecodeError::WrongType {
                expected: D::TYPE,
                found: head.kind,
            });
        }
        Ok(serde_json::from_slice(value)?)
    }
}

/// Only the `type` of an envelope (every other field ignored).
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejected::{self, RejectedInput};
    use zapi::PresenceEvent;

    #[test]
    fn a_record_says_what_it_is() {
        let body = br#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","instanceId":"i1"}"#;
        let event = PresenceEvent::from_json(body).unwrap();
        let value = crate::v1::encode(&event, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(ce_type_of(&value), Some(crate::v1::TYPE));
        // A captured body that names the presence type is still a capture:
        // only the envelope's own attribute counts.
        let captured = format!(r#"{{"type":"{}"}}"#, crate::v1::TYPE);
        let input = RejectedInput {
            reason: "invalid_status",
            message: "bad",
            field: Some("status"),
            status: 400,
            path_instance: None,
            content_type: Some("application/json"),
            body: captured.as_bytes(),
        };
        let value = rejected::encode(&input, 1024, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(ce_type_of(&value), Some(rejected::TYPE));
        assert_eq!(ce_type_of(b"not an envelope"), None);
        assert_eq!(ce_type_of(b""), None);
    }
}
