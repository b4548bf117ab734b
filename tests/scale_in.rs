//! Scaling in leaves nothing stranded: a stop drains the spool to Kafka
//! before the process exits (`shutdown.drain_spool`), bounded when the broker
//! is away; `presence-bridge spool forward` delivers a spool whose bridge is
//! gone, in order, and refuses one a running bridge holds.

mod common;

use std::collections::HashMap;

use common::*;
use presence_bridge::app::SpoolDrainOutcome;

const PHONES: [&str; 3] = ["5511900000001", "5511900000002", "5511900000003"];
const STATUSES: [&str; 4] = ["AVAILABLE", "COMPOSING", "PAUSED", "RECORDING"];

async fn post_round(b: &Api, per_phone: usize, posted: &mut HashMap<String, Vec<String>>) {
    rounds::post_round(b, &PHONES, &STATUSES, per_phone, posted).await;
}

/// [`rounds::check_delivery`] without the typing expiries: a typing state
/// left in a spool expires after a restart, the bridge's own record, not
/// one of the posted events.
fn check_delivery(records: &[Record], posted: &HashMap<String, Vec<String>>) {
    let posted_only = records
        .iter()
        .filter(|r| r.value["type"] != presence_bridge::envelope::expired::TYPE);
    rounds::check_delivery(posted_only, posted);
}

