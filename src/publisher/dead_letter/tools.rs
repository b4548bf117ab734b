//! Operator tools over the dead-letter file: read it line by line (both
//! formats), filter, list, and replay the selected events into the spool.
//!
//! # Replay
//! Replay puts the selected dead letters back into the stream: each becomes a
//! new spool record (a new `seq`, after everything already in the spool) with
//! the event's original CloudEvents id, topic, key, value bytes and original
//! arrival time, in dead-letter file order. The forwarder dead-letters in
//! delivery order, so per phone that is the original order. Replayed events
//! come after the events accepted since they were dead-lettered.
//!
//! Replay appends through a [`Store`] the caller opened, so it holds the
//! spool's `LOCK`: a running bridge must be stopped first (opening the store
//! says so), and no bridge can write dead letters meanwhile.
//!
//! The steps, and what a crash between them leaves:
//! 1. Read the file; collect the ids of the selected events.
//! 2. Read the undelivered spool records: a selected event whose id is already
//!    there (a replay that crashed after step 3) is not appended again, only
//!    removed from the file.
//! 3. Append the selected events to the spool, synced (whatever
//!    `spool.fsync` says).
//! 4. Write the file without them to `dead-letter.jsonl.tmp`, sync it, rename
//!    it over the file, sync the directory.
//!
//! A crash before step 3 completes changes nothing that counts (a record the
//! crash cut short is a torn tail the next open cuts off). A crash between 3
//! and 4 leaves the events both in the spool and in the file: running replay
//! again before the bridge delivers them removes them from the file without a
//! second copy (step 2); if the bridge delivered them first, a second replay
//! sends them again, with the same id. So at worst a duplicate with the same
//! CloudEvents id, never a loss.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use base64::Engine;
use serde::Serialize;
use uuid::Uuid;

use super::{create_tmp, replace, DeadLetterError, LineV2, ValueEncoding, FILE_NAME, FORMAT};
use crate::spool::store::{NewRecord, Store};
use crate::spool::RecordKind;

/// Records appended to the spool per batch during a replay.
const REPLAY_BATCH: usize = 256;
/// Bytes of values per replay batch, at most (one record may exceed it).
const REPLAY_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The dead-letter file of a spool directory.
pub fn path(spool_dir: &Path) -> PathBuf {
    spool_dir.join(FILE_NAME)
}

fn tmp_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join(format!("{FILE_NAME}.tmp"))
}

/// The value of a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The exact bytes (format 2).
    Exact(Vec<u8>),
    /// Format 1: the payload as parsed JSON (a string when it was not JSON),
    /// or nothing.
    Legacy(Option<serde_json::Value>),
}

/// One readable dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// 1-based line number in the file.
    pub line: usize,
    pub format: u32,
    pub seq: Option<u64>,
    /// The CloudEvents id (format 1: read from the payload, if it has one).
    pub id: Option<Uuid>,
    /// Arrival time, Unix milliseconds (format 2 only).
    pub arrival_ms: Option<i64>,
    pub topic: String,
    pub key: String,
    pub reason: String,
    pub error: String,
    pub dead_lettered_at: Option<String>,
    pub value: Value,
}

impl Letter {
    /// The record to put back, if this letter can be replayed exactly
    /// (format 2), or approximately with `include_legacy` (format 1 with a
    /// CloudEvents id in its payload; the value re-encoded, the arrival time
    /// from the payload's `time`, else the dead-letter time).
    pub fn to_record(&self, include_legacy: bool) -> Option<NewRecord> {
        let (value, arrival_ms) = match &self.value {
            Value::Exact(bytes) => (bytes.clone(), self.arrival_ms?),
            Value::Legacy(_) if !include_legacy => return None,
            Value::Legacy(v) => {
                let bytes = match v {
                    Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
                    Some(v) => serde_json::to_vec(v).ok()?,
                    None => return None,
                };
                let time = v
                    .as_ref()
                    .and_then(|v| v.get("time"))
                    .and_then(serde_json::Value::as_str)
                    .or(self.dead_lettered_at.as_deref())
                    .and_then(parse_millis)?;
                (bytes, time)
            }
        };
        let kind = crate::envelope::EventKind::of_value(&value)
            .map_or(RecordKind::UNKNOWN, |k| RecordKind(k.code()));
        Some(NewRecord {
            arrival_ms,
            id: self.id?,
            kind,
            topic: self.topic.clone(),
            key: self.key.clone(),
            value,
        })
    }

