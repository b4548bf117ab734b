//! End to end against a MockCluster: an event Kafka refused for good is
//! dead-lettered by a running bridge, replayed into the stopped bridge's
//! spool, and delivered at the next start with its original id and payload.

mod common;

use common::*;
use hyper::StatusCode;
use presence_bridge::publisher::dead_letter::tools::{self, Filter, Line, ReplayOptions};
use presence_bridge::spool::store::{Store, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_after_a_stop_is_delivered_with_its_id() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let topic = unique_topic();
    cluster.create_topic(&topic, PARTITIONS, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let env = [("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "2s")];

    // First life: the broker refuses one event for good.
    let s = settings(&cluster.bootstrap_servers(), &topic, spool.path(), &env);
    let settings_spool = s.spool.clone();
    let running = presence_bridge::app::start(s, cluster.bootstrap_servers(), None)
        .await
        .unwrap();
    let b = Bridge::attach(running, &topic);
    b.wait_ready().await;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let refused = b.post_json(&callback("5544999999991", "COMPOSING")).await;
    assert_eq!(refused.status, StatusCode::OK);
    b.wait_for(
        "presence_bridge_events_dead_lettered_total{reason=\"too_large\"}",
        1.0,
    )
    .await;
    let ok = b.post_json(&callback("5544999999992", "PAUSED")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        read_topic(&cluster.bootstrap_servers(), &topic, 1).await[0].value["id"],
        ok.id().as_str()
    );
    // The dead-letter file is counted and exported.
    let dl_bytes = std::fs::metadata(spool.path().join("dead-letter.jsonl"))
        .unwrap()
        .len();
    assert_eq!(
        b.metric("presence_bridge_dead_letter_bytes"),
        dl_bytes as f64
    );
    b.running.shutdown();
    b.into_running().wait().await;

    // Stopped: replay the too-large dead letters into the spool.
    let lines = tools::read_all(spool.path()).unwrap();
    let Some(Line::Letter(letter)) = lines.first() else {
        panic!("{lines:?}")
    };
    assert_eq!(letter.id.unwrap().hyphenated().to_string(), refused.id());
    {
        let (store, _) = Store::open(StoreOptions {
            dir: settings_spool.dir.clone(),
            max_bytes: settings_spool.max_bytes,
            segment_bytes: settings_spool.segment_bytes,
            fsync: settings_spool.fsync,
        })
        .unwrap();
        let report = tools::replay(
            &store,
            &ReplayOptions {
                filter: Filter {
                    reason: Some("too_large".into()),
                    topic: Some(topic.clone()),
                },
                include_legacy: false,
            },
        )
        .unwrap();
        assert_eq!(report.replayed, 1, "{report:?}");
    }

    // Second life: the replayed event goes out with its original id.
    let s = settings(&cluster.bootstrap_servers(), &topic, spool.path(), &env);
    let running = presence_bridge::app::start(s, cluster.bootstrap_servers(), None)
        .await
        .unwrap();
    let b = Bridge::attach(running, &topic);
    let records = read_topic(&cluster.bootstrap_servers(), &topic, 2).await;
    assert_eq!(records[1].value["id"], refused.id().as_str());
    assert_eq!(records[1].headers["ce_id"], refused.id());
    assert_eq!(records[1].key, "5544999999991");
    assert_eq!(records[1].value["data"]["status"], "COMPOSING");
    assert!(tools::read_all(spool.path()).unwrap().is_empty());
    b.running.shutdown();
    b.into_running().wait().await;
}
