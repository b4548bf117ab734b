//! A `ConnectedCallback` (the instance connected to WhatsApp), envelope version 1. FROZEN like `v1.rs`: fields may be
//! added (optional ones only), never renamed, removed or retyped. Schema:
//! [`crate::schema::CONNECTED_V1`] (`schemas/instance-connected-envelope.v1.schema.json`). Key: the instance id.
//!
//! `data` holds the fields the bridge normalized and, as `payload`, the
//! provider's `ConnectedCallback` object byte for byte (every field it sent, known or
//! not; a repeated key stays repeated: the normalized fields took the last).
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/instance.id",
//!   "type": "io.presence-bridge.zapi.instance-connected.v1",
//!   "time": "2026-11-24T12:00:00.000Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:instance-connected-envelope:v1",
//!   "partitionkey": "instance.id",
//!   "data": {
//!     "instanceId": "instance.id", "connected": true, "moment": "2798-09-16T13:45:54.000Z",
//!     "payload": { "type": "ConnectedCallback", "connected": true, "momment": 26151515154, ... }
//!   }
//! }
//! ```
//!
//! A consumer reads it back with [`Envelope::decode`] into an [`Envelope`]
//! whose `data` is a [`Data`].

crate::connection::connection_kind!(
    "io.presence-bridge.zapi.instance-connected.v1",
    "urn:presence-bridge:schema:instance-connected-envelope:v1",
    connected
);
