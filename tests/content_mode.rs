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

/// A record whose stored value is empty (a compacted topic's tombstone) is
/// sent with a null value and no headers, in either mode; a record with a
/// value next to it keeps its mode's layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_value_is_a_tombstone_in_either_mode() {
    use presence_bridge::metrics::Metrics;
    use presence_bridge::publisher::produce::Produce;
    use presence_bridge::publisher::KafkaPublisher;
    use presence_bridge::spool::format::{RecordKind, StoredRecord};
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    let spool = tempfile::tempdir().unwrap();
    let (structured, binary) = (unique_topic(), unique_topic());
    let s = settings(
        &brokers,
        &structured,
        spool.path(),
        &[
            ("PRESENCE_BRIDGE__KAFKA__RECEIVED__TOPIC", &binary),
            ("PRESENCE_BRIDGE__KAFKA__RECEIVED__CONTENT_MODE", "binary"),
        ],
    );
    let (_registry, metrics) = Metrics::standalone();
    let publisher = KafkaPublisher::new(&s.kafka, &brokers, metrics).unwrap();
    let envelope = presence_bridge::envelope::OutboundRecord::new(
        &presence_bridge::presence::PresenceEvent::from_json(
            callback("5544999999999", "PAUSED").as_bytes(),
        )
        .unwrap(),
        &binary,
        uuid::Uuid::now_v7(),
        time::OffsetDateTime::now_utc(),
    );
    for topic in [&structured, &binary] {
        cluster.create_topic(topic, 1, 1).unwrap();
        for (seq, value) in [(1, Vec::new()), (2, envelope.value.clone())] {
            let rec = StoredRecord {
                seq,
                arrival_ms: 0,
                id: uuid::Uuid::now_v7(),
                kind: RecordKind(10),
                topic: topic.clone(),
                key: "i1:5544999999999".into(),
                value,
            };
            let delivery = publisher.send(&rec, "test.type").expect("queued");
            tokio::time::timeout(HANG, delivery)
                .await
                .expect("delivered in time")
                .expect("delivered");
        }
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("tombstones-{}", uuid::Uuid::now_v7()))
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let m = tokio::time::timeout(HANG, consumer.recv())
                .await
                .expect("records arrive")
                .unwrap();
            let headers: Vec<String> = m
                .headers()
                .map(|h| h.iter().map(|h| h.key.to_owned()).collect())
                .unwrap_or_default();
            got.push((m.payload().map(<[u8]>::to_vec), headers));
        }
        assert_eq!(got[0], (None, Vec::new()), "{topic}: a tombstone");
        let (value, headers) = &got[1];
        let value = value.as_ref().expect("a value");
        if topic == &binary {
            assert!(is_binary(headers.iter().map(String::as_str)), "{headers:?}");
            assert!(value.starts_with(b"{\"instanceId\""), "the data only");
        } else {
            assert_eq!(headers, &["content-type", "event-id", "event-type"]);
            assert_eq!(value, &envelope.value);
        }
    }
}
