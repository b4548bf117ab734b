//! Envelope version 1. FROZEN: fields may be added (optional ones only), never
//! renamed, removed or retyped. Schema: [`crate::schema::PRESENCE_V1`]
//! (`schemas/presence-envelope.v1.schema.json`).
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
//!
//! A consumer reads it back with [`Envelope::decode`] into an [`Envelope`]
//! whose `data` is a [`Data`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cloudevent::{display_opt, CloudEvent};
pub use crate::cloudevent::{DATACONTENTTYPE, SPECVERSION};
use zapi::{Millis, PresenceEvent};

crate::cloudevent::declare_kind!(
    "io.presence-bridge.zapi.chat-presence.v1",
    "urn:presence-bridge:schema:presence-envelope:v1"
);

/// What [`encode`] writes as `data`; [`Data`] reads it back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    instance_id: &'a str,
    phone: &'a str,
    status: &'a str,
    #[serde(serialize_with = "display_opt")]
    last_seen: Option<Millis>,
    is_group: bool,
    phone_kind: &'static str,
    status_known: bool,
    /// Added in v1 (optional): when a typing status (COMPOSING, RECORDING)
    /// expires if nothing newer comes; absent for other statuses and when
    /// `presence.typing_ttl` is off.
    #[serde(
        serialize_with = "display_opt",
        skip_serializing_if = "Option::is_none"
    )]
    typing_expires_at: Option<Millis>,
}

/// Encodes `event` as a version 1 envelope.
pub fn encode(event: &PresenceEvent, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    encode_typing(event, id, time, None)
}

/// [`encode`], with when a typing status expires (`typingExpiresAt`, Unix
/// milliseconds) if nothing newer comes for the contact.
pub fn encode_typing(
    event: &PresenceEvent,
    id: Uuid,
    time: OffsetDateTime,
    typing_expires_ms: Option<i64>,
) -> Vec<u8> {
    let data = WireData {
        instance_id: event.instance_id.as_str(),
        phone: event.phone.as_str(),
        status: event.status.as_str(),
        last_seen: event.last_seen_ms.map(Millis),
        is_group: event.phone.is_group(),
        phone_kind: event.phone.kind().as_str(),
        status_known: event.status.is_known(),
        typing_expires_at: typing_expires_ms.map(Millis),
    };
    let source = Source(event.instance_id.as_str());
    CloudEvent::new::<Data>(id, source, time, Some(event.phone.as_str()), data).encode(512)
}

/// `/zapi/instances/<instanceId>`, written straight into the output.
struct Source<'a>(&'a str);

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/zapi/instances/{}", self.0)
    }
}

/// The presence event inside a version 1 envelope, as a consumer reads it.
/// Unknown fields are ignored; `status` may be a value this version does not
/// know (then `status_known` is false).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    pub instance_id: String,
    /// The normalized phone (also the record's key and `partitionkey`).
    pub phone: String,
    /// As the provider sent it, upper case (`AVAILABLE`, `COMPOSING`, ...).
    pub status: String,
    /// RFC 3339 UTC with three fractional digits; None when the provider sent none.
    pub last_seen: Option<String>,
    pub is_group: bool,
    /// `person`, `group`, `broadcast`, `newsletter` or `lid`.
    pub phone_kind: String,
    pub status_known: bool,
    /// For COMPOSING and RECORDING: when the typing state expires if nothing
    /// newer comes for the contact (RFC 3339 UTC, milliseconds); the bridge
    /// then writes a [`crate::expired`] event. None for other statuses, when
    /// `presence.typing_ttl` is off, and in records of older bridges.
    #[serde(default)]
    pub typing_expires_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DecodeError;
    use time::macros::datetime;
    use zapi::{Millis, PresenceEvent};

    fn roundtrip(body: &[u8]) {
        let event = PresenceEvent::from_json(body).unwrap();
        let id = Uuid::now_v7();
        let time = datetime!(2026-11-24 12:00:00.123456 UTC);
        let e = Envelope::decode(&encode(&event, id, time)).unwrap();
        assert_eq!(e.specversion, SPECVERSION);
        assert_eq!(e.id, id);
        assert_eq!(
            e.source,
            format!("/zapi/instances/{}", event.instance_id.as_str())
        );
        assert_eq!(e.kind, TYPE);
        assert_eq!(e.time, "2026-11-24T12:00:00.123Z");
        assert_eq!(e.datacontenttype, DATACONTENTTYPE);
        assert_eq!(e.dataschema, DATASCHEMA);
        assert_eq!(e.partitionkey.as_deref(), Some(event.phone.as_str()));
        let want = Data {
            instance_id: event.instance_id.as_str().to_owned(),
            phone: event.phone.as_str().to_owned(),
            status: event.status.as_str().to_owned(),
            last_seen: event.last_seen_ms.map(|ms| Millis(ms).to_string()),
            is_group: event.phone.is_group(),
            phone_kind: event.phone.kind().as_str().to_owned(),
            status_known: event.status.is_known(),
            typing_expires_at: None,
        };
        assert_eq!(e.data, want);
    }

    #[test]
    fn what_encode_writes_decodes_to_the_same_event() {
        roundtrip(br#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"instanceId":"i1"}"#);
        roundtrip(br#"{"type":"PresenceChatCallback","phone":"120363019502650977-group","status":"SOMETHING_NEW","lastSeen":1732449600123,"instanceId":"inst.2"}"#);
    }

    #[test]
    fn another_kind_is_named_not_misread() {
        let input = crate::rejected::RejectedInput {
            reason: "invalid_json",
            message: "bad",
            field: None,
            status: 400,
            path_instance: None,
            content_type: None,
            body: b"x",
        };
        let value = crate::rejected::encode(&input, 10, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
        match Envelope::decode(&value) {
            Err(DecodeError::WrongType { expected, found }) => {
                assert_eq!(expected, TYPE);
                assert_eq!(found, crate::rejected::TYPE);
            }
            other => panic!("expected WrongType, got {other:?}"),
        }
        assert!(matches!(Envelope::decode(b"{"), Err(DecodeError::Json(_))));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let event = PresenceEvent::from_json(br#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"AVAILABLE","instanceId":"i1"}"#).unwrap();
        let value = encode(&event, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
        let mut json: serde_json::Value = serde_json::from_slice(&value).unwrap();
        json["future"] = "x".into();
        json["data"]["future"] = 1.into();
        let e = Envelope::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(e.data.status, "AVAILABLE");
    }
}
