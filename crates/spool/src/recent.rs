//! The newest committed records (the spool's tail), kept in memory for the
//! forwarder's lanes.
//!
//! When a lane keeps up with the webhook (the normal case), the records it
//! needs next are the ones the writer thread has just committed. The writer
//! copies each committed batch here, sorted by topic, and a lane's
//! [`crate::store::Reader`] takes its topic's records from here when
//! the tail has seen every record since the lane's position, so they are not
//! read back from disk through the blocking pool. The disk stays the truth: a
//! record is pushed only after it is committed, and whenever the tail cannot
//! vouch for the lane's next sequence (after an outage, a held destination, a
//! rewind or a restart) the reader reads the segment files.
//!
//! Bounded in bytes across all topics: when full, the oldest record of any
//! topic is dropped (it is on disk), and that topic's lane then reads from
//! disk. During an outage the tail therefore holds the newest [`RECENT_BYTES`]
//! of the backlog and memory stays flat.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::format::StoredRecord;
use super::store::NewRecord;

/// Framed bytes of records the tail holds at most.
pub const RECENT_BYTES: usize = 4 << 20;

#[derive(Default)]
struct TopicTail {
    records: VecDeque<StoredRecord>,
    /// Every record of this topic from this sequence up to `through` is held
    /// (or was taken by the lane).
    covered_from: u64,
}

#[derive(Default)]
struct Inner {
    topics: BTreeMap<String, TopicTail>,
    bytes: usize,
    /// The tail has seen every committed record from `origin` to `through`.
    origin: u64,
    through: u64,
    /// False until the first push (or after a gap): nothing is vouched for.
    started: bool,
}

/// Committed records per topic, oldest first.
pub struct Recent {
    inner: Mutex<Inner>,
    cap: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Self::with_capacity(RECENT_BYTES)
    }
}

/// What a lane got from the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Records moved out.
    pub records: usize,
    /// The lane's next sequence: every record of its topic before it was
    /// taken (now or earlier) or is settled.
    pub next_seq: u64,
}

impl Recent {
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
    /// A batch that does not continue the records seen so far starts over.
    pub fn push(&self, first_seq: u64, batch: impl Iterator<Item = NewRecord>) {
        let mut t = self.inner();
        if !t.started || t.through + 1 != first_seq {
            t.topics.clear();
            t.bytes = 0;
            t.origin = first_seq;
            t.through = first_seq.saturating_sub(1);
            t.started = true;
        }
        let origin = t.origin;
        let mut seq = first_seq;
        for r in batch {
            let rec = StoredRecord {
                seq,
                arrival_ms: r.arrival_ms,
                id: r.id,
                kind: r.kind,
                topic: r.topic,
                key: r.key,
                value: r.value,
            };
            seq += 1;
            t.bytes += rec.framed_len();
            if !t.topics.contains_key(&rec.topic) {
                t.topics.insert(
                    rec.topic.clone(),
                    TopicTail {
                        records: VecDeque::new(),
                        covered_from: origin,
                    },
                );
            }
            if let Some(tt) = t.topics.get_mut(&rec.topic) {
                tt.records.push_back(rec);
            }
        }
        t.through = seq - 1;
        while t.bytes > self.cap {
            let oldest = t
                .topics
                .iter()
                .filter_map(|(name, tt)| tt.records.front().map(|r| (r.seq, name.clone())))
                .min();
            let Some((_, name)) = oldest else { break };
            let Some(tt) = t.topics.get_mut(&name) else {
                break;
            };
            let Some(old) = tt.records.pop_front() else {
                break;
            };
            tt.covered_from = old.seq + 1;
            t.bytes -= old.framed_len();
        }
    }

