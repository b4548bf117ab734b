//! The spool's storage core: a model test against an in-memory queue under
//! random append / acknowledge / checkpoint / restart / torn write, plus
//! targeted tests for a corrupt tail, a corrupt middle record, a full spool,
//! a full disk and a failing fsync (an injected writer), the checkpoint file
//! (old format still read), and the append timeout (a writer held in
//! `write`, tokio's paused clock).

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use spool::format::{
    encode_checkpoint, segment_name, RecordKind, StoredRecord, CHECKPOINT_FILE_BYTES, MAGIC,
    MAX_CHECKPOINT_PAYLOAD,
};
use spool::io::{SegmentFile, SpoolIo};
use spool::store::{
    list_segments, read_checkpoint_payload, NewRecord, SavedCheckpoint, Store, StoreOptions,
    BLOCKED_SYNC_FAILED,
};
use spool::{FsyncPolicy, SpoolError};

fn opts(dir: &Path, segment_bytes: u64) -> StoreOptions {
    StoreOptions {
        max_bytes: 64 * 1024 * 1024,
        segment_bytes,
        ..spool::testkit::options(dir)
    }
}

fn record(n: u64, size: usize) -> NewRecord {
    NewRecord {
        value: vec![b'a' + (n % 26) as u8; size],
        ..spool::testkit::record(n, "whatsapp.presence.v1")
    }
}

/// Every pending record, in order, as (id, value).
fn pending(store: &Store) -> Vec<(uuid::Uuid, Vec<u8>)> {
    let mut reader = store.reader();
    let mut out = Vec::new();
    loop {
        let (batch, skipped) = reader.read(store, 100).unwrap();
        assert_eq!(skipped, 0, "no damage expected here");
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|r| (r.id, r.value)));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    Ack(usize),
    Checkpoint,
    Restart,
    TornWrite(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(0usize..600, 1..12).prop_map(Op::Append),
        3 => (0usize..15).prop_map(Op::Ack),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Op::TornWrite),
    ]
}

/// The model: records in append order with their sequence; the in-memory and
/// the checkpointed watermark (a restart falls back to the checkpointed one).
struct Model {
    records: VecDeque<(u64, uuid::Uuid, Vec<u8>)>,
    watermark: u64,
    checkpointed: u64,
}

