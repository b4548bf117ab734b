//! Process level: the real binary under load (the test build, or the binary
//! named by `PRESENCE_BRIDGE_TEST_BIN`: CI passes the release build), SIGKILL mid-stream, the spool
//! tools on what it left, a restart on the same spool, and a consumer that
//! confirms every event answered 200 is in Kafka, in order per phone, once.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::process::{self, Proc};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_event() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let topic = unique_topic();
    cluster.create_topic(&topic, PARTITIONS, 1).unwrap();
    // Each presence event is stored with its contact's latest state, in the
    // same spool request: both topics are read back. No typing expiry here
    // (its timers would add records after the restart; tests/presence_state.rs
    // covers them).
    let latest = format!("{topic}.latest");
    cluster.create_topic(&latest, PARTITIONS, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let (http, admin) = (free_addr(), free_addr());

    let cmd = || {
        let mut c = process::serving(spool.path(), http, admin);
        c.env(
            "PRESENCE_BRIDGE__KAFKA__BROKERS",
            cluster.bootstrap_servers(),
        )
        .env("PRESENCE_BRIDGE__KAFKA__TOPIC", &topic)
        .env("PRESENCE_BRIDGE__KAFKA__LATEST__TOPIC", &latest)
        .env("PRESENCE_BRIDGE__PRESENCE__TYPING_TTL", "0s")
        .env("PRESENCE_BRIDGE__SPOOL__DIR", spool.path());
        c
    };
    let start = || Proc::spawn(&mut cmd(), http, admin);

    // First life, broker down so nothing leaves the spool: every 200 must survive on disk.
    cluster.broker_down(1).unwrap();
    let mut first = start();
    first.wait_ready();
    let (tx, answered) = mpsc::channel::<(String, String)>();
    let mut posters = Vec::new();
    for p in 0..4 {
        let tx = tx.clone();
        posters.push(std::thread::spawn(move || {
            let phone = format!("551190000000{p}");
            for i in 0..10_000 {
                let body = callback(&phone, ["AVAILABLE", "COMPOSING", "PAUSED"][i % 3]);
                match process::request(
                    http,
                    "POST",
                    &format!("/webhooks/zapi/presence?token={TOKEN}"),
                    &body,
                ) {
                    Some((200, reply)) => {
                        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
                        let id = v["id"].as_str().unwrap().to_owned();
                        if tx.send((phone.clone(), id)).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    drop(tx);
    // Kill mid-stream, once a good number of events were answered.
    let mut accepted: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..400 {
        let (phone, id) = answered
            .recv_timeout(Duration::from_secs(60))
            .expect("load never got going");
        accepted.entry(phone).or_default().push(id);
    }
    first.kill(); // SIGKILL
    for p in posters {
        p.join().unwrap();
    }
    for (phone, id) in answered.try_iter() {
        accepted.entry(phone).or_default().push(id);
    }
    let total: usize = accepted.values().map(Vec::len).sum();

    // The operator tools read what was left.
    let tool = |sub: &str| {
        cmd()
            .args(["spool", sub])
            .stdout(Stdio::piped())
            .output()
            .unwrap()
    };
    let inspect = tool("inspect");
    assert!(inspect.status.success());
    let report: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let on_disk = report["pending_events"].as_u64().unwrap() as usize;
    assert!(on_disk >= total, "{report}");
    assert_eq!(report["bridge_running"], false);
    assert_eq!(report["checkpoint_lost"], false, "{report}");
    // A SIGKILL can leave a torn tail in the last segment (a write cut
    // between pages), never a damaged record in the middle of the log.
    let segments = report["segments"].as_array().unwrap();
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s["corrupt_regions"], 0, "{report}");
        if i + 1 < segments.len() {
            assert_eq!(s["torn_bytes"], 0, "only the tail can be torn: {report}");
        }
    }
    let torn = segments.last().unwrap()["torn_bytes"].as_u64().unwrap() > 0;
    let verify = tool("verify");
    let text = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.success(), !torn, "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" records ")).collect();
    assert_eq!(lines.len(), segments.len(), "{text}");
    assert!(
        lines.iter().all(|l| l.ends_with(" corrupt_regions 0")),
        "{text}"
    );

    // Second life: broker back, same spool. Everything on disk goes out once:
    // the answered events and any written just before the kill.
    cluster.broker_up(1).unwrap();
    let mut second = start();
    second.wait_ready();
    wait_for_binary_metric(admin, "presence_bridge_spool_events", 0.0);
    let records = read_all(&cluster.bootstrap_servers(), &topic).await;
    let states = read_all(&cluster.bootstrap_servers(), &latest).await;
    assert_eq!(
        records.len() + states.len(),
        on_disk,
        "each stored record exactly once"
    );
    // Every event came with its state (one spool request: both or neither).
    let followed: HashSet<&str> = states
        .iter()
        .map(|s| s.value["data"]["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(followed.len(), states.len(), "a state written twice");
    for r in &records {
        let id = r.value["id"].as_str().unwrap();
        assert!(followed.contains(id), "event {id} without its state");
    }
    let mut ids = HashSet::new();
    let mut got: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for r in &records {
        let id = r.value["id"].as_str().unwrap().to_owned();
        assert!(ids.insert(id.clone()), "{id} delivered twice");
        got.entry(r.key.clone()).or_default().push((r.offset, id));
    }
    for (phone, ids) in &accepted {
        let mut g = got.remove(phone).unwrap_or_default();
        g.sort();
        let g: Vec<&String> = g.iter().map(|x| &x.1).collect();
        // Events written but killed before their 200 may also be there: the
        // answered ones must appear as an ordered subsequence.
        let mut it = g.iter();
        for id in ids {
            assert!(
                it.any(|x| *x == id),
                "{phone}: answered event {id} missing or out of order"
            );
        }
    }
    assert!(got.is_empty(), "records of phones nobody posted: {got:?}");
    assert_eq!(second.terminate().code(), Some(0));
}

/// Polls the binary's `/metrics` until `sample` equals `want` (bounded).
fn wait_for_binary_metric(admin: std::net::SocketAddr, sample: &str, want: f64) {
    for _ in 0..1200 {
        if let Some((200, text)) = process::request(admin, "GET", "/metrics", "") {
            if metric_value(&text, sample) == want {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{sample} never became {want}");
}
