//! Opening a spool: scanning every segment, cutting torn writes off,
//! counting damaged regions, restoring the settled set, and removing what an
//! interrupted write left.

use super::*;

impl Store {
    pub fn open_with_io(
        opts: StoreOptions,
        io: Arc<dyn SpoolIo>,
    ) -> Result<(Self, RecoveryReport), SpoolError> {
        crate::dir::create(&opts.dir)?;
        let lock = crate::dir::lock(&opts.dir)?;
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
}

pub(super) struct Scan {
    /// Last sequences, overall and per topic (`bytes` unset).
    pub(super) meta: SegMeta,
    /// Unsettled records per topic.
    pub(super) pending: BTreeMap<String, u64>,
    pub(super) valid_end: u64,
    pub(super) torn_bytes: u64,
    pub(super) corrupt_regions: u64,
    /// The records of each damaged region (first and last sequence), below `void_from`.
    pub(super) damaged: Vec<(u64, u64)>,
    /// Records at or above `void_from` (never committed).
    pub(super) void_records: u64,
}

/// Scans a segment; records with a sequence at or above `void_from` (the
/// next segment's first) and everything after them are not part of it.
pub(super) fn scan_segment(
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
pub(super) struct Damaged(pub(super) BTreeMap<u64, u64>);

impl Damaged {
    /// Records `from..=through` above `base` (not settled for every topic)
    /// that no earlier region covered; remembers the range.
    pub(super) fn count(&mut self, from: u64, through: u64, base: u64) -> u64 {
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
pub(super) fn truncate(io: &dyn SpoolIo, path: &Path, len: u64) -> Result<(), SpoolError> {
    let mut f = io
        .open(path)
        .map_err(|e| SpoolError::file("opening the segment to cut a torn tail", path, e))?;
    f.truncate(len)
        .and_then(|()| f.sync())
        .map_err(|e| SpoolError::file("cutting the torn tail of the segment", path, e))
}

/// Removes what an interrupted write left: temporary checkpoint and segment files.
pub(super) fn remove_leftovers(dir: &Path) -> Result<(), SpoolError> {
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
