//! A `DisconnectedCallback` (the instance lost WhatsApp: its webhooks stop), envelope version 1. FROZEN like `v1.rs`: fields may be
//! added (optional ones only), never renamed, removed or retyped. Schema:
//! [`crate::schema::DISCONNECTED_V1`] (`schemas/instance-disconnected-envelope.v1.schema.json`). Key: the instance id.
//!
//! `data` holds the fields the bridge normalized and, as `payload`, the
//! provider's `DisconnectedCallback` object byte for byte (every field it sent, known or
//! not; a repeated key stays repeated: the normalized fields took the last).
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/instance.id",
//!   "type": "io.presence-bridge.zapi.instance-disconnected.v1",
//!   "time": "2026-11-24T12:00:00.000Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:instance-disconnected-envelope:v1",
//!   "partitionkey": "instance.id",
//!   "data": {
//!     "instanceId": "instance.id", "disconnected": true, "moment": "2020-01-27T22:15:42.000Z",
//!     "payload": { "momment": 1580163342, "error": "Device has been disconnected", "disconnected": true, ... }
//!   }
//! }
//! ```
//!
//! A consumer reads it back with [`Envelope::decode`] into an [`Envelope`]
//! whose `data` is a [`Data`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cloudevent::{display_opt, CloudEvent, InstanceSource, Kind};
use zapi::{Connection, Millis, Payload};

/// The CloudEvents `type` (also the `ce_type` Kafka header).
pub const TYPE: &str = "io.presence-bridge.zapi.instance-disconnected.v1";
/// `dataschema`: the `$id` of its JSON Schema, [`crate::schema::DISCONNECTED_V1`].
pub const DATASCHEMA: &str = "urn:presence-bridge:schema:instance-disconnected-envelope:v1";

impl Kind for Data {
    const TYPE: &'static str = TYPE;
    const DATASCHEMA: &'static str = DATASCHEMA;
}

/// An envelope of this kind as a consumer reads it.
pub type Envelope = crate::Envelope<Data>;

/// What [`encode`] writes as `data`; [`Data`] reads it back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    instance_id: &'a str,
    disconnected: Option<bool>,
    #[serde(serialize_with = "display_opt")]
    moment: Option<Millis>,
    payload: &'a Payload,
}

/// Encodes `e` as an envelope of this kind.
pub fn encode(e: &Connection, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    let data = WireData {
        instance_id: e.instance_id.as_str(),
        disconnected: e.flag,
        moment: e.moment_ms.map(Millis),
        payload: &e.payload,
    };
    let source = InstanceSource(e.instance_id.as_str());
    CloudEvent::new::<Data>(id, source, time, Some(e.instance_id.as_str()), data)
        .encode(512 + e.payload.len())
}

/// `data` as a consumer reads it. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    /// Also the record's key and `partitionkey`.
    pub instance_id: String,
    /// The callback's `disconnected`, as sent.
    pub disconnected: Option<bool>,
    /// `momment`, RFC 3339 UTC with three fractional digits (the provider's
    /// example is in seconds).
    pub moment: Option<String>,
    /// The callback as the provider sent it (`error` says why).
    pub payload: Payload,
}
