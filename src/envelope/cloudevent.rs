//! The CloudEvents 1.0 attributes every envelope carries (structured JSON
//! mode), written once for every kind of event: each kind's frozen file
//! (`v1.rs`, `rejected.rs`) fills in its `type`, `source`, `dataschema` and
//! `data`.

use std::fmt::Display;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::presence::Millis;

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

/// What distinguishes one kind of envelope from another.
pub(crate) struct Kind {
    /// The CloudEvents `type` (also the `ce_type` Kafka header).
    pub ce_type: &'static str,
    /// The `$id` of its JSON Schema in `deploy/schemas/`.
    pub dataschema: &'static str,
}

impl<'a, S: Display, D: Serialize> CloudEvent<'a, S, D> {
    pub(crate) fn new(
        kind: &Kind,
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
            kind: kind.ce_type,
            time: millis(time),
            datacontenttype: DATACONTENTTYPE,
            dataschema: kind.dataschema,
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
    // comes last and may hold anything, so look only before it.
    let head = &value[..value.len().min(256)];
    let data = find(head, b",\"data\":").unwrap_or(head.len());
    let head = &head[..data];
    [super::v1::TYPE, super::rejected::TYPE]
        .into_iter()
        .find(|t| {
            let mut needle = Vec::with_capacity(t.len() + 10);
            needle.extend_from_slice(b"\"type\":\"");
            needle.extend_from_slice(t.as_bytes());
            needle.push(b'"');
            find(head, &needle).is_some()
        })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::rejected::{self, RejectedInput};
    use crate::presence::PresenceEvent;

    #[test]
    fn a_record_says_what_it_is() {
        let body = br#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","instanceId":"i1"}"#;
        let event = PresenceEvent::from_json(body).unwrap();
        let value = super::super::v1::encode(&event, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(ce_type_of(&value), Some(super::super::v1::TYPE));
        // A captured body that names the presence type is still a capture:
        // only the envelope's own attribute counts.
        let captured = format!(r#"{{"type":"{}"}}"#, super::super::v1::TYPE);
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
