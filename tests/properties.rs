//! Property tests of the pure parts: validation never panics, normalization is
//! idempotent, and every accepted event's envelope satisfies the schema and
//! carries the normalized fields.

mod common;

use presence_bridge::envelope::{new_event_id, OutboundRecord};
use presence_bridge::presence::PresenceEvent;
use proptest::prelude::*;
use serde_json::{json, Value};

fn phone() -> impl Strategy<Value = String> {
    prop_oneof![
        // A person's number with random formatting.
        (
            proptest::collection::vec(0u8..10, 6..18),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(d, plus, spaced)| {
                let digits: String = d.iter().map(|x| char::from(b'0' + x)).collect();
                let body = if spaced && digits.len() > 4 {
                    format!("({}) {}-{}", &digits[..2], &digits[2..4], &digits[4..])
                } else {
                    digits
                };
                if plus {
                    format!("+{body}")
                } else {
                    body
                }
            }),
        "[0-9]{5,30}(-[0-9]{5,20})?(-group|@g\\.us|-GROUP)",
        "[0-9]{3,32}@(broadcast|newsletter|lid|s\\.whatsapp\\.net|c\\.us)",
        ".{0,40}",
    ]
}

fn status() -> impl Strategy<Value = String> {
    prop_oneof![
        "(?i)(available|unavailable|composing|paused|recording)",
        "[A-Za-z_]{1,40}",
        ".{0,10}",
    ]
}

fn last_seen() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (0i64..4_000_000_000).prop_map(Value::from),
        (0i64..4_000_000_000_000).prop_map(Value::from),
        (-1_000_000i64..0).prop_map(Value::from),
        (0i64..253_402_300_799).prop_map(|s| {
            let t = time::OffsetDateTime::from_unix_timestamp(s).unwrap();
            Value::from(
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            )
        }),
        ".{0,30}".prop_map(Value::from),
    ]
}

fn callback() -> impl Strategy<Value = Value> {
    (phone(), status(), last_seen(), "[A-Za-z0-9._-]{0,130}").prop_map(
        |(phone, status, last_seen, instance)| {
            json!({"type": "PresenceChatCallback", "phone": phone, "status": status,
               "lastSeen": last_seen, "instanceId": instance})
        },
    )
}

/// The raw callback a normalized event would be if sent again.
fn as_callback(e: &PresenceEvent) -> Value {
    json!({"type": "PresenceChatCallback", "phone": e.phone.as_str(), "status": e.status.as_str(),
           "lastSeen": e.last_seen(), "instanceId": e.instance_id.as_str()})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_give_an_event_or_an_error(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_outcome(&body)?;
    }

    #[test]
    fn any_json_shaped_body_gives_an_event_or_an_error(v in callback(), junk in ".{0,20}") {
        let mut text = v.to_string();
        let mid = (0..=text.len() / 2).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(mid, &junk);
        check_outcome(text.as_bytes())?;
    }

    #[test]
    fn normalizing_twice_changes_nothing(v in callback()) {
        if let Ok(once) = PresenceEvent::from_json(v.to_string().as_bytes()) {
            let twice = PresenceEvent::from_json(as_callback(&once).to_string().as_bytes()).unwrap();
            prop_assert_eq!(once, twice);
        }
    }

    #[test]
    fn accepted_events_make_schema_valid_envelopes(v in callback()) {
        if let Ok(event) = PresenceEvent::from_json(v.to_string().as_bytes()) {
            let rec = OutboundRecord::new(&event, "t", new_event_id(), time::OffsetDateTime::now_utc());
            let value: Value = serde_json::from_slice(&rec.value).unwrap();
            common::assert_valid_envelope(&SCHEMA, &value);
            prop_assert_eq!(&value["data"]["phone"], event.phone.as_str());
            prop_assert_eq!(rec.key.as_str(), event.phone.as_str());
            prop_assert_eq!(&value["id"], &rec.id.to_string());
            prop_assert_eq!(&value["data"]["status"], event.status.as_str());
        }
    }
}

/// What any body must give: an event only for a JSON object of the callback
/// type, already normalized; otherwise an error whose code the API documents,
/// and `malformed_json` exactly when the body is not JSON at all.
fn check_outcome(body: &[u8]) -> Result<(), TestCaseError> {
    let json = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let parsed = serde_json::from_slice::<Value>(json).ok();
    match PresenceEvent::from_json(body) {
        Ok(event) => {
            let v = parsed.expect("an accepted body is JSON");
            prop_assert_eq!(&v["type"], "PresenceChatCallback");
            let again = PresenceEvent::from_json(as_callback(&event).to_string().as_bytes());
            prop_assert_eq!(again.ok(), Some(event), "an accepted event is normalized");
        }
        Err(e) => {
            prop_assert!(CODES.contains(&e.code()), "undocumented code {}", e.code());
            prop_assert!(!e.to_string().is_empty());
            if parsed.is_none() {
                prop_assert_eq!(e.code(), "malformed_json", "{}", e);
            }
            if let Some(v) = parsed.filter(Value::is_object) {
                if v["type"] != "PresenceChatCallback"
                    && v.get("type").is_some_and(Value::is_string)
                {
                    prop_assert_eq!(e.code(), "unsupported_type", "{}", e);
                }
            }
        }
    }
    Ok(())
}

/// Every code the handler can answer.
static CODES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    presence_bridge::ingress::reply::catalogue()
        .iter()
        .map(|r| r.code())
        .collect()
});

static SCHEMA: std::sync::LazyLock<jsonschema::Validator> =
    std::sync::LazyLock::new(common::envelope_schema);
