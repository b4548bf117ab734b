//! Stores for tests, of this crate and of the crates above it: options for
//! a directory (no fsync, room to spare), records made from a number, a
//! store opened on a directory, version-1 segments; and the start of a
//! benchmark. Not for production use.

use std::path::Path;
use std::time::Duration;

use crate::format::{RecordKind, StoredRecord, MAGIC_V1};
use crate::store::{NewRecord, Store, StoreOptions};
use crate::FsyncPolicy;

/// A 1 GiB spool of 1 MiB segments in `dir` that never fsyncs; change a
/// field with `StoreOptions { max_bytes: .., ..options(dir) }`.
pub fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        fsync: FsyncPolicy::Never,
    }
}

/// Opens the store of [`options`] (recovery report dropped).
pub fn open(dir: &Path) -> Store {
    Store::open(options(dir)).expect("the spool opens").0
}

/// Record number `n` for `topic`: its own id, arrival time and phone, kind
/// 1, 100 bytes of value; change a field with `NewRecord { key: .., ..record(n, t) }`.
pub fn record(n: u64, topic: &str) -> NewRecord {
    NewRecord {
        arrival_ms: 1_700_000_000_000 + n as i64,
        id: uuid::Uuid::from_u128(n.into()),
        kind: RecordKind(1),
        topic: topic.into(),
        key: format!("55449{n:08}"),
        value: vec![b'a'; 100],
    }
}

/// Appends `r` framed as a version-1 record (no kind), as bridges wrote
/// them before version 2: for tests that a spool left by one is still read.
pub fn encode_v1(r: &StoredRecord, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    body.extend_from_slice(&r.seq.to_le_bytes());
    body.extend_from_slice(&r.arrival_ms.to_le_bytes());
    body.extend_from_slice(r.id.as_bytes());
    for field in [r.topic.as_bytes(), r.key.as_bytes()] {
        body.extend_from_slice(&(field.len() as u16).to_le_bytes());
        body.extend_from_slice(field);
    }
    body.extend_from_slice(&r.value);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// A whole version-1 segment holding `records`.
pub fn segment_v1(records: &[StoredRecord]) -> Vec<u8> {
    let mut out = MAGIC_V1.to_vec();
    for r in records {
        encode_v1(r, &mut out);
    }
    out
}

/// The start of a benchmark: prints the command that produced the numbers
/// (with `-- --quick` when given), the cores and where its spool is; true
/// for a quick run.
pub fn bench_start(command: &str, spool_on: &str) -> bool {
    let quick = std::env::args().any(|a| a == "--quick");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let flag = if quick { " -- --quick" } else { "" };
    println!("# {command}{flag}  ({cores} cores, spool on {spool_on})");
    quick
}

/// The `p` quantile (0 to 1) of sorted durations; zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len().max(1) - 1) as f64 * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}
