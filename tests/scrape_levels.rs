//! The spool gauges of `/metrics` (per destination too) and the spool section
//! of `/readyz` are read from the store when scraped: an event committed just before a scrape is
//! in both, with no periodic refresh in between.

mod common;

use std::sync::Arc;

use common::*;
use presence_bridge::health::Health;
use presence_bridge::metrics::{render, Metrics};
use presence_bridge::spool::store::{NewRecord, Store};

fn record(n: u64) -> NewRecord {
    spool::testkit::record(n, "main")
}

#[test]
fn the_registry_reads_the_store_at_each_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(spool::testkit::open(dir.path()));
    let (registry, metrics) = Metrics::standalone();
    let _health = Health::new(None, metrics, store.clone(), 0, "main", []);
    let scrape = || String::from_utf8(render(&registry)).unwrap();
    assert_eq!(metric_value(&scrape(), "presence_bridge_spool_events"), 0.0);
    store.append(&[record(1), record(2)], false).unwrap();
    // Nobody reported anything: the scrape itself reads the store.
    let text = scrape();
    assert_eq!(metric_value(&text, "presence_bridge_spool_events"), 2.0);
    assert_eq!(
        metric_value(&text, "presence_bridge_spool_bytes"),
        store.stats().bytes as f64
    );
    store.ack(2, 2);
    assert_eq!(metric_value(&scrape(), "presence_bridge_spool_events"), 0.0);
    // The registry does not keep a closed spool open (and locked).
    drop(_health);
    drop(store);
    let reopened = Store::open(spool::testkit::options(dir.path()));
    assert!(reopened.is_ok(), "the spool is still locked");
    assert_eq!(metric_value(&scrape(), "presence_bridge_spool_events"), 0.0);
}

/// Through the admin listener, right after each 200: `/metrics` and `/readyz`
/// both count the event (the broker is down, so it stays in the spool), with
/// the contact's state for the latest topic: two records per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_just_before_a_scrape_is_counted() {
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "1s")]).await;
    b.cluster.broker_down(1).unwrap();
    for i in 1..=5u32 {
        let r = b.post_json(&callback("5511900000001", "AVAILABLE")).await;
        assert_eq!(r.status, hyper::StatusCode::OK, "{:?}", r.body);
        let (status, text) = b.get(&b.admin_url("/metrics")).await;
        assert_eq!(status, hyper::StatusCode::OK);
        assert_eq!(
            metric_value(&text, "presence_bridge_spool_events"),
            f64::from(2 * i),
            "scrape right after event {i}"
        );
        let per_topic = format!(
            "presence_bridge_destination_pending_events{{topic=\"{}\"}}",
            b.topic
        );
        assert_eq!(metric_value(&text, &per_topic), f64::from(i), "{per_topic}");
        let (_, body) = b.get(&b.admin_url("/readyz")).await;
        let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(ready["components"]["spool"]["events"], 2 * i, "{ready}");
    }
    b.stop().await;
}
