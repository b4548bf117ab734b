//! The durable retry buffer. A 200 means the event is in this spool and, with
//! the default `spool.fsync = "always"`, fsync'd; a forwarder publishes from it
//! and removes an event only after the broker acknowledged it.
//!
//! # Design note: why a segmented log of our own
//! The access pattern is a FIFO queue: append at the tail, read and delete at
//! the head, in order. We compared:
//! - **redb** (copy-on-write B-tree, ACID): one fsync per write transaction, and
//!   concurrent writers serialize on the transaction, so group commit means
//!   building our own batching in front of it anyway; every delete rewrites
//!   pages, and the file does not shrink without compaction.
//! - **fjall** (LSM tree): good batching through its journal, but background
//!   compaction threads, write amplification for data we delete minutes later,
//!   and a large dependency tree to keep up to date.
//! - **queue-file** (one circular file): simple, but one fsync per element, a
//!   single file that cannot shrink below its high-water mark, and little
//!   maintenance.
//!
//! A segmented append-only log does exactly what we need in a few hundred
//! lines: one `write` + one `fdatasync` per batch of concurrent requests
//! (group commit), sequential reads, deletion by removing whole files, no
//! compaction, and a format we document and verify ourselves.
//!
//! # On-disk format (version 1)
//! ```text
//! spool.dir/
//!   LOCK                       flock'd by the running bridge: one bridge per directory
//!   00000000000000000001.seg   segments, named by the sequence number of their first record
//!   acked                      checkpoint: every record with seq <= watermark was delivered
//!   dead-letter.jsonl          events Kafka refused permanently, one JSON object per line
//!
//! segment := "PBSPOOL1" record*
//! record  := len:u32le crc:u32le body            (crc = CRC-32/IEEE of body; len = body bytes)
//! body    := seq:u64le arrival_ms:i64le id:[16]  (id = the CloudEvents id, UUID bytes)
//!            topic_len:u16le topic key_len:u16le key value
//!                                                 (value = the encoded envelope, the rest of body)
//! acked   := "PBACKED1" watermark:u64le crc:u32le (crc of the 8 watermark bytes)
//! ```
//! Invariants: sequence numbers increase by one from record to record and from
//! segment to segment (gaps appear only where damaged records were skipped);
//! only the newest segment is appended to, and after a restart appends always
//! start a new segment; a segment is deleted only when its last record is at or
//! below the checkpointed watermark; the checkpoint is replaced atomically
//! (write `acked.tmp`, fsync, rename, fsync the directory).
//!
//! Recovery at start: every segment is scanned and checksummed. An incomplete
//! or damaged tail (a torn write) is cut off; a damaged record followed by
//! valid ones is skipped and counted (never a panic, never a crash loop);
//! segments fully below the watermark are deleted. Everything above the
//! watermark is sent again, oldest first, before anything newer.
//!
//! # Durability policies (`spool.fsync`)
//! - `always` (default): fsync before answering 200. Concurrent requests share
//!   one fsync. Loses nothing on a process crash or a power cut.
//! - `interval`: answer after `write`, fsync every `spool.fsync_interval`. A
//!   process crash (SIGKILL, OOM) loses nothing (the data is in the kernel); a
//!   power cut or kernel crash can lose the last interval of answered events.
//! - `never`: leave flushing to the kernel. A power cut or kernel crash can lose
//!   everything not yet written back (typically up to 30 s of events).
//!
//! All file I/O runs on a dedicated writer thread or on tokio's blocking pool,
//! never on the async threads. A forwarder that keeps up takes the records the
//! writer just committed from a bounded in-memory copy ([`tail`]) instead of
//! reading them back from disk; the files stay the truth.

pub mod format;
pub mod io;
pub mod settle;
pub mod store;
pub mod tail;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::envelope::OutboundRecord;
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};
use store::{NewRecord, Store};

/// Requests waiting for the writer thread; a full queue makes callers wait
/// (bounded by `spool.append_timeout`).
const QUEUE: usize = 4096;
/// Most requests written in one batch.
const MAX_BATCH: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    Always,
    Interval,
    Never,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full (spool.max_bytes reached)")]
    Full,
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the spool directory {0} is in use by another process (LOCK is held)")]
    Locked(PathBuf),
    #[error("the spool writer has stopped")]
    Stopped,
    #[error("the spool did not answer within spool.append_timeout")]
    Timeout,
}

