//! Bodies a new integrator gets wrong, through a real bridge: each gets an
//! answer that says what is wrong and what is accepted, under a code from the
//! closed set of rejection reasons. A UTF-8 byte-order mark is ignored.

mod common;

use common::*;
use hyper::{Method, StatusCode};
use presence_bridge::metrics::EVENT_REJECT_REASONS;

const PRESENCE: &str = "/webhooks/zapi/presence";

fn body_with(field: &str, raw_json_value: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&callback("5544999999999", "AVAILABLE")).expect("callback() is JSON");
    v[field] = serde_json::from_str(raw_json_value).expect("a JSON value");
    v.to_string()
}

async fn post_bytes(b: &Bridge, body: Vec<u8>) -> Reply {
    b.send_bytes(
        Method::POST,
        &format!("{PRESENCE}?token={TOKEN}"),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// Posts `body`, expects a 400 with `code` and `field`, returns the message.
async fn rejected_message(b: &Bridge, body: &[u8], code: &str, field: Option<&str>) -> String {
    let r = post_bytes(b, body.to_vec()).await;
    let shown = String::from_utf8_lossy(body);
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{shown}: {:?}", r.body);
    assert_eq!(r.body["error"], code, "{shown}: {:?}", r.body);
    assert_eq!(r.body["field"].as_str(), field, "{shown}: {:?}", r.body);
    assert!(
        EVENT_REJECT_REASONS.contains(&code),
        "{code} is not in the closed set of reasons"
    );
    r.body["message"].as_str().expect("a message").to_owned()
}

#[tokio::test]
async fn a_byte_order_mark_is_ignored() {
    let b = Bridge::start().await;
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(callback("5544999999999", "AVAILABLE").as_bytes());
    let r = post_bytes(&b, body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let records = b.read(1).await;
    assert_eq!(records[0].value["id"], r.id().as_str());

    // A mark alone is an empty body, not an accepted one.
    let msg = rejected_message(&b, b"\xEF\xBB\xBF", "malformed_json", None).await;
    assert!(msg.contains("body is empty"), "{msg}");
}

#[tokio::test]
async fn an_empty_body_is_called_empty() {
    let b = Bridge::start().await;
    for body in [&b""[..], b"   \r\n\t"] {
        let msg = rejected_message(&b, body, "malformed_json", None).await;
        assert!(msg.starts_with("body is empty"), "{msg}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_an_object_says_what_it_is() {
    let b = Bridge::start().await;
    for (body, what) in [
        ("[1,2]", "got an array"),
        ("\"text\"", "got a string"),
        ("42", "got a number"),
        ("null", "got null"),
        ("true", "got a boolean"),
    ] {
        let msg = rejected_message(&b, body.as_bytes(), "malformed_json", None).await;
        assert!(msg.contains("must be a JSON object"), "{body}: {msg}");
        assert!(msg.contains(what), "{body}: {msg}");
    }
    // Not JSON at all: where it breaks, not a guess at its type.
    let msg = rejected_message(&b, b"hello", "malformed_json", None).await;
    assert!(msg.contains("not valid JSON"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
}

#[tokio::test]
async fn a_null_required_field_is_a_wrong_type_not_a_missing_one() {
    let b = Bridge::start().await;
    for field in ["type", "instanceId", "phone", "status"] {
        let msg = rejected_message(
            &b,
            body_with(field, "null").as_bytes(),
            "wrong_type",
            Some(field),
        )
        .await;
        assert_eq!(
            msg,
            format!("field `{field}` must be a string, got null"),
            "{field}"
        );
    }
    // Other types name themselves too.
    for (value, got) in [
        ("5544999999999", "a number"),
        ("true", "a boolean"),
        ("[]", "an array"),
        ("{}", "an object"),
    ] {
        let msg = rejected_message(
            &b,
            body_with("phone", value).as_bytes(),
            "wrong_type",
            Some("phone"),
        )
        .await;
        assert_eq!(msg, format!("field `phone` must be a string, got {got}"));
    }
    // Absent stays `is required`; present but blank says so.
    let mut v: serde_json::Value =
        serde_json::from_str(&callback("5544999999999", "AVAILABLE")).unwrap();
    v.as_object_mut().unwrap().remove("status");
    let msg = rejected_message(
        &b,
        v.to_string().as_bytes(),
        "missing_field",
        Some("status"),
    )
    .await;
    assert_eq!(msg, "field `status` is required");
    let msg = rejected_message(
        &b,
        body_with("status", "\"  \"").as_bytes(),
        "missing_field",
        Some("status"),
    )
    .await;
    assert_eq!(msg, "field `status` is empty; it is required");
}

#[tokio::test]
async fn an_out_of_range_last_seen_names_the_range() {
    let b = Bridge::start().await;
    for value in [
        "1e20",
        "-1",
        "-1700000000",
        "9223372036854775807",
        "99999999999999999999",
        "253402300800000",
        "\"1969-12-31T23:59:59Z\"",
    ] {
        let msg = rejected_message(
            &b,
            body_with("lastSeen", value).as_bytes(),
            "invalid_last_seen",
            Some("lastSeen"),
        )
        .await;
        assert!(
            msg.starts_with("field `lastSeen` is out of range"),
            "{value}: {msg}"
        );
        assert!(msg.contains("1970-01-01T00:00:00Z"), "{value}: {msg}");
        assert!(msg.contains("9999-12-31T23:59:59.999Z"), "{value}: {msg}");
    }
    // The edges are accepted.
    for value in ["0", "253402300799999", "99999999999"] {
        let r = post_bytes(&b, body_with("lastSeen", value).into_bytes()).await;
        assert_eq!(r.status, StatusCode::OK, "{value}: {:?}", r.body);
    }
    // Malformed, not out of range, keeps its own message.
    let msg = rejected_message(
        &b,
        body_with("lastSeen", "1.5").as_bytes(),
        "invalid_last_seen",
        Some("lastSeen"),
    )
    .await;
    assert!(msg.contains("must be null, an integer"), "{msg}");
}
