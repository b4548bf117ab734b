//! A `DeliveryCallback` (a message the instance sent was handed to WhatsApp), envelope version 1. FROZEN like `v1.rs`: fields may be
//! added (optional ones only), never renamed, removed or retyped. Schema:
//! [`crate::schema::DELIVERY_V1`] (`schemas/message-delivery-envelope.v1.schema.json`). Key: the chat (`data.chat`).
//!
//! `data` holds the fields the bridge normalized and, as `payload`, the
//! provider's `DeliveryCallback` object byte for byte (every field it sent, known or
//! not; a repeated key stays repeated: the normalized fields took the last).
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/instance.id",
//!   "type": "io.presence-bridge.zapi.message-delivery.v1",
//!   "time": "2026-11-24T12:00:00.000Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:message-delivery-envelope:v1",
//!   "partitionkey": "554499999999",
//!   "data": {
//!     "instanceId": "instance.id", "chat": "554499999999", "chatKind": "person",
//!     "messageId": "A20DA9C0183A2D35A260F53F5D2B9244", "zaapId": "A20DA9C0183A2D35A260F53F5D2B9244",
//!     "moment": null,
//!     "payload": { "phone": "554499999999", "zaapId": "...", "messageId": "...", "type": "DeliveryCallback", "instanceId": "instance.id" }
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
use zapi::{Delivery, Millis, Payload};

crate::cloudevent::declare_kind!(
    "io.presence-bridge.zapi.message-delivery.v1",
    "urn:presence-bridge:schema:message-delivery-envelope:v1"
);

/// What [`encode`] writes as `data`; [`Data`] reads it back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    instance_id: &'a str,
    chat: &'a str,
    chat_kind: &'static str,
    message_id: Option<&'a str>,
    zaap_id: Option<&'a str>,
    #[serde(serialize_with = "display_opt")]
    moment: Option<Millis>,
    payload: &'a Payload,
}

/// Encodes `e` as an envelope of this kind.
pub fn encode(e: &Delivery, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    let data = WireData {
        instance_id: e.instance_id.as_str(),
        chat: e.chat.as_str(),
        chat_kind: e.chat.kind().as_str(),
        message_id: e.message_id.as_deref(),
        zaap_id: e.zaap_id.as_deref(),
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
    /// WhatsApp's message id, as sent.
    pub message_id: Option<String>,
    /// Z-API's message id, as sent.
    pub zaap_id: Option<String>,
    /// `momment` if the provider sent one, RFC 3339 UTC with three fractional digits.
    pub moment: Option<String>,
    /// The callback as the provider sent it.
    pub payload: Payload,
}
