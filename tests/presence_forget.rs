//! `presence-bridge presence forget`: a tombstone (the contact's key, a null
//! value) on the latest-presence topic, acknowledged by the broker, with the
//! phone masked in the command's output; precise errors otherwise.

mod common;

use std::time::Duration;

use common::*;
use presence_bridge::state::{forget, ForgetError};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Every record of `topic` (one partition) as (key, has a value).
async fn records(brokers: &str, topic: &str, n: usize) -> Vec<(String, bool)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "forget-test")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(HANG, consumer.recv())
            .await
            .expect("a record arrives")
            .unwrap();
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        out.push((key, m.payload().is_some()));
    }
    out
}

#[tokio::test]
async fn a_tombstone_is_written_for_the_normalized_key() {
    let cluster = MockCluster::new(1).unwrap();
    let latest = unique_topic();
    cluster.create_topic(&latest, 1, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let brokers = cluster.bootstrap_servers();
    let s = settings(
        &brokers,
        "events",
        spool.path(),
        &[("PRESENCE_BRIDGE__KAFKA__LATEST__TOPIC", latest.as_str())],
    );
    // The phone as the provider may send it: the key is the normalized one.
    let done = forget(&s, "inst-1", "+55 (11) 90000-0001", HANG)
        .await
        .unwrap();
    assert_eq!(done.topic, latest);
    assert!(
        !done.masked_key.contains("5511900000001"),
        "{}",
        done.masked_key
    );
    assert!(done.masked_key.starts_with("inst-1:"));
    assert_eq!(done.offset, 0);
    let got = records(&brokers, &latest, 1).await;
    assert_eq!(got, [("inst-1:5511900000001".to_owned(), false)]);
}

#[tokio::test]
async fn bad_input_and_a_disabled_topic_are_named() {
    let spool = tempfile::tempdir().unwrap();
    let s = settings("127.0.0.1:9", "events", spool.path(), &[]);
    let e = forget(&s, "inst-1", "not-a-phone", HANG).await.unwrap_err();
    assert!(matches!(e, ForgetError::Phone(_)), "{e}");
    let e = forget(&s, "bad instance!", "5511900000001", HANG)
        .await
        .unwrap_err();
    assert!(matches!(e, ForgetError::Instance(_)), "{e}");
    let off = settings(
        "127.0.0.1:9",
        "events",
        spool.path(),
        &[("PRESENCE_BRIDGE__KAFKA__LATEST__ENABLED", "false")],
    );
    let e = forget(&off, "inst-1", "5511900000001", HANG)
        .await
        .unwrap_err();
    assert!(matches!(e, ForgetError::Disabled), "{e}");
    // No broker answers: a bounded wait, and a message that says what it means.
    let e = forget(&s, "inst-1", "5511900000001", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, ForgetError::Timeout(_)), "{e}");
    assert!(e.to_string().contains("running the command again is safe"));
}

#[test]
fn the_command_prints_the_masked_key_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = MockCluster::new(1).unwrap();
    cluster
        .create_topic("whatsapp.presence.latest.v1", 1, 1)
        .unwrap();
    let out = process::command(dir.path())
        .env(
            "PRESENCE_BRIDGE__KAFKA__BROKERS",
            cluster.bootstrap_servers(),
        )
        .args([
            "presence",
            "forget",
            "--instance",
            "inst-1",
            "--phone",
            "5511900000001",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["tombstone"], "written");
    assert_eq!(line["topic"], "whatsapp.presence.latest.v1");
    assert!(
        !stdout.contains("5511900000001"),
        "the full phone in the output: {stdout}"
    );
    let bad = process::command(dir.path())
        .env(
            "PRESENCE_BRIDGE__KAFKA__BROKERS",
            cluster.bootstrap_servers(),
        )
        .args([
            "presence",
            "forget",
            "--instance",
            "inst-1",
            "--phone",
            "abc",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--phone"));
}
