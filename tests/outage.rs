//! Broker outages with the durable spool: events keep being accepted (200)
//! while the broker is down, readiness stays 200, and when it comes back every
//! event arrives, per phone in the order it was accepted. Undelivered events
//! survive a restart and go out before newer ones. A full spool answers 503.

mod common;

use std::collections::HashMap;

use common::*;
use hyper::StatusCode;

const PHONES: [&str; 4] = [
    "5511900000001",
    "5511900000002",
    "5511900000003",
    "5511900000004",
];
const STATUSES: [&str; 5] = [
    "AVAILABLE",
    "COMPOSING",
    "PAUSED",
    "RECORDING",
    "UNAVAILABLE",
];

async fn post_round(b: &Api, per_phone: usize, posted: &mut HashMap<String, Vec<String>>) {
    rounds::post_round(b, &PHONES, &STATUSES, per_phone, posted).await;
}

fn check_delivery(records: &[Record], posted: &HashMap<String, Vec<String>>) {
    rounds::check_delivery(records, posted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_under_load_then_up_loses_nothing_and_keeps_order() {
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL", "200ms")]).await;
    let mut posted = HashMap::new();
    post_round(&b.api, 25, &mut posted).await;

    // The gauge starts at 0: see it reach 1 first, so the wait for 0 below means something.
    b.wait_for("presence_bridge_kafka_broker_reachable", 1.0)
        .await;
    b.cluster.broker_down(1).unwrap();
    b.wait_for_value("presence_bridge_kafka_broker_reachable", 0.0)
        .await;
    post_round(&b.api, 50, &mut posted).await;
    // Accepted into the spool, not delivered, and still ready.
    b.wait_for("presence_bridge_spool_events", 1.0).await;
    eventually("/readyz reports the broker unreachable", || async {
        let (status, body) = b.get(&b.admin_url("/readyz")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "an outage must not make the bridge unready: {body}"
        );
        body.contains("unreachable").then_some(())
    })
    .await;
    b.wait_for("presence_bridge_spool_oldest_event_age_seconds", 0.001)
        .await;

    b.cluster.broker_up(1).unwrap();
    post_round(&b.api, 25, &mut posted).await;
    // Everything acknowledged, then the whole topic: a plain outage must not
    // duplicate (idempotent producer) nor lose or reorder anything.
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    let records = b.read_all().await;
    assert_eq!(records.len(), PHONES.len() * 100);
    check_delivery(&records, &posted);
    b.wait_for_value("presence_bridge_spool_oldest_event_age_seconds", 0.0)
        .await;
    assert_eq!(
        b.metric("presence_bridge_events_dead_lettered_total{reason=\"rejected\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_events_survive_a_restart_and_go_out_first() {
    let site = Restarts::new();

    // First life: the broker is down the whole time.
    site.cluster.broker_down(1).unwrap();
    let b = site
        .start(&[("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "1s")])
        .await;
    let mut posted = HashMap::new();
    post_round(&b, 20, &mut posted).await;
    let report = b.stop().await;
    // Each event is spooled with the contact's state for the latest topic.
    assert_eq!(report.events_left_in_spool, 2 * 80);

    // Second life: the broker is back; old events go out before new ones.
    site.cluster.broker_up(1).unwrap();
    let b = site.start(&[]).await;
    post_round(&b, 10, &mut posted).await;
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    let records = site.read_all().await;
    assert_eq!(records.len(), 120);
    check_delivery(&records, &posted);
    assert_eq!(
        b.metric("presence_bridge_spool_replayed_events_total"),
        2.0 * 80.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_and_readiness_follows() {
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__SPOOL__MAX_BYTES", "1MiB"),
        ("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "4096"),
    ])
    .await;
    b.cluster.broker_down(1).unwrap();
    let pad = "x".repeat(3000);
    let body = format!(
        r#"{{"type":"PresenceChatCallback","phone":"5544999999999","status":"PAUSED","lastSeen":null,"instanceId":"instance.id","pad":"{pad}"}}"#
    );
    let mut accepted = 0;
    let refused = loop {
        let r = b.post_json(&body).await;
        if r.status != StatusCode::OK {
            break r;
        }
        accepted += 1;
        assert!(accepted < 10_000, "the spool never filled");
    };
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.body["error"], "spool_full");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(b.metric("presence_bridge_http_requests_refused_total{reason=\"spool_full\"}") >= 1.0);
    // Readiness turns 503 (a gauge tick later).
    eventually("/readyz turns 503 with a full spool", || async {
        let status = b.get(&b.admin_url("/readyz")).await.0;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;

    // The broker returns: the backlog drains, room returns, 200 again.
    b.cluster.broker_up(1).unwrap();
    b.wait_ready().await;
    let last = b.post_json(&body).await;
    assert_eq!(last.status, StatusCode::OK);
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    let records = b.read_all().await;
    assert_eq!(records.len(), accepted + 1, "each accepted event once");
    assert_eq!(records.last().unwrap().value["id"], last.id().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_refused_event_is_dead_lettered_and_the_rest_flow() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    // The latest topic off: the one injected Produce error must meet the
    // event, not the contact's state record (a request of its own).
    let b = Bridge::start_with(&[
        (
            "PRESENCE_BRIDGE__SPOOL__DEAD_LETTER_TOPIC",
            "presence-dead-letters",
        ),
        ("PRESENCE_BRIDGE__KAFKA__LATEST__ENABLED", "false"),
    ])
    .await;
    b.cluster
        .create_topic("presence-dead-letters", PARTITIONS, 1)
        .unwrap();
    b.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let refused = b.post_json(&callback("5544999999991", "COMPOSING")).await;
    assert_eq!(refused.status, StatusCode::OK, "accepted into the spool");
    b.wait_for(
        "presence_bridge_events_dead_lettered_total{reason=\"too_large\"}",
        1.0,
    )
    .await;
    let ok = b.post_json(&callback("5544999999992", "PAUSED")).await;
    let records = b.read(1).await;
    assert_eq!(records[0].value["id"], ok.id().as_str());

    let file = std::fs::read_to_string(b.spool.path().join("dead-letter.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
    assert_eq!(line["reason"], "too_large");
    assert_eq!(line["format"], 2);
    assert_eq!(line["id"], refused.id().as_str());
    let value: serde_json::Value = serde_json::from_str(line["value"].as_str().unwrap()).unwrap();
    assert_eq!(value["id"], refused.id().as_str());
    assert_eq!(line["key"], "5544999999991");
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    // A copy went to the dead-letter topic too.
    let copies = read_topic(&b.cluster.bootstrap_servers(), "presence-dead-letters", 1).await;
    assert_eq!(copies[0].value["id"], refused.id().as_str());
    assert_eq!(copies[0].headers["dead_letter_reason"], "too_large");
}