impl Model {
    fn pending(&self) -> Vec<(uuid::Uuid, Vec<u8>)> {
        self.records
            .iter()
            .filter(|(seq, ..)| *seq > self.watermark)
            .map(|(_, id, v)| (*id, v.clone()))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_spool_agrees_with_a_queue(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(opts(dir.path(), 2048)).unwrap();
        let mut model = Model { records: VecDeque::new(), watermark: 0, checkpointed: 0 };
        let mut n = 0u64;
        for op in ops {
            match op {
                Op::Append(sizes) => {
                    let batch: Vec<NewRecord> = sizes.iter().map(|s| { n += 1; record(n, *s) }).collect();
                    let last = store.append(&batch, false).unwrap().last_seq;
                    let first = last + 1 - batch.len() as u64;
                    for (i, r) in batch.into_iter().enumerate() {
                        model.records.push_back((first + i as u64, r.id, r.value));
                    }
                }
                Op::Ack(k) => {
                    let mut reader = store.reader();
                    let (batch, _) = reader.read(&store, k).unwrap();
                    if let Some(last) = batch.last() {
                        store.ack(last.seq, batch.len() as u64);
                        model.watermark = last.seq;
                    }
                }
                Op::Checkpoint => {
                    store.checkpoint().unwrap();
                    model.checkpointed = model.watermark;
                }
                Op::Restart => {
                    drop(store);
                    store = Store::open(opts(dir.path(), 2048)).unwrap().0;
                    model.watermark = model.checkpointed;
                }
                Op::TornWrite(garbage) => {
                    // A crash in the middle of a write: bytes that are not a whole record.
                    let (_, newest) = list_segments(dir.path()).unwrap().pop().unwrap();
                    drop(store);
                    let mut f = std::fs::OpenOptions::new().append(true).open(&newest).unwrap();
                    std::io::Write::write_all(&mut f, &garbage).unwrap();
                    drop(f);
                    let (s, report) = Store::open(opts(dir.path(), 2048)).unwrap();
                    prop_assert_eq!(report.torn_bytes, garbage.len() as u64);
                    prop_assert_eq!(report.corrupt_regions, 0);
                    store = s;
                    model.watermark = model.checkpointed;
                }
            }
            model.records.retain(|(seq, ..)| *seq > model.checkpointed.min(model.watermark));
            prop_assert_eq!(pending(&store), model.pending());
            prop_assert_eq!(store.stats().pending, model.pending().len() as u64);
        }
    }
}

#[derive(Debug, Clone)]
enum ReadOp {
    /// Append this many records; also hand them to the in-memory tail, as the
    /// writer thread does, unless `false` (a batch the tail missed).
    Append(usize, bool),
    /// Read up to this many: from memory when the tail holds them, else disk.
    Read(usize),
    /// Move the reader back to an earlier record (a producer rewind).
    Rewind(prop::sample::Index),
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    prop_oneof![
        4 => (1usize..20, prop::bool::weighted(0.8)).prop_map(|(n, t)| ReadOp::Append(n, t)),
        4 => (1usize..30).prop_map(ReadOp::Read),
        1 => any::<prop::sample::Index>().prop_map(ReadOp::Rewind),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whether records come from the in-memory tail or from the segment
    /// files, a reader sees every committed record once, in order, with the
    /// same content, across rewinds and segment rolls.
    #[test]
    fn memory_and_disk_reads_agree(ops in proptest::collection::vec(read_op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(opts(dir.path(), 4096)).unwrap();
        let mut reader = store.reader_for("whatsapp.presence.v1");
        let mut all: Vec<(u64, uuid::Uuid, Vec<u8>)> = Vec::new();
        let mut pos = 0usize;
        for op in ops {
            match op {
                ReadOp::Append(k, to_tail) => {
                    let n0 = all.len() as u64;
                    let batch: Vec<NewRecord> = (1..=k as u64).map(|i| record(n0 + i, 50)).collect();
                    let last = store.append(&batch, false).unwrap().last_seq;
                    let first = last + 1 - k as u64;
                    for (i, r) in batch.iter().enumerate() {
                        all.push((first + i as u64, r.id, r.value.clone()));
                    }
                    if to_tail {
                        store.tail().push(first, batch.into_iter());
                    }
                }
                ReadOp::Read(k) => {
                    let mut got = reader.read_cached(&store, k).unwrap_or_default();
                    if got.is_empty() {
                        got = reader.read(&store, k).unwrap().0;
                    }
                    let want = &all[pos..(pos + k).min(all.len())];
                    let got: Vec<_> = got.into_iter().map(|r| (r.seq, r.id, r.value)).collect();
                    prop_assert!(got.len() <= want.len());
                    prop_assert_eq!(&got[..], &want[..got.len()]);
                    if got.is_empty() {
                        prop_assert_eq!(want.len(), 0, "records left but none read");
                    }
                    pos += got.len();
                }
                ReadOp::Rewind(i) => {
                    if pos > 0 {
                        pos = i.index(pos);
                        reader.seek(all[pos].0);
                    }
                }
            }
        }
        // Whatever is left still reads back in order.
        loop {
            let mut got = reader.read_cached(&store, 64).unwrap_or_default();
            if got.is_empty() {
                got = reader.read(&store, 64).unwrap().0;
            }
            if got.is_empty() {
                break;
            }
            for r in got {
                prop_assert_eq!((r.seq, r.id, r.value), all[pos].clone());
                pos += 1;
            }
        }
        prop_assert_eq!(pos, all.len());
    }
}

/// A closed spool holding ten 100-byte records in one segment, and that segment.
/// A spool left by a bridge from before format version 2: its version-1
/// segment is recovered and read (kind unknown), appends go to a version-2
/// segment, and after a restart both are read in order, each record with
/// its kind.
#[test]
fn a_version_1_spool_is_still_read_and_new_records_keep_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<StoredRecord> = (1..=3)
        .map(|n| {
            let r = record(n, 40 + n as usize);
            StoredRecord {
                seq: n,
                arrival_ms: r.arrival_ms,
                id: r.id,
                kind: RecordKind::UNKNOWN,
                topic: r.topic,
                key: r.key,
                value: r.value,
            }
        })
        .collect();
    let v1 = spool::testkit::segment_v1(&old);
    std::fs::write(dir.path().join(segment_name(1)), v1).unwrap();
    let (store, report) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(report.pending, 3);
    assert_eq!((report.torn_bytes, report.corrupt_regions), (0, 0));
    let new = NewRecord {
        kind: RecordKind(2),
        ..record(4, 60)
    };
    assert_eq!(
        store
            .append(std::slice::from_ref(&new), true)
            .unwrap()
            .last_seq,
        4
    );
    drop(store);

    let (store, report) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(report.pending, 4);
    let (read, skipped) = store.reader().read(&store, 100).unwrap();
    assert_eq!(skipped, 0);
    let got: Vec<_> = read
        .iter()
        .map(|r| (r.seq, r.kind, r.id, &r.value))
        .collect();
    let mut want: Vec<_> = old
        .iter()
        .map(|r| (r.seq, r.kind, r.id, &r.value))
        .collect();
    want.push((4, RecordKind(2), new.id, &new.value));
    assert_eq!(got, want);
    // Only the old segment is version 1: every segment written here is version 2.
    let segments = list_segments(dir.path()).unwrap();
    assert_eq!(segments[0].0, 1);
    for (_, path) in &segments[1..] {
        assert_eq!(
            &std::fs::read(path).unwrap()[..8],
            MAGIC,
            "{}",
            path.display()
        );
    }
}

fn ten_records() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    let batch: Vec<NewRecord> = (1..=10).map(|n| record(n, 100)).collect();
    store.append(&batch, true).unwrap();
    drop(store);
    let (_, seg) = list_segments(dir.path())
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    (dir, seg)
}

#[test]
fn a_torn_tail_is_cut_and_everything_before_it_kept() {
    let (dir, seg) = ten_records();
    // Cut the last record in half, as a crash mid-write would.
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 60)
        .unwrap();

