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
    self, check_frame, decode_body, segment_name, FrameError, StoredRecord, CHECKPOINT_FILE_BYTES,
    CHECKPOINT_SLOT, FRAME_HEADER, MAGIC,
};
use super::io::{DiskIo, SegmentFile, SpoolIo};
use super::recent::Recent;
use super::settle::Settlement;
use super::{FsyncPolicy, SpoolError};

/// The checkpoint: two preallocated slots overwritten in place (see [`format::SLOT_MAGIC`]).
const CHECKPOINT: &str = "checkpoint";
const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// The checkpoint of versions before the slotted file: read at start when
/// `checkpoint` does not exist yet, removed once `checkpoint` is written.
const OLD_CHECKPOINT: &str = "acked";
const OLD_CHECKPOINT_TMP: &str = "acked.tmp";
/// Suffix of a segment being created (renamed to its name once its header is durable).
const SEGMENT_TMP_SUFFIX: &str = ".tmp";
/// Bytes a blocked store must be able to write (and sync) before it takes
/// appends again: see [`Store::retry_blocked`].
const PROBE_BYTES: usize = 64 * 1024;

/// Why appends fail (for `/readyz` and logs): a closed set.
pub const BLOCKED_DISK_FULL: &str = "the spool's disk is full";
pub const BLOCKED_WRITE_FAILED: &str = "a write to the spool failed";
pub const BLOCKED_SYNC_FAILED: &str = "an fsync of the spool failed";
pub const BLOCKED_NO_SEGMENT: &str = "a new spool segment cannot be created";
use super::dir::LOCK;
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
    /// (see "Sealed segments" in [`crate::spool`]).
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

    pub fn open_with_io(
        opts: StoreOptions,
        io: Arc<dyn SpoolIo>,
    ) -> Result<(Self, RecoveryReport), SpoolError> {
        super::dir::create(&opts.dir)?;
        let lock = super::dir::lock(&opts.dir)?;
        remove_leftovers(&opts.dir)?;
        let (mut settle, checkpoint_lost) = read_settlement(&opts.dir)?;
        let mut report = RecoveryReport {
            checkpoint_lost,
            ..Default::default()
        };

        let mut segments = BTreeMap::new();
        // Sequence numbers are never reused: every sequence a cursor names,
        // and every sequence before a segment's name, was handed out already
        // (the records may be gone: settled and deleted, or lost at a power cut).
        let mut last_seq = settle.highest();
        let mut bytes = 0;
        let mut pending: BTreeMap<String, u64> = BTreeMap::new();
        let files = list_segments(&opts.dir)?;
        let mut damaged = Damaged::default();
        for (i, (first, path)) in files.iter().enumerate() {
            let (first, path) = (*first, path.as_path());
            last_seq = last_seq.max(first.saturating_sub(1));
            // Records at or above the next segment's first sequence were never committed.
            let void_from = files.get(i + 1).map(|(f, _)| *f);
            let scan = scan_segment(path, &settle, void_from)?;
            report.torn_bytes += scan.torn_bytes;
            report.corrupt_regions += scan.corrupt_regions;
            for (from, through) in &scan.damaged {
                report.corrupt_records += damaged.count(*from, *through, settle.base());
            }
            report.uncommitted_records += scan.void_records;
            if scan.meta.settled(&settle) {
                io.remove(path)
                    .map_err(|e| SpoolError::file("removing the delivered segment", path, e))?;
                continue;
            }
            // Cut what is not part of the segment (a torn tail, records of a
            // failed batch), and make the segment's length durable in any case:
            // a batch whose fsync failed was cut back only in the page cache,
            // and its bytes may still be on the disk, to come back at a power
            // cut once the segment that voids them is gone.
            truncate(io.as_ref(), path, scan.valid_end)?;
            for (t, n) in scan.pending {
                *pending.entry(t).or_default() += n;
            }
            last_seq = last_seq.max(scan.meta.last_seq.unwrap_or(0));
            bytes += scan.valid_end;
            segments.insert(
                first,
                SegMeta {
                    bytes: scan.valid_end,
                    ..scan.meta
                },
            );
        }
        for (t, n) in &pending {
            settle.appended(t, *n);
        }
        report.pending = settle.pending();
        report.segments = segments.len();
        // Appends always go to a fresh segment after a restart: never after a cut tail.
        let next_seq = last_seq + 1;
        // Named here, at start; the same failure later (a full disk) stays an `Io` error.
        let file = new_segment(io.as_ref(), &opts, next_seq)
            .map_err(|(_, e)| SpoolError::file("creating the first segment in", &opts.dir, e))?;
        let header = MAGIC.len() as u64;
        segments.insert(
            next_seq,
            SegMeta {
                bytes: header,
                ..SegMeta::default()
            },
        );
        bytes += header;
        let checkpoint_file = open_checkpoint(io.as_ref(), &opts, &settle.encode());
        let store = Self {
            io,
            shared: Mutex::new(Shared {
                segments,
                active_first: next_seq,
                committed: last_seq,
                checkpointed: settle.clone(),
                settle,
                bytes,
            }),
            active: Mutex::new(Active {
                file: Some(file),
                first_seq: next_seq,
                len: header,
                next_seq,
                unsynced: false,
            }),
            opts,
            tail: Recent::default(),
            external: Arc::default(),
            checkpoint_file: Mutex::new(checkpoint_file),
            blocked: Mutex::new(None),
            sync_failures: AtomicU64::new(0),
            damaged: Mutex::new(damaged),
            _lock: lock,
        };
        Ok((store, report))
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

    /// While appends are blocked and no request comes (a blocked bridge is
    /// taken out of the load balancer): removes delivered segments, opens a
    /// segment if none is open, and checks that 64 KiB can be
    /// written and synced (then cut off again). True when appends are
    /// expected to work again (the block is cleared).
    pub fn retry_blocked(&self) -> bool {
        if self.append_blocked().is_none() {
            return true;
        }
        let mut active = self.active();
        self.delete_delivered();
        if active.file.is_none() && self.open_segment(&mut active).is_err() {
            return false;
        }
        let len = active.len;
        let Some(file) = active.file.as_mut() else {
            return false;
        };
        let probe = file
            .write_at(len, &[0; PROBE_BYTES])
            .and_then(|()| file.truncate(len));
        let probe = match probe {
            Ok(()) => file.sync().map_err(|e| (e, true)),
            Err(e) => Err((e, false)),
        };
        match probe {
            Ok(()) => {
                active.unsynced = false;
                self.set_blocked(None);
                true
            }
            Err((e, synced)) => {
                if synced {
                    self.sync_failures.fetch_add(1, Ordering::Relaxed);
                }
                if synced || file.truncate(len).is_err() {
                    self.seal(&mut active, blocked_reason(&e, BLOCKED_SYNC_FAILED));
                } else {
                    self.set_blocked(Some(blocked_reason(&e, BLOCKED_WRITE_FAILED)));
                }
                false
            }
        }
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

    /// Appends a batch as one write, synced per policy (`sync` forces a sync).
    /// Returns the sequence of the last record. All or nothing: on error no
    /// record of the batch is visible and the file is cut back.
    ///
    /// A failed write or sync seals the segment for good and opens a new one
    /// starting at the same sequence, so the records of the failed batch are
    /// never committed (see "Sealed segments" in [`crate::spool`]).
    pub fn append(&self, batch: &[NewRecord], sync: bool) -> Result<Appended, SpoolError> {
        let mut active = self.active();
        let size: u64 = batch
            .iter()
            .map(|r| format::framed_len(&r.topic, &r.key, &r.value) as u64)
            .sum();
        if self.is_full(size) {
            return Err(SpoolError::Full);
        }
        if active.file.is_none() {
            self.delete_delivered();
            self.open_segment(&mut active)?;
        } else if active.len + size > self.opts.segment_bytes && active.next_seq > active.first_seq
        {
            self.roll(&mut active)?;
        }
        let mut buf = Vec::with_capacity(size as usize);
        let first = active.next_seq;
        for (i, r) in batch.iter().enumerate() {
            format::encode_parts(
                first + i as u64,
                r.arrival_ms,
                &r.id,
                &r.topic,
                &r.key,
                &r.value,
                &mut buf,
            );
        }
        let mut sync_time = None;
        let len = active.len;
        let Some(file) = active.file.as_mut() else {
            return Err(SpoolError::io(
                "appending to the spool",
                io::Error::other("no open segment"),
            ));
        };
        if let Err(e) = file.write_all(&buf) {
            // Cut back what landed (best effort: the new segment below makes
            // the records void whatever is left), and never write here again.
            let _ = file.truncate(len);
            self.seal(&mut active, blocked_reason(&e, BLOCKED_WRITE_FAILED));
            let _ = self.open_segment(&mut active);
            return Err(SpoolError::io("appending to the spool", e));
        }
        if sync || self.opts.fsync == FsyncPolicy::Always {
            let started = std::time::Instant::now();
            let synced = file.sync();
            sync_time = Some(started.elapsed());
            if let Err(e) = synced {
                // The kernel may have dropped the pages already and would
                // report a later fsync of this file as a success: the batch is
                // answered 503, the segment sealed, and a new one starts at
                // the batch's first sequence, which voids the batch's records.
                self.sync_failures.fetch_add(1, Ordering::Relaxed);
                let _ = file.truncate(len);
                self.seal(&mut active, BLOCKED_SYNC_FAILED);
                let _ = self.open_segment(&mut active);
                return Err(SpoolError::SyncFailed(e));
            }
        }
        self.set_blocked(None);
        active.unsynced = self.opts.fsync != FsyncPolicy::Always && !sync;
        active.len += buf.len() as u64;
        let last = first + batch.len() as u64 - 1;
        active.next_seq = last + 1;
        let mut s = self.shared();
        let first_seq = active.first_seq;
        let s = &mut *s;
        if let Some(m) = s.segments.get_mut(&first_seq) {
            m.bytes += buf.len() as u64;
            for (i, r) in batch.iter().enumerate() {
                m.saw(&r.topic, first + i as u64);
            }
        }
        for r in batch {
            s.settle.appended(&r.topic, 1);
        }
        s.bytes += buf.len() as u64;
        s.committed = last;
        Ok(Appended {
            last_seq: last,
            sync_time,
        })
    }

    /// Syncs the active segment if anything was written since the last sync;
    /// returns how long the sync took.
    ///
    /// A failed sync (`spool.fsync = "interval"`: the records were answered
    /// already) seals the segment, keeps its records, and opens a new one;
    /// until a new segment could be created (its header and directory entry
    /// synced), appends fail.
    pub fn sync(&self) -> Result<Option<std::time::Duration>, SpoolError> {
        let mut active = self.active();
        if !active.unsynced {
            return Ok(None);
        }
        let Some(file) = active.file.as_mut() else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        if let Err(e) = file.sync() {
            self.sync_failures.fetch_add(1, Ordering::Relaxed);
            self.seal(&mut active, BLOCKED_SYNC_FAILED);
            let _ = self.open_segment(&mut active);
            return Err(SpoolError::SyncFailed(e));
        }
        active.unsynced = false;
        Ok(Some(started.elapsed()))
    }

    /// Closes the active segment for good (it is deleted once delivered) and
    /// marks appends blocked for `reason`. The next segment starts at the
    /// active one's next sequence.
    fn seal(&self, active: &mut Active, reason: &'static str) {
        active.file = None;
        active.unsynced = false;
        let mut s = self.shared();
        if let Some(m) = s.segments.get_mut(&active.first_seq) {
            m.sealed_after_failure = true;
        }
        s.active_first = active.next_seq;
        drop(s);
        self.set_blocked(Some(reason));
        self.delete_delivered();
    }

    /// Opens a new segment starting at `active.next_seq`; on failure appends
    /// stay blocked.
    fn open_segment(&self, active: &mut Active) -> Result<(), SpoolError> {
        let next = active.next_seq;
        let file = match new_segment(self.io.as_ref(), &self.opts, next) {
            Ok(f) => f,
            Err((e, source)) => {
                // Keep the first cause (a failed fsync) unless the disk is full.
                let otherwise = self.append_blocked().unwrap_or(BLOCKED_NO_SEGMENT);
                self.set_blocked(Some(blocked_reason(&source, otherwise)));
                return Err(e);
            }
        };
        let header = MAGIC.len() as u64;
        *active = Active {
            file: Some(file),
            first_seq: next,
            len: header,
            next_seq: next,
            unsynced: false,
        };
        let mut s = self.shared();
        // A sealed segment without records has the same name: it was replaced.
        let replaced = s.segments.insert(
            next,
            SegMeta {
                bytes: header,
                ..SegMeta::default()
            },
        );
        s.bytes = s.bytes.saturating_sub(replaced.map_or(0, |m| m.bytes)) + header;
        s.active_first = next;
        Ok(())
    }

    fn roll(&self, active: &mut Active) -> Result<(), SpoolError> {
        if active.unsynced {
            if let Some(file) = active.file.as_mut() {
                // The records were answered already (interval, never): a
                // failed sync is counted, and the segment sealed as planned.
                if file.sync().is_err() {
                    self.sync_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        active.file = None;
        active.unsynced = false;
        self.shared().active_first = active.next_seq;
        self.open_segment(active)?;
        self.delete_delivered();
        Ok(())
    }

    /// Settles every record up to `seq`, whatever its topic; `count` of them
    /// were pending (tools and single-destination tests; the forwarder settles
    /// per topic with [`Store::advance`]).
    pub fn ack(&self, seq: u64, count: u64) {
        let mut s = self.shared();
        let seq = seq.min(s.committed);
        s.settle.advance_all(seq, count);
    }

    /// Settles every record of `topic` up to `through` (capped at what is
    /// committed); `settled` of them were pending.
    pub fn advance(&self, topic: &str, through: u64, settled: u64) {
        let mut s = self.shared();
        let through = through.min(s.committed);
        s.settle.advance(topic, through, settled);
    }

    /// The settled set (for tests and tools).
    pub fn settlement(&self) -> Settlement {
        self.shared().settle.clone()
    }

    /// Persists the settled set (if it moved) and deletes delivered segments.
    pub fn checkpoint(&self) -> Result<(), SpoolError> {
        let (settle, payload) = {
            let s = self.shared();
            if s.settle == s.checkpointed {
                return Ok(());
            }
            (s.settle.clone(), s.settle.encode())
        };
        self.write_checkpoint(&payload)?;
        self.shared().checkpointed = settle;
        self.delete_delivered();
        Ok(())
    }

    /// Makes `payload` (at most [`format::MAX_CHECKPOINT_PAYLOAD`] bytes) the
    /// checkpoint, durably unless `spool.fsync = "never"`. Overwrites the slot
    /// that does not hold the newest durable checkpoint, in place: no new
    /// disk block is needed (once the file exists), so it works on a full
    /// disk. On error the previous checkpoint stays readable.
    pub fn write_checkpoint(&self, payload: &[u8]) -> Result<(), SpoolError> {
        if payload.len() > format::MAX_CHECKPOINT_PAYLOAD {
            return Err(SpoolError::CheckpointTooLarge(payload.len()));
        }
        let mut c = self
            .checkpoint_file
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let durable = self.opts.fsync != FsyncPolicy::Never;
        let generation = c.generation + 1;
        let slot = 1 - c.durable_slot;
        let Some(file) = c.file.as_mut() else {
            let created = create_checkpoint(self.io.as_ref(), &self.opts, payload)
                .map_err(|e| SpoolError::io("creating the checkpoint file", e))?;
            *c = created;
            return Ok(());
        };
        let bytes = format::encode_slot(generation, payload)
            .ok_or(SpoolError::CheckpointTooLarge(payload.len()))?;
        let written = file
            .write_at((slot * CHECKPOINT_SLOT) as u64, &bytes)
            .and_then(|()| if durable { file.sync() } else { Ok(()) });
        // A failed write may have reached the disk in part: the next one gets
        // a higher generation, and goes to the same slot again.
        c.generation = generation;
        written.map_err(|e| SpoolError::io("writing the checkpoint", e))?;
        c.durable_slot = slot;
        Ok(())
    }

    /// Removes sealed segments whose every record is acknowledged and checkpointed.
    fn delete_delivered(&self) {
        let doomed: Vec<u64> = {
            let s = self.shared();
            let mut doomed = Vec::new();
            let mut after_failed_seal = false;
            for (first, m) in &s.segments {
                if *first != s.active_first && !after_failed_seal && m.settled(&s.checkpointed) {
                    doomed.push(*first);
                } else {
                    after_failed_seal = m.sealed_after_failure;
                }
            }
            doomed
        };
        for first in doomed {
            let path = self.opts.dir.join(segment_name(first));
            match self.io.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, segment = %path.display(), "cannot remove a delivered segment");
                    continue;
                }
            }
            let mut s = self.shared();
            if let Some(m) = s.segments.remove(&first) {
                s.bytes = s.bytes.saturating_sub(m.bytes);
            }
            let oldest = s.segments.keys().next().copied().unwrap_or(u64::MAX);
            drop(s);
            let mut damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
            damaged.0 = damaged.0.split_off(&oldest);
        }
    }

    /// Where the writer puts freshly committed records for the reader.
    pub fn tail(&self) -> &Recent {
        &self.tail
    }

    /// A reader of every topic, positioned at the first record after the base.
    pub fn reader(&self) -> Reader {
        Reader {
            next_seq: self.shared().settle.base() + 1,
            cursor: None,
            topic: None,
        }
    }

    /// A reader of one topic's records, positioned after the topic's cursor.
    pub fn reader_for(&self, topic: &str) -> Reader {
        Reader {
            next_seq: self.shared().settle.through(topic) + 1,
            cursor: None,
            topic: Some(topic.to_owned()),
        }
    }
}

/// Records scanned past (other topics') in one [`Reader::read`] at most.
const SCAN_LIMIT: usize = 64 * 1024;

/// Reads committed records in sequence order, of one topic or of all.
pub struct Reader {
    next_seq: u64,
    cursor: Option<(u64, Cursor)>,
    topic: Option<String>,
}

impl Reader {
    /// Moves the reader back (or forward) to `seq`.
    pub fn seek(&mut self, seq: u64) {
        if seq < self.next_seq {
            self.cursor = None;
        }
        self.next_seq = seq;
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The topic this reader reads, if only one.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// Up to `max` records of the reader's topic from its position if the
    /// store's in-memory tail vouches for them (no file I/O: safe on an async
    /// thread). `None` when they must be read from disk with [`Reader::read`];
    /// `Some` (perhaps empty) moves the position past everything the tail saw.
    pub fn read_cached(&mut self, store: &Store, max: usize) -> Option<Vec<StoredRecord>> {
        let topic = self.topic.as_deref()?;
        let mut out = Vec::new();
        let taken = store.tail.take(topic, self.next_seq, max, &mut out)?;
        if taken.next_seq > self.next_seq {
            self.next_seq = taken.next_seq;
        }
        Some(out)
    }

    /// Up to `max` committed records from the reader's position. Damaged
    /// records met on the way are skipped; the second value is the records
    /// lost in damaged regions no one counted before (recovery counts those
    /// it finds, and each region is counted once whichever reader meets it).
    pub fn read(
        &mut self,
        store: &Store,
        max: usize,
    ) -> Result<(Vec<StoredRecord>, u64), SpoolError> {
        let mut out = Vec::new();
        let mut skipped = 0;
        let mut scanned = 0;
        while out.len() < max && scanned < SCAN_LIMIT {
            let (committed, active_first, segment) = {
                let s = store.shared();
                if self.next_seq > s.committed {
                    break;
                }
                // Records before the first segment are gone (settled and
                // deleted, or lost): start at the first segment there is.
                let seg = s
                    .segments
                    .range(..=self.next_seq)
                    .next_back()
                    .or_else(|| s.segments.range(self.next_seq..).next())
                    .map(|(f, m)| (*f, (m.bytes, m.last_seq)));
                (s.committed, s.active_first, seg)
            };
            let Some((first, (meta_bytes, meta_last))) = segment else {
                break;
            };
            if first > self.next_seq {
                if first > committed {
                    break;
                }
                self.next_seq = first;
            }
            if meta_last.is_none_or(|l| l < self.next_seq) {
                // Nothing left here (a skipped gap): go to the next segment.
                let next = store
                    .shared()
                    .segments
                    .range(self.next_seq..)
                    .next()
                    .map(|(f, _)| *f);
                match next {
                    Some(n) if n <= committed => {
                        self.next_seq = n;
                        continue;
                    }
                    _ => break,
                }
            }
            if self.cursor.as_ref().is_none_or(|(f, _)| *f != first) {
                let path = store.opts.dir.join(segment_name(first));
                self.cursor = Some((first, Cursor::open(&path)?));
            }
            let Some((_, cursor)) = self.cursor.as_mut() else {
                break;
            };
            match cursor.next(meta_bytes)? {
                Next::Record(r) if r.seq < self.next_seq => {}
                Next::Record(r) => {
                    if r.seq > committed {
                        break;
                    }
                    self.next_seq = r.seq + 1;
                    scanned += 1;
                    if self.topic.as_ref().is_none_or(|t| *t == r.topic) {
                        out.push(r);
                    }
                }
                Next::Corrupt => {
                    let found = cursor.resync(meta_bytes)?;
                    let (from, through) = cursor.damaged_range(found, meta_last);
                    skipped += store.note_damage(from, through);
                    if found.is_none() {
                        self.next_seq = meta_last.unwrap_or(self.next_seq) + 1;
                    }
                }
                Next::End { .. } if first == active_first => {
                    // Caught up with the writer: keep the position for the next read.
                    cursor.eof = false;
                    break;
                }
                Next::End { .. } => {
                    self.next_seq = meta_last
                        .map_or(self.next_seq, |l| l + 1)
                        .max(self.next_seq);
                    self.cursor = None;
                }
            }
        }
        Ok((out, skipped))
    }
}

enum Next {
    Record(StoredRecord),
    Corrupt,
    /// No whole frame left; `torn` bytes of a partial one follow.
    End {
        torn: u64,
    },
}

/// Sequential frame reader over one segment file.
struct Cursor {
    file: File,
    /// For errors.
    path: PathBuf,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    pos: usize,
    eof: bool,
    /// The segment's first sequence (from its name).
    first_seq: u64,
    /// The sequence of the last good record read.
    last_seq: Option<u64>,
}

impl Cursor {
    fn open(path: &Path) -> Result<Self, SpoolError> {
        let mut file =
            File::open(path).map_err(|e| SpoolError::file("opening the segment", path, e))?;
        let mut magic = [0u8; 8];
        let header_ok = file.read_exact(&mut magic).is_ok() && &magic == MAGIC;
        if !header_ok {
            file.seek(SeekFrom::Start(0))
                .map_err(|e| SpoolError::file("reading the segment", path, e))?;
        }
        let first_seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(format::parse_segment_name)
            .unwrap_or(0);
        Ok(Self {
            file,
            path: path.to_path_buf(),
            buf: Vec::new(),
            base: if header_ok { MAGIC.len() as u64 } else { 0 },
            pos: 0,
            eof: false,
            first_seq,
            last_seq: None,
        })
    }

    /// The sequences of the records in the damaged region just skipped: from
    /// the one after the last good record (or the segment's first) to the one
    /// before `next`, the first good record after the damage (records of a
    /// segment are numbered without gaps), or to `last` when none follows.
    /// At least one record: the damaged frame's.
    fn damaged_range(&self, next: Option<u64>, last: Option<u64>) -> (u64, u64) {
        let from = self.last_seq.map_or(self.first_seq, |s| s + 1);
        let through = match next {
            Some(n) => n.saturating_sub(1),
            None => last.unwrap_or(from),
        };
        (from, through.max(from))
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Makes at least `n` bytes available from `pos` unless the file (up to
    /// `limit`) ends first.
    fn fill(&mut self, n: usize, limit: u64) -> Result<(), SpoolError> {
        while self.buf.len() - self.pos < n && !self.eof {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.base += self.pos as u64;
                self.pos = 0;
            }
            let end = self.base + self.buf.len() as u64;
            let want = (limit.saturating_sub(end) as usize).min(READ_CHUNK.max(n));
            if want == 0 {
                self.eof = true;
                break;
            }
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let got = self
                .file
                .read(&mut self.buf[old..])
                .map_err(|e| SpoolError::file("reading the segment", &self.path, e))?;
            self.buf.truncate(old + got);
            if got == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    fn next(&mut self, limit: u64) -> Result<Next, SpoolError> {
        self.fill(FRAME_HEADER, limit)?;
        let mut avail = &self.buf[self.pos..];
        let need = match check_frame(avail) {
            Err(FrameError::Incomplete) if avail.len() >= FRAME_HEADER => {
                FRAME_HEADER
                    + u32::from_le_bytes(avail[0..4].try_into().unwrap_or_default()) as usize
            }
            _ => FRAME_HEADER,
        };
        if need > avail.len() {
            self.fill(need, limit)?;
            avail = &self.buf[self.pos..];
        }
        match check_frame(avail) {
            Ok(len) => {
                let body = &avail[FRAME_HEADER..FRAME_HEADER + len];
                match decode_body(body) {
                    Ok(r) => {
                        self.pos += FRAME_HEADER + len;
                        self.last_seq = Some(r.seq);
                        Ok(Next::Record(r))
                    }
                    Err(_) => Ok(Next::Corrupt),
                }
            }
            Err(FrameError::Incomplete) => Ok(Next::End {
                torn: avail.len() as u64,
            }),
            Err(FrameError::Corrupt) => Ok(Next::Corrupt),
        }
    }

    /// Skips forward from a damaged frame to the next whole, valid frame;
    /// returns its sequence. `None` when none follows (the damage runs to
    /// the end: a torn tail).
    fn resync(&mut self, limit: u64) -> Result<Option<u64>, SpoolError> {
        // Rare path: look at the rest of the segment at once.
        self.fill(usize::MAX / 2, limit)?;
        let rest = &self.buf[self.pos..];
        for skip in 1..rest.len() {
            if let Ok(len) = check_frame(&rest[skip..]) {
                if let Ok(r) = decode_body(&rest[skip + FRAME_HEADER..skip + FRAME_HEADER + len]) {
                    self.pos += skip;
                    return Ok(Some(r.seq));
                }
            }
        }
        Ok(None)
    }
}

struct Scan {
    /// Last sequences, overall and per topic (`bytes` unset).
    meta: SegMeta,
    /// Unsettled records per topic.
    pending: BTreeMap<String, u64>,
    valid_end: u64,
    torn_bytes: u64,
    corrupt_regions: u64,
    /// The records of each damaged region (first and last sequence), below `void_from`.
    damaged: Vec<(u64, u64)>,
    /// Records at or above `void_from` (never committed).
    void_records: u64,
}

/// Scans a segment; records with a sequence at or above `void_from` (the
/// next segment's first) and everything after them are not part of it.
fn scan_segment(
    path: &Path,
    settle: &Settlement,
    void_from: Option<u64>,
) -> Result<Scan, SpoolError> {
    let meta = fs::metadata(path).map_err(|e| SpoolError::file("reading the segment", path, e))?;
    if !meta.is_file() {
        return Err(SpoolError::file(
            "reading the segment",
            path,
            io::Error::other("not a regular file: move it out of spool.dir"),
        ));
    }
    let len = meta.len();
    let mut c = Cursor::open(path)?;
    let mut scan = Scan {
        meta: SegMeta::default(),
        pending: BTreeMap::new(),
        valid_end: c.offset(),
        torn_bytes: 0,
        corrupt_regions: 0,
        damaged: Vec::new(),
        void_records: 0,
    };
    loop {
        match c.next(len)? {
            Next::Record(r) if void_from.is_some_and(|v| r.seq >= v) || scan.void_records > 0 => {
                scan.void_records += 1;
            }
            Next::Record(r) => {
                if !settle.is_settled(r.seq, &r.topic) {
                    *scan.pending.entry(r.topic.clone()).or_default() += 1;
                }
                scan.meta.saw(&r.topic, r.seq);
                scan.valid_end = c.offset();
            }
            Next::Corrupt => {
                let at = c.offset();
                if let Some(next) = c.resync(len)? {
                    scan.corrupt_regions += 1;
                    let (from, through) = c.damaged_range(Some(next), None);
                    let through = void_from.map_or(through, |v| through.min(v.saturating_sub(1)));
                    if scan.void_records == 0 && from <= through {
                        scan.damaged.push((from, through));
                    }
                } else {
                    scan.torn_bytes = len - at;
                    break;
                }
            }
            Next::End { torn } => {
                scan.torn_bytes = torn;
                break;
            }
        }
    }
    if scan.void_records > 0 {
        // Whatever follows void records belongs to the failed write too.
        scan.torn_bytes = 0;
    }
    Ok(scan)
}

/// The damaged records counted so far, as ranges `from => through`.
#[derive(Debug, Default)]
struct Damaged(BTreeMap<u64, u64>);

impl Damaged {
    /// Records `from..=through` above `base` (not settled for every topic)
    /// that no earlier region covered; remembers the range.
    fn count(&mut self, from: u64, through: u64, base: u64) -> u64 {
        let from_new = from.max(base + 1);
        let mut new = 0;
        let mut at = from_new;
        for (&f, &t) in self.0.range(..=through) {
            if t < at {
                continue;
            }
            if f > at {
                new += f - at;
            }
            at = at.max(t.saturating_add(1));
            if at > through {
                break;
            }
        }
        if at <= through {
            new += through - at + 1;
        }
        let kept = self.0.entry(from).or_insert(through);
        *kept = (*kept).max(through);
        new
    }
}

/// Cuts a segment back to `len` bytes, durably, through the io layer (so a
/// simulated power cut knows the cut was made).
fn truncate(io: &dyn SpoolIo, path: &Path, len: u64) -> Result<(), SpoolError> {
    let mut f = io
        .open(path)
        .map_err(|e| SpoolError::file("opening the segment to cut a torn tail", path, e))?;
    f.truncate(len)
        .and_then(|()| f.sync())
        .map_err(|e| SpoolError::file("cutting the torn tail of the segment", path, e))
}

/// Creates the segment starting at `first_seq`: written as `<name>.tmp`,
/// header synced, then renamed (replacing a sealed segment without records
/// of the same name, atomically) and the directory synced. The segment file
/// is thus always whole, and once this returns its name is durable, which
/// is what voids the records of a failed write in the segment before it.
fn new_segment(
    io: &dyn SpoolIo,
    opts: &StoreOptions,
    first_seq: u64,
) -> Result<Box<dyn SegmentFile>, (SpoolError, io::Error)> {
    let path = opts.dir.join(segment_name(first_seq));
    let tmp = opts
        .dir
        .join(format!("{}{SEGMENT_TMP_SUFFIX}", segment_name(first_seq)));
    if tmp.exists() {
        let _ = io.remove(&tmp);
    }
    let dup = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
    let mut f = io
        .create(&tmp)
        .map_err(|e| (SpoolError::io("creating a segment", dup(&e)), e))?;
    let header = f.write_all(MAGIC).and_then(|()| f.sync());
    if let Err(e) = header.and_then(|()| io.rename(&tmp, &path)) {
        drop(f);
        let _ = io.remove(&tmp);
        return Err((SpoolError::io("writing a segment header", dup(&e)), e));
    }
    if opts.fsync != FsyncPolicy::Never {
        io.sync_dir(&opts.dir)
            .map_err(|e| (SpoolError::io("syncing the spool directory", dup(&e)), e))?;
    }
    Ok(f)
}

/// The blocked reason for an I/O error: a full disk, or `otherwise`.
fn blocked_reason(e: &io::Error, otherwise: &'static str) -> &'static str {
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        BLOCKED_DISK_FULL
    } else {
        otherwise
    }
}

/// Removes what an interrupted write left: temporary checkpoint and segment files.
fn remove_leftovers(dir: &Path) -> Result<(), SpoolError> {
    let _ = fs::remove_file(dir.join(OLD_CHECKPOINT_TMP));
    let _ = fs::remove_file(dir.join(CHECKPOINT_TMP));
    for entry in fs::read_dir(dir).map_err(|e| SpoolError::file("listing the directory", dir, e))? {
        let entry = entry.map_err(|e| SpoolError::file("listing the directory", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name
            .strip_suffix(SEGMENT_TMP_SUFFIX)
            .and_then(format::parse_segment_name)
            .is_some()
        {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Opens the checkpoint file, creating it (with `payload`) if it does not
/// exist or holds no valid slot. A failure is logged and leaves it to be
/// created at the next checkpoint.
fn open_checkpoint(io: &dyn SpoolIo, opts: &StoreOptions, payload: &[u8]) -> CheckpointState {
    let path = opts.dir.join(CHECKPOINT);
    if let Ok(bytes) = fs::read(&path) {
        if let Some((slot, generation, _)) = format::newest_slot(&bytes) {
            if bytes.len() == CHECKPOINT_FILE_BYTES {
                match io.open(&path) {
                    Ok(file) => {
                        return CheckpointState {
                            file: Some(file),
                            generation,
                            durable_slot: slot,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the spool checkpoint for writing; retrying at the next checkpoint");
                        return CheckpointState {
                            file: None,
                            generation,
                            durable_slot: slot,
                        };
                    }
                }
            }
        }
    }
    match create_checkpoint(io, opts, payload) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the spool checkpoint file; retrying at the next checkpoint");
            CheckpointState {
                file: None,
                generation: 0,
                durable_slot: 1,
            }
        }
    }
}

/// Creates the checkpoint file at its full size (every block allocated now,
/// so later checkpoints overwrite in place), with `payload` in slot 0, under
/// a temporary name renamed into place; then removes the old `acked` file.
fn create_checkpoint(
    io: &dyn SpoolIo,
    opts: &StoreOptions,
    payload: &[u8],
) -> io::Result<CheckpointState> {
    let dir = &opts.dir;
    let tmp = dir.join(CHECKPOINT_TMP);
    if tmp.exists() {
        let _ = io.remove(&tmp);
    }
    let mut bytes = vec![0u8; CHECKPOINT_FILE_BYTES];
    let generation = 1;
    let slot = format::encode_slot(generation, payload)
        .ok_or_else(|| io::Error::other("checkpoint payload larger than 32 KiB"))?;
    bytes[..slot.len()].copy_from_slice(&slot);
    let mut f = io.create(&tmp)?;
    let written = f
        .write_all(&bytes)
        .and_then(|()| f.sync())
        .and_then(|()| io.rename(&tmp, &dir.join(CHECKPOINT)))
        .and_then(|()| io.sync_dir(dir));
    if let Err(e) = written {
        drop(f);
        let _ = io.remove(&tmp);
        return Err(e);
    }
    let old = dir.join(OLD_CHECKPOINT);
    if old.exists() && io.remove(&old).is_ok() {
        let _ = io.sync_dir(dir);
    }
    Ok(CheckpointState {
        file: Some(f),
        generation,
        durable_slot: 0,
    })
}

/// Segment files in sequence order.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| SpoolError::file("listing the directory", dir, e))? {
        let entry = entry.map_err(|e| SpoolError::file("listing the directory", dir, e))?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(format::parse_segment_name)
        {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The settled set, and whether a checkpoint file existed but was unreadable
/// (then nothing is taken as settled: everything on disk is sent again).
pub fn read_settlement(dir: &Path) -> Result<(Settlement, bool), SpoolError> {
    Ok(match read_checkpoint_payload(dir)? {
        SavedCheckpoint::Missing => (Settlement::default(), false),
        SavedCheckpoint::Unreadable => (Settlement::default(), true),
        SavedCheckpoint::Found(payload) => {
            Settlement::decode(&payload).map_or((Settlement::default(), true), |s| (s, false))
        }
    })
}

/// What the checkpoint files of a spool directory hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedCheckpoint {
    /// No checkpoint was ever written.
    Missing,
    /// A checkpoint file exists but no slot of it is valid.
    Unreadable,
    /// The newest valid payload (from `checkpoint`, or the whole old `acked` file).
    Found(Vec<u8>),
}

/// Reads the newest valid checkpoint payload: the newest valid slot of
/// `checkpoint`, or else the content of an `acked` file left by an older
/// version (a version-1 payload, which [`Settlement::decode`] reads).
pub fn read_checkpoint_payload(dir: &Path) -> Result<SavedCheckpoint, SpoolError> {
    let read = |name: &str| match fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::file(
            "reading the checkpoint",
            &dir.join(name),
            e,
        )),
    };
    let current = read(CHECKPOINT)?;
    if let Some(bytes) = &current {
        if let Some((_, _, payload)) = format::newest_slot(bytes) {
            return Ok(SavedCheckpoint::Found(payload.to_vec()));
        }
    }
    match read(OLD_CHECKPOINT)? {
        Some(old) => Ok(SavedCheckpoint::Found(old)),
        None if current.is_some() => Ok(SavedCheckpoint::Unreadable),
        None => Ok(SavedCheckpoint::Missing),
    }
}

/// The base watermark (every record at or below it is settled), and whether
/// a checkpoint file existed but was unreadable.
pub fn read_checkpoint(dir: &Path) -> Result<(u64, bool), SpoolError> {
    read_settlement(dir).map(|(s, lost)| (s.base(), lost))
}

/// Per-segment health, for `spool inspect` and `spool verify`. Read-only.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegmentReport {
    pub file: String,
    pub first_seq: u64,
    pub last_seq: Option<u64>,
    pub bytes: u64,
    pub pending: u64,
    pub torn_bytes: u64,
    pub corrupt_regions: u64,
}

/// Scans every segment without changing anything.
pub fn inspect(dir: &Path) -> Result<(u64, bool, Vec<SegmentReport>), SpoolError> {
    let (settle, checkpoint_lost) = read_settlement(dir)?;
    let watermark = settle.base();
    let mut out = Vec::new();
    let files = list_segments(dir)?;
    for (i, (first, path)) in files.iter().enumerate() {
        let (first, path) = (*first, path.clone());
        let scan = scan_segment(&path, &settle, files.get(i + 1).map(|(f, _)| *f))?;
        out.push(SegmentReport {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            first_seq: first,
            last_seq: scan.meta.last_seq,
            bytes: fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            pending: scan.pending.values().sum(),
            torn_bytes: scan.torn_bytes,
            corrupt_regions: scan.corrupt_regions,
        });
    }
    Ok((watermark, checkpoint_lost, out))
}

/// Whether the spool is locked by a running bridge.
pub fn is_locked(dir: &Path) -> bool {
    match fs::OpenOptions::new().write(true).open(dir.join(LOCK)) {
        Ok(f) => matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Arrival time (Unix ms) of the oldest record above `watermark`, if any.
pub fn oldest_pending(dir: &Path, watermark: u64) -> Result<Option<i64>, SpoolError> {
    for (_, path) in list_segments(dir)? {
        let len = fs::metadata(&path)
            .map_err(|e| SpoolError::file("reading the segment", &path, e))?
            .len();
        let mut c = Cursor::open(&path)?;
        loop {
            match c.next(len)? {
                Next::Record(r) if r.seq > watermark => return Ok(Some(r.arrival_ms)),
                Next::Record(_) => {}
                Next::Corrupt => {
                    if c.resync(len)?.is_none() {
                        break;
                    }
                }
                Next::End { .. } => break,
            }
        }
    }
    Ok(None)
}
