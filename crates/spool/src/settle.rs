//! Which spool records are settled (delivered, or dead-lettered), kept per
//! destination so that one blocked topic never holds another.
//!
//! Order is promised per phone, and a phone's events always go to one topic
//! (the topic is chosen by instance), so events for different topics have no
//! order between them. The forwarder runs one lane per topic and settles each
//! lane's records in sequence order. The bookkeeping is therefore small and
//! bounded by the number of topics, however long a destination stays blocked:
//!
//! - `base`: every record with `seq <= base` is settled, whatever its topic;
//! - a cursor per topic: every record *of that topic* with `seq <= cursor` is
//!   settled. A lane that has caught up moves its cursor past the records of
//!   other topics too, so an idle topic never holds `base` back.
//!
//! A record `(seq, topic)` is settled iff `seq <= max(base, cursor[topic])`.
//! `base` is the smallest cursor of the topics known to the spool. A restart
//! resends exactly the unsettled records, each topic from its own cursor, so
//! per phone in order.
//!
//! Checkpoint payload (inside the checkpoint file):
//! ```text
//! payload := "PBSETTL2" base:u64le count:u16le (len:u16le topic cursor:u64le)*  crc:u32le
//!            (crc = CRC-32/IEEE of everything before it; only cursors above base)
//! ```
//! The version-1 payload (`"PBACKED1" watermark:u64le crc:u32le`) is still read:
//! it means `base = watermark` and no cursors.

use std::collections::BTreeMap;

use super::format::{decode_checkpoint, CHECKPOINT_MAGIC};

pub const SETTLE_MAGIC: &[u8; 8] = b"PBSETTL2";

/// One topic's position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lane {
    /// Every record of this topic with a sequence at or below this is settled.
    through: u64,
    /// Records of this topic above `through` (committed, not yet settled).
    pending: u64,
}

/// The settled set: a global base and a cursor per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    base: u64,
    topics: BTreeMap<String, Lane>,
}

impl Settlement {
    /// Everything at or below `base` settled, with the given per-topic cursors
    /// (cursors at or below `base` are dropped).
    pub fn new(base: u64, cursors: impl IntoIterator<Item = (String, u64)>) -> Self {
        let topics = cursors
            .into_iter()
            .filter(|(_, c)| *c > base)
            .map(|(t, c)| {
                (
                    t,
                    Lane {
                        through: c,
                        pending: 0,
                    },
                )
            })
            .collect();
        Self { base, topics }
    }

    /// Every record with a sequence at or below this is settled.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The topic's cursor (at least `base`).
    pub fn through(&self, topic: &str) -> u64 {
        self.topics
            .get(topic)
            .map_or(self.base, |l| l.through.max(self.base))
    }

    pub fn is_settled(&self, seq: u64, topic: &str) -> bool {
        seq <= self.through(topic)
    }

    /// Unsettled records in all.
    pub fn pending(&self) -> u64 {
        self.topics.values().map(|l| l.pending).sum()
    }

    /// Unsettled records of one topic.
    pub fn pending_of(&self, topic: &str) -> u64 {
        self.topics.get(topic).map_or(0, |l| l.pending)
    }

