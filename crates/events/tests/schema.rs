//! The published schemas (`events::schema`) against what this crate writes:
//! every kind's envelopes validate against their own schema and not against
//! another kind's, so a consumer can tell them apart by validating.

use events::rejected::{self, RejectedInput};
use serde_json::Value;
use time::OffsetDateTime;
use zapi::PresenceEvent;

fn validator(text: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::from_str(text).unwrap()).expect("schema compiles")
}

fn errors(schema: &jsonschema::Validator, value: &[u8]) -> Vec<String> {
    let value: Value = serde_json::from_slice(value).unwrap();
    schema.iter_errors(&value).map(|e| e.to_string()).collect()
}

fn capture(body: &[u8], path_instance: Option<&'static str>, max_bytes: usize) -> Vec<u8> {
    let input = RejectedInput {
        reason: "invalid_status",
        message: "field `status` is not a status",
        field: Some("status"),
        status: 400,
        path_instance,
        content_type: Some("application/json"),
        body,
    };
    rejected::encode(
        &input,
        max_bytes,
        events::new_event_id(),
        OffsetDateTime::now_utc(),
    )
}

#[test]
fn captures_validate_against_the_rejected_schema_only() {
    let rejected = validator(events::schema::REJECTED_V1);
    let presence = validator(events::schema::PRESENCE_V1);
    let captures = [
        (
            "text",
            capture(br#"{"type":"PresenceChatCallback"}"#, Some("i1"), 1024),
        ),
        ("binary", capture(&[0xff, 0x00, 0xfe], None, 1024)),
        ("truncated", capture("aéé".as_bytes(), Some("i1"), 3)),
        ("empty", capture(b"", None, 1024)),
    ];
    for (name, value) in &captures {
        let e = errors(&rejected, value);
        assert!(e.is_empty(), "{name}: {e:?}");
        assert!(
            !errors(&presence, value).is_empty(),
            "{name} passes as a presence event"
        );
    }
}

#[test]
fn presence_events_validate_against_the_presence_schema_only() {
    let rejected = validator(events::schema::REJECTED_V1);
    let presence = validator(events::schema::PRESENCE_V1);
    for body in [
        r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","instanceId":"i1"}"#,
        r#"{"type":"PresenceChatCallback","phone":"120363019502650977-group","status":"SOMETHING_NEW","lastSeen":1732449600123,"instanceId":"inst.2"}"#,
    ] {
        let event = PresenceEvent::from_json(body.as_bytes()).unwrap();
        let value = events::v1::encode(&event, events::new_event_id(), OffsetDateTime::now_utc());
        let e = errors(&presence, &value);
        assert!(e.is_empty(), "{body}: {e:?}");
        assert!(
            !errors(&rejected, &value).is_empty(),
            "{body} passes as a capture"
        );
    }
}
