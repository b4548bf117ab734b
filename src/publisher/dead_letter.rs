//! The dead-letter file: events Kafka refused for good, each kept with
//! everything needed to put it back exactly (its CloudEvents id, arrival time,
//! spool sequence, topic, key and the value's exact bytes), plus a copy to
//! `spool.dead_letter_topic` when one is set (always in structured content
//! mode: the value the spool held, headers `dead_letter_reason`, `event-id`
//! and `content-type`, never a `ce_` one). Reading, listing and replaying
//! the file is in [`tools`] (`presence-bridge dead-letter list|replay`).
//!
//! The file holds phone numbers (the keys and payloads): it is data with the
//! same protection as the spool (it lives in `spool.dir`), never a log; no
//! line of it is ever logged. Its size counts against `spool.max_bytes`
//! through [`Store::external_bytes`](crate::spool::store::Store::external_bytes).
//!
//! A write that fails returns an error and must not acknowledge the event:
//! the event stays in the spool and the forwarder tries again.
//!
//! # File format (version 2)
//! `spool.dir/dead-letter.jsonl`: UTF-8 JSON lines, each ended by `\n`,
//! appended and `fdatasync`'d (the directory too when the file is created)
//! before the event is acknowledged.
//! ```json
//! {"format":2,"seq":41,"id":"0193a1b2-6c1e-7a43-9d52-4c3b9f0e2a11",
//!  "arrival_ms":1764590000123,"topic":"whatsapp.presence.v1","key":"5544999999999",
//!  "reason":"too_large","error":"Message production error: MessageSizeTooLarge (...)",
//!  "dead_lettered_at":"2026-11-24T12:00:00.000Z",
//!  "value_encoding":"utf8","value":"{\"specversion\":\"1.0\",...}"}
//! ```
//! (one line in the file; wrapped here). `seq` is the spool sequence the event
//! had when it was refused, `id` its CloudEvents id (also the `event-id` header),
//! `arrival_ms` its arrival time in Unix milliseconds. `value_encoding` says
//! how `value` holds the record's bytes: `utf8` (they were valid UTF-8: the
//! JSON string is exactly those bytes) or `base64` (standard alphabet, padded).
//! Either way they are the bytes the spool held, not a re-serialization.
//! Readers ignore fields they do not know (a later format may add optional
//! ones) and report a line whose `format` is newer than theirs.
//!
//! Format 1, written before version 2 (no `format` field):
//! `{"seq","topic","key","reason","error","deadLetteredAt","value"}`, where
//! `value` is the payload parsed as JSON (or a lossy string when it was not
//! JSON) and there is no id or arrival time. Such lines are still listed (the
//! id is read from the payload's CloudEvents `id`); `replay` puts them back
//! only with `--include-legacy`, re-encoding the JSON (same content, possibly
//! different bytes).
//!
//! A line that is cut short (a crash or a failed write mid-append) or does not
//! parse is reported by `list` and kept by `replay`; the next append starts on
//! a fresh line, so it never damages the lines after it.

pub mod tools;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::KafkaPublisher;
use crate::envelope::{CONTENT_TYPE, HEADER_CONTENT_TYPE, HEADER_EVENT_ID};
use crate::metrics::Metrics;
use crate::spool::format::StoredRecord;
use crate::spool::io::sync_dir;

pub const FILE_NAME: &str = "dead-letter.jsonl";
/// The format this code writes (the `format` field of every line).
pub const FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("writing the dead-letter file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the dead-letter write did not run: {0}")]
    Aborted(String),
    #[error("reading the dead-letter file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("replacing the dead-letter file {path}: {source}")]
    Rewrite { path: PathBuf, source: io::Error },
    #[error("the spool: {0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error(
        "replay stopped after {replayed} event(s) were put back (they are removed from the \
         dead-letter file; the rest stay in it): {source}"
    )]
    ReplayStopped {
        replayed: u64,
        source: crate::spool::SpoolError,
    },
}

/// How a format-2 line holds the value's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueEncoding {
    Utf8,
    Base64,
}

/// One line of format 2, as written and read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LineV2 {
    format: u32,
    seq: u64,
    id: Uuid,
    arrival_ms: i64,
    topic: String,
    key: String,
    reason: String,
    error: String,
    dead_lettered_at: String,
    value_encoding: ValueEncoding,
    value: String,
}

/// The text of one format-2 line, `\n` included.
pub fn encode_line(
    rec: &StoredRecord,
    reason: &str,
    error: &str,
    dead_lettered_at: &str,
) -> String {
    let (value_encoding, value) = match std::str::from_utf8(&rec.value) {
        Ok(s) => (ValueEncoding::Utf8, s.to_owned()),
        Err(_) => (
            ValueEncoding::Base64,
            base64::engine::general_purpose::STANDARD.encode(&rec.value),
        ),
    };
    let line = LineV2 {
        format: FORMAT,
        seq: rec.seq,
        id: rec.id,
        arrival_ms: rec.arrival_ms,
        topic: rec.topic.clone(),
        key: rec.key.clone(),
        reason: reason.to_owned(),
        error: error.to_owned(),
        dead_lettered_at: dead_lettered_at.to_owned(),
        value_encoding,
        value,
    };
    // A struct of strings and numbers always serializes.
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    text
}