    /// Topics that have or had records in the spool, in name order.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    fn lane(&mut self, topic: &str) -> &mut Lane {
        if !self.topics.contains_key(topic) {
            let through = self.base;
            self.topics.insert(
                topic.to_owned(),
                Lane {
                    through,
                    pending: 0,
                },
            );
        }
        self.topics.get_mut(topic).expect("inserted above")
    }

    /// `n` new unsettled records of `topic` were committed.
    pub fn appended(&mut self, topic: &str, n: u64) {
        self.lane(topic).pending += n;
    }

    /// Every record of `topic` at or below `through` is now settled; `settled`
    /// of them were pending. A cursor never moves back.
    pub fn advance(&mut self, topic: &str, through: u64, settled: u64) {
        let lane = self.lane(topic);
        lane.through = lane.through.max(through);
        lane.pending = lane.pending.saturating_sub(settled);
        self.base = self
            .topics
            .values()
            .map(|l| l.through)
            .min()
            .unwrap_or(through);
    }

    /// Every record at or below `through` is settled, whatever its topic
    /// (tools and single-destination tests); `settled` of them were pending,
    /// taken from the topics in name order.
    pub fn advance_all(&mut self, through: u64, mut settled: u64) {
        for lane in self.topics.values_mut() {
            lane.through = lane.through.max(through);
            let n = settled.min(lane.pending);
            lane.pending -= n;
            settled -= n;
        }
        self.base = self.base.max(through);
        self.base = self.base.max(
            self.topics
                .values()
                .map(|l| l.through)
                .min()
                .unwrap_or(self.base),
        );
    }

    /// The highest sequence any position names: every sequence up to it was
    /// handed out already, so new records must be numbered above it (else a
    /// cursor would count them as settled).
    pub fn highest(&self) -> u64 {
        self.topics
            .values()
            .map(|l| l.through)
            .fold(self.base, u64::max)
    }

    /// The checkpoint payload.
    pub fn encode(&self) -> Vec<u8> {
        let above: Vec<(&String, u64)> = self
            .topics
            .iter()
            .filter(|(_, l)| l.through > self.base)
            .map(|(t, l)| (t, l.through))
            .collect();
        let mut out = Vec::with_capacity(32 + above.len() * 48);
        out.extend_from_slice(SETTLE_MAGIC);
        out.extend_from_slice(&self.base.to_le_bytes());
        out.extend_from_slice(&(above.len().min(u16::MAX as usize) as u16).to_le_bytes());
        for (t, c) in above.into_iter().take(u16::MAX as usize) {
            let name = &t.as_bytes()[..t.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&c.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a payload written by [`Settlement::encode`] or a version-1
    /// watermark. `None` when it is damaged.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        if buf.len() >= 8 && &buf[..8] == CHECKPOINT_MAGIC {
            return decode_checkpoint(buf).map(|w| Self::new(w, []));
        }
        if buf.len() < 8 + 8 + 2 + 4 || &buf[..8] != SETTLE_MAGIC {
            return None;
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return None;
        }
        let base = u64::from_le_bytes(body[8..16].try_into().ok()?);
        let count = u16::from_le_bytes(body[16..18].try_into().ok()?) as usize;
        let mut rest = &body[18..];
        let mut cursors = Vec::with_capacity(count);
        for _ in 0..count {
            let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
            let name = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
            let c = u64::from_le_bytes(rest.get(2 + len..10 + len)?.try_into().ok()?);
            cursors.push((name, c));
            rest = &rest[10 + len..];
        }
        rest.is_empty().then(|| Self::new(base, cursors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_checkpoint;

    #[test]
    fn topics_settle_independently() {
        let mut s = Settlement::new(0, []);
        s.appended("a", 3);
        s.appended("b", 2);
        assert_eq!(s.pending(), 5);
        s.advance("b", 10, 2);
        assert_eq!(s.base(), 0, "a holds the base");
        assert!(s.is_settled(9, "b"));
        assert!(!s.is_settled(9, "a"));
        s.advance("a", 7, 3);
        assert_eq!(s.base(), 7);
        assert_eq!(s.pending(), 0);
        s.advance("a", 5, 0);
        assert_eq!(s.through("a"), 7, "a cursor never moves back");
    }

    #[test]
    fn payload_round_trips_and_detects_damage() {
        let mut s = Settlement::new(4, [("held".into(), 2), ("fast".into(), 90)]);
        s.advance("held", 4, 0);
        let buf = s.encode();
        let back = Settlement::decode(&buf).expect("decodes");
        assert_eq!(back.base(), 4);
        assert_eq!(back.through("fast"), 90);
        assert_eq!(back.through("held"), 4);
        assert_eq!(back.through("unknown"), 4);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                Settlement::decode(&bad).is_none_or(|d| d == back),
                "byte {i}"
            );
        }
        assert!(Settlement::decode(&buf[..buf.len() - 1]).is_none());
    }

    #[test]
    fn version_one_watermark_is_read() {
        let s = Settlement::decode(&encode_checkpoint(42)).expect("v1");
        assert_eq!(s.base(), 42);
        assert!(s.is_settled(42, "any"));
        assert!(!s.is_settled(43, "any"));
    }
}
