//! The JSON Schemas (draft 2020-12) of the envelopes, as published: the files
//! in `crates/events/schemas/` (also reachable as `deploy/schemas/`), compiled
//! into the crate so a consumer can validate records without the repository.
//!
//! Each schema's `$id` is the `dataschema` attribute of the envelopes it
//! validates ([`crate::v1::DATASCHEMA`], [`crate::rejected::DATASCHEMA`]).
//! Feed the text to any JSON Schema validator, for example the `jsonschema`
//! crate:
//!
//! ```
//! # let event = zapi::PresenceEvent::from_json(br#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","instanceId":"i1"}"#).unwrap();
//! # let value = events::v1::encode(&event, events::new_event_id(), time::OffsetDateTime::now_utc());
//! // `value`: a record's value, as read from the topic.
//! let schema: serde_json::Value = serde_json::from_str(events::schema::PRESENCE_V1)?;
//! let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
//! assert!(validator.is_valid(&serde_json::from_slice(&value)?));
//! # Ok::<(), serde_json::Error>(())
//! ```

/// `presence-envelope.v1.schema.json`: a record's whole value (the
/// CloudEvents attributes and `data`) of CloudEvents `type`
/// [`crate::v1::TYPE`], a presence event (see [`crate::v1`]).
pub const PRESENCE_V1: &str = include_str!("../schemas/presence-envelope.v1.schema.json");

/// `rejected-input.v1.schema.json`: a record's whole value of CloudEvents
/// `type` [`crate::rejected::TYPE`], a captured rejected request (see
/// [`crate::rejected`]).
pub const REJECTED_V1: &str = include_str!("../schemas/rejected-input.v1.schema.json");

/// `message-received-envelope.v1.schema.json`: [`crate::received::TYPE`],
/// a `ReceivedCallback` (see [`crate::received`]).
pub const RECEIVED_V1: &str = include_str!("../schemas/message-received-envelope.v1.schema.json");

/// `message-delivery-envelope.v1.schema.json`: [`crate::delivery::TYPE`], a
/// `DeliveryCallback` (see [`crate::delivery`]).
pub const DELIVERY_V1: &str = include_str!("../schemas/message-delivery-envelope.v1.schema.json");

/// `message-status-envelope.v1.schema.json`: [`crate::message_status::TYPE`],
/// a `MessageStatusCallback` (see [`crate::message_status`]).
pub const MESSAGE_STATUS_V1: &str =
    include_str!("../schemas/message-status-envelope.v1.schema.json");

/// `instance-connected-envelope.v1.schema.json`: [`crate::connected::TYPE`],
/// a `ConnectedCallback` (see [`crate::connected`]).
pub const CONNECTED_V1: &str =
    include_str!("../schemas/instance-connected-envelope.v1.schema.json");

/// `instance-disconnected-envelope.v1.schema.json`:
/// [`crate::disconnected::TYPE`], a `DisconnectedCallback` (see
/// [`crate::disconnected`]).
pub const DISCONNECTED_V1: &str =
    include_str!("../schemas/instance-disconnected-envelope.v1.schema.json");

/// `presence-state-envelope.v1.schema.json`: [`crate::state::TYPE`], a
/// contact's latest presence on the compacted topic (see [`crate::state`]).
pub const STATE_V1: &str = include_str!("../schemas/presence-state-envelope.v1.schema.json");

/// `presence-expired-envelope.v1.schema.json`: [`crate::expired::TYPE`], a
/// typing state that expired (see [`crate::expired`]).
pub const EXPIRED_V1: &str = include_str!("../schemas/presence-expired-envelope.v1.schema.json");

/// Every schema of this version: its `$id` (the envelope's `dataschema`) and
/// its text.
pub const ALL: [(&str, &str); 9] = [
    (crate::v1::DATASCHEMA, PRESENCE_V1),
    (crate::rejected::DATASCHEMA, REJECTED_V1),
    (crate::received::DATASCHEMA, RECEIVED_V1),
    (crate::delivery::DATASCHEMA, DELIVERY_V1),
    (crate::message_status::DATASCHEMA, MESSAGE_STATUS_V1),
    (crate::connected::DATASCHEMA, CONNECTED_V1),
    (crate::disconnected::DATASCHEMA, DISCONNECTED_V1),
    (crate::state::DATASCHEMA, STATE_V1),
    (crate::expired::DATASCHEMA, EXPIRED_V1),
];

/// The schema of the envelopes of `kind`.
pub const fn of_kind(kind: crate::EventKind) -> &'static str {
    match kind {
        crate::EventKind::Presence => PRESENCE_V1,
        crate::EventKind::Rejected => REJECTED_V1,
        crate::EventKind::Received => RECEIVED_V1,
        crate::EventKind::Delivery => DELIVERY_V1,
        crate::EventKind::MessageStatus => MESSAGE_STATUS_V1,
        crate::EventKind::Connected => CONNECTED_V1,
        crate::EventKind::Disconnected => DISCONNECTED_V1,
        crate::EventKind::PresenceState => STATE_V1,
        crate::EventKind::PresenceExpired => EXPIRED_V1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_is_json_with_the_id_of_its_dataschema() {
        for (dataschema, text) in ALL {
            let schema: serde_json::Value = serde_json::from_str(text).expect("schema is JSON");
            assert_eq!(schema["$id"], dataschema);
        }
    }
}
