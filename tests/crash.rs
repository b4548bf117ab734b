//! Process level: the real binary under load (the test build, or the binary
//! named by `PRESENCE_BRIDGE_TEST_BIN`: CI passes the release build), SIGKILL mid-stream, the spool
//! tools on what it left, a restart on the same spool, and a consumer that
//! confirms every event answered 200 is in Kafka, in order per phone.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bridge(
    spool: &std::path::Path,
    brokers: &str,
    topic: &str,
    http: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> Command {
    // CI runs this test a second time against the release binary.
    let bin = std::env::var("PRESENCE_BRIDGE_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_presence-bridge").to_owned());
    let mut c = Command::new(bin);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PRESENCE_BRIDGE__HTTP__LISTEN", http.to_string())
        .env("PRESENCE_BRIDGE__ADMIN__LISTEN", admin.to_string())
        .env("PRESENCE_BRIDGE__KAFKA__BROKERS", brokers)
        .env("PRESENCE_BRIDGE__KAFKA__TOPIC", topic)
        .env("PRESENCE_BRIDGE__SPOOL__DIR", spool)
        .env("PRESENCE_BRIDGE__AUTH__TOKENS", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

async fn raw_post(addr: std::net::SocketAddr, body: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "POST /webhooks/zapi/presence?token={TOKEN} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    if !out.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(out.split("\"id\":\"").nth(1)?.split('"').next()?.to_owned())
}

async fn wait_ready(admin: std::net::SocketAddr) {
    let started = Instant::now();
    loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok(mut s) = tokio::net::TcpStream::connect(admin).await {
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "bridge never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_event() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let topic = unique_topic();
    cluster.create_topic(&topic, PARTITIONS, 1).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let (http, admin) = (free_addr(), free_addr());

    let cmd = || {
        bridge(
            spool.path(),
            &cluster.bootstrap_servers(),
            &topic,
            http,
            admin,
        )
    };
    let start = || Proc(cmd().spawn().unwrap());

    // First life, broker down so nothing leaves the spool: every 200 must survive on disk.
    cluster.broker_down(1).unwrap();
    let mut first = start();
    wait_ready(admin).await;
    let accepted: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let mut posters = Vec::new();
    for p in 0..4 {
        let accepted = accepted.clone();
        posters.push(tokio::spawn(async move {
            let phone = format!("551190000000{p}");
            for i in 0..10_000 {
                let body = callback(&phone, ["AVAILABLE", "COMPOSING", "PAUSED"][i % 3]);
                match raw_post(http, &body).await {
                    Some(id) => accepted
                        .lock()
                        .unwrap()
                        .entry(phone.clone())
                        .or_default()
                        .push(id),
                    None => return,
                }
            }
        }));
    }
    // Kill mid-stream, once a good number of events were answered.
    let started = Instant::now();
    while accepted
        .lock()
        .unwrap()
        .values()
        .map(Vec::len)
        .sum::<usize>()
        < 400
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "load never got going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();
    for p in posters {
        p.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
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
    assert!(
        report["pending_events"].as_u64().unwrap() >= total as u64,
        "{report}"
    );
    assert_eq!(report["bridge_running"], false);
    let verify = tool("verify");
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(!text.contains("corrupt_regions 1"), "{text}");

    // Second life: broker back, same spool. Everything answered 200 arrives, in order.
    cluster.broker_up(1).unwrap();
    let mut second = start();
    wait_ready(admin).await;
    // Everything on disk goes out: the answered events and any written just before the kill.
    let on_disk = report["pending_events"].as_u64().unwrap() as usize;
    let records = read_topic(&cluster.bootstrap_servers(), &topic, on_disk).await;
    let mut got: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for r in &records {
        got.entry(r.key.clone())
            .or_default()
            .push((r.offset, r.value["id"].as_str().unwrap().to_owned()));
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
    assert!(Command::new("kill")
        .args(["-TERM", &second.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
