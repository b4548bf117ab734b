//! [`SpoolError`]: every way the spool can fail, with messages that say what
//! to do (a missing directory, a permission, a full disk, a damaged file).

use std::path::PathBuf;

use super::dir;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full (spool.max_bytes reached)")]
    Full,
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    /// A file operation on a named path failed (opening and recovering the
    /// spool, creating a segment): what, where, why, and what to do.
    #[error("{what} {}: {source}{}", .path.display(), advice(.source, .path))]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `spool.dir` names something that exists and is not a directory.
    #[error("{} exists and is not a directory: point spool.dir at a directory (created if missing), or move what is there away", .0.display())]
    NotADirectory(PathBuf),
    /// `spool.dir` cannot be created: one of its parents is not a directory.
    #[error("cannot create the directory {}: {} is not a directory (spool.dir must be a directory path)", .path.display(), .parent.display())]
    ParentNotADirectory { path: PathBuf, parent: PathBuf },
    /// Another process (a running bridge, or a `dead-letter replay`) has the spool open.
    #[error("another presence-bridge{} holds the lock on {}: one process per spool directory; stop it, or give this bridge its own spool.dir", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), .dir.join(dir::LOCK).display())]
    Locked { dir: PathBuf, pid: Option<u32> },
    /// The `spool` tools were pointed at a directory that holds no spool.
    #[error("{} is not a spool: {why}; check spool.dir (a spool holds LOCK, checkpoint and NNNNNNNNNNNNNNNNNNNN.seg files, created at the bridge's first start)", .path.display())]
    NotASpool { path: PathBuf, why: &'static str },
    #[error("the spool writer has stopped")]
    Stopped,
    #[error("the spool did not answer within spool.append_timeout")]
    Timeout,
    /// fdatasync failed: the batch was not committed and its segment is sealed.
    #[error("syncing the spool failed: {0}")]
    SyncFailed(std::io::Error),
    #[error("a checkpoint of {0} bytes is larger than 32 KiB")]
    CheckpointTooLarge(usize),
}

impl SpoolError {
    pub fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }

    /// An error of `what` on `path`.
    pub fn file(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::File {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The same error for another waiter (`io::Error` is not `Clone`).
    pub(super) fn duplicate(&self) -> Self {
        match self {
            Self::Full => Self::Full,
            Self::Io { what, source } => {
                Self::io(what, std::io::Error::new(source.kind(), source.to_string()))
            }
            Self::File { what, path, source } => Self::file(
                what,
                path,
                std::io::Error::new(source.kind(), source.to_string()),
            ),
            Self::NotADirectory(p) => Self::NotADirectory(p.clone()),
            Self::ParentNotADirectory { path, parent } => Self::ParentNotADirectory {
                path: path.clone(),
                parent: parent.clone(),
            },
            Self::Locked { dir, pid } => Self::Locked {
                dir: dir.clone(),
                pid: *pid,
            },
            Self::NotASpool { path, why } => Self::NotASpool {
                path: path.clone(),
                why,
            },
            Self::Stopped => Self::Stopped,
            Self::Timeout => Self::Timeout,
            Self::SyncFailed(source) => {
                Self::SyncFailed(std::io::Error::new(source.kind(), source.to_string()))
            }
            Self::CheckpointTooLarge(n) => Self::CheckpointTooLarge(*n),
        }
    }
}

/// What to do about a failed file operation on `path`, when the error says.
fn advice(e: &std::io::Error, path: &std::path::Path) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => {
            let user = effective_uid().map_or_else(String::new, |u| format!(" (uid {u})"));
            format!(
                "; the user the bridge runs as{user} needs read and write access to {} (or, to create it, to its parent): check their owner and mode",
                path.display()
            )
        }
        ErrorKind::ReadOnlyFilesystem => {
            "; the file system is read-only: put spool.dir on a writable volume".to_owned()
        }
        ErrorKind::StorageFull => "; the disk is full".to_owned(),
        _ => String::new(),
    }
}

/// This process's effective uid (the owner of `/proc/self`), on Linux.
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}
