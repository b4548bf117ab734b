//! Rejection log lines name the route (its template) and the instance when
//! it is known, and never a token, a query string or the raw path.
//!
//! Its own test binary: it installs a global JSON subscriber that writes to a
//! buffer, then reads the lines the handler wrote.

mod common;

use common::*;
use hyper::{Method, StatusCode};
use serde_json::Value;

/// Everything logged by the process, as JSON lines.
fn logged() -> String {
    logs::global_json().text()
}

/// The one `request rejected` line with this reason and client-visible marker.
fn rejection_line(text: &str, reason: &str) -> Value {
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request rejected" && v["reason"] == reason)
        .collect();
    assert_eq!(lines.len(), 1, "want one {reason} line in:\n{text}");
    lines.into_iter().next().unwrap()
}

const WRONG_TOKEN: &str = "wrong-token-SECRET-4711";

#[tokio::test]
async fn rejections_log_route_template_and_instance_but_no_token() {
    let _ = logs::global_json();
    let b = Bridge::start().await;
    let json = ("content-type", "application/json");

    // 401 on the instance route: the path's instance is known, the token is not logged.
    let path = format!("/webhooks/zapi/instances/tenant-a/presence?token={WRONG_TOKEN}");
    let body = r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"AVAILABLE","instanceId":"tenant-a"}"#;
    let r = b.send(Method::POST, &path, &[json], body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // 400 on the plain route: the instance comes from the body that failed.
    let bad_phone = r#"{"type":"PresenceChatCallback","phone":"12","status":"AVAILABLE","instanceId":"tenant-b"}"#;
    let r = b.post_json(bad_phone).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_phone");

    // 404 with a token in the query and something secret-looking in the path.
    let r = b
        .send(
            Method::POST,
            &format!("/webhooks/{WRONG_TOKEN}/x?token={TOKEN}"),
            &[json],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let text = logged();
    let unauthorized = rejection_line(&text, "unauthorized");
    assert_eq!(
        unauthorized["route"], "/webhooks/zapi/instances/{instanceId}/presence",
        "{unauthorized}"
    );
    assert_eq!(unauthorized["instance_id"], "tenant-a", "{unauthorized}");

    let invalid = rejection_line(&text, "invalid_phone");
    assert_eq!(invalid["route"], "/webhooks/zapi/presence", "{invalid}");
    assert_eq!(invalid["instance_id"], "tenant-b", "{invalid}");

    let not_found = rejection_line(&text, "not_found");
    assert_eq!(not_found["route"], "other", "{not_found}");
    assert!(not_found.get("instance_id").is_none(), "{not_found}");

    for secret in [WRONG_TOKEN, TOKEN, "token=", "5544999999999"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
