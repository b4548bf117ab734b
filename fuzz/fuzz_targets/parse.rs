//! Fuzz target: the payload parser and normalization.
//!
//! Any bytes go into `PresenceEvent::from_json`. It must never panic, every
//! error must carry a documented code and field and map to a 400, and every
//! accepted event must be a fixed point: its normalized values, sent again,
//! give the same event. A masked phone never shows the full phone.
#![no_main]

#[path = "rejection.rs"]
mod rejection;

use libfuzzer_sys::fuzz_target;
use zapi::{InstanceId, Phone, PresenceEvent, PresenceStatus, CALLBACK_TYPE, MAX_INSTANCE_ID_LEN};

const FIELDS: [&str; 5] = ["type", "phone", "status", "lastSeen", "instanceId"];

fuzz_target!(|data: &[u8]| {
    match PresenceEvent::from_json(data) {
        Ok(event) => check_event(&event),
        Err(err) => rejection::check(err, &FIELDS),
    }
    // The field parsers on their own, on any text.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(phone) = Phone::parse(text) {
            check_phone(&phone);
        }
        if let Ok(status) = PresenceStatus::parse(text) {
            assert_eq!(PresenceStatus::parse(status.as_str()), Ok(status.clone()));
        }
        if let Ok(id) = InstanceId::parse(text) {
            assert_eq!(id.as_str(), text);
        }
    }
});

fn check_event(event: &PresenceEvent) {
    check_phone(&event.phone);
    let id = event.instance_id.as_str();
    assert!((1..=MAX_INSTANCE_ID_LEN).contains(&id.len()));
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')));
    let status = event.status.as_str();
    assert!(!status.is_empty() && status.len() <= 32);
    assert_eq!(status, status.to_ascii_uppercase());
    assert_eq!(event.status.is_known(), event.status.label() != "OTHER");
    let last_seen = event.last_seen();
    if let Some(ls) = &last_seen {
        assert_eq!(ls.len(), 24, "{ls}");
        assert!(ls.ends_with('Z'), "{ls}");
    }
    // Normalizing twice changes nothing.
    let again = serde_json::json!({
        "type": CALLBACK_TYPE,
        "phone": event.phone.as_str(),
        "status": status,
        "lastSeen": last_seen,
        "instanceId": id,
    });
    let reparsed = PresenceEvent::from_json(again.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("normalized event rejected: {e} ({again})"));
    assert_eq!(&reparsed, event);
}

fn check_phone(phone: &Phone) {
    let full = phone.as_str();
    assert_eq!(Phone::parse(full).as_ref(), Ok(phone), "not a fixed point");
    let masked = phone.masked().to_string();
    assert_eq!(masked.chars().count(), full.chars().count());
    assert!(!masked.contains(full), "masked phone shows the phone");
    assert!(
        masked.chars().filter(|c| *c != '*').count() <= 4,
        "{masked}"
    );
}
