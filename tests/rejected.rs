//! Capture of rejected input (`rejected.topic`, opt-in): an authenticated
//! request whose body fails validation is still answered 400, and its raw
//! bytes and reason reach the configured topic through the spool; nothing
//! else is captured, and it never counts as an accepted event.

mod common;

use base64::Engine;
use common::{callback, read_all, read_topic, Bridge, TOKEN};
use hyper::{Method, StatusCode};
use presence_bridge::envelope::rejected;

const JSON: (&str, &str) = ("content-type", "application/json");

async fn bridge_capturing(max_bytes: &str) -> (Bridge, String) {
    let topic = format!("rejected-{}", uuid::Uuid::now_v7().simple());
    let bridge = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__REJECTED__TOPIC", topic.as_str()),
        ("PRESENCE_BRIDGE__REJECTED__MAX_BYTES", max_bytes),
    ])
    .await;
    bridge
        .cluster
        .create_topic(&topic, common::PARTITIONS, 1)
        .unwrap();
    (bridge, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_answered_400_and_captured_with_its_reason() {
    let (bridge, topic) = bridge_capturing("16KiB").await;
    let bad = r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"TYPING_SOMETHING_NEW","instanceId":"inst-1","lastSeen":"yesterday"}"#;
    let reply = bridge
        .send(
            Method::POST,
            &format!("/webhooks/zapi/instances/inst-1/presence?token={TOKEN}"),
            &[JSON],
            bad,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    let code = reply.body["error"].as_str().unwrap().to_owned();

    let got = read_topic(&bridge.cluster.bootstrap_servers(), &topic, 1).await;
    let rec = &got[0];
    assert_eq!(rec.key, "inst-1", "keyed by the path's instance");
    assert_eq!(rec.headers["event-type"], rejected::TYPE);
    assert_eq!(rec.headers["event-id"], rec.value["id"].as_str().unwrap());
    let data = &rec.value["data"];
    assert_eq!(
        data["reason"],
        code.as_str(),
        "the same code the client got"
    );
    assert_eq!(data["status"], 400);
    assert_eq!(data["body"], bad, "the raw bytes, unchanged");
    assert_eq!(data["size"], bad.len());
    assert_eq!(data["truncated"], false);
    assert_eq!(data["pathInstanceId"], "inst-1");
    assert_eq!(data["contentType"], "application/json");
    bridge
        .wait_for_value(
            r#"presence_bridge_rejected_input_captured_total{result="stored"}"#,
            1.0,
        )
        .await;
    let accepted: f64 = presence_bridge::metrics::STATUSES
        .iter()
        .map(|s| {
            bridge.metric(&format!(
                r#"presence_bridge_events_accepted_total{{status="{s}"}}"#
            ))
        })
        .sum();
    assert_eq!(
        accepted, 0.0,
        "a captured rejection is not an accepted event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_oversized_bodies_are_kept_capped() {
    let (bridge, topic) = bridge_capturing("64").await;
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let reply = bridge
        .send_bytes(
            Method::POST,
            &format!("/webhooks/zapi/presence?token={TOKEN}"),
            &[JSON],
            binary.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let long = format!("{{\"phone\": \"{}\"", "9".repeat(500));
    let reply = bridge.post_json(&long).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let got = read_topic(&bridge.cluster.bootstrap_servers(), &topic, 2).await;
    let mut by_size: Vec<_> = got.iter().map(|r| &r.value["data"]).collect();
    by_size.sort_by_key(|d| d["size"].as_u64());
    let (bin, text) = (by_size[0], by_size[1]);
    assert_eq!(bin["size"], 256);
    assert_eq!(bin["truncated"], true);
    let kept = base64::engine::general_purpose::STANDARD
        .decode(bin["bodyBase64"].as_str().expect("binary goes as base64"))
        .unwrap();
    assert_eq!(kept, binary[..64], "the first max_bytes bytes");
    assert_eq!(text["size"], long.len());
    assert_eq!(text["body"], &long[..64]);
    assert_eq!(text["pathInstanceId"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_authenticated_invalid_bodies_are_captured() {
    let (bridge, topic) = bridge_capturing("16KiB").await;
    // Not captured: no token, wrong media type, unknown route, wrong method.
    // Each body is distinct, so the capture shows which one it kept.
    let with_token = format!("/webhooks/zapi/presence?token={TOKEN}");
    let unknown = format!("/webhooks/zapi/nothing-here?token={TOKEN}");
    let refused = [
        (
            Method::POST,
            "/webhooks/zapi/presence",
            JSON,
            StatusCode::UNAUTHORIZED,
            "without a token",
        ),
        (
            Method::POST,
            &with_token,
            ("content-type", "text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "as text/plain",
        ),
        (
            Method::POST,
            &unknown,
            JSON,
            StatusCode::NOT_FOUND,
            "to an unknown route",
        ),
        (
            Method::PUT,
            &with_token,
            JSON,
            StatusCode::METHOD_NOT_ALLOWED,
            "with PUT",
        ),
    ];
    for (method, path, content_type, status, sent) in refused {
        let body = format!(r#"{{"sent":"{sent}"}}"#);
        let reply = bridge.send(method, path, &[content_type], &body).await;
        assert_eq!(reply.status, status, "{sent}");
    }
    // Captured: one invalid body. Accepted normally: one valid event.
    let invalid = r#"{"sent":"authenticated but invalid"}"#;
    assert_eq!(
        bridge.post_json(invalid).await.status,
        StatusCode::BAD_REQUEST
    );
    let ok = bridge
        .post_json(&callback("5544999999999", "COMPOSING"))
        .await;
    assert_eq!(ok.status, StatusCode::OK);

    bridge
        .wait_for_value(
            r#"presence_bridge_rejected_input_captured_total{result="stored"}"#,
            1.0,
        )
        .await;
    bridge
        .wait_for_value("presence_bridge_spool_events", 0.0)
        .await;
    let events = bridge.read_all().await;
    assert_eq!(events.len(), 1, "only the valid event is an event");
    assert_eq!(events[0].value["id"], ok.id().as_str());
    let got = read_all(&bridge.cluster.bootstrap_servers(), &topic).await;
    let bodies: Vec<&serde_json::Value> = got.iter().map(|r| &r.value["data"]["body"]).collect();
    assert_eq!(bodies, [invalid], "only the authenticated invalid body");
    assert_eq!(
        bridge.metric(r#"presence_bridge_rejected_input_captured_total{result="dropped"}"#),
        0.0
    );
}

#[test]
fn the_topic_must_be_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let env = |topic: &str| {
        vec![
            (
                "PRESENCE_BRIDGE__KAFKA__TOPIC".to_owned(),
                "events".to_owned(),
            ),
            (
                "PRESENCE_BRIDGE__SPOOL__DIR".to_owned(),
                dir.path().display().to_string(),
            ),
            (
                "PRESENCE_BRIDGE__REJECTED__TOPIC".to_owned(),
                topic.to_owned(),
            ),
        ]
    };
    let err = presence_bridge::config::load(None, env("events")).unwrap_err();
    assert!(err.to_string().starts_with("rejected.topic:"), "{err}");
    let err = presence_bridge::config::load(None, env("bad topic!")).unwrap_err();
    assert!(err.to_string().starts_with("rejected.topic:"), "{err}");
    let ok = presence_bridge::config::load(None, env("events.rejected")).unwrap();
    assert_eq!(ok.rejected.topic.as_deref(), Some("events.rejected"));
    assert_eq!(ok.rejected.max_bytes, 16 * 1024, "the default cap");
}

/// A capture still in the spool when `rejected.topic` is turned off (or
/// changed) before a restart is sent with its own type, not the presence
/// type the new configuration would guess from its topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_capture_keeps_its_type_after_the_setting_changes() {
    let site = common::Restarts::new();
    let capture_topic = format!("rejected-{}", uuid::Uuid::now_v7().simple());
    site.cluster
        .create_topic(&capture_topic, common::PARTITIONS, 1)
        .unwrap();
    // First life: capture on, the broker down, so the capture stays spooled.
    site.cluster.broker_down(1).unwrap();
    let b = site
        .start(&[
            ("PRESENCE_BRIDGE__REJECTED__TOPIC", capture_topic.as_str()),
            ("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "1s"),
        ])
        .await;
    let bad = r#"{"type":"PresenceChatCallback","phone":"not a phone","status":"PAUSED","instanceId":"inst-1"}"#;
    let reply = b
        .send(
            Method::POST,
            &format!("/webhooks/zapi/presence?token={TOKEN}"),
            &[JSON],
            bad,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    let report = b.stop().await;
    assert_eq!(
        report.events_left_in_spool, 1,
        "the capture waits in the spool"
    );

    // Second life: capture off; the spooled capture is still delivered.
    site.cluster.broker_up(1).unwrap();
    let b = site.start(&[]).await;
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    let got = common::read_all(&site.cluster.bootstrap_servers(), &capture_topic).await;
    assert_eq!(got.len(), 1, "one capture, delivered once");
    assert_eq!(got[0].headers["event-type"], rejected::TYPE);
    assert_eq!(got[0].value["type"], rejected::TYPE);
    assert_eq!(got[0].value["data"]["body"], bad);
}

/// Capture works the same on the any-type routes, for every kind: an
/// invalid received message and a message posted to a presence route are
/// captured with their reason and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_callbacks_of_other_kinds_are_captured_too() {
    let (bridge, topic) = bridge_capturing("16KiB").await;
    let no_phone = r#"{"type":"ReceivedCallback","instanceId":"inst-2","momment":1632228638000,"text":{"message":"hi"}}"#;
    let to_presence = r#"{"type":"DeliveryCallback","instanceId":"inst-2","phone":"5544999999999","messageId":"M1"}"#;
    for (path, body, code) in [
        ("/webhooks/zapi/instances/inst-2", no_phone, "missing_field"),
        ("/webhooks/zapi/presence", to_presence, "unsupported_type"),
    ] {
        let reply = bridge
            .send(
                Method::POST,
                &format!("{path}?token={TOKEN}"),
                &[JSON],
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
        assert_eq!(reply.body["error"], code, "{:?}", reply.body);
    }
    let got = read_topic(&bridge.cluster.bootstrap_servers(), &topic, 2).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            assert_eq!(r.headers["event-type"], rejected::TYPE);
            (
                r.value["data"]["reason"].as_str().unwrap().to_owned(),
                r.value["data"]["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("missing_field".to_owned(), no_phone.to_owned()),
            ("unsupported_type".to_owned(), to_presence.to_owned()),
        ]
    );
}
