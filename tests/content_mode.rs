//! CloudEvents content modes through a real bridge (MockCluster): one bridge
//! writes its presence topic structured (the default) and its messages and
//! rejected-input topics in binary mode; each record is read back raw and
//! checked for its mode's exact layout (headers, value), and read back into
//! the same event by the `events` crate either way.

mod common;

use std::collections::BTreeMap;

use common::*;
use hyper::{Method, StatusCode};
use presence_bridge::envelope::binary::{decode_any, is_binary};
use presence_bridge::envelope::{rejected, Record, CONTENT_TYPE};
use serde_json::Value;

fn golden_received() -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/events/tests/golden/received/text.input.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn names(headers: &BTreeMap<String, String>) -> Vec<&str> {
    headers.keys().map(String::as_str).collect()
}

/// The `events` crate reads the record back from its raw headers and value.
fn decoded(r: &common::Record) -> Record {
    let headers: Vec<(&str, Option<&[u8]>)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_bytes())))
        .collect();
    decode_any(&headers, &r.payload).expect("a record of either mode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_topic_is_written_in_its_own_content_mode() {
    let messages = unique_topic();
    let captures = unique_topic();
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__KAFKA__RECEIVED__TOPIC", &messages),
        ("PRESENCE_BRIDGE__KAFKA__RECEIVED__CONTENT_MODE", "binary"),
        ("PRESENCE_BRIDGE__REJECTED__TOPIC", &captures),
        ("PRESENCE_BRIDGE__REJECTED__CONTENT_MODE", "binary"),
    ])
    .await;
    for t in [&messages, &captures] {
        b.cluster.create_topic(t, PARTITIONS, 1).unwrap();
    }
    let presence_id = b
        .post_json(&callback("5544999999999", "COMPOSING"))
        .await
        .id();
    let r = b
        .send(
            Method::POST,
            &format!("/webhooks/zapi?token={TOKEN}"),
            &[("content-type", "application/json")],
            &golden_received(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let bad = r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"PAUSED","instanceId":"inst-1","lastSeen":"yesterday"}"#;
    let r = b
        .send(
            Method::POST,
            &format!("/webhooks/zapi/instances/inst-1/presence?token={TOKEN}"),
            &[("content-type", "application/json")],
            bad,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let brokers = b.cluster.bootstrap_servers();

    // Structured: the whole envelope, no `ce_` header at all.
    let p = &b.read(1).await[0];
    assert_eq!(
        names(&p.headers),
        ["content-type", "event-id", "event-type"]
    );
    assert!(!is_binary(names(&p.headers)));
    assert_eq!(p.headers["content-type"], CONTENT_TYPE);
    assert_eq!(p.headers["event-id"], presence_id);
    assert_eq!(p.headers["event-type"], p.value["type"]);
    let raw: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(raw, p.value, "the value is the envelope");
    assert_eq!(raw["partitionkey"], p.key.as_str());
    assert!(matches!(decoded(p), Record::Presence(e) if e.id.to_string() == presence_id));

    // Binary: the data alone, every attribute a `ce_` header.
    for (topic, kind) in [(&messages, "received"), (&captures, "rejected")] {
        let r = &read_topic(&brokers, topic, 1).await[0];
        let mut want = vec![
            "ce_dataschema",
            "ce_id",
            "ce_partitionkey",
            "ce_source",
            "ce_specversion",
            "ce_time",
            "ce_type",
            "content-type",
            "event-id",
            "event-type",
        ];
        if kind == "rejected" {
            // A capture is keyed by the path's instance, not by its data:
            // it has no partitionkey.
            want.retain(|h| *h != "ce_partitionkey");
        } else {
            assert_eq!(r.headers["ce_partitionkey"], r.key, "{kind}");
        }
        assert_eq!(names(&r.headers), want, "{kind}");
        assert_eq!(r.headers["content-type"], "application/json", "{kind}");
        assert_eq!(r.headers["ce_specversion"], "1.0", "{kind}");
        for attr in ["id", "source", "type", "time", "dataschema"] {
            assert_eq!(
                r.headers[&format!("ce_{attr}")],
                r.value[attr].as_str().unwrap(),
                "{kind}: ce_{attr}"
            );
        }
        assert_eq!(r.headers["event-id"], r.headers["ce_id"], "{kind}");
        assert_eq!(r.headers["event-type"], r.headers["ce_type"], "{kind}");
        let data: Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(data, r.value["data"], "{kind}: the value is the data");
        assert!(data.get("specversion").is_none(), "{kind}: not an envelope");
        match (kind, decoded(r)) {
            ("received", Record::Received(e)) => assert_eq!(e.data.chat, r.key),
            ("rejected", Record::Rejected(e)) => {
                assert_eq!(e.kind, rejected::TYPE);
                assert_eq!(e.data.body.as_deref(), Some(bad));
            }
            (kind, other) => panic!("{kind}: decoded as {other:?}"),
        }
    }
    b.stop().await;
}
