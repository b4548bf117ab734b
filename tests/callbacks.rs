//! Every Z-API callback kind through a real bridge (MockCluster): posted to
//! the any-type routes, each lands on its own topic with its key, its
//! CloudEvents type and an envelope valid against its kind's schema; one
//! chat's events keep their order; the presence routes refuse other kinds
//! precisely; per-kind body limits hold (a 65,536-character text fits, a
//! delivery callback of presence size is the most).

mod common;

use std::path::PathBuf;

use common::*;
use hyper::{Method, StatusCode};
use presence_bridge::envelope::{schema, EventKind};
use serde_json::Value;

/// A documented example of the provider, as the golden files keep it.
fn golden(kind: &str, name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/events/tests/golden")
        .join(kind)
        .join(format!("{name}.input.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A bridge whose five streams each have a topic of their own, created.
async fn bridge() -> (Bridge, [(EventKind, String); 5]) {
    let names = [
        (EventKind::Received, unique_topic()),
        (EventKind::Delivery, unique_topic()),
        (EventKind::MessageStatus, unique_topic()),
        (EventKind::Connected, unique_topic()),
        (EventKind::Presence, String::new()),
    ];
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__KAFKA__RECEIVED__TOPIC", &names[0].1),
        ("PRESENCE_BRIDGE__KAFKA__DELIVERY__TOPIC", &names[1].1),
        ("PRESENCE_BRIDGE__KAFKA__MESSAGE_STATUS__TOPIC", &names[2].1),
        ("PRESENCE_BRIDGE__KAFKA__CONNECTION__TOPIC", &names[3].1),
    ])
    .await;
    for (_, t) in &names[..4] {
        b.cluster.create_topic(t, PARTITIONS, 1).unwrap();
    }
    let mut names = names;
    names[4].1 = b.topic.clone();
    (b, names)
}

async fn post(b: &Bridge, path: &str, body: &str) -> Reply {
    b.send(
        Method::POST,
        &format!("{path}?token={TOKEN}"),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

fn validator(kind: EventKind) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(schema::of_kind(kind)).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_reaches_its_topic_with_its_key_type_and_schema() {
    let (b, topics) = bridge().await;
    let cases = [
        ("received", "text", EventKind::Received, 0, "5544999999999"),
        (
            "delivery",
            "delivery",
            EventKind::Delivery,
            1,
            "554499999999",
        ),
        (
            "message_status",
            "read",
            EventKind::MessageStatus,
            2,
            "5544999999999",
        ),
        (
            "connected",
            "connected",
            EventKind::Connected,
            3,
            "instance.id",
        ),
        (
            "disconnected",
            "disconnected",
            EventKind::Disconnected,
            3,
            "instance.id",
        ),
    ];
    for (dir, name, _, _, _) in &cases {
        let body = golden(dir, name);
        let instance: Value = serde_json::from_str(&body).unwrap();
        let instance = instance["instanceId"].as_str().unwrap().to_owned();
        for path in [
            "/webhooks/zapi".to_owned(),
            format!("/webhooks/zapi/instances/{instance}"),
        ] {
            let r = post(&b, &path, &body).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{dir}/{name} to {path}: {:?}",
                r.body
            );
        }
    }
    let brokers = b.cluster.bootstrap_servers();
    for (dir, name, kind, topic, key) in cases {
        // Two of each kind; connected and disconnected share a topic.
        let on_topic = cases.iter().filter(|c| c.3 == topic).count();
        let topic = &topics[topic].1;
        let got = read_topic(&brokers, topic, 2 * on_topic).await;
        let mine: Vec<_> = got
            .iter()
            .filter(|r| r.headers["event-type"] == kind.ce_type())
            .collect();
        assert_eq!(mine.len(), 2, "{dir}/{name}: {got:?}");
        let valid = validator(kind);
        for r in mine {
            assert_eq!(r.key, key, "{dir}/{name}");
            assert_eq!(r.value["type"], kind.ce_type());
            assert_eq!(r.value["partitionkey"], r.key.as_str(), "{dir}/{name}");
            assert_valid_envelope(&valid, &r.value);
        }
    }
    assert_eq!(
        b.metric("presence_bridge_callbacks_accepted_total{kind=\"disconnected\"}"),
        2.0
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chat_keeps_its_order_across_kinds_on_one_topic_and_presence_routes_refuse_others() {
    let (b, topics) = bridge().await;
    // Twenty messages of one chat, mixed with other chats' messages.
    for n in 0..20 {
        for phone in ["5544911110001", "5544922220002"] {
            let body = golden("received", "text")
                .replace("5544999999999", phone)
                .replace(
                    r#""messageId": "A20DA9C0183A2D35A260F53F5D2B9244""#,
                    &format!(r#""messageId": "M{n:03}""#),
                );
            let r = post(&b, "/webhooks/zapi", &body).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        }
    }
    let got = read_topic(&b.cluster.bootstrap_servers(), &topics[0].1, 40).await;
    let ids: Vec<&str> = got
        .iter()
        .filter(|r| r.key == "5544911110001")
        .map(|r| r.value["data"]["messageId"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..20).map(|n| format!("M{n:03}")).collect();
    assert_eq!(ids, want, "one chat's order");

    // A message to a presence route: a precise 400 naming `type`.
    for path in [
        "/webhooks/zapi/presence",
        "/webhooks/zapi/instances/instance.id/presence",
    ] {
        let r = post(&b, path, &golden("received", "text")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.body["error"], "unsupported_type");
        assert_eq!(r.body["field"], "type");
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("ReceivedCallback"),
            "{:?}",
            r.body
        );
    }
    // A presence callback goes through the any-type route as through its own.
    let r = post(
        &b,
        "/webhooks/zapi",
        &callback("5544933330003", "COMPOSING"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let presence = b.read(1).await;
    assert_eq!(presence[0].key, "5544933330003");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longest_text_fits_and_other_kinds_keep_the_presence_size_limit() {
    let (b, topics) = bridge().await;
    // 65,536 characters, each an astral emoji escaped as a surrogate pair
    // (12 bytes): the largest a text message can be on the wire.
    let text = "\\ud83d\\ude00".repeat(65_536);
    let mut body: Value = serde_json::from_str(&golden("received", "text")).unwrap();
    body["text"]["message"] = Value::Null;
    let body = body
        .to_string()
        .replace(r#""message":null"#, &format!(r#""message":"{text}""#));
    assert!(body.len() > 786_000, "{}", body.len());
    let r = post(&b, "/webhooks/zapi", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let got = read_topic(&b.cluster.bootstrap_servers(), &topics[0].1, 1).await;
    let message = got[0].value["data"]["payload"]["text"]["message"]
        .as_str()
        .unwrap();
    assert_eq!(message.chars().count(), 65_536);

    // A delivery callback padded past http.max_body_bytes: 413.
    let mut delivery: Value = serde_json::from_str(&golden("delivery", "delivery")).unwrap();
    delivery["padding"] = "x".repeat(70_000).into();
    let r = post(&b, "/webhooks/zapi", &delivery.to_string()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    // The same size on a presence route is refused before it is parsed.
    let r = post(&b, "/webhooks/zapi/presence", &delivery.to_string()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_and_disconnected_callbacks_move_the_disconnected_gauge_in_moment_order() {
    let (b, _) = bridge().await;
    let gauge = "presence_bridge_instances_disconnected";
    let event = |kind: &str, instance: &str, momment: i64| {
        let flag = if kind == "ConnectedCallback" {
            "connected"
        } else {
            "disconnected"
        };
        format!(
            r#"{{"type":"{kind}","instanceId":"{instance}","momment":{momment},"{flag}":true}}"#
        )
    };
    assert_eq!(b.metric(gauge), 0.0);
    for (body, want) in [
        (
            event("DisconnectedCallback", "INST-A", 1_700_000_000_000),
            1.0,
        ),
        (event("DisconnectedCallback", "INST-B", 1_700_000_000), 2.0),
        (event("ConnectedCallback", "INST-A", 1_700_000_100_000), 1.0),
        // Older than A's reconnection: arrives late, changes nothing.
        (
            event("DisconnectedCallback", "INST-A", 1_700_000_050_000),
            1.0,
        ),
        (event("ConnectedCallback", "INST-B", 1_700_000_001), 0.0),
    ] {
        let r = post(&b, "/webhooks/zapi", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{body}: {:?}", r.body);
        assert_eq!(b.metric(gauge), want, "after {body}");
    }
    b.stop().await;
}
