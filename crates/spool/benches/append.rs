//! Append benchmark of the spool (not a test: it prints measured numbers,
//! asserts nothing): throughput with group commit (`spool.fsync = always`,
//! the default) at 1, 8 and 64 concurrent clients: events/s, events per
//! fsync, p50/p99 append latency. The drain after an outage, which needs a
//! bridge and a broker, is the root package's `drain` benchmark.
//!
//!   cargo bench -p spool --bench append             # full run
//!   cargo bench -p spool --bench append -- --quick  # a few seconds, for CI smoke runs

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spool::store::{NewRecord, Store, StoreOptions};
use spool::testkit::{bench_start, percentile};
use spool::{FsyncPolicy, Observer, Spool};

/// Counts the fsyncs of the writer thread.
#[derive(Clone, Default)]
struct Fsyncs(Arc<AtomicU64>);

impl Observer for Fsyncs {
    fn synced(&self, _: Duration) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn committed(&self, _: Duration, _: spool::RecordKind, _: Option<&'static str>) {}
    fn sync_failures(&self, _: u64) {}
}

/// Record `i`: the size of a presence envelope (about 330 bytes), 5,000 phones.
fn record(i: u64) -> NewRecord {
    NewRecord {
        key: format!("55119{:08}", i % 5000),
        value: vec![b'x'; 330],
        ..spool::testkit::record(i, "whatsapp.presence.v1")
    }
}

async fn append_throughput(clients: usize, duration: Duration) {
    // On the project's disk (not a tmpfs), so fsync costs what it costs.
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("append-{clients}"));
    let _ = std::fs::remove_dir_all(&dir);
    let (store, _) = Store::open(StoreOptions {
        dir: dir.clone(),
        max_bytes: 8 << 30,
        segment_bytes: 64 << 20,
        fsync: FsyncPolicy::Always,
    })
    .unwrap();
    let fsyncs = Fsyncs::default();
    let (tx, _rx) = tokio::sync::watch::channel(0);
    let spool = Spool::start(Arc::new(store), Duration::from_secs(10), fsyncs.clone(), tx).unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c as u64 * 1_000_000_000;
            while started.elapsed() < duration {
                let t = Instant::now();
                spool.append(record(i), Some("COMPOSING")).await.unwrap();
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let fsyncs = fsyncs.0.load(Ordering::Relaxed);
    println!(
        "append  clients={clients:>3}  {:>9.0} events/s  {:>6.1} events/fsync  p50={:>8.3?}  p99={:>8.3?}",
        lat.len() as f64 / secs,
        lat.len() as f64 / fsyncs.max(1) as f64,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
    );
    drop(spool);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let quick = bench_start(
        "cargo bench -p spool --bench append",
        env!("CARGO_TARGET_TMPDIR"),
    );
    let per_case = Duration::from_millis(if quick { 500 } else { 5000 });
    for clients in [1, 8, 64] {
        append_throughput(clients, per_case).await;
    }
}
