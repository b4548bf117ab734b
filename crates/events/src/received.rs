//! A `ReceivedCallback` (a message or a notification in a chat), envelope version 1. FROZEN like `v1.rs`: fields may be
//! added (optional ones only), never renamed, removed or retyped. Schema:
//! [`crate::schema::RECEIVED_V1`] (`schemas/message-received-envelope.v1.schema.json`). Key: the chat (`data.chat`).
//!
//! `data` holds the fields the bridge normalized and, as `payload`, the
//! provider's `ReceivedCallback` object byte for byte (every field it sent, known or
//! not; a repeated key stays repeated: the normalized fields took the last).
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/A20DA9C0183A2D35A260F53F5D2B9244",
//!   "type": "io.presence-bridge.zapi.message-received.v1",
//!   "time": "2026-11-24T12:00:00.000Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:message-received-envelope:v1",
//!   "partitionkey": "5544999999999",
//!   "data": {
//!     "instanceId": "A20DA9C0183A2D35A260F53F5D2B9244", "chat": "5544999999999",
//!     "chatKind": "person", "fromMe": false, "messageId": "A20DA9C0183A2D35A260F53F5D2B9244",
//!     "status": "RECEIVED", "notification": null, "contentKind": "text",
//!     "moment": "2021-09-21T12:50:38.000Z",
//!     "payload": { "type": "ReceivedCallback", "phone": "5544999999999", "text": { "message": "test" }, ... }
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
use zapi::{Millis, Payload, Received};

crate::cloudevent::declare_kind!(
    "io.presence-bridge.zapi.message-received.v1",
    "urn:presence-bridge:schema:message-received-envelope:v1"
);

/// What [`encode`] writes as `data`; [`Data`] reads it back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    instance_id: &'a str,
    chat: &'a str,
    chat_kind: &'static str,
    from_me: Option<bool>,
    message_id: Option<&'a str>,
    status: Option<&'a str>,
    notification: Option<&'a str>,
    content_kind: Option<&'static str>,
    #[serde(serialize_with = "display_opt")]
    moment: Option<Millis>,
    payload: &'a Payload,
}

/// Encodes `e` as an envelope of this kind.
pub fn encode(e: &Received, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    let data = WireData {
        instance_id: e.instance_id.as_str(),
        chat: e.chat.as_str(),
        chat_kind: e.chat.kind().as_str(),
        from_me: e.from_me,
        message_id: e.message_id.as_deref(),
        status: e.status.as_deref(),
        notification: e.notification.as_deref(),
        content_kind: e.content_kind,
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
    pub from_me: Option<bool>,
    pub message_id: Option<String>,
    /// As sent: an open set (`RECEIVED`, `SENT`, ...).
    pub status: Option<String>,
    /// As sent: an open set; None for an ordinary message.
    pub notification: Option<String>,
    /// The first documented content key present (`text`, `image`, ...).
    pub content_kind: Option<String>,
    /// `momment`, RFC 3339 UTC with three fractional digits.
    pub moment: Option<String>,
    /// The callback as the provider sent it.
    pub payload: Payload,
}
