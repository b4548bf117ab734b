//! The writer's side: appending batches (group commit), fsync, sealing and
//! rolling segments, and taking appends again after a failure.

use super::*;

/// Bytes a blocked store must be able to write (and sync) before it takes
/// appends again: see [`Store::retry_blocked`].
pub(super) const PROBE_BYTES: usize = 64 * 1024;

impl Store {
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

    /// Appends a batch as one write, synced per policy (`sync` forces a sync).
    /// Returns the sequence of the last record. All or nothing: on error no
    /// record of the batch is visible and the file is cut back.
    ///
    /// A failed write or sync seals the segment for good and opens a new one
    /// starting at the same sequence, so the records of the failed batch are
    /// never committed (see "Sealed segments" in [`crate`]).
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
            let head = format::Head {
                seq: first + i as u64,
                arrival_ms: r.arrival_ms,
                id: &r.id,
                kind: r.kind,
            };
            format::encode_parts(&head, &r.topic, &r.key, &r.value, &mut buf);
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
    pub(super) fn seal(&self, active: &mut Active, reason: &'static str) {
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
    pub(super) fn open_segment(&self, active: &mut Active) -> Result<(), SpoolError> {
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

    pub(super) fn roll(&self, active: &mut Active) -> Result<(), SpoolError> {
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
}

/// Creates the segment starting at `first_seq`: written as `<name>.tmp`,
/// header synced, then renamed (replacing a sealed segment without records
/// of the same name, atomically) and the directory synced. The segment file
/// is thus always whole, and once this returns its name is durable, which
/// is what voids the records of a failed write in the segment before it.
pub(super) fn new_segment(
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
pub(super) fn blocked_reason(e: &io::Error, otherwise: &'static str) -> &'static str {
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        BLOCKED_DISK_FULL
    } else {
        otherwise
    }
}
