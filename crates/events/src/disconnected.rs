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

crate::connection::connection_kind!(
    "io.presence-bridge.zapi.instance-disconnected.v1",
    "urn:presence-bridge:schema:instance-disconnected-envelope:v1",
    disconnected
);
