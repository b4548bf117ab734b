//! Every file system operation the spool's writer makes (segments, the
//! checkpoint, directory entries) goes through the small [`SpoolIo`] /
//! [`SegmentFile`] traits, so tests can inject failures (a full disk, a failing
//! or hanging fsync) and simulate a power cut without a special file system.
//!
//! [`DiskIo`] is the real file system. [`PageCacheIo`] is the test layer that
//! models the page cache: bytes written and directory entries changed are
//! volatile until synced, and [`PageCacheIo::power_cut`] rewrites the files on
//! disk to what a machine losing power at that moment could leave behind.
//! Readers (recovery, the forwarder's segment reader) read the real files
//! directly: the simulation writes through, like the page cache does.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

mod page_cache;

pub use page_cache::{Fault, PageCacheIo};

/// An open spool file (a segment, or the checkpoint), as the writer sees it.
pub trait SegmentFile: Send {
    /// Appends at the current position.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Overwrites `buf.len()` bytes at `offset` (the position is unchanged).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes (undoing a partial write).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// Creates and opens spool files, and changes directory entries.
pub trait SpoolIo: Send + Sync {
    /// Creates a new file (it must not exist), open for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;

    /// Opens an existing file for writing in place.
    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let f = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(DiskFile(f)))
    }

    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    /// Flushes a directory's entries (files created, renamed or removed) to disk.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }
}

/// The real file system.
pub struct DiskIo;

struct DiskFile(File);

impl SegmentFile for DiskFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        self.0.set_len(len)?;
        self.0.seek(io::SeekFrom::Start(len)).map(|_| ())
    }
}

impl SpoolIo for DiskIo {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let f = OpenOptions::new().create_new(true).write(true).open(path)?;
        Ok(Box::new(DiskFile(f)))
    }
}

/// Flushes a directory entry (a created, renamed or removed file) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
