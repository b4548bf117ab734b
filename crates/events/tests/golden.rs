//! The golden files, without a bridge: each of the provider's examples,
//! parsed by `zapi` and wrapped by this crate as the publisher does, gives
//! exactly its golden record (key, headers, envelope, and the envelope's
//! attributes in the order of the file), which validates against the
//! published schema and decodes back to the same event. The root package's
//! `tests/envelope.rs` checks the same files end to end, through Kafka.

#[path = "support/golden.rs"]
mod golden;

use events::{
    EventKind, OutboundRecord, Record, CONTENT_TYPE, HEADER_CONTENT_TYPE, HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
};
use serde_json::{json, Value};
use time::macros::datetime;
use zapi::{Callback, CallbackKind, PresenceEvent};

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
            HEADER_EVENT_ID: id.to_string(),
            HEADER_EVENT_TYPE: ce_type,
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

/// Every callback kind's golden files (the presence ones too, through the
/// dispatching parser): each input parses, gives exactly its golden record,
/// validates against its kind's schema, decodes back as its kind, and
/// carries the input unchanged as `data.payload`.
///
/// `GOLDEN_BLESS=1` writes the expected files that are missing (then fails:
/// review them, pretty-print them, rerun without it).
#[test]
fn every_callbacks_examples_give_their_golden_records() {
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let mut blessed = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (folder, case) in golden::all_cases() {
        let name = format!("{folder}/{}", case.name);
        let cb = Callback::from_json(case.input.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: the provider's example is rejected: {e}"));
        assert_eq!(
            cb.kind().label(),
            folder,
            "{name}: in another kind's folder"
        );
        kinds.insert(cb.kind());
        let id = events::new_event_id();
        let arrival = datetime!(2026-11-24 12:00:00.123456 UTC);
        let rec = OutboundRecord::from_callback(&cb, "t", id, arrival);
        assert_eq!(rec.kind, EventKind::of_callback(cb.kind()), "{name}");
        assert_eq!(rec.key, cb.key(), "{name}");
        assert!(!rec.key.is_empty(), "{name}");

        let value: Value = serde_json::from_slice(&rec.value).unwrap();
        let schema: Value = serde_json::from_str(events::schema::of_kind(rec.kind)).unwrap();
        let schema = jsonschema::validator_for(&schema).expect("schema compiles");
        let errors: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: violates its schema: {errors:?}");
        assert_eq!(value["partitionkey"], rec.key.as_str(), "{name}");

        let ce_type = events::ce_type_of(&rec.value).expect("an envelope of ours");
        let headers = json!({
            HEADER_CONTENT_TYPE: CONTENT_TYPE,
            HEADER_EVENT_ID: id.to_string(),
            HEADER_EVENT_TYPE: ce_type,
        });
        let got = golden::masked(&rec.key, headers, &value);
        if bless && case.expected.is_null() {
            let text = String::from_utf8(rec.value.clone())
                .unwrap()
                .replacen(&id.to_string(), "<id>", 1)
                .replacen("2026-11-24T12:00:00.123Z", "<arrival>", 1);
            let file = format!(
                "{{\"key\":{},\"headers\":{},\"value\":{text}}}\n",
                json!(rec.key),
                json!({HEADER_EVENT_ID: "<id>", HEADER_EVENT_TYPE: ce_type, HEADER_CONTENT_TYPE: CONTENT_TYPE})
            );
            let path = golden::dir()
                .join(folder_path(folder))
                .join(format!("{}.expected.json", case.name));
            std::fs::write(&path, file).unwrap();
            blessed.push(name);
            continue;
        }
        assert_eq!(got, case.expected, "golden mismatch for {name}");
        // As in a golden file, under "value" (the payload may hold a "value" too).
        let written = format!(
            "{{\"value\":{}}}",
            String::from_utf8(rec.value.clone()).unwrap()
        );
        assert_eq!(
            attribute_order(&written, &value),
            attribute_order(&case.expected_text, &case.expected["value"]),
            "{name}: the envelope's attributes are not in the golden file's order"
        );

        let sent: Value = serde_json::from_str(&case.input).unwrap();
        let payload = match events::decode(&rec.value).unwrap() {
            Record::Presence(e) => {
                assert_eq!(json!(e.data.phone), value["data"]["phone"], "{name}");
                None
            }
            Record::Received(e) => Some(e.data.payload),
            Record::Delivery(e) => Some(e.data.payload),
            Record::MessageStatus(e) => Some(e.data.payload),
            Record::Connected(e) => Some(e.data.payload),
            Record::Disconnected(e) => Some(e.data.payload),
            other => panic!("{name}: decoded as {other:?}"),
        };
        if let Some(payload) = payload {
            assert_eq!(
                payload.get(),
                case.input.trim(),
                "{name}: payload not as sent"
            );
            assert_eq!(value["data"]["payload"], sent, "{name}");
        }
    }
    assert!(
        blessed.is_empty(),
        "wrote {blessed:?}: review them, then rerun without GOLDEN_BLESS"
    );
    assert_eq!(
        kinds.len(),
        CallbackKind::ALL.len(),
        "a kind without golden files"
    );
}

/// The folder of a kind's golden files, relative to the golden folder.
fn folder_path(folder: &str) -> &str {
    if folder == "presence" {
        ""
    } else {
        folder
    }
}

/// Every golden input has its expected record and every expected record
/// its input, in every folder.
#[test]
fn every_golden_input_has_its_expected_record_and_back() {
    let lonely = golden::unpaired();
    assert!(
        lonely.is_empty(),
        "golden files without their pair: {lonely:?}"
    );
}