/// Where refused events go. Cheap to clone; appends are serialized.
#[derive(Clone)]
pub struct DeadLetter {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Held for the whole append, so a failed write can be cut back.
    append: Mutex<()>,
    /// The file's size, counted against `spool.max_bytes` by the store.
    accounted: Arc<AtomicU64>,
    metrics: Metrics,
    topic: Option<(String, KafkaPublisher)>,
}

impl DeadLetter {
    /// The dead-letter file of the spool in `spool_dir`. Its current size is
    /// put into `accounted` (the store's [`external_bytes`]) and kept there.
    /// With `topic`, each dead letter is also copied to that Kafka topic (best
    /// effort: the file is the record that counts).
    ///
    /// [`external_bytes`]: crate::spool::store::Store::external_bytes
    pub fn new(
        spool_dir: &Path,
        accounted: Arc<AtomicU64>,
        metrics: Metrics,
        topic: Option<(String, KafkaPublisher)>,
    ) -> Self {
        let path = spool_dir.join(FILE_NAME);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => {
                tracing::warn!(error = %e, file = %path.display(), "cannot read the dead-letter file's size; it is not counted against spool.max_bytes until the next write");
                0
            }
        };
        accounted.store(size, Ordering::Relaxed);
        metrics.dead_letter_bytes(size);
        Self {
            inner: Arc::new(Inner {
                path,
                append: Mutex::new(()),
                accounted,
                metrics,
                topic,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends the refused event to the file, durably. `Ok` only once the
    /// line is synced: then (and only then) the event may be acknowledged.
    /// On `Err` nothing was kept (a partial line is cut back) and the failure
    /// is counted; the caller keeps the event in the spool and retries.
    pub async fn write(
        &self,
        rec: &StoredRecord,
        reason: &'static str,
        error: &str,
    ) -> Result<(), DeadLetterError> {
        let now = crate::presence::format_millis(time::OffsetDateTime::now_utc());
        let line = encode_line(rec, reason, error, &now);
        let inner = self.inner.clone();
        let written = tokio::task::spawn_blocking(move || inner.append_line(line.as_bytes()))
            .await
            .map_err(|e| DeadLetterError::Aborted(e.to_string()))
            .and_then(|r| r);
        // The caller logs the outcome (it knows what becomes of the event).
        if written.is_err() {
            self.inner.metrics.dead_letter_write_failed();
            return written;
        }
        if let Some((dl_topic, publisher)) = &self.inner.topic {
            let id = rec.id.hyphenated().to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dead_letter_reason",
                    value: Some(reason),
                })
                .insert(Header {
                    key: HEADER_EVENT_ID,
                    value: Some(id.as_str()),
                })
                .insert(Header {
                    key: HEADER_CONTENT_TYPE,
                    value: Some(CONTENT_TYPE),
                });
            let record = BaseRecord::to(dl_topic)
                .payload(rec.value.as_slice())
                .key(rec.key.as_str())
                .headers(headers);
            let sent = match publisher.enqueue(record) {
                Ok(delivery) => tokio::time::timeout(Duration::from_secs(10), delivery)
                    .await
                    .ok(),
                Err(e) => Some(Err(e)),
            };
            if !matches!(sent, Some(Ok(()))) {
                tracing::warn!(seq = rec.seq, topic = %dl_topic, "could not copy a dead letter to the dead-letter topic; it is in the file");
            }
        }
        Ok(())
    }
}

impl Inner {
    fn append_line(&self, line: &[u8]) -> Result<(), DeadLetterError> {
        let _one = self.append.lock().unwrap_or_else(|p| p.into_inner());
        let size = append(&self.path, line).map_err(|source| DeadLetterError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.accounted.store(size, Ordering::Relaxed);
        self.metrics.dead_letter_bytes(size);
        Ok(())
    }
}

/// Appends `line` on a line of its own, syncs, and returns the file's new
/// size. On error the file is cut back to its old size (best effort).
fn append(path: &Path, line: &[u8]) -> io::Result<u64> {
    let mut f = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut buf = Vec::with_capacity(line.len() + 1);
    if len > 0 {
        let mut last = [0u8];
        f.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            // A cut-short line before us: never glue onto it.
            buf.push(b'\n');
        }
    }
    buf.extend_from_slice(line);
    let written = f
        .write_all(&buf)
        .and_then(|()| f.sync_data())
        .and_then(|()| {
            match (len, path.parent()) {
                // A new file: make its directory entry durable too.
                (0, Some(dir)) => sync_dir(dir),
                _ => Ok(()),
            }
        });
    if let Err(e) = written {
        let _ = f.set_len(len);
        return Err(e);
    }
    Ok(len + buf.len() as u64)
}

/// Replaces the file at `path` by `tmp` (already written and synced):
/// rename, then sync the directory. The old file's permissions are kept.
fn replace(tmp: &Path, path: &Path) -> io::Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp, meta.permissions())?;
    }
    std::fs::rename(tmp, path)?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Opens the temporary file a rewrite goes through (replacing a stale one).
fn create_tmp(tmp: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(tmp)
}