    let (store, report) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    assert!(report.torn_bytes > 0);
    assert_eq!(report.corrupt_regions, 0);
    assert_eq!(report.pending, 9);
    let got = pending(&store);
    assert_eq!(got.len(), 9);
    assert_eq!(got[8].0, uuid::Uuid::from_u128(9));
    // Appends go on after the cut, and survive another restart.
    store.append(&[record(11, 10)], true).unwrap();
    drop(store);
    let (store, report) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(report.torn_bytes, 0);
    assert_eq!(pending(&store).len(), 10);
}

#[test]
fn a_corrupt_record_in_the_middle_is_skipped_and_counted() {
    let (dir, seg) = ten_records();
    let mut bytes = std::fs::read(&seg).unwrap();
    let frame = bytes.len() / 10; // records are the same size; flip a byte inside the 5th
    let at = 8 + 4 * frame + 40;
    bytes[at] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();

    let (store, report) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(report.corrupt_regions, 1);
    assert_eq!(report.corrupt_records, 1);
    assert_eq!(report.torn_bytes, 0);
    let mut reader = store.reader();
    let (got, skipped) = reader.read(&store, 100).unwrap();
    assert_eq!(skipped, 0, "counted at recovery already");
    let ids: Vec<u128> = got.iter().map(|r| r.id.as_u128()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 6, 7, 8, 9, 10]);
}

