//! During a broker outage something counts: librdkafka keeps trying to
//! reach the broker (and reports nothing to the forwarder, with
//! `message.timeout.ms = 0`), and `presence_bridge_kafka_connection_attempts_total`
//! climbs while events wait. `presence_bridge_kafka_deliveries_total` counts
//! delivery reports by result, nothing while none arrives.

mod common;

use std::time::Duration;

use common::*;

const ATTEMPTS: &str = "presence_bridge_kafka_connection_attempts_total";
const DELIVERED: &str = "presence_bridge_kafka_deliveries_total{result=\"delivered\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_attempts_climb_while_the_broker_is_down() {
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "1s")]).await;
    b.cluster.broker_down(1).unwrap();
    for _ in 0..3 {
        let r = b.post_json(&callback("5511900000001", "AVAILABLE")).await;
        assert_eq!(r.status, hyper::StatusCode::OK, "{:?}", r.body);
    }
    // Once the client noticed (a first report after the outage began) ...
    let start = b.metric(ATTEMPTS);
    let mut seen = start;
    let mut moved = 0;
    // ... it climbs at least twice more with the broker still down (bounded
    // wait: reconnect backoff is at most 10 s).
    for _ in 0..1200 {
        let now = b.metric(ATTEMPTS);
        if now > seen {
            moved += 1;
            seen = now;
        }
        if moved >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        moved >= 3,
        "connection attempts stuck at {seen} (from {start})"
    );
    // Nothing was delivered meanwhile: the events wait, and no report came.
    assert_eq!(b.metric(DELIVERED), 0.0);
    // Three events, each with the contact's state for the latest topic.
    assert_eq!(b.metric("presence_bridge_spool_events"), 6.0);
    for r in [
        "retriable_error",
        "permanent_error",
        "destination_error",
        "fatal",
    ] {
        let sample = format!("presence_bridge_kafka_deliveries_total{{result=\"{r}\"}}");
        assert_eq!(b.metric(&sample), 0.0, "{sample}");
    }

    b.cluster.broker_up(1).unwrap();
    b.wait_for_value(DELIVERED, 6.0).await;
    b.stop().await;
}
