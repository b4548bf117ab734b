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
    let site = Restarts::new();
    let (cluster, topic, spool) = (&site.cluster, &site.topic, &site.spool);
    // The latest topic off: the one injected Produce error must meet the
    // event, not the contact's state record (a request of its own).
    let env = [
        ("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "2s"),
        ("PRESENCE_BRIDGE__KAFKA__LATEST__ENABLED", "false"),
    ];

    // First life: the broker refuses one event for good.
    let b = site.start(&env).await;
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
        read_topic(&cluster.bootstrap_servers(), topic, 1).await[0].value["id"],
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
    b.stop().await;

    // Stopped: replay the too-large dead letters into the spool.
    let lines = tools::read_all(spool.path()).unwrap();
    let Some(Line::Letter(letter)) = lines.first() else {
        panic!("{lines:?}")
    };
    assert_eq!(letter.id.unwrap().hyphenated().to_string(), refused.id());
    {
        // The bridge's own spool settings.
        let s = settings(&cluster.bootstrap_servers(), topic, spool.path(), &env).spool;
        let (store, _) = Store::open(StoreOptions {
            dir: s.dir,
            max_bytes: s.max_bytes,
            segment_bytes: s.segment_bytes,
            fsync: s.fsync,
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
    let b = site.start(&env).await;
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    let records = site.read_all().await;
    assert_eq!(
        records.len(),
        2,
        "the event delivered before, and the replayed one"
    );
    let replayed = records
        .iter()
        .find(|r| r.value["id"] == refused.id().as_str())
        .expect("the replayed event, with its original id");
    assert_eq!(replayed.headers["event-id"], refused.id());
    assert_eq!(replayed.key, "5544999999991");
    assert_eq!(replayed.value["data"]["status"], "COMPOSING");
    assert!(records.iter().any(|r| r.value["id"] == ok.id().as_str()));
    assert!(tools::read_all(spool.path()).unwrap().is_empty());
    b.stop().await;
}