#[test]
fn garbage_in_the_spool_directory_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("00000000000000000001.seg"),
        b"not a segment at all",
    )
    .unwrap();
    std::fs::write(dir.path().join("acked"), b"garbage").unwrap();
    std::fs::write(dir.path().join("README.txt"), b"ignored").unwrap();
    let (store, report) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    assert!(report.checkpoint_lost);
    assert_eq!(report.pending, 0);
    store.append(&[record(1, 10)], true).unwrap();
    assert_eq!(pending(&store).len(), 1);
}

#[test]
fn a_full_spool_refuses_and_recovers_once_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        max_bytes: 64 * 1024,
        ..opts(dir.path(), 8 * 1024)
    };
    let (store, _) = Store::open(o).unwrap();
    let mut appended = 0;
    let err = loop {
        match store.append(&[record(appended + 1, 500)], false) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 1000, "never filled up");
    };
    assert!(matches!(err, SpoolError::Full), "{err}");
    assert!(store.stats().bytes <= 64 * 1024);
    // Deliver everything: whole segments are deleted and appends work again.
    let mut reader = store.reader();
    let (all, _) = reader.read(&store, 10_000).unwrap();
    assert_eq!(all.len() as u64, appended);
    store.ack(all.last().unwrap().seq, appended);
    store.checkpoint().unwrap();
    store.append(&[record(5000, 500)], false).unwrap();
    store.checkpoint().unwrap();
    assert!(store.stats().bytes < 16 * 1024, "{:?}", store.stats());
}

/// A disk that fills up on demand, mid-write.
struct FillingDisk {
    full: Arc<AtomicBool>,
}

struct FillingFile {
    inner: std::fs::File,
    full: Arc<AtomicBool>,
}

impl SegmentFile for FillingFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            // Half the bytes land, then ENOSPC: the worst case.
            io::Write::write_all(&mut self.inner, &buf[..buf.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28));
        }
        io::Write::write_all(&mut self.inner, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28));
        }
        std::os::unix::fs::FileExt::write_all_at(&self.inner, buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        io::Seek::seek(&mut self.inner, io::SeekFrom::Start(len)).map(|_| ())
    }
}

/// A new file opened for writing, as the spool creates segments.
fn create_new(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
}

impl SpoolIo for FillingDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let inner = create_new(path)?;
        Ok(Box::new(FillingFile {
            inner,
            full: self.full.clone(),
        }))
    }
}

#[test]
fn a_full_disk_refuses_corrupts_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let io = Arc::new(FillingDisk { full: full.clone() });
    let (store, _) = Store::open_with_io(opts(dir.path(), 1 << 20), io.clone()).unwrap();
    store
        .append(&[record(1, 100), record(2, 100)], true)
        .unwrap();

    full.store(true, Ordering::SeqCst);
    let err = store
        .append(&[record(3, 100), record(4, 100)], true)
        .unwrap_err();
    assert!(matches!(err, SpoolError::Io { .. }), "{err}");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert_eq!(store.stats().pending, 2);

    full.store(false, Ordering::SeqCst);
    store.append(&[record(5, 100)], true).unwrap();
    let ids: Vec<u128> = pending(&store).iter().map(|r| r.0.as_u128()).collect();
    assert_eq!(ids, vec![1, 2, 5]);
    drop(store);

    let (store, report) = Store::open_with_io(opts(dir.path(), 1 << 20), io).unwrap();
    assert_eq!(report.torn_bytes, 0, "the failed write left no torn bytes");
    assert_eq!(report.corrupt_regions, 0);
    let ids: Vec<u128> = pending(&store).iter().map(|r| r.0.as_u128()).collect();
    assert_eq!(ids, vec![1, 2, 5]);
}

#[test]
fn one_bridge_per_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    match Store::open(opts(dir.path(), 1 << 20)) {
        Err(SpoolError::Locked { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second store opened the same directory"),
    }
}

/// Real files with switchable faults: failing syncs (the fsyncgate case),
/// failing truncates, and writes held at a gate.
#[derive(Clone, Default)]
struct FaultyDisk {
    sync_fails: Arc<AtomicBool>,
    truncate_fails: Arc<AtomicBool>,
    gate: Arc<Gate>,
}

/// Holds writes while closed; tells the test when a write is held.
#[derive(Default)]
struct Gate {
    closed: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    held: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Gate {
    fn close(&self) -> std::sync::mpsc::Receiver<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        *self.held.lock().unwrap() = Some(tx);
        *self.closed.lock().unwrap() = true;
        rx
    }

    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap();
        if *closed {
            if let Some(tx) = self.held.lock().unwrap().as_ref() {
                let _ = tx.send(());
            }
        }
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
    }
}

