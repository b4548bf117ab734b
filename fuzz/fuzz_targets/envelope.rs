//! Fuzz target: envelope encoding.
//!
//! Input: 10 bytes of UUID randomness, 6 bytes of arrival time, then a body.
//! Whenever the body is accepted, its v1 envelope must be valid JSON that
//! matches `deploy/schemas/presence-envelope.v1.schema.json` and carries
//! exactly the event's fields (key = data.phone = partitionkey).
#![no_main]

use std::sync::OnceLock;

use events::{v1, OutboundRecord};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use time::OffsetDateTime;
use zapi::PresenceEvent;

/// 9999-12-31T23:59:59.999Z in Unix milliseconds.
const MAX_MS: u64 = 253_402_300_799_999;

fn schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let text = include_str!("../../deploy/schemas/presence-envelope.v1.schema.json");
        let schema: Value = serde_json::from_str(text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, body) = data.split_at(16);
    let random: [u8; 10] = head[..10].try_into().unwrap();
    let mut ms_bytes = [0u8; 8];
    ms_bytes[..6].copy_from_slice(&head[10..16]);
    let ms = u64::from_le_bytes(ms_bytes) % (MAX_MS + 1);
    let Ok(event) = PresenceEvent::from_json(body) else {
        return;
    };
    let id = uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid();
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    let record = OutboundRecord::new(&event, "topic", id, time);
    let value: Value = serde_json::from_slice(&record.value).expect("envelope is JSON");
    if let Err(e) = schema().validate(&value) {
        panic!("envelope breaks its schema: {e}: {value}");
    }
    assert_eq!(record.key, event.phone.as_str());
    assert_eq!(record.id, id);
    assert_eq!(value["id"], id.hyphenated().to_string());
    assert_eq!(value["type"], v1::TYPE);
    assert_eq!(value["specversion"], v1::SPECVERSION);
    assert_eq!(
        value["source"],
        format!("/zapi/instances/{}", event.instance_id)
    );
    assert_eq!(value["partitionkey"], record.key.as_str());
    assert_eq!(value["time"], zapi::format_millis(time));
    let d = &value["data"];
    assert_eq!(d["phone"], record.key.as_str());
    assert_eq!(d["instanceId"], event.instance_id.as_str());
    assert_eq!(d["status"], event.status.as_str());
    assert_eq!(d["statusKnown"], event.status.is_known());
    assert_eq!(d["isGroup"], event.phone.is_group());
    assert_eq!(d["phoneKind"], event.phone.kind().as_str());
    match event.last_seen() {
        Some(ls) => assert_eq!(d["lastSeen"], ls.as_str()),
        None => assert!(d["lastSeen"].is_null()),
    }
});
