//! Sequential reads of committed records, of one topic or of all, from the
//! in-memory tail when it can vouch for them, else from the segment files.

use super::*;

impl Store {
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
pub(super) const SCAN_LIMIT: usize = 64 * 1024;

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

pub(super) enum Next {
    Record(StoredRecord),
    Corrupt,
    /// No whole frame left; `torn` bytes of a partial one follow.
    End {
        torn: u64,
    },
}

/// Sequential frame reader over one segment file.
pub(super) struct Cursor {
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
    /// The segment's format, from its header ([`Version::Unknown`]: damaged).
    version: Version,
    /// The sequence of the last good record read.
    last_seq: Option<u64>,
}

impl Cursor {
    pub(super) fn open(path: &Path) -> Result<Self, SpoolError> {
        let mut file =
            File::open(path).map_err(|e| SpoolError::file("opening the segment", path, e))?;
        let mut magic = [0u8; 8];
        let version = if file.read_exact(&mut magic).is_ok() {
            Version::of_header(&magic)
        } else {
            Version::Unknown
        };
        let header_ok = version != Version::Unknown;
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
            base: if header_ok { format::SEGMENT_HEADER } else { 0 },
            version,
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
    pub(super) fn damaged_range(&self, next: Option<u64>, last: Option<u64>) -> (u64, u64) {
        let from = self.last_seq.map_or(self.first_seq, |s| s + 1);
        let through = match next {
            Some(n) => n.saturating_sub(1),
            None => last.unwrap_or(from),
        };
        (from, through.max(from))
    }

    pub(super) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Makes at least `n` bytes available from `pos` unless the file (up to
    /// `limit`) ends first.
    pub(super) fn fill(&mut self, n: usize, limit: u64) -> Result<(), SpoolError> {
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

    pub(super) fn next(&mut self, limit: u64) -> Result<Next, SpoolError> {
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
                match decode_body(body, self.version) {
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
    pub(super) fn resync(&mut self, limit: u64) -> Result<Option<u64>, SpoolError> {
        // Rare path: look at the rest of the segment at once.
        self.fill(usize::MAX / 2, limit)?;
        let rest = &self.buf[self.pos..];
        for skip in 1..rest.len() {
            if let Ok(len) = check_frame(&rest[skip..]) {
                let body = &rest[skip + FRAME_HEADER..skip + FRAME_HEADER + len];
                if let Ok(r) = decode_body(body, self.version) {
                    self.pos += skip;
                    return Ok(Some(r.seq));
                }
            }
        }
        Ok(None)
    }
}
