//! A `MessageStatusCallback` (a status change of one or more messages), envelope version 1. FROZEN like `v1.rs`: fields may be
//! added (optional ones only), never renamed, removed or retyped. Schema:
//! [`crate::schema::MESSAGE_STATUS_V1`] (`schemas/message-status-envelope.v1.schema.json`). Key: the chat (`data.chat`).
//!
//! `data` holds the fields the bridge normalized and, as `payload`, the
//! provider's `MessageStatusCallback` object byte for byte (every field it sent, known or
//! not; a repeated key stays repeated: the normalized fields took the last).
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/instance.id",
//!   "type": "io.presence-bridge.zapi.message-status.v1",
//!   "time": "2026-11-24T12:00:00.000Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:message-status-envelope:v1",
//!   "partitionkey": "5544999999999",
//!   "data": {
//!     "instanceId": "instance.id", "chat": "5544999999999", "chatKind": "person",
//!     "status": "READ", "statusKnown": true, "ids": ["999999999999999999999"],
//!     "moment": "2021-09-21T14:30:45.000Z",
//!     "payload": { "status": "READ", "ids": ["999999999999999999999"], "momment": 1632234645000, ... }
//!   }
//! }
//! ```
//!
//! A consumer reads it back with [`Envelope::decode`] into an [`Envelope`]
//! whose `data` is a [`Data`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cloudevent::{display_opt, CloudEvent, InstanceSource};
use zapi::{MessageStatus, Millis, Payload};

crate::cloudevent::declare_kind!(
    "io.presence-bridge.zapi.message-status.v1",
    "urn:presence-bridge:schema:message-status-envelope:v1"
);

/// What [`encode`] writes as `data`; [`Data`] reads it back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    instance_id: &'a str,
    chat: &'a str,
    chat_kind: &'static str,
    status: &'a str,
    status_known: bool,
    ids: &'a [String],
    #[serde(serialize_with = "display_opt")]
    moment: Option<Millis>,
    payload: &'a Payload,
}

/// Encodes `e` as an envelope of this kind.
pub fn encode(e: &MessageStatus, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    let data = WireData {
        instance_id: e.instance_id.as_str(),
        chat: e.chat.as_str(),
        chat_kind: e.chat.kind().as_str(),
        status: &e.status,
        status_known: e.status_known(),
        ids: &e.ids,
        moment: e.moment_ms.map(Millis),
        payload: &e.payload,
    };
    let source = InstanceSource(e.instance_id.as_str());
    CloudEvent::new::<Data>(id, source, time, Some(e.chat.as_str()), data)
        .encode(512 + e.payload.len())
}

/// `data` as a consumer reads it. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    pub instance_id: String,
    /// The normalized chat (`phone`): also the record's key and `partitionkey`.
    pub chat: String,
    /// `person`, `group`, `broadcast`, `newsletter` or `lid`.
    pub chat_kind: String,
    /// As sent, trimmed: `SENT`, `RECEIVED`, `READ`, `READ_BY_ME`, `PLAYED`,
    /// or a value this version does not know (then `status_known` is false).
    pub status: String,
    pub status_known: bool,
    /// The affected message ids (`ids`, or `id`), at least one.
    pub ids: Vec<String>,
    /// `momment`, RFC 3339 UTC with three fractional digits.
    pub moment: Option<String>,
    /// The callback as the provider sent it.
    pub payload: Payload,
}