struct FaultyFile {
    inner: std::fs::File,
    disk: FaultyDisk,
}

impl SegmentFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.disk.gate.pass();
        io::Write::write_all(&mut self.inner, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.inner, buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.disk.sync_fails.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.disk.truncate_fails.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.set_len(len)?;
        io::Seek::seek(&mut self.inner, io::SeekFrom::Start(len)).map(|_| ())
    }
}

impl SpoolIo for FaultyDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let inner = create_new(path)?;
        Ok(Box::new(FaultyFile {
            inner,
            disk: self.clone(),
        }))
    }
}

/// A store of 1 MiB segments with `fsync` on a [`FaultyDisk`]: its
/// directory, the disk (to inject faults), the options (to reopen) and the store.
fn faulty_store(fsync: FsyncPolicy) -> (tempfile::TempDir, FaultyDisk, StoreOptions, Store) {
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::default();
    let o = StoreOptions {
        fsync,
        ..opts(dir.path(), 1 << 20)
    };
    let (store, _) = Store::open_with_io(o.clone(), Arc::new(disk.clone())).unwrap();
    (dir, disk, o, store)
}

fn ids(store: &Store) -> Vec<u128> {
    pending(store).iter().map(|r| r.0.as_u128()).collect()
}

#[test]
fn a_failed_fsync_refuses_the_batch_seals_the_segment_and_never_brings_it_back() {
    let (dir, disk, o, store) = faulty_store(FsyncPolicy::Always);
    store
        .append(&[record(1, 100), record(2, 100)], false)
        .unwrap();
    let sealed = list_segments(dir.path()).unwrap()[0].1.clone();

    // The fsync fails, and the bytes cannot even be cut back.
    disk.sync_fails.store(true, Ordering::SeqCst);
    disk.truncate_fails.store(true, Ordering::SeqCst);
    let err = store
        .append(&[record(3, 100), record(4, 100)], false)
        .unwrap_err();
    assert!(matches!(err, SpoolError::SyncFailed(_)), "{err}");
    assert_eq!(store.take_sync_failures(), 1);
    assert_eq!(store.append_blocked(), Some(BLOCKED_SYNC_FAILED));
    assert_eq!(store.stats().pending, 2);
    let sealed_len = std::fs::metadata(&sealed).unwrap().len();

    // While syncs fail, nothing is answered 200.
    assert!(store.append(&[record(5, 100)], false).is_err());

    // Syncs work again: appends go to a new segment, never to the sealed one.
    disk.sync_fails.store(false, Ordering::SeqCst);
    disk.truncate_fails.store(false, Ordering::SeqCst);
    let a = store.append(&[record(6, 100)], false).unwrap();
    assert_eq!(a.last_seq, 3, "the refused batch's sequences are reused");
    assert_eq!(store.append_blocked(), None);
    store.append(&[record(7, 100)], false).unwrap();
    assert_eq!(std::fs::metadata(&sealed).unwrap().len(), sealed_len);
    assert!(list_segments(dir.path()).unwrap().len() >= 2);
    assert_eq!(ids(&store), vec![1, 2, 6, 7]);
    drop(store);

    // The refused records are still in the sealed file (the cut failed):
    // recovery knows them as never committed.
    let (store, report) = Store::open(o).unwrap();
    assert_eq!(report.uncommitted_records, 2, "{report:?}");
    assert_eq!(report.corrupt_regions, 0);
    assert_eq!(ids(&store), vec![1, 2, 6, 7]);
}

