//! Damaged spool records are counted once, as events:
//! `presence_bridge_spool_dropped_events_total{reason="corrupt_record"}` (and
//! the store's numbers behind it) is the number of records lost, whether
//! recovery finds the damage, a reader finds it, or both, and however many
//! readers (destination lanes) pass it.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use presence_bridge::spool::store::{list_segments, NewRecord, Store};
use presence_bridge::spool::testkit::{options as opts, record};

/// The segment holding records (the largest one).
fn data_segment(dir: &Path) -> PathBuf {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// Flips one byte inside the body of each of the given records (0-based
/// positions in the segment), walking the frames: `[len u32][crc u32][body]`.
fn damage(seg: &Path, records: &[usize]) {
    let mut bytes = std::fs::read(seg).unwrap();
    let mut at = 8; // the segment's magic
    let mut i = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if records.contains(&i) {
            bytes[at + 8 + len / 2] ^= 0x5A;
        }
        at += 8 + len;
        i += 1;
    }
    assert!(i > *records.iter().max().unwrap(), "only {i} records");
    std::fs::write(seg, bytes).unwrap();
}

/// Reads every record of every topic with one reader per topic (as the
/// forwarder's lanes do); returns the records read and the lost ones counted.
fn read_all(store: &Store, topics: &[&str]) -> (usize, u64) {
    let (mut got, mut lost) = (0, 0);
    for t in topics {
        let mut reader = store.reader_for(t);
        loop {
            let (batch, skipped) = reader.read(store, 1000).unwrap();
            lost += skipped;
            if batch.is_empty() && skipped == 0 {
                break;
            }
            got += batch.len();
        }
    }
    (got, lost)
}

fn spool_of(n: u64, topics: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(opts(dir.path())).unwrap();
    let batch: Vec<NewRecord> = (1..=n)
        .map(|i| record(i, topics[i as usize % topics.len()]))
        .collect();
    store.append(&batch, true).unwrap();
    dir
}

#[test]
fn one_flipped_byte_is_one_event_lost_counted_once() {
    let dir = spool_of(10, &["a"]);
    damage(&data_segment(dir.path()), &[4]);
    let (store, report) = Store::open(opts(dir.path())).unwrap();
    assert_eq!(report.corrupt_regions, 1);
    assert_eq!(report.corrupt_records, 1);
    let (got, lost_reading) = read_all(&store, &["a"]);
    assert_eq!(got, 9);
    assert_eq!(
        report.corrupt_records + lost_reading,
        1,
        "counted at recovery and again while reading"
    );
}

#[test]
fn a_region_over_k_records_is_k_events() {
    let dir = spool_of(10, &["a"]);
    // Three neighbours damaged: one region holding three records.
    damage(&data_segment(dir.path()), &[3, 4, 5]);
    let (store, report) = Store::open(opts(dir.path())).unwrap();
    assert_eq!(report.corrupt_regions, 1);
    assert_eq!(report.corrupt_records, 3);
    let (got, lost_reading) = read_all(&store, &["a"]);
    assert_eq!((got, lost_reading), (7, 0));
    // The first record damaged: the segment's first sequence bounds the region.
    let dir = spool_of(10, &["a"]);
    damage(&data_segment(dir.path()), &[0, 1]);
    let (_, report) = Store::open(opts(dir.path())).unwrap();
    assert_eq!(report.corrupt_records, 2);
}

#[test]
fn damage_found_while_running_is_counted_once_by_all_readers() {
    let dir = spool_of(12, &["a", "b"]);
    let (store, report) = Store::open(opts(dir.path())).unwrap();
    assert_eq!(report.corrupt_records, 0);
    // Damaged after recovery (a bad disk): each topic's reader passes the region.
    damage(&data_segment(dir.path()), &[6, 7]);
    let (got, lost) = read_all(&store, &["a", "b"]);
    assert_eq!(got, 10);
    assert_eq!(lost, 2, "two records, counted once for both readers");
    // Read again from the start: nothing new to count.
    let (_, lost) = read_all(&store, &["a", "b"]);
    assert_eq!(lost, 0);
}

#[test]
fn damage_growing_over_a_counted_region_counts_only_the_new_records() {
    let dir = spool_of(10, &["a"]);
    damage(&data_segment(dir.path()), &[4]);
    let (store, report) = Store::open(opts(dir.path())).unwrap();
    assert_eq!(report.corrupt_records, 1);
    // Its neighbour goes bad while running: one region of two, one of them new.
    damage(&data_segment(dir.path()), &[3]);
    let (got, lost) = read_all(&store, &["a"]);
    assert_eq!((got, lost), (8, 1));
}

#[test]
fn settled_records_in_a_damaged_region_are_not_counted_as_lost() {
    let dir = spool_of(10, &["a"]);
    {
        let (store, _) = Store::open(opts(dir.path())).unwrap();
        store.ack(6, 6);
        store.checkpoint().unwrap();
    }
    // Sequences 1 to 10 sit at positions 0 to 9.
    damage(&data_segment(dir.path()), &[5, 6, 7]);
    let (_, report) = Store::open(opts(dir.path())).unwrap();
    assert_eq!(report.corrupt_regions, 1);
    // Sequences 6, 7 and 8 damaged; 6 was delivered already.
    assert_eq!(report.corrupt_records, 2);
}

/// The whole bridge: events spooled while the broker is down, one byte
/// flipped in one of them, then a restart with the broker back. The metric
/// reads 1 once everything else is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_counts_one_flipped_record_as_one_dropped_event() {
    let site = Restarts::new();
    // One record per event: the latest-presence topic would add a second.
    let env = [
        ("PRESENCE_BRIDGE__SHUTDOWN__DEADLINE", "1s"),
        ("PRESENCE_BRIDGE__KAFKA__LATEST__ENABLED", "false"),
    ];

    site.cluster.broker_down(1).unwrap();
    let b = site.start(&env).await;
    let mut ids = HashMap::new();
    for i in 0..10 {
        let phone = format!("55119000000{i:02}");
        let r = b.post_json(&callback(&phone, "AVAILABLE")).await;
        assert_eq!(r.status, hyper::StatusCode::OK, "{:?}", r.body);
        ids.insert(r.id(), i);
    }
    let report = b.stop().await;
    assert_eq!(report.events_left_in_spool, 10);

    damage(&data_segment(site.spool.path()), &[4]);
    site.cluster.broker_up(1).unwrap();
    let b = site.start(&env).await;
    b.wait_for_value(
        "presence_bridge_kafka_deliveries_total{result=\"delivered\"}",
        9.0,
    )
    .await;
    // Every lane has read past the damage: the reader had its chance to count it again.
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    assert_eq!(
        b.metric("presence_bridge_spool_dropped_events_total{reason=\"corrupt_record\"}"),
        1.0
    );
    // Exactly the nine undamaged events, each once.
    let mut delivered: Vec<i32> = site
        .read_all()
        .await
        .iter()
        .map(|r| ids[r.value["id"].as_str().unwrap()])
        .collect();
    delivered.sort();
    assert_eq!(delivered, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    b.stop().await;
}
