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
//! # On-disk format (segments version 2, version 1 still read; checkpoint file version 2)
//! ```text
//! spool.dir/
//!   LOCK                       flock'd by the running bridge: one bridge per directory;
//!                              holds its pid, to name it to a process refused the lock ([`dir`])
//!   00000000000000000001.seg   segments, named by the sequence number of their first record
//!   00000000000000000009.seg.tmp  a segment being created (removed at start if left over)
//!   checkpoint                 two preallocated slots, overwritten in place (below)
//!   acked                      the checkpoint of older versions: read at start if
//!                              `checkpoint` does not exist, removed once it does
//!   dead-letter.jsonl          events Kafka refused permanently, one JSON object per line
//!
//! segment := "PBSPOOL2" record*
//! record  := len:u32le crc:u32le body            (crc = CRC-32/IEEE of body; len = body bytes)
//! body    := seq:u64le arrival_ms:i64le id:[16]  (id = the CloudEvents id, UUID bytes)
//!            kind:u16le                           (what the record holds, see below)
//!            topic_len:u16le topic key_len:u16le key value
//!                                                 (value = the encoded envelope, the rest of body)
//! segment_v1 := "PBSPOOL1" record_v1*             (written before kinds were stored; read, never written)
//! body_v1 := the body without `kind`              (read as kind 0, "unknown")
//! checkpoint := slot slot                         (36 KiB each, allocated when created)
//! slot    := "PBCKPT02" generation:u64le len:u32le check:u64le payload[len] zeros
//!                                                 (check = FNV-1a 64 of generation, len, payload)
//! payload := the settled set, see [`settle`]: "PBSETTL2" base and a cursor per
//!            topic; or the version-1 "PBACKED1" watermark:u64le crc:u32le (also the
//!            whole content of the old `acked` file), read as a base with no cursors
//! ```
//! The kind is a number the spool stores and does not interpret
//! ([`RecordKind`]); the crates above it name the kinds (the `events` crate:
//! 1 a presence event, 2 a captured rejected input). A bridge of this version
//! reads both segment versions, and the two may sit side by side in one
//! directory after an upgrade; a bridge from before version 2 cannot read a
//! version-2 segment (its recovery counts the records as damaged and drops them), so a downgrade
//! needs a drained spool.
//!
//! Invariants: sequence numbers increase by one from record to record and from
//! segment to segment (gaps appear only where damaged records were skipped, or
//! where a power cut after a failed `interval` sync lost them); only the
//! newest segment is appended to, and after a restart appends always start a
//! new segment; a segment is deleted only when every record in it is settled
//! (delivered or dead-lettered) by the checkpointed settled set, per topic
//! ([`settle`]), and never while the segment before it was sealed by a
//! failure (see below). A checkpoint is written into the slot that does
//! not hold the newest durable one, with a higher generation, then synced: a
//! torn write leaves the previous checkpoint readable, and no write needs a new
//! disk block, so a full disk can still record deliveries and free space. The
//! payload (up to 32 KiB) is opaque to the container ([`Store::write_checkpoint`],
//! [`store::read_checkpoint_payload`]).
//!
//! # Sealed segments
//! A segment is sealed (closed for good: never written again, read and deleted
//! once delivered like any other) when it is full, when a write to it fails
//! (ENOSPC, EIO), or when its `fdatasync` fails. A failed fsync is not retried
//! on the same file: the kernel may have dropped the dirty pages already and
//! would report the next fsync as a success (PostgreSQL's "fsyncgate").
//!
//! The next segment starts at the sealed one's next *uncommitted* sequence.
//! After a failed write or a failed fsync under `always`, that is the first
//! sequence of the failed batch, whose requests were all answered 503. Rule:
//! **records of a segment at or above the first sequence of a later segment
//! were never committed**; recovery cuts them off and counts them
//! (`RecoveryReport::uncommitted_records`). The failed batch is also cut back
//! at once when the file allows; the rule makes the answer true even when
//! that cut did not reach the disk. A new segment is created as `.seg.tmp`,
//! its header synced, renamed into place and the directory synced before any
//! record goes into it, so the name that voids the failed batch is durable.
//! The one gap: if no new segment can be created (the disk refuses every
//! sync) and the bridge stops before one can, the failed batch's bytes may
//! still be in the last segment at the next start and be delivered although
//! answered 503 (a duplicate if the client retried, never a loss).
//!
//! While no segment is open (it could not be created) or the last write or
//! sync failed, [`Store::append_blocked`] says why (for `/readyz`) and appends
//! answer 503. The writer thread retries every second when idle
//! ([`Store::retry_blocked`]: delete delivered segments, open a segment, write
//! and sync 64 KiB, cut them off), so a blocked bridge taken out of the load
//! balancer comes back by itself. The same error is logged once per 10 s with
//! a count ([`RepeatedError`]).
//!
//! Recovery at start: every segment is scanned and checksummed. An incomplete
//! or damaged tail (a torn write) is cut off; records voided by a later
//! segment are cut off; a damaged record followed by valid ones is skipped
//! and counted (never a panic, never a crash loop); segments whose records are
//! all settled are deleted. Every unsettled record is sent again, each topic
//! from its own cursor, oldest first, before anything newer.
//!
//! # Durability policies (`spool.fsync`)
//! - `always` (default): fsync before answering 200. Concurrent requests share
//!   one fsync. Loses nothing on a process crash or a power cut. A failed
//!   fsync answers every request of the batch 503 (none counted as accepted,
//!   none ever delivered).
//! - `interval`: answer after `write`, fsync every `spool.fsync_interval`. A
//!   process crash (SIGKILL, OOM) loses nothing (the data is in the kernel); a
//!   power cut or kernel crash can lose the events answered since the last
//!   successful sync. A failed periodic sync seals the segment; the events it
//!   held stay and are delivered if the disk still has them, but may be lost
//!   even after later syncs succeed (they count as the window). Appends answer
//!   503 until a new segment has been made durable (a sync succeeded).
//! - `never`: leave flushing to the kernel. A power cut or kernel crash can lose
//!   everything not yet written back (typically up to 30 s of events).
//!
//! `tests/powercut.rs` checks these promises against a page-cache model of the
//! file layer ([`io::PageCacheIo`]) cut after every file operation.
//!
//! # The append timeout (`spool.append_timeout`)
//! A 503 means "not accepted": the event is not committed, or the answer is
//! 200. The timeout covers only the wait before the writer thread takes the
//! request: each request goes Queued -> Claimed (by the writer, atomically)
//! or Queued -> Abandoned (by the handler at the deadline), never both. The
//! writer skips abandoned requests, so a timed-out event is never written;
//! once claimed, the handler waits for the writer's real answer, however slow
//! the disk (a hung disk holds the request; the server's connection limits
//! bound how many).
//!
//! All file I/O runs on a dedicated writer thread or on tokio's blocking pool,
//! never on the async threads. A forwarder that keeps up takes the records the
//! writer just committed from a bounded in-memory copy ([`recent`]) instead of
//! reading them back from disk; the files stay the truth.