#[test]
fn a_failed_periodic_sync_stops_answers_until_a_sync_works() {
    let (_dir, disk, o, store) = faulty_store(FsyncPolicy::Interval);
    store
        .append(&[record(1, 100), record(2, 100)], false)
        .unwrap();

    disk.sync_fails.store(true, Ordering::SeqCst);
    assert!(matches!(store.sync(), Err(SpoolError::SyncFailed(_))));
    assert_eq!(store.take_sync_failures(), 1);
    // No new segment can be made durable: appends are refused.
    assert!(store.append_blocked().is_some());
    assert!(store.append(&[record(3, 100)], false).is_err());
    assert!(!store.retry_blocked());

    disk.sync_fails.store(false, Ordering::SeqCst);
    assert!(store.retry_blocked());
    assert_eq!(store.append_blocked(), None);
    store.append(&[record(4, 100)], false).unwrap();
    // The events answered before the failure are kept (and delivered).
    assert_eq!(ids(&store), vec![1, 2, 4]);
    drop(store);
    let (store, report) = Store::open(o).unwrap();
    assert_eq!(report.uncommitted_records, 0);
    assert_eq!(ids(&store), vec![1, 2, 4]);
}

/// What the writer thread reported.
#[derive(Clone, Default)]
struct Counts {
    sync_failures: Arc<std::sync::atomic::AtomicU64>,
    committed: Arc<std::sync::atomic::AtomicU64>,
}

