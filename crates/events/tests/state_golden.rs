//! Golden files of the records the bridge writes itself, from each of the
//! provider's presence examples (`golden/NAME.input.json`), arriving at a
//! fixed time with `presence.typing_ttl` = 15 s:
//! - `golden/state/NAME.expected.json`: the latest-presence record;
//! - `golden/expired/NAME.expected.json` (typing statuses only): the expiry
//!   event, and `golden/expired/NAME.state.json` the PAUSED state it leaves.
//!
//! Key and envelope, with the written record's id and time and the id of
//! the event it follows as the placeholders `<id>`, `<written>` and
//! `<event-id>`. Each validates against its published schema and decodes
//! back. `GOLDEN_BLESS=1` writes missing files (then fails: review them).

#[path = "support/golden.rs"]
mod golden;

use std::path::Path;

use events::{expired, state};
use serde_json::Value;
use time::macros::datetime;
use uuid::Uuid;
use zapi::PresenceEvent;

const TTL_MS: i64 = 15_000;

fn check(path: &Path, key: &str, value: &[u8], schema: &str, bless: bool) -> bool {
    let value: Value = serde_json::from_slice(value).unwrap();
    let schema: Value = serde_json::from_str(schema).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{}: violates its schema: {errors:?}",
        path.display()
    );
    let mut got = serde_json::json!({ "key": key, "value": value });
    got["value"]["id"] = "<id>".into();
    got["value"]["time"] = "<written>".into();
    for f in ["eventId", "causeId"] {
        if got["value"]["data"].get(f).is_some() {
            got["value"]["data"][f] = "<event-id>".into();
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let want: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(got, want, "golden mismatch: {}", path.display());
            false
        }
        Err(_) if bless => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(path, text).unwrap();
            true
        }
        Err(e) => panic!("{}: {e} (GOLDEN_BLESS=1 writes it)", path.display()),
    }
}

#[test]
fn presence_examples_give_their_state_and_expiry_records() {
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let dir = golden::dir();
    let arrival = datetime!(2026-11-24 12:00:00.123 UTC);
    let arrival_ms = 1_795_521_600_123;
    assert_eq!(
        arrival.unix_timestamp_nanos() / 1_000_000,
        i128::from(arrival_ms)
    );
    let (mut blessed, mut typing) = (Vec::new(), 0);
    for case in golden::cases() {
        let name = &case.name;
        let event = PresenceEvent::from_json(case.input.as_bytes()).unwrap();
        let is_typing = matches!(event.status.as_str(), "COMPOSING" | "RECORDING");
        let event_id = Uuid::now_v7();
        let key = state::key(event.instance_id.as_str(), event.phone.as_str());
        let s = state::State {
            instance_id: event.instance_id.as_str(),
            phone: &event.phone,
            status: event.status.as_str(),
            status_known: event.status.is_known(),
            since_ms: arrival_ms,
            last_seen_ms: event.last_seen_ms,
            typing_expires_ms: is_typing.then_some(arrival_ms + TTL_MS),
            reason: state::Reason::Reported,
            event_id,
        };
        let value = state::encode(&s, &key, Uuid::now_v7(), arrival);
        let decoded = state::Envelope::decode(&value).unwrap();
        assert_eq!(decoded.data.event_id, event_id, "{name}");
        assert_eq!(decoded.partitionkey.as_deref(), Some(key.as_str()));
        let path = dir.join(format!("state/{name}.expected.json"));
        if check(&path, &key, &value, events::schema::STATE_V1, bless) {
            blessed.push(path);
        }
        if !is_typing {
            continue;
        }
        typing += 1;
        let expired_at = arrival_ms + TTL_MS;
        let written = datetime!(2026-11-24 12:00:15.130 UTC);
        let e = expired::Expiry {
            instance_id: event.instance_id.as_str(),
            phone: &event.phone,
            previous_status: event.status.as_str(),
            typing_since_ms: arrival_ms,
            expired_at_ms: expired_at,
            cause_id: event_id,
        };
        let expiry_id = Uuid::now_v7();
        let value = expired::encode(&e, expiry_id, written);
        assert_eq!(
            expired::Envelope::decode(&value).unwrap().data.cause_id,
            event_id
        );
        let path = dir.join(format!("expired/{name}.expected.json"));
        if check(
            &path,
            event.phone.as_str(),
            &value,
            events::schema::EXPIRED_V1,
            bless,
        ) {
            blessed.push(path);
        }
        let paused = state::State {
            status: "PAUSED",
            status_known: true,
            since_ms: expired_at,
            typing_expires_ms: None,
            reason: state::Reason::TypingExpired,
            event_id: expiry_id,
            ..s
        };
        let value = state::encode(&paused, &key, Uuid::now_v7(), written);
        let path = dir.join(format!("expired/{name}.state.json"));
        if check(&path, &key, &value, events::schema::STATE_V1, bless) {
            blessed.push(path);
        }
    }
    // No file left from an input that is gone.
    for folder in golden::DERIVED_FOLDERS {
        for entry in std::fs::read_dir(dir.join(folder)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let stem = name.split('.').next().unwrap_or_default().to_owned();
            assert!(
                dir.join(format!("{stem}.input.json")).is_file(),
                "{folder}/{name}: no presence input {stem}.input.json"
            );
        }
    }
    assert!(
        typing >= 2,
        "the provider's COMPOSING and RECORDING examples"
    );
    assert!(
        blessed.is_empty(),
        "wrote {blessed:?}: review them, rerun without GOLDEN_BLESS"
    );
}