pub mod dir;
mod error;
pub mod format;
pub mod io;
pub mod operator;
pub mod recent;
pub mod settle;
pub mod store;
pub mod testkit;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};

use store::{NewRecord, Store};

/// Requests waiting for the writer thread; a full queue makes callers wait
/// (bounded by `spool.append_timeout`).
const QUEUE: usize = 4096;
/// Most requests written in one batch.
const MAX_BATCH: usize = 1024;
/// While appends are blocked, how often the idle writer looks for requests,
/// and how often it retries ([`Store::retry_blocked`]).
const BLOCKED_POLL: Duration = Duration::from_millis(50);
const BLOCKED_RETRY: Duration = Duration::from_secs(1);
/// A repeated identical error is logged once per this interval, with a count.
pub const LOG_REPEATS_EVERY: Duration = Duration::from_secs(10);

/// A request's place in the hand-over between the handler and the writer.
const QUEUED: u8 = 0;
/// The writer took it: its outcome is the writer's answer, whatever the wait.
const CLAIMED: u8 = 1;
/// The handler gave up first (`spool.append_timeout`): the writer skips it.
const ABANDONED: u8 = 2;

pub use error::SpoolError;
pub use format::RecordKind;

/// When appends reach the disk (the `spool.fsync` setting; see "Durability
/// policies" above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    Always,
    Interval,
    Never,
}

/// What the writer thread measures, told to whoever keeps the metrics (the
/// root package's Prometheus registry; `()` ignores it all).
pub trait Observer: Send + 'static {
    /// One fsync of a batch took `took`.
    fn synced(&self, took: Duration);
    /// A record of `kind` was committed `waited` after it was handed over;
    /// `tag` is the one its [`Spool::append`] was given. A request of
    /// several records ([`Spool::append_all`]) is one commit, of its first.
    fn committed(&self, waited: Duration, kind: RecordKind, tag: Option<&'static str>);
    /// Failed fsyncs since the last call (may be 0).
    fn sync_failures(&self, count: u64);
}