impl spool::Observer for Counts {
    fn synced(&self, _: std::time::Duration) {}
    fn committed(&self, _: std::time::Duration, _: spool::RecordKind, _: Option<&'static str>) {
        self.committed.fetch_add(1, Ordering::SeqCst);
    }
    fn sync_failures(&self, count: u64) {
        self.sync_failures.fetch_add(count, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_writer_answers_every_waiter_503_when_the_fsync_fails_and_counts_it() {
    use spool::Spool;
    let (_dir, disk, _, store) = faulty_store(FsyncPolicy::Always);
    let observer = Counts::default();
    let (committed, _) = tokio::sync::watch::channel(0);
    let spool = Spool::start(
        Arc::new(store),
        std::time::Duration::from_secs(3600),
        observer.clone(),
        committed,
    )
    .unwrap();

    // Hold the writer in its first write so the others queue up behind it
    // and go out as one batch with one (failing) fsync.
    let held = disk.gate.close();
    disk.sync_fails.store(true, Ordering::SeqCst);
    let mut waiters = Vec::new();
    for n in 1..=20 {
        let spool = spool.clone();
        waiters.push(tokio::spawn(async move {
            spool.append(record(n, 50), None).await
        }));
    }
    tokio::task::spawn_blocking(move || held.recv().unwrap())
        .await
        .unwrap();
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    disk.gate.open();
    // The batch whose fsync failed is refused, and so is every later one
    // while no new segment can be made durable.
    let mut sync_failed = 0;
    for w in waiters {
        match w.await.unwrap() {
            Err(SpoolError::SyncFailed(_)) => sync_failed += 1,
            Err(SpoolError::Io { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(sync_failed >= 1);
    let failures = observer.sync_failures.load(Ordering::SeqCst);
    assert!(failures >= 1, "{failures}");
    assert_eq!(observer.committed.load(Ordering::SeqCst), 0);
    assert!(spool.store().append_blocked().is_some());
    disk.sync_fails.store(false, Ordering::SeqCst);
    let seq = spool.append(record(100, 50), None).await.unwrap();
    assert_eq!(seq, 1, "nothing of the refused requests was committed");
    assert_eq!(ids(spool.store()), vec![100]);
}

/// `spool.append_timeout` covers only the wait before the writer takes a
/// request: a request the writer took is answered with its real outcome
/// even after the timeout (200 and committed), and one it had not taken is
/// answered 503 and never written.
#[tokio::test(flavor = "current_thread")]
async fn a_timed_out_append_is_never_committed_and_a_taken_one_is_answered() {
    use spool::Spool;
    let (_dir, disk, _, store) = faulty_store(FsyncPolicy::Always);
    let (committed, _) = tokio::sync::watch::channel(0);
    let timeout = std::time::Duration::from_secs(5);
    let spool = Spool::start(Arc::new(store), timeout, (), committed).unwrap();

    // A: taken by the writer, which then hangs in write(2).
    let held = disk.gate.close();
    let a = {
        let spool = spool.clone();
        tokio::spawn(async move { spool.append(record(1, 50), None).await })
    };
    tokio::task::spawn_blocking(move || held.recv().unwrap())
        .await
        .unwrap();

    // From here time is virtual: B waits in the queue past its timeout.
    tokio::time::pause();
    let b = spool.append(record(2, 50), None).await;
    assert!(matches!(b, Err(SpoolError::Timeout)), "{b:?}");
    tokio::time::advance(timeout * 10).await;
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        !a.is_finished(),
        "A was answered while the writer still held it: {:?}",
        a.await
    );

    // The disk comes back: A is committed and answered 200; B never written.
    disk.gate.open();
    tokio::time::resume();
    let a = a
        .await
        .unwrap()
        .expect("A was taken: its answer is the commit");
    assert_eq!(a, 1);
    let c = spool.append(record(3, 50), None).await.unwrap();
    assert_eq!(c, 2, "B took no sequence number");
    assert_eq!(ids(spool.store()), vec![1, 3]);
}

#[test]
fn an_old_acked_checkpoint_is_still_read_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20);
    let (store, _) = Store::open(o.clone()).unwrap();
    let batch: Vec<NewRecord> = (1..=5).map(|n| record(n, 10)).collect();
    store.append(&batch, true).unwrap();
    drop(store);
    // What an older version left: `acked` (PBACKED1) with watermark 3, no `checkpoint`.
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    std::fs::write(dir.path().join("acked"), encode_checkpoint(3)).unwrap();
    let (store, report) = Store::open(o.clone()).unwrap();
    assert!(!report.checkpoint_lost);
    assert_eq!(store.stats().watermark, 3);
    assert_eq!(ids(&store), vec![4, 5]);
    assert!(!dir.path().join("acked").exists(), "migrated");
    assert_eq!(
        std::fs::metadata(dir.path().join("checkpoint"))
            .unwrap()
            .len(),
        CHECKPOINT_FILE_BYTES as u64
    );
    // Checkpoints overwrite the preallocated file in place.
    store.ack(4, 1);
    store.checkpoint().unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("checkpoint"))
            .unwrap()
            .len(),
        CHECKPOINT_FILE_BYTES as u64
    );
    drop(store);
    let (store, _) = Store::open(o).unwrap();
    assert_eq!(ids(&store), vec![5]);
    let SavedCheckpoint::Found(payload) = read_checkpoint_payload(dir.path()).unwrap() else {
        panic!("no checkpoint");
    };
    let settled = spool::settle::Settlement::decode(&payload).expect("decodes");
    assert_eq!(settled.base(), 4);
}

#[test]
fn checkpoint_payloads_are_opaque_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(opts(dir.path(), 1 << 20)).unwrap();
    let big = vec![7u8; MAX_CHECKPOINT_PAYLOAD];
    store.write_checkpoint(&big).unwrap();
    assert_eq!(
        read_checkpoint_payload(dir.path()).unwrap(),
        SavedCheckpoint::Found(big)
    );
    store.write_checkpoint(b"cursors").unwrap();
    assert_eq!(
        read_checkpoint_payload(dir.path()).unwrap(),
        SavedCheckpoint::Found(b"cursors".to_vec())
    );
    assert!(matches!(
        store.write_checkpoint(&vec![0; MAX_CHECKPOINT_PAYLOAD + 1]),
        Err(SpoolError::CheckpointTooLarge(_))
    ));
    assert_eq!(
        read_checkpoint_payload(dir.path()).unwrap(),
        SavedCheckpoint::Found(b"cursors".to_vec())
    );
}
