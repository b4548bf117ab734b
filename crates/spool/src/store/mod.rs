//! The synchronous storage core of the spool: recovery, append, sequential
//! reads, acknowledgement, checkpoints and segment deletion.
//!
//! Blocking I/O only; the async layer ([`super::Spool`]) calls it from a
//! dedicated writer thread and from `spawn_blocking`. One writer appends (the
//! writer lock), any number of readers read with their own file handles, and
//! the shared bookkeeping sits behind a mutex held for microseconds.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::format::{
    self, check_frame, decode_body, segment_name, FrameError, StoredRecord, Version,
    CHECKPOINT_FILE_BYTES, CHECKPOINT_SLOT, FRAME_HEADER, MAGIC,
};
use super::io::{DiskIo, SegmentFile, SpoolIo};
use super::recent::Recent;
use super::settle::Settlement;
use super::{FsyncPolicy, SpoolError};

mod append;
mod checkpoint;
mod reader;
mod recovery;
mod tools;

pub use checkpoint::{read_checkpoint, read_checkpoint_payload, read_settlement, SavedCheckpoint};
pub use reader::Reader;
pub use tools::{inspect, is_locked, list_segments, oldest_pending, SegmentReport};

use append::new_segment;
use checkpoint::open_checkpoint;
use reader::{Cursor, Next};
use recovery::{scan_segment, Damaged};

/// The checkpoint: two preallocated slots overwritten in place (see [`format::SLOT_MAGIC`]).
const CHECKPOINT: &str = "checkpoint";
const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// The checkpoint of versions before the slotted file: read at start when
/// `checkpoint` does not exist yet, removed once `checkpoint` is written.
const OLD_CHECKPOINT: &str = "acked";
const OLD_CHECKPOINT_TMP: &str = "acked.tmp";
/// Suffix of a segment being created (renamed to its name once its header is durable).
const SEGMENT_TMP_SUFFIX: &str = ".tmp";

/// Why appends fail (for `/readyz` and logs): a closed set.
pub const BLOCKED_DISK_FULL: &str = "the spool's disk is full";
pub const BLOCKED_WRITE_FAILED: &str = "a write to the spool failed";
pub const BLOCKED_SYNC_FAILED: &str = "an fsync of the spool failed";
pub const BLOCKED_NO_SEGMENT: &str = "a new spool segment cannot be created";
use crate::dir::LOCK;
/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 256 * 1024;

/// How the store is set up.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

/// What recovery found, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Undelivered events found, to be replayed.
    pub pending: u64,
    /// Bytes cut off the end of segments (torn writes).
    pub torn_bytes: u64,
    /// Damaged regions skipped in the middle of segments.
    pub corrupt_regions: u64,
    /// Records lost in those regions: counted from the sequence numbers of
    /// the good records on both sides of each region (the records of a
    /// segment are numbered without gaps), records already settled for every
    /// topic left out. What `presence_bridge_spool_dropped_events_total{reason="corrupt_record"}` counts.
    pub corrupt_records: u64,
    /// The checkpoint was missing or unreadable (everything on disk is replayed).
    pub checkpoint_lost: bool,
    /// Records cut because a later segment starts at or below their sequence:
    /// written, but their fsync (or write) failed and they were answered 503
    /// (see "Sealed segments" in [`crate`]).
    pub uncommitted_records: u64,
}

#[derive(Debug, Clone, Default)]
struct SegMeta {
    bytes: u64,
    last_seq: Option<u64>,
    /// The last sequence of each topic's records in this segment: the segment
    /// can go once each of them is settled.
    topics: Vec<(String, u64)>,
    /// Sealed after a failed write or sync: it may still hold records of the
    /// failed batch, which recovery recognises by the next segment's first
    /// sequence; so the segment after it stays while it does.
    sealed_after_failure: bool,
}

impl SegMeta {
    fn saw(&mut self, topic: &str, seq: u64) {
        self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
        match self.topics.iter_mut().find(|(t, _)| t == topic) {
            Some((_, last)) => *last = (*last).max(seq),
            None => self.topics.push((topic.to_owned(), seq)),
        }
    }

    /// Every record in it is settled.
    fn settled(&self, s: &Settlement) -> bool {
        self.topics.iter().all(|(t, last)| s.is_settled(*last, t))
    }
}

#[derive(Debug)]
struct Shared {
    segments: BTreeMap<u64, SegMeta>,
    active_first: u64,
    /// Highest sequence readers may see (written, and synced per policy).
    committed: u64,
    /// What is settled (delivered or dead-lettered), per topic.
    settle: Settlement,
    /// The settled set last made durable: segments are deleted by this one.
    checkpointed: Settlement,
    bytes: u64,
}

