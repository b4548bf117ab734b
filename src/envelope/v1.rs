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

use super::cloudevent::{display_opt, CloudEvent, Kind};
pub use super::cloudevent::{DATACONTENTTYPE, SPECVERSION};
use crate::presence::{Millis, PresenceEvent};

/// The CloudEvents `type` of version 1 (also the `ce_type` Kafka header).
pub const TYPE: &str = "io.presence-bridge.zapi.chat-presence.v1";
/// `dataschema`: the `$id` of the JSON Schema in `deploy/schemas/`.
pub const DATASCHEMA: &str = "urn:presence-bridge:schema:presence-envelope:v1";

const KIND: Kind = Kind {
    ce_type: TYPE,
    dataschema: DATASCHEMA,
};

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
    let data = Data {
        instance_id: event.instance_id.as_str(),
        phone: event.phone.as_str(),
        status: event.status.as_str(),
        last_seen: event.last_seen_ms.map(Millis),
        is_group: event.phone.is_group(),
        phone_kind: event.phone.kind().as_str(),
        status_known: event.status.is_known(),
    };
    let source = Source(event.instance_id.as_str());
    CloudEvent::new(&KIND, id, source, time, Some(event.phone.as_str()), data).encode(512)
}

/// `/zapi/instances/<instanceId>`, written straight into the output.
struct Source<'a>(&'a str);

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/zapi/instances/{}", self.0)
    }
}
