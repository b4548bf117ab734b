//! Graceful shutdown: readiness goes 503, the listener stops accepting, the
//! request in flight finishes and its event reaches Kafka; a stuck client never
//! holds shutdown past the deadline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn in_flight_request_finishes_and_its_event_is_delivered() {
    let b = Bridge::start().await;
    let body = callback("5544999999999", "COMPOSING");
    let (mut s, rest) = half_sent_request(&b, &body).await;

    b.running.shutdown();
    // Readiness turns 503 while the drain runs.
    let (status, report) = b.get(&b.admin_url("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert!(report.contains("shutting_down"), "{report}");
    // The listener stops accepting.
    eventually("the listener refuses connections", || async {
        TcpStream::connect(b.running.webhook_addr).await.err()
    })
    .await;

    s.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG, s.read_to_end(&mut answer))
        .await
        .expect("the request in flight was never answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let id = answer
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();

    let Bridge { cluster, api, .. } = b;
    let topic = api.topic.clone();
    let report = api.into_running().wait().await;
    assert!(!report.connections_abandoned);
    assert_eq!(report.events_left_in_spool, 0);
    let records = read_topic(&cluster.bootstrap_servers(), &topic, 1).await;
    assert_eq!(records[0].value["id"], id.as_str());
}

#[tokio::test]
async fn a_stuck_client_does_not_hold_shutdown_past_the_deadline() {
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "700ms")]).await;
    let (_stuck, _never_sent) = half_sent_request(&b, &callback("5544999999999", "PAUSED")).await;
    let started = Instant::now();
    b.running.shutdown();
    let Bridge { api, cluster, .. } = b;
    // The client never finishes: only the deadline can end the shutdown
    // (the timeout only guards that hang), and not before it.
    let report = tokio::time::timeout(HANG, api.into_running().wait())
        .await
        .expect("a stuck client held the shutdown");
    assert!(report.connections_abandoned);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(700), "shutdown took {took:?}");
    drop(cluster);
}