    /// Moves up to `max` records of `topic` starting at `seq` into `out`, and
    /// forgets the topic's held records before `seq`. `None` when the tail
    /// cannot vouch for every record of the topic from `seq` on (read the disk).
    pub fn take(
        &self,
        topic: &str,
        seq: u64,
        max: usize,
        out: &mut Vec<StoredRecord>,
    ) -> Option<Taken> {
        let mut t = self.inner();
        if !t.started || seq > t.through + 1 {
            return None;
        }
        let through = t.through;
        let origin = t.origin;
        let Some(tt) = t.topics.get_mut(topic) else {
            // No record of this topic since `origin`.
            return (seq >= origin).then_some(Taken {
                records: 0,
                next_seq: through + 1,
            });
        };
        if seq < tt.covered_from {
            return None;
        }
        let mut freed = 0;
        while tt.records.front().is_some_and(|r| r.seq < seq) {
            if let Some(old) = tt.records.pop_front() {
                freed += old.framed_len();
            }
        }
        let mut moved = 0;
        while moved < max {
            let Some(rec) = tt.records.pop_front() else {
                break;
            };
            freed += rec.framed_len();
            out.push(rec);
            moved += 1;
        }
        let next_seq = match tt.records.front() {
            Some(r) => r.seq,
            None => through + 1,
        };
        // Taken and forgotten records are no longer here: a rewind to them reads the disk.
        tt.covered_from = tt.covered_from.max(next_seq);
        t.bytes -= freed;
        Some(Taken {
            records: moved,
            next_seq,
        })
    }

    /// Records held (for tests and gauges).
    pub fn len(&self) -> usize {
        self.inner().topics.values().map(|t| t.records.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(topics: &'static [&'static str], n: usize, size: usize) -> Vec<NewRecord> {
        (0..n)
            .map(move |i| NewRecord {
                arrival_ms: i as i64,
                id: uuid::Uuid::now_v7(),
                kind: crate::RecordKind(1),
                topic: topics[i % topics.len()].into(),
                key: format!("k{i}"),
                value: vec![b'x'; size],
            })
            .collect()
    }

    fn seqs(out: &[StoredRecord]) -> Vec<u64> {
        out.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_topic_takes_its_own_records_and_skips_the_others() {
        let tail = Recent::default();
        tail.push(10, batch(&["a", "b"], 6, 10).into_iter());
        let mut out = Vec::new();
        let got = tail.take("a", 10, 100, &mut out).expect("covered");
        assert_eq!(seqs(&out), [10, 12, 14]);
        assert_eq!(got.next_seq, 16, "a has seen everything up to 15");
        out.clear();
        let got = tail.take("b", 10, 2, &mut out).expect("covered");
        assert_eq!(seqs(&out), [11, 13]);
        assert_eq!(got.next_seq, 15, "15 is b's next");
        let idle = tail.take("c", 12, 10, &mut out).expect("c had nothing");
        assert_eq!((idle.records, idle.next_seq), (0, 16));
        assert_eq!(tail.take("a", 9, 10, &mut out), None, "9 was never seen");
        assert_eq!(tail.take("a", 17, 10, &mut out), None, "17 not committed");
    }

    #[test]
    fn a_gap_starts_over() {
        let tail = Recent::default();
        tail.push(1, batch(&["t"], 3, 10).into_iter());
        tail.push(7, batch(&["t"], 2, 10).into_iter());
        let mut out = Vec::new();
        assert_eq!(tail.take("t", 1, 10, &mut out), None);
        let got = tail.take("t", 7, 10, &mut out).expect("covered");
        assert_eq!((got.records, got.next_seq), (2, 9));
        assert_eq!(out[0].key, "k0");
    }

    #[test]
    fn stays_within_its_byte_bound_by_dropping_the_oldest() {
        let one = &batch(&["t"], 1, 100)[0];
        let framed = crate::format::framed_len(&one.topic, &one.key, &one.value);
        let tail = Recent::with_capacity(framed * 10);
        tail.push(1, batch(&["t", "u"], 25, 100).into_iter());
        let held = tail.len();
        assert!((9..=10).contains(&held), "held {held}");
        let mut out = Vec::new();
        assert_eq!(
            tail.take("t", 1, 100, &mut out),
            None,
            "the oldest were dropped"
        );
        let first_held = 26 - held as u64;
        let t_first = if first_held % 2 == 1 {
            first_held
        } else {
            first_held + 1
        };
        let got = tail.take("t", t_first, 100, &mut out).expect("covered");
        assert_eq!(out.first().map(|r| r.seq), Some(t_first));
        assert_eq!(got.next_seq, 26);
    }
}
