//! The golden files, without a bridge: each of the provider's examples,
//! parsed by `zapi` and wrapped by this crate as the publisher does, gives
//! exactly its golden record (key, headers, envelope, and the envelope's
//! attributes in the order of the file), which validates against the
//! published schema and decodes back to the same event. The root package's
//! `tests/envelope.rs` checks the same files end to end, through Kafka.

#[path = "support/golden.rs"]
mod golden;

use events::{OutboundRecord, CONTENT_TYPE, HEADER_CE_ID, HEADER_CE_TYPE, HEADER_CONTENT_TYPE};
use serde_json::{json, Value};
use time::macros::datetime;
use zapi::PresenceEvent;

#[test]
fn provider_examples_give_their_golden_records() {
    let schema: Value = serde_json::from_str(events::schema::PRESENCE_V1).unwrap();
    let schema = jsonschema::validator_for(&schema).expect("schema compiles");
    for case in golden::cases() {
        let name = &case.name;
        let event = PresenceEvent::from_json(case.input.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: the provider's example is rejected: {e}"));
        let id = events::new_event_id();
        let arrival = datetime!(2026-11-24 12:00:00.123456 UTC);
        let rec = OutboundRecord::new(&event, "whatsapp.presence.v1", id, arrival);

        let value: Value = serde_json::from_slice(&rec.value).unwrap();
        let errors: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: violates the schema: {errors:?}");
        assert_eq!(value["id"], id.to_string(), "{name}");
        assert_eq!(value["time"], "2026-11-24T12:00:00.123Z", "{name}");
        assert!(golden::is_rfc3339_millis_utc(
            value["time"].as_str().unwrap()
        ));

        // The headers the publisher sets, from this crate's names and values.
        let ce_type = events::ce_type_of(&rec.value).expect("an envelope of ours");
        let headers = json!({
            HEADER_CONTENT_TYPE: CONTENT_TYPE,
            HEADER_CE_ID: id.to_string(),
            HEADER_CE_TYPE: ce_type,
        });
        let got = golden::masked(&rec.key, headers, &value);
        assert_eq!(got, case.expected, "golden mismatch for {name}");
        assert_eq!(
            attribute_order(&String::from_utf8(rec.value.clone()).unwrap(), &value),
            attribute_order(&case.expected_text, &case.expected["value"]),
            "{name}: the envelope's attributes are not in the golden file's order"
        );

        // A consumer reads back what the golden file shows.
        let decoded = events::v1::Envelope::decode(&rec.value).unwrap();
        assert_eq!(decoded.id, id, "{name}");
        assert_eq!(
            json!(decoded.data.phone),
            case.expected["value"]["data"]["phone"]
        );
        assert_eq!(
            json!(decoded.data.status),
            case.expected["value"]["data"]["status"]
        );
    }
}

/// The envelope's top-level attributes in the order `text` writes them
/// (`value` says which there are; its `data` comes after them all).
fn attribute_order(text: &str, value: &Value) -> Vec<String> {
    // In a golden file the envelope is under "value", after key and headers.
    let start = text.find("\"value\"").map_or(0, |i| i + "\"value\"".len());
    let text = &text[start..];
    let mut keys: Vec<(usize, String)> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| {
            let at = text.find(&format!("\"{k}\"")).expect("attribute written");
            (at, k.clone())
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}
