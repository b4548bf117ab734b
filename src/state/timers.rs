//! The typing timers: one per typing contact (`<instanceId>:<phone>`), at
//! most `cap` of them, ordered by deadline. About 360 bytes each (the key
//! once, shared by both maps; measured by `cargo bench --bench
//! typing_timers`): a million typing contacts would take about 350 MiB,
//! hence the cap (`presence.max_typing_timers`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::time::Instant;
use uuid::Uuid;

/// A contact's typing state and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    /// When the timer fires (the bridge's clock).
    pub deadline: Instant,
    /// When the typing state expires, Unix milliseconds (the envelopes').
    pub expires_ms: i64,
    /// Arrival of the typing event, Unix milliseconds.
    pub since_ms: i64,
    /// `COMPOSING` or `RECORDING`.
    pub status: &'static str,
    pub last_seen_ms: Option<i64>,
    /// The typing event's id.
    pub cause: Uuid,
    /// Set by [`Timers::arm`]: tells this timer from a newer one of the contact.
    pub gen: u64,
}

pub(super) struct Timers {
    by_key: HashMap<Arc<str>, Typing>,
    by_deadline: BTreeMap<(Instant, u64), Arc<str>>,
    next_gen: u64,
    cap: usize,
}

impl Timers {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            by_key: HashMap::new(),
            by_deadline: BTreeMap::new(),
            next_gen: 0,
            cap,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Arms (or moves) the contact's timer; false when the cap is reached
    /// and the contact had none (nothing armed; an older timer of the
    /// contact is replaced, never kept).
    /// A contact that had a timer keeps its key: the key is copied (one
    /// allocation) only for a contact that had none.
    pub(super) fn arm(
        &mut self,
        key: impl AsRef<str> + Into<Arc<str>>,
        mut typing: Typing,
    ) -> bool {
        let key = match self.by_key.remove_entry(key.as_ref()) {
            Some((kept, old)) => {
                self.by_deadline.remove(&(old.deadline, old.gen));
                kept
            }
            None if self.by_key.len() >= self.cap => return false,
            None => key.into(),
        };
        self.next_gen += 1;
        typing.gen = self.next_gen;
        self.by_deadline
            .insert((typing.deadline, typing.gen), key.clone());
        self.by_key.insert(key, typing);
        true
    }

    /// The generation of the contact's timer, if it has one.
    pub(super) fn gen_of(&self, key: &str) -> Option<u64> {
        self.by_key.get(key).map(|t| t.gen)
    }

    /// Removes the contact's timer (a newer, non-typing status came).
    pub(super) fn cancel(&mut self, key: &str) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_deadline.remove(&(old.deadline, old.gen));
        }
    }

    /// Removes the contact's timer if it is still the one of generation `gen`.
    pub(super) fn cancel_if(&mut self, key: &str, gen: u64) {
        if self.gen_of(key) == Some(gen) {
            self.cancel(key);
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first_key_value().map(|((d, _), _)| *d)
    }

    /// The earliest timer if it is due at `now`, removed.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Arc<str>, Typing)> {
        let entry = self.by_deadline.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let key = entry.remove();
        let typing = self.by_key.remove(&key)?;
        Some((key, typing))
    }
}
