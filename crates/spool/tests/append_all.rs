//! `Spool::append_all` and `Spool::queue`: several records committed
//! together or not at all, with consecutive sequences, and requests queued
//! one after the other by one task written in that order.

use std::sync::Arc;
use std::time::Duration;

use spool::store::{NewRecord, Store, StoreOptions};
use spool::testkit::{options, record};
use spool::{Spool, SpoolError};
use tokio::sync::watch;

fn start(opts: StoreOptions) -> (Spool, Arc<Store>) {
    let store = Arc::new(Store::open(opts).expect("the spool opens").0);
    let (tx, _rx) = watch::channel(0);
    let spool =
        Spool::start(store.clone(), Duration::from_secs(30), (), tx).expect("writer starts");
    (spool, store)
}

fn read_all(store: &Store) -> Vec<(u64, String)> {
    let mut reader = store.reader();
    let (records, _) = reader.read(store, 1000).expect("reads");
    records.into_iter().map(|r| (r.seq, r.key)).collect()
}

#[tokio::test]
async fn records_of_one_request_are_consecutive_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, store) = start(options(dir.path()));
    // Interleave single appends and pairs from one task, queued back to back.
    let mut waits = Vec::new();
    for n in 0..50u64 {
        let more: Vec<NewRecord> = (0..(n % 3))
            .map(|k| record(1000 * n + k + 1, "t"))
            .collect();
        let q = spool
            .queue(record(1000 * n, "t"), more, None)
            .await
            .unwrap();
        waits.push((n, q));
    }
    let mut firsts = Vec::new();
    for (n, q) in waits {
        firsts.push((n, q.committed().await.unwrap()));
    }
    let got = read_all(&store);
    let want: Vec<String> = (0..50u64)
        .flat_map(|n| (0..=(n % 3)).map(move |k| record(1000 * n + k, "t").key))
        .collect();
    assert_eq!(got.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>(), want);
    for w in got.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "sequences are consecutive");
    }
    // Each request's answer is the sequence of its first record.
    for (n, seq) in firsts {
        let (_, key) = got.iter().find(|(s, _)| *s == seq).unwrap();
        assert_eq!(*key, record(1000 * n, "t").key);
    }
}

#[tokio::test]
async fn a_request_that_does_not_fit_writes_none_of_its_records() {
    let dir = tempfile::tempdir().unwrap();
    // A record takes 160 bytes framed, a segment header 8: room for one
    // record, not for two.
    let (spool, store) = start(StoreOptions {
        max_bytes: 8 + 160 + 80,
        ..options(dir.path())
    });
    let err = spool
        .append_all(record(1, "t"), vec![record(2, "t")], None)
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::Full), "{err:?}");
    assert!(read_all(&store).is_empty(), "half a request was written");
    // One record alone still fits.
    spool.append(record(3, "t"), None).await.unwrap();
    assert_eq!(read_all(&store).len(), 1);
}
