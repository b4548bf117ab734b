//! File I/O of the segment writer behind a small trait, so tests can inject
//! failures (a full disk, a failing fsync) without a special file system.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The active segment, as the writer sees it.
pub trait SegmentFile: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes (undoing a partial write).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// Creates segment files.
pub trait SpoolIo: Send + Sync {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
}

/// The real file system.
pub struct DiskIo;

struct DiskFile(File);

impl SegmentFile for DiskFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
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
