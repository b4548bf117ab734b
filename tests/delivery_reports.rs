//! `presence_bridge_kafka_deliveries_total` counts delivery reports, once
//! each, by the class of their error, through the forwarder's Produce seam
//! with a scripted producer: a fatal report is `fatal` (a producer rebuild is
//! not a `retriable_error`), a retriable one `retriable_error`, a destination
//! refusal `destination_error`; the events are delivered in the end.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence_bridge::health::Health;
use presence_bridge::metrics::{render, Metrics};
use presence_bridge::publisher::destination::DestinationMetrics;
use presence_bridge::publisher::forward::{Forwarder, Park, StopSignal, WINDOW_BYTES};
use presence_bridge::publisher::produce::{BoxFuture, Produce};
use presence_bridge::spool::format::StoredRecord;
use presence_bridge::spool::store::NewRecord;
use prometheus::Registry;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as C;
use tokio::sync::watch;

const TOPIC: &str = "presence";

/// Each send takes the next scripted result (then `Ok`), resolved at once.
struct Scripted(Arc<Mutex<VecDeque<Result<(), KafkaError>>>>);

impl Produce for Scripted {
    type Delivery = std::future::Ready<Result<(), KafkaError>>;

    fn send(&self, _: &StoredRecord, _: &'static str) -> Result<Self::Delivery, KafkaError> {
        let next = self.0.lock().unwrap().pop_front().unwrap_or(Ok(()));
        Ok(std::future::ready(next))
    }

    fn purge(&self) {}

    fn flush(&self, _: Duration) -> BoxFuture<'static, i32> {
        Box::pin(async { 0 })
    }
}

struct NoDeadLetters;

impl Park for NoDeadLetters {
    fn park<'a>(
        &'a self,
        _: &'a StoredRecord,
        _: &'static str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

fn sample(registry: &Registry, result: &str) -> f64 {
    let text = String::from_utf8(render(registry)).unwrap();
    let want = format!("presence_bridge_kafka_deliveries_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(f64::NAN, |v| v.trim().parse().unwrap())
}

/// Runs a forwarder over three spooled events with `first` as the first
/// report; returns the registry once all three are settled.
async fn run_with_first_report(first: KafkaError) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(presence_bridge::spool::testkit::open(dir.path()));
    let batch: Vec<NewRecord> = (1..=3)
        .map(|n| NewRecord {
            key: "5544999999999".into(),
            value: b"{}".to_vec(),
            ..presence_bridge::spool::testkit::record(n, TOPIC)
        })
        .collect();
    let last = store.append(&batch, true).unwrap().last_seq;
    let (_committed_tx, committed) = watch::channel(last);
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let destinations = DestinationMetrics::new(&registry, [TOPIC.to_owned()]).unwrap();
    let health = Arc::new(Health::new(
        None,
        metrics.clone(),
        store.clone(),
        0,
        TOPIC,
        [TOPIC.to_owned()],
    ));
    health.broker_probed(true);
    let script = Arc::new(Mutex::new(VecDeque::from([Err(first)])));
    let forwarder = Forwarder {
        store: store.clone(),
        make_producer: Box::new(move || Ok(Scripted(script.clone()))),
        committed,
        metrics,
        destinations,
        dead_letter: Arc::new(NoDeadLetters),
        health,
        replay_until: 0,
        rejected_topic: None,
        topics: vec![TOPIC.to_owned()],
        seed: 7,
        window_bytes: WINDOW_BYTES,
    };
    let stop = StopSignal::default();
    let task = tokio::spawn(forwarder.run(stop.clone()));
    // Paused clock: backoffs pass at once; the bound only guards a hang.
    for _ in 0..100_000 {
        if store.stats().pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.stats().pending, 0, "the events were never delivered");
    stop.stop(tokio::time::Instant::now());
    task.await.unwrap().unwrap();
    registry
}

#[tokio::test(start_paused = true)]
async fn a_fatal_report_is_counted_as_fatal_not_as_a_retry() {
    let r = run_with_first_report(KafkaError::MessageProduction(C::OutOfOrderSequenceNumber)).await;
    assert_eq!(sample(&r, "retriable_error"), 0.0, "a rebuild is no retry");
    assert_eq!(sample(&r, "fatal"), 1.0);
    assert_eq!(sample(&r, "delivered"), 3.0);
}

#[tokio::test(start_paused = true)]
async fn a_retriable_report_is_counted_once() {
    let r = run_with_first_report(KafkaError::MessageProduction(C::RequestTimedOut)).await;
    assert_eq!(sample(&r, "retriable_error"), 1.0);
    assert_eq!(sample(&r, "fatal"), 0.0);
    assert_eq!(sample(&r, "delivered"), 3.0);
}

#[tokio::test(start_paused = true)]
async fn a_destination_refusal_is_counted() {
    let r = run_with_first_report(KafkaError::MessageProduction(C::TopicAuthorizationFailed)).await;
    assert_eq!(sample(&r, "destination_error"), 1.0);
    assert_eq!(sample(&r, "retriable_error"), 0.0);
    assert_eq!(sample(&r, "delivered"), 3.0);
}
