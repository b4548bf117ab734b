//! The supervisor: every long-lived task that ends or panics outside shutdown
//! turns `/readyz` 503 naming it, lets the request in flight finish, stops the
//! bridge (the CLI then exits 3), and leaves the spool intact for the next
//! start. Each task is made to fail through the test-only fault hook
//! (`app::start_with`); nothing here sleeps as proof: each step waits for the
//! event itself, with a generous timeout that only guards a hang.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use presence_bridge::app::{self, Fault, Faults, Running};
use presence_bridge::health::Component;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Only guards a hang; every wait below ends on the event itself.
const HANG: Duration = Duration::from_secs(30);

struct Faulty {
    _spool: tempfile::TempDir,
    _certs: Option<tempfile::TempDir>,
    cluster: MockCluster<'static, DefaultProducerContext>,
    faults: Faults,
    api: Api,
}

/// A bridge with fault hooks; `tls` adds a certificate (so the TLS reloader
/// runs), `extra` more settings.
async fn start(tls: bool, extra: &[(&str, &str)]) -> Faulty {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = unique_topic();
    cluster.create_topic(&topic, PARTITIONS, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let certs = tls.then(|| tempfile::tempdir().unwrap());
    let (cert, key) = match &certs {
        Some(dir) => self_signed(dir.path()),
        None => (String::new(), String::new()),
    };
    let mut env: Vec<(&str, &str)> = extra.to_vec();
    if tls {
        env.push(("PRESENCE_BRIDGE__HTTP__TLS__CERT", &cert));
        env.push(("PRESENCE_BRIDGE__HTTP__TLS__KEY", &key));
    }
    let s = settings(&cluster.bootstrap_servers(), &topic, spool.path(), &env);
    let faults = Faults::default();
    let running = app::start_with(s, cluster.bootstrap_servers(), None, Some(faults.clone()))
        .await
        .expect("bridge starts");
    let api = Bridge::attach(running, &topic);
    api.wait_ready().await;
    Faulty {
        _spool: spool,
        _certs: certs,
        cluster,
        faults,
        api,
    }
}

fn self_signed(dir: &Path) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

/// Waits until the bridge starts shutting down on its own.
async fn stopping(running: &Running) {
    tokio::time::timeout(HANG, running.shutdown_token().cancelled())
        .await
        .expect("a failed task must start the shutdown");
}

/// What `/readyz` says (read from the same state the admin listener serves,
/// which may itself be the task that failed).
fn readiness(running: &Running) -> Value {
    running.health.report()
}

fn assert_named(report: &Value, c: Component) {
    assert_eq!(report["ready"], false, "{report}");
    assert_eq!(report["failed"][0], c.as_str(), "{report}");
    assert_eq!(
        report["components"]["tasks"][c.as_str()],
        "failed",
        "{report}"
    );
}

/// Makes `c` fail with `fault` and checks it is named, unready, and stops
/// the bridge reporting it.
async fn fails(c: Component, fault: Fault, tls: bool, extra: &[(&str, &str)]) {
    let b = start(tls, extra).await;
    assert_eq!(
        readiness(&b.api.running)["components"]["tasks"][c.as_str()],
        "running",
        "{c:?} is supervised"
    );
    b.faults.trigger(c, fault);
    if c == Component::SpoolWriter {
        // The writer fails at its next write: this request's.
        let r = b.api.post_json(&callback("5544999999999", "PAUSED")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    }
    stopping(&b.api.running).await;
    let report = readiness(&b.api.running);
    assert_named(&report, c);
    assert_eq!(
        b.api.metric(&format!(
            "presence_bridge_task_failed{{task=\"{}\"}}",
            c.as_str()
        )),
        1.0
    );
    assert_eq!(b.api.metric("presence_bridge_ready"), 0.0);
    let Faulty { api, cluster, .. } = b;
    let done = tokio::time::timeout(HANG, api.into_running().wait())
        .await
        .expect("the bridge stops within the deadline");
    assert_eq!(done.failed.first(), Some(&c), "{c:?} {fault:?}: {done:?}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_that_ends_or_panics_stops_the_bridge() {
    fails(Component::Forwarder, Fault::End, false, &[]).await;
    fails(Component::Forwarder, Fault::Panic, false, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_writer_that_panics_stops_the_bridge() {
    fails(Component::SpoolWriter, Fault::Panic, false, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_ends_or_panics_stops_the_bridge() {
    for c in [Component::WebhookListener, Component::AdminListener] {
        fails(c, Fault::End, false, &[]).await;
        fails(c, Fault::Panic, false, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_probe_that_ends_or_panics_stops_the_bridge() {
    fails(Component::BrokerProbe, Fault::End, false, &[]).await;
    fails(Component::BrokerProbe, Fault::Panic, false, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_reloader_that_ends_or_panics_stops_the_bridge() {
    fails(Component::TlsReloader, Fault::End, true, &[]).await;
    fails(Component::TlsReloader, Fault::Panic, true, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_sync_loop_that_ends_or_panics_stops_the_bridge() {
    let interval = [("PRESENCE_BRIDGE__SPOOL__FSYNC", "interval")];
    fails(Component::SpoolSync, Fault::End, false, &interval).await;
    fails(Component::SpoolSync, Fault::Panic, false, &interval).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_forwarder_lets_the_request_in_flight_finish_and_the_spool_survives() {
    // A long deadline: the drain waits for the half-sent request, which the
    // test completes after looking at /readyz.
    let b = start(false, &[("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "60s")]).await;
    let body = callback("5544999999999", "COMPOSING");
    let (mut s, rest) = half_sent_request(&b.api, &body).await;

    b.faults.trigger(Component::Forwarder, Fault::Panic);
    stopping(&b.api.running).await;
    // Over HTTP this time: 503, naming the forwarder.
    let (status, text) = b.api.get(&b.api.admin_url("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_named(&report, Component::Forwarder);
    assert_eq!(report["components"]["ingress"], "shutting_down");

    // The request in flight finishes: accepted into the spool.
    s.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG, s.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let id = answer.split("\"id\":\"").nth(1).unwrap().split('"').next();
    let id = id.unwrap().to_owned();

    let Faulty {
        api,
        cluster,
        _spool: spool,
        ..
    } = b;
    let topic = api.topic.clone();
    let done = tokio::time::timeout(HANG, api.into_running().wait())
        .await
        .expect("stops");
    assert_eq!(done.failed, vec![Component::Forwarder]);
    assert!(!done.connections_abandoned);
    // The event and the contact's state for the latest topic.
    assert_eq!(done.events_left_in_spool, 2, "nobody delivered it");

    // The restart the orchestrator does: the event is delivered from the spool.
    let s = settings(&cluster.bootstrap_servers(), &topic, spool.path(), &[]);
    let running = app::start(s, cluster.bootstrap_servers(), None)
        .await
        .unwrap();
    let records = read_topic(&cluster.bootstrap_servers(), &topic, 1).await;
    assert_eq!(records[0].value["id"], id.as_str());
    assert!(running.failed().is_empty());
    running.shutdown();
    let done = running.wait().await;
    assert!(done.failed.is_empty(), "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_stop_at_shutdown_are_not_failures() {
    // Every component runs: TLS (the reloader) and the interval sync.
    let b = start(true, &[("PRESENCE_BRIDGE__SPOOL__FSYNC", "interval")]).await;
    let report = readiness(&b.api.running);
    for c in Component::ALL {
        assert_eq!(
            report["components"]["tasks"][c.as_str()],
            "running",
            "{report}"
        );
    }
    b.api.running.shutdown();
    let running = b.api.running.health.clone();
    let done = tokio::time::timeout(HANG, b.api.into_running().wait())
        .await
        .expect("stops");
    assert!(done.failed.is_empty(), "{done:?}");
    let report = running.report();
    assert!(report.get("failed").is_none(), "{report}");
    for c in [
        Component::Forwarder,
        Component::WebhookListener,
        Component::AdminListener,
        Component::BrokerProbe,
        Component::TlsReloader,
        Component::SpoolSync,
    ] {
        assert_eq!(
            report["components"]["tasks"][c.as_str()],
            "stopped",
            "{report}"
        );
    }
    drop(b.cluster);
}
