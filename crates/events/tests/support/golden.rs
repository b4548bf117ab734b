//! The golden files (`crates/events/tests/golden/`): for each of the provider's
//! examples, the callback (`NAME.input.json`) and the exact record the bridge
//! writes for it (`NAME.expected.json`: key, headers, envelope, with the
//! arrival's id and time as placeholders).
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
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(dir()).expect("the golden folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".input.json") {
            let input = std::fs::read_to_string(&path).unwrap();
            let expected_path = dir().join(format!("{stem}.expected.json"));
            let expected_text = std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            cases.push(Case {
                name: stem.to_owned(),
                input,
                expected: serde_json::from_str(&expected_text).unwrap(),
                expected_text,
            });
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
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
/// the `ce_id` header and the envelope) and time replaced by placeholders.
pub fn masked(key: &str, headers: Value, value: &Value) -> Value {
    let mut got = serde_json::json!({ "key": key, "headers": headers, "value": value });
    got["headers"]["ce_id"] = "<id>".into();
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
