//! The newest committed records, kept in memory for the forwarder.
//!
//! When the forwarder keeps up with the webhook (the normal case), the records
//! it needs next are the ones the writer thread has just committed. The writer
//! copies each committed batch here, and [`crate::spool::store::Reader`] takes
//! records from here while they continue exactly where the reader stands, so
//! they are not read back from disk through the blocking pool. The disk stays
//! the truth: a record is pushed only after it is committed, and whenever the
//! tail does not hold the reader's next sequence (after an outage, a rewind, or
//! a restart) the reader reads the segment files as before.
//!
//! Bounded in bytes: when full, the oldest records are dropped (they are on
//! disk). During an outage the tail therefore holds the newest
//! [`TAIL_BYTES`] of the backlog and memory stays flat.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::format::StoredRecord;
use super::store::NewRecord;

/// Framed bytes of records the tail holds at most.
pub const TAIL_BYTES: usize = 4 << 20;

#[derive(Default)]
struct Inner {
    records: VecDeque<StoredRecord>,
    bytes: usize,
}

/// Committed records, consecutive by sequence, oldest first.
pub struct Tail {
    inner: Mutex<Inner>,
    cap: usize,
}

impl Default for Tail {
    fn default() -> Self {
        Self::with_capacity(TAIL_BYTES)
    }
}

impl Tail {
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            cap,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a committed batch whose first record has sequence `first_seq`.
    /// A batch that does not continue the held records replaces them.
    pub fn push(&self, first_seq: u64, batch: impl Iterator<Item = NewRecord>) {
        let mut t = self.inner();
        if t.records.back().is_some_and(|r| r.seq + 1 != first_seq) {
            t.records.clear();
            t.bytes = 0;
        }
        for (i, r) in batch.enumerate() {
            let rec = StoredRecord {
                seq: first_seq + i as u64,
                arrival_ms: r.arrival_ms,
                id: r.id,
                topic: r.topic,
                key: r.key,
                value: r.value,
            };
            t.bytes += rec.framed_len();
            t.records.push_back(rec);
        }
        while t.bytes > self.cap {
            match t.records.pop_front() {
                Some(old) => t.bytes -= old.framed_len(),
                None => break,
            }
        }
    }

    /// Moves up to `max` records starting exactly at `seq` into `out`, and
    /// forgets every held record before `seq`. Returns how many were moved:
    /// zero when the tail does not hold `seq`.
    pub fn take_from(&self, seq: u64, max: usize, out: &mut Vec<StoredRecord>) -> usize {
        let mut t = self.inner();
        while t.records.front().is_some_and(|r| r.seq < seq) {
            if let Some(old) = t.records.pop_front() {
                t.bytes -= old.framed_len();
            }
        }
        if t.records.front().is_none_or(|r| r.seq != seq) {
            return 0;
        }
        let n = max.min(t.records.len());
        for _ in 0..n {
            if let Some(rec) = t.records.pop_front() {
                t.bytes -= rec.framed_len();
                out.push(rec);
            }
        }
        n
    }

    /// Records held (for tests and gauges).
    pub fn len(&self) -> usize {
        self.inner().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize, size: usize) -> impl Iterator<Item = NewRecord> {
        (0..n).map(move |i| NewRecord {
            arrival_ms: i as i64,
            id: uuid::Uuid::now_v7(),
            topic: "t".into(),
            key: format!("k{i}"),
            value: vec![b'x'; size],
        })
    }

    #[test]
    fn takes_only_from_the_exact_sequence() {
        let tail = Tail::default();
        tail.push(10, batch(5, 10));
        let mut out = Vec::new();
        assert_eq!(tail.take_from(9, 100, &mut out), 0, "9 is not held");
        assert_eq!(tail.take_from(12, 2, &mut out), 2);
        assert_eq!(
            out.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [12, 13],
            "10 and 11 are forgotten, 12 and 13 taken"
        );
        assert_eq!(tail.len(), 1);
        assert_eq!(tail.take_from(20, 10, &mut out), 0);
        assert!(tail.is_empty(), "everything before 20 is forgotten");
    }

    #[test]
    fn a_gap_replaces_what_is_held() {
        let tail = Tail::default();
        tail.push(1, batch(3, 10));
        tail.push(7, batch(2, 10));
        let mut out = Vec::new();
        assert_eq!(tail.take_from(1, 10, &mut out), 0);
        assert_eq!(tail.take_from(7, 10, &mut out), 2);
        assert_eq!(out[0].key, "k0");
        assert_eq!(out[1].seq, 8);
    }

    #[test]
    fn stays_within_its_byte_bound_by_dropping_the_oldest() {
        let one = batch(1, 100).next().unwrap();
        let framed = crate::spool::format::framed_len(&one.topic, &one.key, &one.value);
        let tail = Tail::with_capacity(framed * 10);
        tail.push(1, batch(25, 100));
        let held = tail.len();
        assert!((9..=10).contains(&held), "held {held}");
        let mut out = Vec::new();
        assert_eq!(
            tail.take_from(1, 100, &mut out),
            0,
            "the oldest were dropped"
        );
        let first_held = 26 - held as u64;
        assert_eq!(tail.take_from(first_held, 100, &mut out), held);
        assert_eq!(out.first().map(|r| r.seq), Some(first_held));
        assert_eq!(out.last().map(|r| r.seq), Some(25));
    }
}