/// The records the spool holds for the posted events: each presence event
/// with its contact's latest state (one spool request).
fn total(posted: &HashMap<String, Vec<String>>) -> usize {
    2 * posted.values().map(Vec::len).sum::<usize>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_delivers_the_spool_before_exit_when_the_broker_is_up() {
    let site = Restarts::new();
    site.cluster.broker_down(1).unwrap();
    // A deadline that alone could never deliver them (the broker is down
    // until the spool drain has started), and a drain bound never reached:
    // only the drain can empty the spool, and only `HANG` ends a hang.
    let b = site
        .start(&[
            ("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "100ms"),
            ("PRESENCE_BRIDGE__SHUTDOWN__DRAIN_SPOOL", "1h"),
        ])
        .await;
    let mut posted = HashMap::new();
    post_round(&b, 10, &mut posted).await;
    let n = total(&posted) as f64;
    assert_eq!(b.metric("presence_bridge_spool_events"), n);

    b.running.shutdown();
    // The drain has started with every event still pending; then the broker returns.
    b.wait_for_value("presence_bridge_shutdown_spool_pending_events", n)
        .await;
    site.cluster.broker_up(1).unwrap();
    let registry = b.running.registry.clone();
    let report = tokio::time::timeout(HANG, b.into_running().wait())
        .await
        .expect("the shutdown never ended");
    let drain = report.spool_drain.expect("the spool drain ran");
    assert_eq!(drain.outcome, SpoolDrainOutcome::Emptied, "{drain:?}");
    assert_eq!((drain.pending_at_start, drain.left), (n as u64, 0));
    assert_eq!(report.events_left_in_spool, 0);
    let text = String::from_utf8(presence_bridge::metrics::render(&registry)).unwrap();
    assert_eq!(
        metric_value(&text, "presence_bridge_shutdown_spool_pending_events"),
        0.0
    );
    check_delivery(&site.read_all().await, &posted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_the_broker_down_ends_at_the_bound_and_keeps_the_events() {
    let site = Restarts::new();
    site.cluster.broker_down(1).unwrap();
    let b = site
        .start(&[
            ("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "100ms"),
            ("PRESENCE_BRIDGE__SHUTDOWN__DRAIN_SPOOL", "300ms"),
        ])
        .await;
    let mut posted = HashMap::new();
    post_round(&b, 10, &mut posted).await;
    let n = total(&posted) as u64;

    let report = tokio::time::timeout(HANG, b.stop())
        .await
        .expect("the shutdown never ended: the drain bound did not hold");
    let drain = report.spool_drain.expect("the spool drain ran");
    assert_eq!(drain.outcome, SpoolDrainOutcome::BoundReached, "{drain:?}");
    assert_eq!((drain.pending_at_start, drain.left), (n, n));
    assert!(
        drain.took >= std::time::Duration::from_millis(300),
        "{drain:?}"
    );
    assert_eq!(report.events_left_in_spool, n);

    // Nothing was settled unacknowledged: the next start delivers them all, once, in order.
    site.cluster.broker_up(1).unwrap();
    let again = site.start(&[]).await;
    again
        .wait_for_value("presence_bridge_spool_events", 0.0)
        .await;
    again.stop().await;
    check_delivery(&site.read_all().await, &posted);
}

/// Runs `presence-bridge spool forward --dir DIR` with the site's broker and
/// topic in the environment (and `extra` arguments); its exit code, stdout, stderr.
async fn spool_forward(site: &Restarts, dir: &std::path::Path, extra: &[&str]) -> Output {
    let mut c = common::process::command(site.spool.path());
    c.env(
        "PRESENCE_BRIDGE__KAFKA__BROKERS",
        site.cluster.bootstrap_servers(),
    )
    .env("PRESENCE_BRIDGE__KAFKA__TOPIC", &site.topic)
    .env("PRESENCE_BRIDGE__KAFKA__PROBE_INTERVAL", "200ms")
    .args(["spool", "forward", "--dir"])
    .arg(dir)
    .args(extra);
    let out = tokio::time::timeout(
        HANG,
        tokio::task::spawn_blocking(move || c.output().expect("runs")),
    )
    .await
    .expect("spool forward hung")
    .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A bridge that stops with the broker away and the drain off: its spool
/// keeps every event posted (the orphan a removed pod leaves behind).
async fn orphan(site: &Restarts, per_phone: usize) -> HashMap<String, Vec<String>> {
    site.cluster.broker_down(1).unwrap();
    let b = site
        .start(&[
            ("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "100ms"),
            ("PRESENCE_BRIDGE__SHUTDOWN__DRAIN_SPOOL", "0"),
        ])
        .await;
    let mut posted = HashMap::new();
    post_round(&b, per_phone, &mut posted).await;
    let report = b.stop().await;
    assert_eq!(report.spool_drain, None, "the drain is off");
    assert_eq!(report.events_left_in_spool, total(&posted) as u64);
    posted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_forward_delivers_an_orphaned_spool_in_order_and_exits_0() {
    let site = Restarts::new();
    let posted = orphan(&site, 20).await;
    let n = total(&posted);
    site.cluster.broker_up(1).unwrap();

    let out = spool_forward(&site, site.spool.path(), &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("forwarding {n} events to Kafka")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!("done: {n} events forwarded")),
        "{out:?}"
    );
    // Phone numbers never in full.
    for phone in PHONES {
        assert!(
            !out.stdout.contains(phone) && !out.stderr.contains(phone),
            "{out:?}"
        );
    }
    check_delivery(&site.read_all().await, &posted);

    // Settled and checkpointed: a second run finds nothing, sends nothing again.
    let again = spool_forward(&site, site.spool.path(), &[]).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.contains("the spool is empty"), "{again:?}");
    check_delivery(&site.read_all().await, &posted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_forward_gives_up_with_the_broker_away_and_keeps_the_events() {
    let site = Restarts::new();
    let posted = orphan(&site, 5).await;
    // The broker is still down: nothing can be delivered.
    let out = spool_forward(&site, site.spool.path(), &["--idle-timeout", "1s"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("gave up: nothing delivered for 1s"),
        "{out:?}"
    );
    assert!(out.stderr.contains("no Kafka broker answered"), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("{} left in the spool", total(&posted))),
        "{out:?}"
    );
    // Nothing was settled: once the broker is back, every event goes out.
    site.cluster.broker_up(1).unwrap();
    let out = spool_forward(&site, site.spool.path(), &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    check_delivery(&site.read_all().await, &posted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_forward_refuses_a_spool_a_running_bridge_holds_and_a_non_spool() {
    let site = Restarts::new();
    let b = site.start(&[]).await;
    let out = spool_forward(&site, site.spool.path(), &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("holds the lock"), "{out:?}");
    assert!(
        out.stderr.contains("A running bridge owns this spool"),
        "{out:?}"
    );
    b.stop().await;

    let empty = tempfile::tempdir().unwrap();
    let out = spool_forward(&site, empty.path(), &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("not a spool"), "{out:?}");
    // Nothing was created in it.
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}