impl Observer for () {
    fn synced(&self, _: Duration) {}
    fn committed(&self, _: Duration, _: RecordKind, _: Option<&'static str>) {}
    fn sync_failures(&self, _: u64) {}
}

struct Request {
    record: NewRecord,
    /// Records appended right after `record`, in the same batch: all of
    /// them are committed, or none ([`Spool::append_all`]).
    more: Vec<NewRecord>,
    /// Given back to the [`Observer`] once committed (the root package: the
    /// presence status counted as accepted; `None`: nothing to count).
    tag: Option<&'static str>,
    queued: Instant,
    reply: oneshot::Sender<Result<u64, SpoolError>>,
    /// [`QUEUED`], then [`CLAIMED`] by the writer or [`ABANDONED`] by the handler.
    state: Arc<AtomicU8>,
}

impl Request {
    /// The writer takes the request, unless its handler already gave up.
    fn claim(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The async handle: what the webhook handler writes to (the root package's `Sink`).
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
        observer: impl Observer,
        committed: watch::Sender<u64>,
    ) -> Result<Self, SpoolError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer_store = store.clone();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_loop(writer_store, rx, observer, committed))
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
    ///
    /// `spool.append_timeout` bounds only the wait before the writer takes
    /// the request: an `Err(Timeout)` means the record was never written.
    /// Once the writer has taken it, this waits for the writer's answer,
    /// so `Ok` and committed always go together (see "The append timeout"
    /// in the module docs).
    /// `tag` goes to the [`Observer`] with the commit.
    pub async fn append(
        &self,
        record: NewRecord,
        tag: Option<&'static str>,
    ) -> Result<u64, SpoolError> {
        self.queue(record, Vec::new(), tag).await?.committed().await
    }

    /// Appends `first` then `more`, in this order, with consecutive sequence
    /// numbers, in one batch: all are committed or none is. Resolves with the
    /// sequence of `first`. The [`Observer`] sees one commit, of `first`
    /// with `tag`.
    pub async fn append_all(
        &self,
        first: NewRecord,
        more: Vec<NewRecord>,
        tag: Option<&'static str>,
    ) -> Result<u64, SpoolError> {
        self.queue(first, more, tag).await?.committed().await
    }

