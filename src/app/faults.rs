//! Test-only fault injection for the supervisor: a named component ends or
//! panics on demand, and the spool writer thread panics at its next write.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::health::Component;
use crate::spool::io::{DiskIo, SegmentFile, SpoolIo};

/// Test-only fault injection: makes a named component end or panic while the
/// bridge runs, to test the supervisor. Not part of the stable API.
#[doc(hidden)]
#[derive(Clone)]
pub struct Faults {
    fire: Arc<watch::Sender<Option<(Component, Fault)>>>,
    /// Armed: the spool writer thread panics at its next write.
    writer_panic: Arc<AtomicBool>,
}

#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The task returns as if its work were done.
    End,
    /// The task panics.
    Panic,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fire: Arc::new(watch::Sender::new(None)),
            writer_panic: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Faults {
    /// Makes `c` end or panic now. The spool writer thread can only panic, and
    /// does so at its next write (post an event to trigger it).
    pub fn trigger(&self, c: Component, fault: Fault) {
        if c == Component::SpoolWriter {
            self.writer_panic.store(true, Ordering::SeqCst);
        } else {
            self.fire.send_replace(Some((c, fault)));
        }
    }

    /// Runs `task` until it ends (`Some`) or a fault for `c` fires (`None`
    /// for [`Fault::End`]; a panic for [`Fault::Panic`]).
    pub(super) async fn around<F: Future>(&self, c: Component, task: F) -> Option<F::Output> {
        if c == Component::SpoolWriter {
            return Some(task.await);
        }
        let mut fired = self.fire.subscribe();
        let fault = async move {
            let fired = fired
                .wait_for(|f| matches!(f, Some((x, _)) if *x == c))
                .await
                .map(|f| f.map(|(_, fault)| fault));
            match fired {
                Ok(fault) => fault,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            out = task => Some(out),
            fault = fault => match fault {
                Some(Fault::Panic) => panic!("fault injected: {} panics", c.as_str()),
                _ => None,
            },
        }
    }

    pub(super) fn spool_io(&self) -> Arc<dyn SpoolIo> {
        Arc::new(FaultIo(self.writer_panic.clone()))
    }
}

/// The real disk, except that a write panics once the fault is armed.
struct FaultIo(Arc<AtomicBool>);

struct FaultFile(Box<dyn SegmentFile>, Arc<AtomicBool>);

impl SpoolIo for FaultIo {
    fn create(&self, path: &std::path::Path) -> std::io::Result<Box<dyn SegmentFile>> {
        // Only segments (written by the writer thread), not the checkpoint
        // (written from the forwarder).
        let segment = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".seg"));
        let file = DiskIo.create(path)?;
        Ok(if segment {
            Box::new(FaultFile(file, self.0.clone()))
        } else {
            file
        })
    }
}

impl SegmentFile for FaultFile {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.1.load(Ordering::SeqCst) {
            panic!("fault injected: spool_writer panics");
        }
        self.0.write_all(buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, buf)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync()
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.0.truncate(len)
    }
}