    /// The key masked as the logs mask phone numbers (`55*********99`).
    pub fn masked_key(&self) -> String {
        match crate::presence::Phone::parse(&self.key) {
            Ok(p) if p.as_str() == self.key => p.masked().to_string(),
            _ => "*".repeat(self.key.chars().count()),
        }
    }
}

fn parse_millis(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Letter(Letter),
    /// Kept as is by replay, reported by list.
    Unreadable {
        line: usize,
        why: String,
    },
}

/// Which dead letters a command works on. Empty filters select everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub reason: Option<String>,
    pub topic: Option<String>,
}

impl Filter {
    pub fn matches(&self, l: &Letter) -> bool {
        self.reason.as_ref().is_none_or(|r| *r == l.reason)
            && self.topic.as_ref().is_none_or(|t| *t == l.topic)
    }
}

/// Parses one line (without its `\n`).
pub fn parse_line(line: usize, text: &[u8]) -> Line {
    let unreadable = |why: String| Line::Unreadable { line, why };
    let json: serde_json::Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return unreadable(format!("not JSON ({e})")),
    };
    let format = match json.get("format") {
        None => 1,
        Some(f) => match f.as_u64().and_then(|f| u32::try_from(f).ok()) {
            Some(f) => f,
            None => return unreadable("the format field is not a number".into()),
        },
    };
    if format > FORMAT {
        return unreadable(format!(
            "format {format} is newer than this version reads ({FORMAT}): use a newer presence-bridge"
        ));
    }
    if format == 1 {
        return parse_v1(line, &json).map_or_else(unreadable, Line::Letter);
    }
    let v: LineV2 = match serde_json::from_value(json) {
        Ok(v) => v,
        Err(e) => return unreadable(format!("not a format-{format} dead letter ({e})")),
    };
    let value = match v.value_encoding {
        ValueEncoding::Utf8 => v.value.into_bytes(),
        ValueEncoding::Base64 => match base64::engine::general_purpose::STANDARD.decode(&v.value) {
            Ok(b) => b,
            Err(e) => return unreadable(format!("the value is not base64 ({e})")),
        },
    };
    Line::Letter(Letter {
        line,
        format,
        seq: Some(v.seq),
        id: Some(v.id),
        arrival_ms: Some(v.arrival_ms),
        topic: v.topic,
        key: v.key,
        reason: v.reason,
        error: v.error,
        dead_lettered_at: Some(v.dead_lettered_at),
        value: Value::Exact(value),
    })
}