    /// The first half of [`Spool::append_all`]: resolves once the request is
    /// in the writer's queue, so requests queued one after the other by one
    /// task are written in that order; [`Queued::committed`] waits for the
    /// commit. A caller that must order its appends with its own state holds
    /// its lock across this call only, not across the commit.
    pub async fn queue(
        &self,
        record: NewRecord,
        more: Vec<NewRecord>,
        tag: Option<&'static str>,
    ) -> Result<Queued, SpoolError> {
        let (reply, rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let req = Request {
            record,
            more,
            tag,
            queued: Instant::now(),
            reply,
            state: state.clone(),
        };
        let deadline = tokio::time::Instant::now() + self.append_timeout;
        tokio::time::timeout_at(deadline, self.tx.send(req))
            .await
            .map_err(|_| SpoolError::Timeout)?
            .map_err(|_| SpoolError::Stopped)?;
        Ok(Queued {
            rx,
            state,
            deadline,
        })
    }
}

/// A request in the writer's queue ([`Spool::queue`]).
#[must_use = "the records are committed only when `committed` says so"]
pub struct Queued {
    rx: oneshot::Receiver<Result<u64, SpoolError>>,
    state: Arc<AtomicU8>,
    deadline: tokio::time::Instant,
}

impl Queued {
    /// Waits for the writer's answer: the first record's sequence once
    /// committed. If the writer has not taken the request by the append
    /// deadline, the request is withdrawn (never written) and this is
    /// `Err(Timeout)`.
    pub async fn committed(mut self) -> Result<u64, SpoolError> {
        if let Ok(answer) = tokio::time::timeout_at(self.deadline, &mut self.rx).await {
            return answer.map_err(|_| SpoolError::Stopped)?;
        }
        if self
            .state
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(SpoolError::Timeout);
        }
        // The writer has it: its answer is the truth, however long it takes.
        self.rx.await.map_err(|_| SpoolError::Stopped)?
    }
}

/// The writer thread: takes every queued request, writes them as one batch
/// with one fsync (group commit), answers each. Requests whose handler gave
/// up before they were taken are skipped. While appends are blocked (a full
/// disk, a failed fsync) and no request comes, it retries every
/// [`BLOCKED_RETRY`] so the spool unblocks by itself.
fn write_loop(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Request>,
    observer: impl Observer,
    committed: watch::Sender<u64>,
) {
    /// When queued, the tag, the answer, and how many records it holds.
    type Reply = (
        Instant,
        Option<&'static str>,
        oneshot::Sender<Result<u64, SpoolError>>,
        usize,
    );
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<NewRecord> = Vec::with_capacity(MAX_BATCH);
    let mut errors = RepeatedError::new(LOG_REPEATS_EVERY);
    while let Some(first) = next_request(&store, &mut rx, &observer) {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            if req.claim() {
                replies.push((req.queued, req.tag, req.reply, 1 + req.more.len()));
                records.push(req.record);
                records.extend(req.more);
            }
            if records.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if records.is_empty() {
            continue;
        }
        let result = store.append(&records, false);
        observer.sync_failures(store.take_sync_failures());
        match result {
            Ok(a) => {
                if let Some(t) = a.sync_time {
                    observer.synced(t);
                }
                let first_seq = a.last_seq + 1 - records.len() as u64;
                let mut at = 0;
                for (queued, tag, reply, n) in replies.drain(..) {
                    // One request, one commit to observe: its first record's.
                    observer.committed(queued.elapsed(), records[at].kind, tag);
                    let _ = reply.send(Ok(first_seq + at as u64));
                    at += n;
                }
                // The answers first (they are what clients wait for), then the
                // forwarder: records to memory, and its wake-up.
                store.tail().push(first_seq, records.drain(..));
                committed.send_replace(a.last_seq);
                if let Some(failed) = errors.recovered() {
                    tracing::info!(failed, "spool appends work again");
                }
            }
            Err(e) => {
                records.clear();
                if !matches!(e, SpoolError::Full) {
                    let message = e.to_string();
                    if let Some(repeated) = errors.should_log(&message, Instant::now()) {
                        tracing::error!(error = %message, events = replies.len(), repeated, blocked = store.append_blocked(), "spool append failed; answering 503");
                    }
                }
                for (_, _, reply, _) in replies.drain(..) {
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

/// The next request; `None` once every sender is gone. While appends are
/// blocked, polls instead of sleeping in `blocking_recv`, and retries.
fn next_request(
    store: &Store,
    rx: &mut mpsc::Receiver<Request>,
    observer: &impl Observer,
) -> Option<Request> {
    let mut idle = BLOCKED_RETRY;
    loop {
        if store.append_blocked().is_none() {
            return rx.blocking_recv();
        }
        match rx.try_recv() {
            Ok(req) => return Some(req),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        if idle >= BLOCKED_RETRY {
            idle = Duration::ZERO;
            if store.retry_blocked() {
                tracing::info!("the spool takes appends again");
            }
            observer.sync_failures(store.take_sync_failures());
            continue;
        }
        std::thread::sleep(BLOCKED_POLL);
        idle += BLOCKED_POLL;
    }
}

/// Logs a repeated identical error once per interval, with how many times it
/// happened since the last line (one burst of refused requests is a few
/// lines, not one per request).
pub struct RepeatedError {
    every: Duration,
    last: Option<(String, Instant)>,
    /// Occurrences not logged since the last logged line.
    repeats: u64,
    /// Occurrences since the last success.
    failures: u64,
}

impl RepeatedError {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            repeats: 0,
            failures: 0,
        }
    }

    /// `Some(n)` when this occurrence of `error` is to be logged, `n` being
    /// how many were not logged since the previous line; `None` otherwise.
    pub fn should_log(&mut self, error: &str, now: Instant) -> Option<u64> {
        self.failures += 1;
        match &self.last {
            Some((e, at)) if e == error && now.saturating_duration_since(*at) < self.every => {
                self.repeats += 1;
                None
            }
            _ => {
                self.last = Some((error.to_owned(), now));
                Some(std::mem::take(&mut self.repeats))
            }
        }
    }

    /// After failures, the first success: how many failures there were.
    pub fn recovered(&mut self) -> Option<u64> {
        self.last = None;
        self.repeats = 0;
        (self.failures > 0).then(|| std::mem::take(&mut self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_errors_are_logged_once_per_interval_with_a_count() {
        let mut r = RepeatedError::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.should_log("disk full", t0), Some(0));
        for i in 1..=8000 {
            assert_eq!(
                r.should_log("disk full", t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another error is logged at once; the same one again after the interval.
        assert_eq!(r.should_log("EIO", t0 + Duration::from_secs(9)), Some(8000));
        assert_eq!(r.should_log("EIO", t0 + Duration::from_secs(19)), Some(0));
        assert_eq!(r.recovered(), Some(8003));
        assert_eq!(r.recovered(), None);
        assert_eq!(r.should_log("EIO", t0 + Duration::from_secs(20)), Some(0));
    }
}
