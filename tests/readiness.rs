//! Readiness and the broker probe: every configured topic is probed (not only
//! `kafka.topic`) and shown in `/readyz` and in a gauge per configured topic;
//! a missing topic keeps the bridge ready, since accepting is still right.

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configured_topic_is_probed_and_a_missing_one_keeps_the_bridge_ready() {
    let rejected = unique_topic();
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL", "200ms"),
        (
            "PRESENCE_BRIDGE__KAFKA__TOPIC_BY_INSTANCE__TENANT-X",
            "tenant-x-not-created",
        ),
        ("PRESENCE_BRIDGE__REJECTED__TOPIC", &rejected),
        (
            "PRESENCE_BRIDGE__SPOOL__DEAD_LETTER_TOPIC",
            "dead-letters-not-created",
        ),
    ])
    .await;
    b.cluster.create_topic(&rejected, PARTITIONS, 1).unwrap();

    // Waits for the probe's answer itself (bounded: only guards a hang).
    let mut seen = Value::Null;
    for _ in 0..2400 {
        let (status, body) = b.get(&b.admin_url("/readyz")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a missing topic must not make the bridge unready: {body}"
        );
        seen = serde_json::from_str(&body).unwrap();
        let topics = &seen["components"]["kafka"]["topics"];
        if topics[&rejected] == "present"
            && topics["tenant-x-not-created"] == "missing"
            && topics["dead-letters-not-created"] == "missing"
            && topics[b.topic.as_str()] == "present"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let kafka = &seen["components"]["kafka"];
    assert_eq!(kafka["topics"][b.topic.as_str()], "present", "{seen}");
    assert_eq!(kafka["topics"][&rejected], "present", "{seen}");
    assert_eq!(kafka["topics"]["tenant-x-not-created"], "missing", "{seen}");
    assert_eq!(
        kafka["topics"]["dead-letters-not-created"], "missing",
        "{seen}"
    );
    assert_eq!(
        kafka["topic"], "present",
        "the default topic, as before: {seen}"
    );
    // The four above, the latest-presence topic (created by the test
    // cluster) and the default topics of the other callback kinds.
    assert_eq!(kafka["topics"][LATEST_TOPIC], "present", "{seen}");
    for other in [
        "whatsapp.messages.v1",
        "whatsapp.message-status.v1",
        "whatsapp.delivery.v1",
        "whatsapp.connection.v1",
    ] {
        assert_eq!(kafka["topics"][other], "missing", "{seen}");
    }
    assert_eq!(kafka["topics"].as_object().unwrap().len(), 9, "{seen}");

    let gauge = |t: &str| format!("presence_bridge_kafka_topic_missing{{topic=\"{t}\"}}");
    assert_eq!(b.metric(&gauge("tenant-x-not-created")), 1.0);
    assert_eq!(b.metric(&gauge("dead-letters-not-created")), 1.0);
    assert_eq!(b.metric(&gauge(&b.topic)), 0.0);
    assert_eq!(b.metric(&gauge(&rejected)), 0.0);
    assert_eq!(b.metric("presence_bridge_ready"), 1.0);

    // Created later: the next probe sees it.
    b.cluster
        .create_topic("tenant-x-not-created", PARTITIONS, 1)
        .unwrap();
    b.wait_for_value(&gauge("tenant-x-not-created"), 0.0).await;
    let (_, body) = b.get(&b.admin_url("/readyz")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["components"]["kafka"]["topics"]["tenant-x-not-created"], "present",
        "{v}"
    );
}
