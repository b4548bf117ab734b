//! Every callback kind through [`OutboundRecord::from_callback`]: the record
//! is keyed as the callback says, its envelope validates against its own
//! kind's schema and no other, decodes back to its kind, and carries the
//! provider's object unchanged as `data.payload`.

use events::{EventKind, OutboundRecord, Record};
use serde_json::Value;
use time::macros::datetime;
use zapi::{Callback, CallbackKind};

/// One body of each kind (the provider's documented examples, in their
/// valid form).
const BODIES: [&str; 6] = [
    r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"PAUSED","lastSeen":null,"instanceId":"instance.id"}"#,
    r#"{"isGroup":false,"instanceId":"A20DA9C0183A2D35A260F53F5D2B9244","messageId":"A20DA9C0183A2D35A260F53F5D2B9244","phone":"5544999999999","fromMe":false,"momment":1632228638000,"status":"RECEIVED","type":"ReceivedCallback","text":{"message":"test"}}"#,
    r#"{"phone":"554499999999","zaapId":"A20DA9C0183A2D35A260F53F5D2B9244","messageId":"A20DA9C0183A2D35A260F53F5D2B9244","type":"DeliveryCallback","instanceId":"instance.id"}"#,
    r#"{"status":"READ","ids":["999999999999999999999"],"momment":1632234645000,"phone":"5544999999999","type":"MessageStatusCallback","instanceId":"instance.id"}"#,
    r#"{"type":"ConnectedCallback","connected":true,"momment":26151515154,"instanceId":"instance.id","phone":"número"}"#,
    r#"{"momment":1580163342,"error":"Device has been disconnected","disconnected":true,"type":"DisconnectedCallback","instanceId":"instance.id"}"#,
];

fn validator(text: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::from_str(text).unwrap()).expect("schema compiles")
}

#[test]
fn every_kind_validates_against_its_own_schema_only() {
    let arrival = datetime!(2026-11-24 12:00:00.123456 UTC);
    for (body, kind) in BODIES.iter().zip(CallbackKind::ALL) {
        let cb = Callback::from_json(body.as_bytes()).unwrap();
        assert_eq!(cb.kind(), kind);
        let id = events::new_event_id();
        let rec = OutboundRecord::from_callback(&cb, "t", id, arrival);
        assert_eq!(rec.kind, EventKind::of_callback(kind));
        assert_eq!(rec.key, cb.key());
        assert_eq!(rec.status_label.is_some(), kind == CallbackKind::Presence);
        let value: Value = serde_json::from_slice(&rec.value).unwrap();
        assert_eq!(value["partitionkey"], rec.key.as_str(), "{kind:?}");
        assert_eq!(value["type"], rec.kind.ce_type());
        assert_eq!(EventKind::of_value(&rec.value), Some(rec.kind));
        for other in EventKind::ALL {
            let schema = validator(events::schema::of_kind(other));
            let errors: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
            if other == rec.kind {
                assert!(errors.is_empty(), "{kind:?}: {errors:?}");
            } else {
                assert!(!errors.is_empty(), "{kind:?} passes as {other:?}");
            }
        }
        if kind != CallbackKind::Presence {
            let sent: Value = serde_json::from_str(body).unwrap();
            assert_eq!(value["data"]["payload"], sent, "{kind:?}");
        }
        let decoded = events::decode(&rec.value).unwrap();
        let payload = match (&decoded, kind) {
            (Record::Presence(e), CallbackKind::Presence) => {
                assert_eq!(e.id, id);
                None
            }
            (Record::Received(e), CallbackKind::Received) => Some(&e.data.payload),
            (Record::Delivery(e), CallbackKind::Delivery) => Some(&e.data.payload),
            (Record::MessageStatus(e), CallbackKind::MessageStatus) => Some(&e.data.payload),
            (Record::Connected(e), CallbackKind::Connected) => Some(&e.data.payload),
            (Record::Disconnected(e), CallbackKind::Disconnected) => Some(&e.data.payload),
            (other, _) => panic!("{kind:?} decoded as {other:?}"),
        };
        if let Some(p) = payload {
            assert_eq!(p.get(), *body, "the payload is not the body as sent");
        }
    }
}

#[test]
fn a_presence_callback_is_written_as_by_the_presence_route() {
    let body = BODIES[0].as_bytes();
    let id = events::new_event_id();
    let time = datetime!(2026-11-24 12:00:00 UTC);
    let via_dispatch =
        OutboundRecord::from_callback(&Callback::from_json(body).unwrap(), "t", id, time);
    let event = zapi::PresenceEvent::from_json(body).unwrap();
    let direct = OutboundRecord::new(&event, "t", id, time);
    assert_eq!(via_dispatch.value, direct.value);
    assert_eq!(via_dispatch.key, direct.key);
    assert_eq!(via_dispatch.status_label, direct.status_label);
    assert_eq!(via_dispatch.kind, EventKind::Presence);
}

#[test]
fn every_kind_is_recognized_from_its_value_with_the_longest_instance_id() {
    let long = "i".repeat(zapi::MAX_INSTANCE_ID_LEN);
    for body in BODIES {
        let mut v: Value = serde_json::from_str(body).unwrap();
        v["instanceId"] = long.as_str().into();
        let cb = Callback::from_json(v.to_string().as_bytes()).unwrap();
        let rec = OutboundRecord::from_callback(
            &cb,
            "t",
            events::new_event_id(),
            datetime!(2026-11-24 12:00:00 UTC),
        );
        assert_eq!(
            EventKind::of_value(&rec.value),
            Some(rec.kind),
            "{:?}",
            cb.kind()
        );
    }
}
