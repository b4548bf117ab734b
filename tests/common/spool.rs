//! Spool stores for tests: options for a directory (no fsync, room to
//! spare), records made from a number, and a store opened on a directory.

use std::path::Path;

use presence_bridge::spool::store::{NewRecord, Store, StoreOptions};
use presence_bridge::spool::FsyncPolicy;

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

/// Record number `n` for `topic`: its own id, arrival time and phone, 100
/// bytes of value; change a field with `NewRecord { key: .., ..record(n, t) }`.
pub fn record(n: u64, topic: &str) -> NewRecord {
    NewRecord {
        arrival_ms: 1_700_000_000_000 + n as i64,
        id: uuid::Uuid::from_u128(n.into()),
        topic: topic.into(),
        key: format!("55449{n:08}"),
        value: vec![b'a'; 100],
    }
}
