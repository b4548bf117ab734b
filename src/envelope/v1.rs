//! Envelope version 1. FROZEN: fields may be added (optional ones only), never
//! renamed, removed or retyped. Schema: `deploy/schemas/presence-envelope.v1.schema.json`.
//!
//! ```json
//! {
//!   "specversion": "1.0",
//!   "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/instance.id",
//!   "type": "io.presence-bridge.zapi.chat-presence.v1",
//!   "time": "2026-11-24T12:00:00.000Z",
//!   "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:presence-envelope:v1",
//!   "partitionkey": "5544999999999",
//!   "data": {
//!     "instanceId": "instance.id", "phone": "5544999999999", "status": "COMPOSING",
//!     "lastSeen": null, "isGroup": false, "phoneKind": "person", "statusKnown": true
//!   }
//! }
//! ```

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::presence::{Millis, PresenceEvent};

/// The CloudEvents `type` of version 1 (also the `ce_type` Kafka header).
pub const TYPE: &str = "io.presence-bridge.zapi.chat-presence.v1";
/// `dataschema`: the `$id` of the JSON Schema in `deploy/schemas/`.
pub const DATASCHEMA: &str = "urn:presence-bridge:schema:presence-envelope:v1";
pub const SPECVERSION: &str = "1.0";
pub const DATACONTENTTYPE: &str = "application/json";

#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: uuid::fmt::Hyphenated,
    #[serde(serialize_with = "display")]
    source: Source<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "display")]
    time: Millis,
    datacontenttype: &'static str,
    dataschema: &'static str,
    /// CloudEvents Kafka binding extension: the value used as the record key.
    partitionkey: &'a str,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    instance_id: &'a str,
    phone: &'a str,
    status: &'a str,
    #[serde(serialize_with = "display_opt")]
    last_seen: Option<Millis>,
    is_group: bool,
    phone_kind: &'static str,
    status_known: bool,
}

/// Encodes `event` as a version 1 envelope.
pub fn encode(event: &PresenceEvent, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    let envelope = Envelope {
        specversion: SPECVERSION,
        id: id.hyphenated(),
        source: Source(event.instance_id.as_str()),
        kind: TYPE,
        time: Millis(i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(0)),
        datacontenttype: DATACONTENTTYPE,
        dataschema: DATASCHEMA,
        partitionkey: event.phone.as_str(),
        data: Data {
            instance_id: event.instance_id.as_str(),
            phone: event.phone.as_str(),
            status: event.status.as_str(),
            last_seen: event.last_seen_ms.map(Millis),
            is_group: event.phone.is_group(),
            phone_kind: event.phone.kind().as_str(),
            status_known: event.status.is_known(),
        },
    };
    let mut out = Vec::with_capacity(512);
    // Serializing these plain fields into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &envelope);
    out
}

/// `/zapi/instances/<instanceId>`, written straight into the output.
struct Source<'a>(&'a str);

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/zapi/instances/{}", self.0)
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}
