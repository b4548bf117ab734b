//! The golden files (`crates/events/tests/golden/`): for each of the provider's
//! examples, the callback (`NAME.input.json`) and the exact record the bridge
//! writes for it (`NAME.expected.json`: key, headers, envelope, with the
//! arrival's id and time as placeholders). Presence examples at the top
//! level ([`cases`]); the other callbacks in one folder per kind, named by
//! its metric label (`received/`, `delivery/`, `message_status/`,
//! `connected/`, `disconnected/`; [`all_cases`] reads them all).
//!
//! One loader for every test that reads them: the events crate's own
//! (`tests/golden.rs`) and the root package's end-to-end ones, which include
//! this file by path.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One golden example.
pub struct Case {
    /// The file stem (`composing`, `group-millis`, ...).
    pub name: String,
    /// The callback as the provider sends it.
    pub input: String,
    /// The record it must give, with placeholders (see [`masked`]).
    pub expected: Value,
    /// The text of `NAME.expected.json`, for checks of attribute order.
    pub expected_text: String,
}

/// The golden folder, from whichever package's tests include this file.
pub fn dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let events = if here.ends_with("crates/events") {
        here.to_path_buf()
    } else {
        here.join("crates/events")
    };
    events.join("tests/golden")
}

/// Every case, by name; checks that the provider's five documented
/// examples are among them, so a lost file fails instead of shrinking the test.
pub fn cases() -> Vec<Case> {
    let cases = read_cases(&dir());
    assert!(cases.len() >= 7, "golden files missing: {}", cases.len());
    for status in [
        "unavailable",
        "available",
        "composing",
        "paused",
        "recording",
    ] {
        assert!(
            cases.iter().any(|c| c.name == status),
            "no golden file for the provider's {status} example"
        );
    }
    cases
}

/// A delivered record as the golden files write it: the arrival's id (in
/// the `event-id` header and the envelope) and time replaced by placeholders.
pub fn masked(key: &str, headers: Value, value: &Value) -> Value {
    let mut got = serde_json::json!({ "key": key, "headers": headers, "value": value });
    got["headers"]["event-id"] = "<id>".into();
    got["value"]["id"] = "<id>".into();
    got["value"]["time"] = "<arrival>".into();
    got
}

/// True when `s` is an RFC 3339 UTC time with milliseconds, as the
/// envelope's `time` is written.
pub fn is_rfc3339_millis_utc(s: &str) -> bool {
    s.len() == 24
        && s.ends_with('Z')
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// The folders of the other callbacks' golden files: each kind's metric label.
pub const CALLBACK_FOLDERS: [&str; 5] = [
    "received",
    "delivery",
    "message_status",
    "connected",
    "disconnected",
];

/// The folders of the records the bridge writes itself from a presence
/// example (`tests/state_golden.rs`): named by the top-level input they
/// come from, no inputs of their own.
pub const DERIVED_FOLDERS: [&str; 2] = ["state", "expired"];

/// The provider's documented examples that must be there, by folder, so a
/// lost file fails instead of shrinking the tests.
const DOCUMENTED: [(&str, &[&str]); 5] = [
    (
        "received",
        &[
            "text",
            "image",
            "call-voice",
            "audio",
            "video",
            "document",
            "location",
            "contact",
            "sticker",
            "reaction",
            "buttons-response",
            "list-response",
            "hydrated-template",
            "poll",
            "poll-vote",
            "pin-message",
            "event-response",
            "status-image",
        ],
    ),
    ("delivery", &["delivery"]),
    (
        "message_status",
        &[
            "sent",
            "received",
            "read",
            "read-by-me",
            "played",
            "sent-pt",
        ],
    ),
    ("connected", &["connected"]),
    ("disconnected", &["disconnected"]),
];

/// Every case of every kind, with its folder's label: the presence
/// examples ([`cases`]) as `presence`, then each of [`CALLBACK_FOLDERS`].
pub fn all_cases() -> Vec<(&'static str, Case)> {
    let mut all: Vec<(&'static str, Case)> = cases().into_iter().map(|c| ("presence", c)).collect();
    for (folder, documented) in DOCUMENTED {
        let cases = read_cases(&dir().join(folder));
        for name in documented {
            assert!(
                cases.iter().any(|c| c.name == *name),
                "no golden file for the provider's {folder}/{name} example"
            );
        }
        all.extend(cases.into_iter().map(|c| (folder, c)));
    }
    all
}

/// The golden files of `folder` (not its subfolders), sorted by name.
fn read_cases(folder: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(folder).expect("the golden folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".input.json") {
            let input = std::fs::read_to_string(&path).unwrap();
            let expected_path = folder.join(format!("{stem}.expected.json"));
            // A missing expected file reads as `null`: it fails the comparison
            // (and [`unpaired`] names it), and `GOLDEN_BLESS=1` can write it.
            let expected_text = std::fs::read_to_string(&expected_path).unwrap_or_default();
            let expected = if expected_text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&expected_text)
                    .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()))
            };
            cases.push(Case {
                name: stem.to_owned(),
                input,
                expected,
                expected_text,
            });
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// Files of the golden folders that are not half of an input/expected pair
/// (an input without its expected record, an expected record without its
/// input, or a file that is neither), as paths relative to [`dir`].
pub fn unpaired() -> Vec<String> {
    let mut lonely = Vec::new();
    let folders = std::iter::once(String::new()).chain(CALLBACK_FOLDERS.map(String::from));
    for folder in folders {
        let here = dir().join(&folder);
        for entry in std::fs::read_dir(&here).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let rel = if folder.is_empty() {
                name.clone()
            } else {
                format!("{folder}/{name}")
            };
            if path.is_dir() {
                let known = CALLBACK_FOLDERS.contains(&name.as_str())
                    || DERIVED_FOLDERS.contains(&name.as_str());
                if !(folder.is_empty() && known) {
                    lonely.push(rel);
                }
                continue;
            }
            let other = if let Some(stem) = name.strip_suffix(".input.json") {
                format!("{stem}.expected.json")
            } else if let Some(stem) = name.strip_suffix(".expected.json") {
                format!("{stem}.input.json")
            } else if name == "README.md" && folder.is_empty() {
                continue;
            } else {
                lonely.push(rel);
                continue;
            };
            if !here.join(other).is_file() {
                lonely.push(rel);
            }
        }
    }
    lonely.sort();
    lonely
}
