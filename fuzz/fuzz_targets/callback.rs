//! Fuzz target: the dispatching parser of every callback kind.
//!
//! Any bytes go into `Callback::from_json`. It must never panic; every error
//! must carry a documented code and field and map to a 400 event reason of
//! the handler. Every accepted callback must have a non-empty key, and its
//! envelope (`OutboundRecord::from_callback`) must be JSON that validates
//! against its kind's schema, with `partitionkey` = the key and, for every
//! kind but presence, `data.payload` = the body as sent.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

#[path = "rejection.rs"]
mod rejection;

use events::{schema, EventKind, OutboundRecord};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use time::OffsetDateTime;
use zapi::Callback;

/// Every field a callback error may name.
const FIELDS: [&str; 15] = [
    "type",
    "phone",
    "status",
    "lastSeen",
    "instanceId",
    "momment",
    "moment",
    "ids",
    "id",
    "fromMe",
    "messageId",
    "zaapId",
    "notification",
    "connected",
    "disconnected",
];

fn schemas() -> &'static HashMap<&'static str, jsonschema::Validator> {
    static V: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| {
        EventKind::ALL
            .into_iter()
            .map(|k| {
                let s: Value = serde_json::from_str(schema::of_kind(k)).expect("schema is JSON");
                (
                    k.ce_type(),
                    jsonschema::validator_for(&s).expect("schema compiles"),
                )
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    match Callback::from_json(data) {
        Ok(cb) => {
            assert!(!cb.key().is_empty());
            let rec = OutboundRecord::from_callback(
                &cb,
                "topic",
                uuid::Uuid::now_v7(),
                OffsetDateTime::UNIX_EPOCH,
            );
            let value: Value = serde_json::from_slice(&rec.value).expect("envelope is JSON");
            if let Err(e) = schemas()[rec.kind.ce_type()].validate(&value) {
                panic!("envelope breaks its schema: {e}: {value}");
            }
            assert_eq!(value["partitionkey"].as_str(), Some(cb.key()));
            if let Some(payload) = cb.payload() {
                let sent: Value = serde_json::from_str(payload.get()).expect("payload is JSON");
                assert_eq!(value["data"]["payload"], sent);
            }
        }
        Err(err) => rejection::check(err, &FIELDS),
    }
});
