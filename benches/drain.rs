//! Drain benchmark (not a test: it prints measured numbers, asserts
//! nothing): a backlog pre-spooled as after an outage, then a bridge starts
//! against an in-process mock broker; measures the drain rate while new
//! webhooks keep arriving, and their latency meanwhile. The spool's own
//! append benchmark is `cargo bench -p spool --bench append`.
//!
//!   cargo bench --bench drain             # 100,000 events
//!   cargo bench --bench drain -- --quick  # 10,000 events, for CI smoke runs

use std::time::{Duration, Instant};

use presence_bridge::spool::store::{NewRecord, Store, StoreOptions};
use presence_bridge::spool::testkit::{bench_start, percentile};
use presence_bridge::spool::FsyncPolicy;

fn record(i: u64) -> NewRecord {
    let phone = format!("55119{:08}", i % 5000);
    let value = format!(
        r#"{{"specversion":"1.0","id":"{}","source":"/zapi/instances/instance.id","type":"io.presence-bridge.zapi.chat-presence.v1","time":"2026-11-24T12:00:00.000Z","datacontenttype":"application/json","dataschema":"urn:presence-bridge:schema:presence-envelope:v1","partitionkey":"{phone}","data":{{"instanceId":"instance.id","phone":"{phone}","status":"COMPOSING","lastSeen":null,"isGroup":false,"phoneKind":"person","statusKnown":true}}}}"#,
        uuid::Uuid::now_v7()
    );
    NewRecord {
        arrival_ms: 1_795_000_000_000 + i as i64,
        id: uuid::Uuid::now_v7(),
        kind: spool::RecordKind(1),
        topic: "whatsapp.presence.v1".into(),
        key: phone,
        value: value.into_bytes(),
    }
}

async fn drain_after_outage(events: u64) {
    // On the project's disk (not a tmpfs), as a real spool.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("drain");
    let _ = std::fs::remove_dir_all(&dir);
    {
        let (store, _) = Store::open(StoreOptions {
            dir: dir.clone(),
            max_bytes: 8 << 30,
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Never,
        })
        .unwrap();
        let batch: Vec<NewRecord> = (0..1000).map(record).collect();
        for _ in 0..events / 1000 {
            store.append(&batch, false).unwrap();
        }
        store.sync().unwrap();
    }
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("whatsapp.presence.v1", 3, 1).unwrap();
    // The webhooks posted during the drain also write each contact's state
    // there (kafka.latest): without it the spool never empties.
    cluster
        .create_topic("whatsapp.presence.latest.v1", 3, 1)
        .unwrap();
    let env = vec![
        (
            "PRESENCE_BRIDGE__HTTP__LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "PRESENCE_BRIDGE__ADMIN__LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        (
            "PRESENCE_BRIDGE__KAFKA__BROKERS".to_owned(),
            cluster.bootstrap_servers(),
        ),
        (
            "PRESENCE_BRIDGE__SPOOL__DIR".to_owned(),
            dir.display().to_string(),
        ),
        ("PRESENCE_BRIDGE__LOG__LEVEL".to_owned(), "warn".to_owned()),
    ];
    let settings = presence_bridge::config::load(None, env).unwrap();
    let started = Instant::now();
    let running = presence_bridge::app::start(settings, cluster.bootstrap_servers(), None)
        .await
        .unwrap();
    let addr = running.webhook_addr;
    // New traffic during the drain: one client, sequential posts.
    let stop = tokio_util::sync::CancellationToken::new();
    let poster = {
        let stop = stop.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut lat = Vec::new();
            let body = r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"instanceId":"instance.id"}"#;
            while !stop.is_cancelled() {
                let t = Instant::now();
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let req = format!("POST /webhooks/zapi/presence HTTP/1.1\r\nhost: b\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                s.write_all(req.as_bytes()).await.unwrap();
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.unwrap();
                assert!(
                    out.starts_with(b"HTTP/1.1 200"),
                    "new traffic refused during the drain"
                );
                lat.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            lat
        })
    };
    let spooled = |reg: &prometheus::Registry| {
        reg.gather()
            .iter()
            .find(|f| f.name() == "presence_bridge_spool_events")
            .map(|f| f.get_metric()[0].get_gauge().value())
            .unwrap_or(f64::MAX)
    };
    // Wait until the backlog is gone (the gauge refreshes every 200 ms).
    let mut seen_backlog = false;
    loop {
        let left = spooled(&running.registry);
        seen_backlog |= left > 0.0;
        if seen_backlog && left == 0.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "drain did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    stop.cancel();
    let mut lat = poster.await.unwrap();
    lat.sort();
    println!(
        "drain   backlog={events}  {:>9.0} events/s  ({took:.2} s incl. start-up)  new webhooks meanwhile: {} answered 200, p50={:.3?} p99={:.3?}",
        events as f64 / took,
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
    );
    running.shutdown();
    running.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let quick = bench_start("cargo bench --bench drain", env!("CARGO_TARGET_TMPDIR"));
    drain_after_outage(if quick { 10_000 } else { 100_000 }).await;
}
