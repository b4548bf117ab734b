//! Power cuts, with the page-cache model of `spool::io::PageCacheIo`: bytes
//! and directory entries not yet synced are lost, kept or torn at a random
//! point when the power goes. Seeded and replayable (proptest saves failing
//! cases in `tests/powercut.proptest-regressions`).
//!
//! For random histories of appends, periodic syncs, acknowledgements,
//! checkpoints and failed fsyncs, cut the power after a random number of
//! file operations, recover, and check:
//! - `always`: every event answered 200 and not checkpointed as delivered is
//!   there, with its exact bytes, in order;
//! - `interval`: the same for every event answered before the last
//!   successful sync (the documented window), except those a failed sync may
//!   have dropped (answered since the previous good sync);
//! - an event answered 503 (its fsync failed) never comes back;
//! - the checkpoint is never lost and lies between the last one written
//!   successfully and the last one tried;
//! - recovery never panics, delivers no damaged record, and its counters
//!   agree with what it delivers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use spool::format::StoredRecord;
use spool::io::PageCacheIo;
use spool::store::{NewRecord, Store, StoreOptions};
use spool::FsyncPolicy;

fn opts(dir: &Path, fsync: FsyncPolicy) -> StoreOptions {
    StoreOptions {
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 2048,
        fsync,
        ..spool::testkit::options(dir)
    }
}

fn record(n: u64, size: usize) -> NewRecord {
    let mut value = n.to_le_bytes().to_vec();
    value.extend((0..size).map(|i| (n as usize * 31 + i) as u8));
    NewRecord {
        key: format!("55449{:08}", n % 7),
        value,
        ..spool::testkit::record(n, "whatsapp.presence.v1")
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    /// The periodic sync of `interval` (a no-op under `always`).
    Sync,
    /// The forwarder delivered up to this many more records.
    Ack(usize),
    Checkpoint,
    /// The next file sync fails (EIO, fsyncgate semantics).
    FailNextSync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(0usize..600, 1..6).prop_map(Op::Append),
        2 => Just(Op::Sync),
        2 => (1usize..10).prop_map(Op::Ack),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::FailNextSync),
    ]
}

/// What the clients and the forwarder saw before the power went.
#[derive(Default)]
struct Seen {
    /// Answered 200: seq -> (id, value).
    answered: BTreeMap<u64, (uuid::Uuid, Vec<u8>)>,
    /// Every record handed to the store, answered or not: id -> value.
    written: HashMap<uuid::Uuid, Vec<u8>>,
    /// Answered 503 while the machine was up.
    refused: HashSet<uuid::Uuid>,
    /// Answered events that must survive a cut (per the fsync policy).
    must_survive_upto: u64,
    /// Answered events a failed sync may have dropped for good (interval).
    at_risk: HashSet<u64>,
    last_good_sync: u64,
    checkpoint_ok: u64,
    checkpoint_tried: u64,
}

fn all_pending(store: &Store) -> (Vec<StoredRecord>, u64) {
    let mut reader = store.reader();
    let mut out = Vec::new();
    let mut skipped = 0;
    loop {
        let (batch, s) = reader.read(store, 100).unwrap();
        skipped += s;
        if batch.is_empty() {
            return (out, skipped);
        }
        out.extend(batch);
    }
}

