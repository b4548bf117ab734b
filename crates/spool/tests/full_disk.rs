//! A full disk recovers by itself (issue #10, item J): the spool never needs
//! free space to release space. A segment that cannot be extended is sealed
//! (so it is deleted once delivered), the checkpoint is overwritten in place,
//! appends report why they are blocked, and the store unblocks without any
//! request once delivered segments are gone.
//!
//! Two disks: a byte budget in the page-cache layer (runs everywhere), and a
//! real 1 MiB tmpfs (needs root to mount: `#[ignore]`d by default, run with
//! `cargo test --test full_disk -- --ignored` as root; CI does).

use std::path::Path;
use std::sync::Arc;

use spool::format::CHECKPOINT_FILE_BYTES;
use spool::io::{DiskIo, PageCacheIo, SpoolIo};
use spool::store::{NewRecord, Store, StoreOptions, BLOCKED_DISK_FULL};
use spool::{FsyncPolicy, SpoolError};

fn opts(dir: &Path) -> StoreOptions {
    // spool.max_bytes (1 GiB) far above the disk: the disk fills first.
    StoreOptions {
        segment_bytes: 64 * 1024,
        fsync: FsyncPolicy::Always,
        ..spool::testkit::options(dir)
    }
}

fn record(n: u64) -> NewRecord {
    NewRecord {
        key: format!("55449{:08}", n % 13),
        value: vec![b'x'; 400],
        ..spool::testkit::record(n, "whatsapp.presence.v1")
    }
}

/// Fills the disk, delivers everything, and checks the spool takes appends
/// again by itself and keeps nothing delivered.
fn fill_deliver_recover(dir: &Path, io: Arc<dyn SpoolIo>) {
    let (store, _) = Store::open_with_io(opts(dir), io.clone()).unwrap();
    // The broker is away: append until the disk refuses.
    let mut accepted = 0u64;
    let err = loop {
        match store.append(&[record(accepted + 1)], false) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100_000, "the disk never filled up");
    };
    assert!(accepted > 10, "only {accepted} appends fit");
    assert!(
        matches!(&err, SpoolError::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{err}"
    );
    assert_eq!(store.append_blocked(), Some(BLOCKED_DISK_FULL));
    // Still refused, and still says why.
    assert!(store.append(&[record(1_000_000)], false).is_err());
    assert!(!store.retry_blocked());
    assert_eq!(store.append_blocked(), Some(BLOCKED_DISK_FULL));

    // The broker is back: everything accepted is delivered and checkpointed.
    let mut reader = store.reader();
    let mut delivered = Vec::new();
    loop {
        let (batch, skipped) = reader.read(&store, 1000).unwrap();
        assert_eq!(skipped, 0);
        if batch.is_empty() {
            break;
        }
        delivered.extend(batch);
    }
    assert_eq!(delivered.len() as u64, accepted);
    let ids: Vec<u128> = delivered.iter().map(|r| r.id.as_u128()).collect();
    assert_eq!(ids, (1..=accepted as u128).collect::<Vec<_>>());
    store.ack(delivered.last().unwrap().seq, accepted);
    // Written in place: works on the full disk.
    store.checkpoint().unwrap();

    // No request needed: the writer's retry finds room again.
    assert!(
        store.retry_blocked(),
        "still blocked: {:?}",
        store.append_blocked()
    );
    assert_eq!(store.append_blocked(), None);
    store.append(&[record(2_000_000)], false).unwrap();
    let stats = store.stats();
    assert_eq!(stats.pending, 1);
    assert!(stats.bytes < 8 * 1024, "delivered segments kept: {stats:?}");
    drop(store);

    // A restart resends nothing that was delivered.
    let (store, report) = Store::open_with_io(opts(dir), io).unwrap();
    assert_eq!(report.pending, 1, "{report:?}");
    assert!(!report.checkpoint_lost);
    let mut reader = store.reader();
    let (left, _) = reader.read(&store, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id.as_u128(), 2_000_000);
}

#[test]
fn a_full_disk_recovers_by_itself_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let io = PageCacheIo::new(10);
    // The checkpoint file, and about 300 KiB for segments.
    io.set_budget(Some(CHECKPOINT_FILE_BYTES as u64 + 300 * 1024));
    fill_deliver_recover(dir.path(), Arc::new(io.clone()));
    assert!(io.used_bytes() < CHECKPOINT_FILE_BYTES as u64 + 16 * 1024);
}

/// A real 1 MiB tmpfs, mounted for the test and unmounted after it.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "presence-bridge-test"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs (this test needs root): {status}"
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
#[ignore = "mounts a 1 MiB tmpfs: needs root; run with --ignored"]
fn a_full_disk_recovers_by_itself_tmpfs() {
    let fs = Tmpfs::mount();
    let dir = fs.0.path().join("spool");
    fill_deliver_recover(&dir, Arc::new(DiskIo));
}