impl SpoolError {
    pub fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }

    /// The same error for another waiter (`io::Error` is not `Clone`).
    fn duplicate(&self) -> Self {
        match self {
            Self::Full => Self::Full,
            Self::Io { what, source } => {
                Self::io(what, std::io::Error::new(source.kind(), source.to_string()))
            }
            Self::Locked(p) => Self::Locked(p.clone()),
            Self::Stopped => Self::Stopped,
            Self::Timeout => Self::Timeout,
        }
    }
}

struct Request {
    record: NewRecord,
    /// Metric label of the event's presence status, counted once committed
    /// (`None`: not a presence event, not counted as accepted).
    status_label: Option<&'static str>,
    queued: Instant,
    reply: oneshot::Sender<Result<u64, SpoolError>>,
}

/// The async handle: the [`Sink`] the webhook handler writes to.
#[derive(Clone)]
pub struct Spool {
    store: Arc<Store>,
    tx: mpsc::Sender<Request>,
    append_timeout: Duration,
}

impl Spool {
    /// Starts the writer thread over an opened store. `committed` is told the
    /// newest committed sequence after every batch.
    pub fn start(
        store: Arc<Store>,
        append_timeout: Duration,
        metrics: Metrics,
        committed: watch::Sender<u64>,
    ) -> Result<Self, SpoolError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer_store = store.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_loop(writer_store, rx, metrics, committed))
            .map_err(|e| SpoolError::io("starting the spool writer thread", e))?;
        Ok(Self {
            store,
            tx,
            append_timeout,
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Appends one record; resolves once it is committed per the fsync policy.
    pub async fn append(
        &self,
        record: NewRecord,
        status_label: Option<&'static str>,
    ) -> Result<u64, SpoolError> {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            record,
            status_label,
            queued: Instant::now(),
            reply,
        };
        let deadline = tokio::time::Instant::now() + self.append_timeout;
        tokio::time::timeout_at(deadline, self.tx.send(req))
            .await
            .map_err(|_| SpoolError::Timeout)?
            .map_err(|_| SpoolError::Stopped)?;
        tokio::time::timeout_at(deadline, rx)
            .await
            .map_err(|_| SpoolError::Timeout)?
            .map_err(|_| SpoolError::Stopped)?
    }
}

impl Sink for Spool {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        let new = NewRecord {
            arrival_ms: record.arrival_ms,
            id: record.id,
            topic: record.topic,
            key: record.key,
            value: record.value,
        };
        match self.append(new, record.status_label).await {
            Ok(_) => Ok(()),
            Err(SpoolError::Full) => Err(SinkError::Full),
            Err(e) => Err(SinkError::Unavailable(e.to_string())),
        }
    }
}

/// The writer thread: takes every queued request, writes them as one batch
/// with one fsync (group commit), answers each.
fn write_loop(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Request>,
    metrics: Metrics,
    committed: watch::Sender<u64>,
) {
    type Reply = (
        Instant,
        Option<&'static str>,
        oneshot::Sender<Result<u64, SpoolError>>,
    );
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<NewRecord> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            replies.push((req.queued, req.status_label, req.reply));
            records.push(req.record);
            if records.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let result = store.append(&records, false);
        match result {
            Ok(a) => {
                if let Some(t) = a.sync_time {
                    metrics.spool_synced(t);
                }
                let first_seq = a.last_seq + 1 - replies.len() as u64;
                for (i, (queued, status_label, reply)) in replies.drain(..).enumerate() {
                    metrics.spool_appended(queued.elapsed());
                    if let Some(label) = status_label {
                        metrics.event_accepted(label);
                    }
                    let _ = reply.send(Ok(first_seq + i as u64));
                }
                // The answers first (they are what clients wait for), then the
                // forwarder: records to memory, and its wake-up.
                store.tail().push(first_seq, records.drain(..));
                committed.send_replace(a.last_seq);
            }
            Err(e) => {
                records.clear();
                if !matches!(e, SpoolError::Full) {
                    tracing::error!(error = %e, events = replies.len(), "spool append failed; answering 503");
                }
                for (_, _, reply) in replies.drain(..) {
                    let _ = reply.send(Err(e.duplicate()));
                }
            }
        }
    }
    // Every sender is gone: the ingress has drained. Make the tail durable.
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "final spool sync failed");
    }
}