/// Runs `ops` with the power cut after `cut_after` file operations, then
/// recovers and checks every promise. Returns whether the cut happened.
fn run(policy: FsyncPolicy, seed: u64, cut_after: u64, ops: &[Op]) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let io = PageCacheIo::new(seed);
    let (store, _) = Store::open_with_io(opts(dir.path(), policy), Arc::new(io.clone())).unwrap();
    io.cut_after(cut_after);
    let mut seen = Seen::default();
    let mut n = 0u64;
    let mut watermark = 0u64;
    for op in ops {
        if io.is_dead() {
            break;
        }
        let newest = seen.answered.keys().next_back().copied().unwrap_or(0);
        match op {
            Op::Append(sizes) => {
                let batch: Vec<NewRecord> = sizes
                    .iter()
                    .map(|s| {
                        n += 1;
                        record(n, *s)
                    })
                    .collect();
                for r in &batch {
                    seen.written.insert(r.id, r.value.clone());
                }
                let result = store.append(&batch, false);
                let died = io.is_dead();
                match result {
                    Ok(a) => {
                        let first = a.last_seq + 1 - batch.len() as u64;
                        for (i, r) in batch.into_iter().enumerate() {
                            seen.answered.insert(first + i as u64, (r.id, r.value));
                        }
                        if policy == FsyncPolicy::Always {
                            seen.must_survive_upto = a.last_seq;
                        }
                    }
                    // A 503 that went out before the power did.
                    Err(_) if !died => seen.refused.extend(batch.iter().map(|r| r.id)),
                    Err(_) => {}
                }
            }
            Op::Sync => {
                if store.sync().is_ok() {
                    seen.must_survive_upto = seen.must_survive_upto.max(newest);
                    seen.last_good_sync = newest;
                }
            }
            Op::Ack(k) => {
                let mut reader = store.reader();
                if let Ok((batch, _)) = reader.read(&store, *k) {
                    if let Some(last) = batch.last() {
                        store.ack(last.seq, batch.len() as u64);
                        watermark = last.seq;
                    }
                }
            }
            Op::Checkpoint => {
                seen.checkpoint_tried = seen.checkpoint_tried.max(watermark);
                if store.checkpoint().is_ok() {
                    seen.checkpoint_ok = watermark;
                }
            }
            Op::FailNextSync => io.fail_next_syncs(1),
        }
        // Under `interval`, a failed sync of a full segment before rolling
        // (or a failed periodic one) may drop what was answered since the
        // previous good sync: the documented window.
        if store.take_sync_failures() > 0 && policy == FsyncPolicy::Interval {
            seen.at_risk.extend(seen.last_good_sync + 1..=newest);
        }
    }
    let cut = io.is_dead();
    drop(store);
    io.power_cut().unwrap();

    // Restart on what the disk kept.
    let (store, report) =
        Store::open_with_io(opts(dir.path(), policy), Arc::new(PageCacheIo::new(!seed))).unwrap();
    let (got, skipped) = all_pending(&store);
    let w = store.stats().watermark;
    prop_assert!(!report.checkpoint_lost, "the checkpoint was lost");
    prop_assert!(
        seen.checkpoint_ok <= w && w <= seen.checkpoint_tried.max(seen.checkpoint_ok),
        "watermark {} outside [{}, {}]",
        w,
        seen.checkpoint_ok,
        seen.checkpoint_tried
    );
    prop_assert_eq!(skipped, 0, "a damaged record inside a segment");
    prop_assert_eq!(report.pending, got.len() as u64, "{:?}", report);
    prop_assert_eq!(store.stats().pending, got.len() as u64);
    let mut last = w;
    for r in &got {
        prop_assert!(r.seq > last, "seq {} after {}", r.seq, last);
        last = r.seq;
        prop_assert_eq!(
            seen.written.get(&r.id),
            Some(&r.value),
            "record {} was never written with these bytes",
            r.seq
        );
        prop_assert!(
            !seen.refused.contains(&r.id),
            "record {} was answered 503 and came back",
            r.seq
        );
        if let Some((id, _)) = seen.answered.get(&r.seq) {
            prop_assert_eq!(*id, r.id, "seq {} holds another record", r.seq);
        }
    }
    let delivered: HashSet<u64> = got.iter().map(|r| r.seq).collect();
    for seq in seen.answered.keys() {
        if *seq <= w || *seq > seen.must_survive_upto || seen.at_risk.contains(seq) {
            continue;
        }
        prop_assert!(
            delivered.contains(seq),
            "answered event {} lost (policy {:?}, window up to {})",
            seq,
            policy,
            seen.must_survive_upto
        );
    }
    // And the spool goes on.
    store.append(&[record(1_000_000, 10)], true).unwrap();
    Ok(cut)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn always_keeps_every_answered_event(
        seed in any::<u64>(),
        cut_after in 0u64..160,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(FsyncPolicy::Always, seed, cut_after, &ops)?;
    }

    #[test]
    fn interval_loses_at_most_its_window(
        seed in any::<u64>(),
        cut_after in 0u64..160,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(FsyncPolicy::Interval, seed, cut_after, &ops)?;
    }
}

/// One fixed history, cut after every single file operation in turn, under
/// several tearing seeds: no cut point is skipped.
#[test]
fn every_cut_point_of_one_history() {
    let ops = vec![
        Op::Append(vec![100, 200]),
        Op::Append(vec![500, 500, 500]),
        Op::Ack(3),
        Op::Checkpoint,
        Op::FailNextSync,
        Op::Append(vec![50]),
        Op::Append(vec![300, 300, 300, 300]),
        Op::Ack(4),
        Op::Checkpoint,
        Op::Append(vec![10; 5]),
        Op::Sync,
    ];
    for policy in [FsyncPolicy::Always, FsyncPolicy::Interval] {
        let mut cuts = 0;
        for cut_after in 0.. {
            let mut cut = false;
            for seed in 0..6 {
                cut = run(policy, seed, cut_after, &ops).unwrap_or_else(|e| {
                    panic!("{policy:?}, cut after {cut_after} ops, seed {seed}: {e}")
                });
            }
            if !cut {
                break;
            }
            cuts += 1;
        }
        assert!(cuts > 20, "{policy:?}: only {cuts} cut points");
    }
}
