//! Acknowledgements and the checkpoint: what is settled, written in place
//! into one of two slots, and the deletion of fully delivered segments.

use super::*;

impl Store {
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
    pub(super) fn delete_delivered(&self) {
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
}

/// Opens the checkpoint file, creating it (with `payload`) if it does not
/// exist or holds no valid slot. A failure is logged and leaves it to be
/// created at the next checkpoint.
pub(super) fn open_checkpoint(
    io: &dyn SpoolIo,
    opts: &StoreOptions,
    payload: &[u8],
) -> CheckpointState {
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
pub(super) fn create_checkpoint(
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