fn parse_v1(line: usize, json: &serde_json::Value) -> Result<Letter, String> {
    let text = |k: &str| json.get(k).and_then(serde_json::Value::as_str);
    let topic = text("topic").ok_or("no topic (not a dead letter)")?;
    let reason = text("reason").ok_or("no reason (not a dead letter)")?;
    let value = json.get("value").filter(|v| !v.is_null()).cloned();
    let id = value
        .as_ref()
        .and_then(|v| v.get("id"))
        .and_then(serde_json::Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    Ok(Letter {
        line,
        format: 1,
        seq: json.get("seq").and_then(serde_json::Value::as_u64),
        id,
        arrival_ms: None,
        topic: topic.to_owned(),
        key: text("key").unwrap_or_default().to_owned(),
        reason: reason.to_owned(),
        error: text("error").unwrap_or_default().to_owned(),
        dead_lettered_at: text("deadLetteredAt").map(str::to_owned),
        value: Value::Legacy(value),
    })
}

/// Reads the file line by line: each line's raw bytes (with its `\n`, if it
/// has one) and what it holds. Memory: one line at a time.
pub struct Lines {
    path: PathBuf,
    reader: BufReader<File>,
    line: usize,
    buf: Vec<u8>,
}

impl Lines {
    /// `None` when there is no dead-letter file.
    pub fn open(spool_dir: &Path) -> Result<Option<Self>, DeadLetterError> {
        let path = path(spool_dir);
        match File::open(&path) {
            Ok(f) => Ok(Some(Self {
                path,
                reader: BufReader::new(f),
                line: 0,
                buf: Vec::new(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DeadLetterError::Read { path, source }),
        }
    }

    /// The next line's raw bytes and meaning, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<(&[u8], Line)>, DeadLetterError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| DeadLetterError::Read {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let parsed = match self.buf.strip_suffix(b"\n") {
            Some(text) => parse_line(self.line, text),
            None => Line::Unreadable {
                line: self.line,
                why: "cut short (no end of line: a write that did not finish)".into(),
            },
        };
        Ok(Some((&self.buf, parsed)))
    }
}

/// Every line of the file (empty without a file). For tests and small files;
/// the commands stream with [`Lines`].
pub fn read_all(spool_dir: &Path) -> Result<Vec<Line>, DeadLetterError> {
    let mut out = Vec::new();
    if let Some(mut lines) = Lines::open(spool_dir)? {
        while let Some((_, l)) = lines.next_line()? {
            out.push(l);
        }
    }
    Ok(out)
}

/// What a replay did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Dead letters matching the filter.
    pub selected: u64,
    /// Appended to the spool (a dry run: would be).
    pub replayed: u64,
    /// Selected, but already undelivered in the spool under the same id (from
    /// a replay interrupted before it rewrote the file): removed from the file only.
    pub already_in_spool: u64,
    /// Selected format-1 lines left in the file (no exact bytes; see `--include-legacy`).
    pub skipped_legacy: u64,
    /// Lines that could not be read, left in the file.
    pub unreadable: u64,
    /// Spool sequences the replayed events got.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// Replay settings.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub filter: Filter,
    /// Also replay format-1 lines (their value re-encoded from parsed JSON).
    pub include_legacy: bool,
}

/// What a replay would do, without changing anything (no store, no lock).
pub fn plan(spool_dir: &Path, opts: &ReplayOptions) -> Result<ReplayReport, DeadLetterError> {
    let mut report = ReplayReport::default();
    let Some(mut lines) = Lines::open(spool_dir)? else {
        return Ok(report);
    };
    while let Some((_, line)) = lines.next_line()? {
        match line {
            Line::Unreadable { .. } => report.unreadable += 1,
            Line::Letter(l) if opts.filter.matches(&l) => {
                report.selected += 1;
                if l.to_record(opts.include_legacy).is_some() {
                    report.replayed += 1;
                } else {
                    report.skipped_legacy += 1;
                }
            }
            Line::Letter(_) => {}
        }
    }
    Ok(report)
}

/// Puts the selected dead letters back into `store`'s spool and removes them
/// from the file (see the module docs for the steps and crash outcomes).
/// The store's directory is the spool directory whose file is replayed.
pub fn replay(store: &Store, opts: &ReplayOptions) -> Result<ReplayReport, DeadLetterError> {
    let dir = store.options().dir.clone();
    let file = path(&dir);
    let _ = std::fs::remove_file(tmp_path(&dir));

    // 1. The selection.
    let mut report = ReplayReport::default();
    let mut ids = HashSet::new();
    let mut total_bytes = 0u64;
    let mut selected_bytes = 0u64;
    let Some(mut lines) = Lines::open(&dir)? else {
        return Ok(report);
    };
    while let Some((raw, line)) = lines.next_line()? {
        total_bytes += raw.len() as u64;
        match line {
            Line::Unreadable { .. } => report.unreadable += 1,
            Line::Letter(l) if opts.filter.matches(&l) => {
                report.selected += 1;
                match l.to_record(opts.include_legacy) {
                    Some(r) => {
                        ids.insert(r.id);
                        selected_bytes += raw.len() as u64;
                    }
                    None => report.skipped_legacy += 1,
                }
            }
            Line::Letter(_) => {}
        }
    }
    if ids.is_empty() {
        return Ok(report);
    }
    // What stays in the file counts against spool.max_bytes; what moves is
    // counted once, as spool records.
    let accounted = store.external_bytes();
    accounted.store(total_bytes - selected_bytes, Ordering::Relaxed);

    // 2. Ids already back in the spool, undelivered.
    let mut in_spool = HashSet::new();
    let mut reader = store.reader();
    loop {
        let (records, _) = reader.read(store, 1024)?;
        if records.is_empty() {
            break;
        }
        in_spool.extend(records.iter().map(|r| r.id).filter(|id| ids.contains(id)));
    }

    // 3. Append, in file order, in batches; stop at the first failure.
    let mut appended = 0u64;
    let mut failure = None;
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let mut flush = |batch: &mut Vec<NewRecord>, report: &mut ReplayReport| {
        if batch.is_empty() {
            return Ok(());
        }
        let a = store.append(batch, true)?;
        let n = batch.len() as u64;
        report.first_seq.get_or_insert(a.last_seq + 1 - n);
        report.last_seq = Some(a.last_seq);
        appended += n;
        batch.clear();
        Ok::<(), crate::spool::SpoolError>(())
    };
    let mut lines = Lines::open(&dir)?.ok_or_else(|| vanished(&file))?;
    while let Some((_, line)) = lines.next_line()? {
        let Line::Letter(l) = line else { continue };
        if !opts.filter.matches(&l) {
            continue;
        }
        let Some(r) = l.to_record(opts.include_legacy) else {
            continue;
        };
        if in_spool.contains(&r.id) {
            continue;
        }
        batch_bytes += r.value.len();
        batch.push(r);
        if batch.len() >= REPLAY_BATCH || batch_bytes >= REPLAY_BATCH_BYTES {
            batch_bytes = 0;
            if let Err(e) = flush(&mut batch, &mut report) {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        if let Err(e) = flush(&mut batch, &mut report) {
            failure = Some(e);
        }
    }
    report.replayed = appended;
    report.already_in_spool = in_spool.len() as u64;

    // 4. The file without what is now in the spool: the first `appended`
    // replayable selected letters, and those already in the spool.
    let tmp = tmp_path(&dir);
    let rewrite = |source| DeadLetterError::Rewrite {
        path: file.clone(),
        source,
    };
    let mut out = io::BufWriter::new(create_tmp(&tmp).map_err(rewrite)?);
    let mut kept = 0u64;
    let mut to_drop = appended;
    let mut lines = Lines::open(&dir)?.ok_or_else(|| vanished(&file))?;
    while let Some((raw, line)) = lines.next_line()? {
        let drop = match &line {
            Line::Letter(l) if opts.filter.matches(l) => match l.to_record(opts.include_legacy) {
                Some(r) if in_spool.contains(&r.id) => true,
                Some(_) if to_drop > 0 => {
                    to_drop -= 1;
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !drop {
            out.write_all(raw).map_err(rewrite)?;
            kept += raw.len() as u64;
        }
    }
    let out = out.into_inner().map_err(|e| rewrite(e.into_error()))?;
    out.sync_all().map_err(rewrite)?;
    drop(out);
    replace(&tmp, &file).map_err(rewrite)?;
    accounted.store(kept, Ordering::Relaxed);

    match failure {
        None => Ok(report),
        Some(source) => Err(DeadLetterError::ReplayStopped {
            replayed: appended,
            source,
        }),
    }
}

fn vanished(file: &Path) -> DeadLetterError {
    DeadLetterError::Read {
        path: file.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "the file disappeared during replay",
        ),
    }
}