struct Active {
    /// `None`: the segment is sealed (a write or sync failed, or it is full)
    /// and the next append first opens a new one starting at `next_seq`.
    file: Option<Box<dyn SegmentFile>>,
    first_seq: u64,
    len: u64,
    next_seq: u64,
    unsynced: bool,
}

/// The open checkpoint file.
struct CheckpointState {
    /// `None` until the file exists (creating it needs free space: retried
    /// at each checkpoint until it works).
    file: Option<Box<dyn SegmentFile>>,
    /// Generation of the newest slot written (durable or not).
    generation: u64,
    /// Slot holding the newest checkpoint known durable: never overwritten
    /// until the other slot is durable.
    durable_slot: usize,
}

/// A record to append; the store assigns its sequence number.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub arrival_ms: i64,
    pub id: uuid::Uuid,
    /// What the record holds (named by the crates above the spool).
    pub kind: format::RecordKind,
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// The result of one append.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub last_seq: u64,
    /// How long the fsync took, when there was one.
    pub sync_time: Option<std::time::Duration>,
}

/// Point-in-time numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub pending: u64,
    pub bytes: u64,
    pub committed: u64,
    pub watermark: u64,
}

pub struct Store {
    opts: StoreOptions,
    io: Arc<dyn SpoolIo>,
    shared: Mutex<Shared>,
    active: Mutex<Active>,
    /// The newest committed records, for a reader that keeps up.
    tail: Recent,
    /// Bytes kept in the spool directory outside the segments (the dead-letter
    /// file), set by their owner; they count against `max_bytes`.
    external: Arc<AtomicU64>,
    checkpoint_file: Mutex<CheckpointState>,
    /// Why appends fail, while they do.
    blocked: Mutex<Option<&'static str>>,
    /// Failed fsyncs not yet counted in the metrics ([`Store::take_sync_failures`]).
    sync_failures: AtomicU64,
    /// The records of every damaged region counted already (at recovery or
    /// by a reader), so each record is counted once whoever meets it again;
    /// entries below the oldest segment are dropped with it.
    damaged: Mutex<Damaged>,
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) and recovers the spool in `opts.dir`.
    pub fn open(opts: StoreOptions) -> Result<(Self, RecoveryReport), SpoolError> {
        Self::open_with_io(opts, Arc::new(DiskIo))
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        let s = self.shared();
        Stats {
            pending: s.settle.pending(),
            bytes: s.bytes,
            committed: s.committed,
            watermark: s.settle.base(),
        }
    }

    /// Unsettled records of one topic.
    pub fn pending_of(&self, topic: &str) -> u64 {
        self.shared().settle.pending_of(topic)
    }

    /// Every topic that has or had records in this spool since it was opened.
    pub fn topics(&self) -> Vec<String> {
        self.shared().settle.topics().map(str::to_owned).collect()
    }

    /// Why appends fail right now, if they do (for `/readyz`): set by a failed
    /// write or sync, or a segment that cannot be created; cleared by the next
    /// append that succeeds, or by [`Store::retry_blocked`]. One of the
    /// `BLOCKED_*` constants.
    pub fn append_blocked(&self) -> Option<&'static str> {
        *self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_blocked(&self, reason: Option<&'static str>) {
        *self.blocked.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// Failed fsyncs since the last call (for the metrics).
    pub fn take_sync_failures(&self) -> u64 {
        self.sync_failures.swap(0, Ordering::Relaxed)
    }

    /// A reader met a damaged region whose records are `from..=through`:
    /// the records lost in it, or 0 if it was counted already (at recovery
    /// or by another reader).
    fn note_damage(&self, from: u64, through: u64) -> u64 {
        let base = self.shared().settle.base();
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(from, through, base)
    }

    fn active(&self) -> MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when an append of `bytes` more would not fit. The segments and
    /// the [`Store::external_bytes`] count.
    pub fn is_full(&self, bytes: u64) -> bool {
        self.shared().bytes + self.external.load(Ordering::Relaxed) + bytes > self.opts.max_bytes
    }

    /// The counter of bytes other files in the spool directory take (the
    /// dead-letter file): whoever owns them keeps it up to date.
    pub fn external_bytes(&self) -> Arc<AtomicU64> {
        self.external.clone()
    }

    /// Where the writer puts freshly committed records for the reader.
    pub fn tail(&self) -> &Recent {
        &self.tail
    }
}
