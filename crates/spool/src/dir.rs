//! `spool.dir` itself: creating it and taking its lock for the store, checking
//! it for `check-config` ([`check_dir`]), and recognising a spool for the
//! `spool` tools ([`recognise`]). Every error here names the path and what was
//! being done, and says what to do where it can.
//!
//! # What a spool looks like
//! A directory holding at least one of: `LOCK` (created by the first thing a
//! bridge does in it, so every spool a bridge has opened has one), `checkpoint`,
//! `acked` (the checkpoint of older versions), or a segment file
//! (`<20 digits>.seg`). A fresh spool has `LOCK`, `checkpoint` and one segment
//! holding only its header. A missing path, an empty directory, or a directory
//! with none of these (`/etc`) is not a spool.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format;
use super::SpoolError;

/// The lock file: flock'd by the process that has the spool open, holding its pid.
pub const LOCK: &str = "LOCK";
/// Files only a spool has (besides segments).
const SPOOL_FILES: [&str; 3] = [LOCK, "checkpoint", "acked"];

/// Creates `dir` and its parents if missing, for the store.
pub fn create(dir: &Path) -> Result<(), SpoolError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => return Err(SpoolError::NotADirectory(dir.to_path_buf())),
        Err(_) => {}
    }
    fs::create_dir_all(dir).map_err(|e| creating_failed(dir, e))
}

/// The precise error for a `spool.dir` that could not be created.
fn creating_failed(dir: &Path, e: io::Error) -> SpoolError {
    if fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return SpoolError::NotADirectory(dir.to_path_buf());
    }
    match nearest_existing(dir) {
        Some((parent, false, _)) => SpoolError::ParentNotADirectory {
            path: dir.to_path_buf(),
            parent,
        },
        _ => SpoolError::file("creating the directory", dir, e),
    }
}

/// The nearest existing ancestor of `dir` (not `dir` itself), whether it is
/// a directory, and the component below it that is missing (the first
/// directory `create_dir_all` would make). A relative path's last ancestor
/// is the working directory.
fn nearest_existing(dir: &Path) -> Option<(PathBuf, bool, PathBuf)> {
    let mut below = dir;
    for a in dir.ancestors().skip(1) {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        if let Ok(m) = fs::metadata(a) {
            return Some((a.to_path_buf(), m.is_dir(), below.to_path_buf()));
        }
        below = a;
    }
    None
}

/// Whether a `stat` error means the path does not exist (a parent that is a
/// file included).
fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Takes the spool's lock for this process and writes its pid into `LOCK`
/// (so that another process refused the lock can name the holder).
pub fn lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SpoolError::file("opening the spool lock", &path, e))?;
    match f.try_lock() {
        Ok(()) => {
            // Informational only: a failure leaves the holder unnamed.
            let _ = f
                .set_len(0)
                .and_then(|()| writeln!(f, "{}", std::process::id()));
            Ok(f)
        }
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::Locked {
            dir: dir.to_path_buf(),
            pid: lock_holder(dir),
        }),
        Err(fs::TryLockError::Error(e)) => Err(SpoolError::file("locking", &path, e)),
    }
}

/// The pid written into `LOCK` by the process that took it last (meaningful
/// while the lock is held).
pub fn lock_holder(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join(LOCK)).ok()?.trim().parse().ok()
}

/// What [`check_dir`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirCheck {
    /// `false`: the directory does not exist yet; `serve` creates it (and
    /// [`check_dir`] proved it can).
    pub exists: bool,
    /// A running bridge holds the lock: normal beside a running bridge.
    pub in_use: bool,
    /// The holder's pid, when `in_use` and known.
    pub pid: Option<u32>,
}

/// Checks that `serve` could create (if missing), use and lock `dir`, for
/// `check-config`. Leaves the file system as it found it and never disturbs
/// a running bridge:
/// - missing: creates its first missing component and removes it again (so
///   the nearest existing parent must be a directory the user can write to);
/// - existing: must be a directory the user can list and create files in
///   (a probe file, removed at once); if `LOCK` exists, its lock is tried
///   (and released at once): held means a bridge is running ([`DirCheck::in_use`]).
pub fn check_dir(dir: &Path) -> Result<DirCheck, SpoolError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => check_existing(dir),
        Ok(_) => Err(SpoolError::NotADirectory(dir.to_path_buf())),
        Err(e) if missing(&e) => check_missing(dir),
        Err(e) => Err(SpoolError::file("reading", dir, e)),
    }
}

fn check_missing(dir: &Path) -> Result<DirCheck, SpoolError> {
    let Some((parent, is_dir, first)) = nearest_existing(dir) else {
        return Err(SpoolError::file(
            "creating the directory",
            dir,
            io::Error::from(io::ErrorKind::NotFound),
        ));
    };
    if !is_dir {
        return Err(SpoolError::ParentNotADirectory {
            path: dir.to_path_buf(),
            parent,
        });
    }
    fs::create_dir(&first).map_err(|e| creating_failed(dir, e))?;
    // A bridge starting meanwhile may have put its LOCK in it: then this
    // fails and the directory stays, as it should.
    let _ = fs::remove_dir(&first);
    Ok(DirCheck {
        exists: false,
        in_use: false,
        pid: None,
    })
}

fn check_existing(dir: &Path) -> Result<DirCheck, SpoolError> {
    fs::read_dir(dir).map_err(|e| SpoolError::file("listing the directory", dir, e))?;
    let probe = dir.join(format!(".check-config-{}.probe", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| SpoolError::file("creating a file in", dir, e))?;
    let _ = fs::remove_file(&probe);
    let path = dir.join(LOCK);
    let f = match fs::OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(DirCheck {
                exists: true,
                in_use: false,
                pid: None,
            })
        }
        Err(e) => return Err(SpoolError::file("opening the spool lock", &path, e)),
    };
    match f.try_lock() {
        // Released when `f` is dropped, right away.
        Ok(()) => Ok(DirCheck {
            exists: true,
            in_use: false,
            pid: None,
        }),
        Err(fs::TryLockError::WouldBlock) => Ok(DirCheck {
            exists: true,
            in_use: true,
            pid: lock_holder(dir),
        }),
        Err(fs::TryLockError::Error(e)) => Err(SpoolError::file("locking", &path, e)),
    }
}

/// `Ok` if `dir` is a spool (see the module docs), else why not.
pub fn recognise(dir: &Path) -> Result<(), SpoolError> {
    let not_a_spool = |why: &'static str| SpoolError::NotASpool {
        path: dir.to_path_buf(),
        why,
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(SpoolError::NotADirectory(dir.to_path_buf())),
        Err(e) if missing(&e) => return Err(not_a_spool("it does not exist")),
        Err(e) => return Err(SpoolError::file("reading", dir, e)),
    }
    let entries =
        fs::read_dir(dir).map_err(|e| SpoolError::file("listing the directory", dir, e))?;
    let mut empty = true;
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::file("listing the directory", dir, e))?;
        empty = false;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if SPOOL_FILES.contains(&name.as_ref()) || format::parse_segment_name(&name).is_some() {
            return Ok(());
        }
    }
    Err(not_a_spool(if empty {
        "it is an empty directory"
    } else {
        "it holds none of a spool's files (LOCK, checkpoint, *.seg)"
    }))
}
