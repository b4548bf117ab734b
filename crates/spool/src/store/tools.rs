//! Read-only views of a spool directory for the operator's tools and
//! `check-config`: its segments, their health, the lock, the oldest pending
//! record.

use super::*;

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
