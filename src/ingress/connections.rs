//! Connection state of the Z-API instances, for SREs: which instances the
//! last `ConnectedCallback` or `DisconnectedCallback` says are offline, and
//! the gauge `presence_bridge_instances_disconnected` that counts them (no
//! instance label: alert `PresenceBridgeInstanceDisconnected`). When a
//! WhatsApp number goes offline, every webhook of that number stops, so a
//! silent topic is not proof of a quiet chat.
//!
//! [`Connections::record`] is called once per *accepted* Connected or
//! Disconnected callback (committed to the spool, like any event).
//!
//! - **Order.** Callbacks may arrive out of order. Per instance the newest
//!   `moment_ms` seen is kept and a callback with an older moment is ignored;
//!   one with the same moment as the newest is applied (arrival order is the
//!   only tie-breaker left, the moments being in seconds for some callbacks).
//!   A callback without a moment is taken as the newest: it is applied and
//!   the newest moment seen stays what it was, so a late callback older than
//!   that is still ignored.
//! - **Bounded memory.** At most [`MAX_TRACKED_INSTANCES`] instances are
//!   tracked (an id is at most [`zapi::MAX_INSTANCE_ID_LEN`] bytes, so about
//!   4 MB at worst). When a callback names a new instance and the table is
//!   full, the instance that has been connected the longest (by its last
//!   callback) is forgotten to make room: a connected instance adds nothing
//!   to the gauge, and forgetting it only loses its ordering (a late,
//!   older Disconnected for it would then count). When every tracked
//!   instance is disconnected, the new instance is not tracked and the
//!   callback counts in `presence_bridge_connection_callbacks_untracked_total`
//!   (as does one naming an id longer than the limit); the gauge is then at
//!   least [`MAX_TRACKED_INSTANCES`] and the alert fires anyway.
//! - **Restarts.** The state lives in memory only: after a restart it is
//!   empty and the gauge counts from the callbacks received since the start.
//!   An instance that went offline before is unknown until its next callback
//!   (Z-API sends none while it stays offline). With several replicas, each
//!   counts the callbacks it received itself.
//!
//! A change of state (online to offline or back) is logged at `info` with the
//! instance id, so `kubectl logs … | grep instance_id` names the instance.
//! Used behind an [`Arc`](std::sync::Arc): the app creates one and hands it
//! to the webhook handler with
//! [`Webhook::with_connections`](super::Webhook::with_connections).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use prometheus::{IntCounter, IntGauge, Opts, Registry};

use crate::metrics::NS;

/// Most instances whose connection state is tracked at once.
pub const MAX_TRACKED_INSTANCES: usize = 10_000;

/// What is known of one instance.
#[derive(Debug, Clone, Copy)]
struct Entry {
    connected: bool,
    /// The newest `moment_ms` seen for it (`None`: none carried one yet).
    moment_ms: Option<i64>,
    /// When it was last updated, in updates since the start: its key in
    /// `State::connected` while it is connected.
    seq: u64,
}

#[derive(Debug, Default)]
struct State {
    instances: HashMap<Box<str>, Entry>,
    /// The connected instances by `seq`, oldest update first: forgotten in
    /// this order when room is needed.
    connected: BTreeMap<u64, Box<str>>,
    disconnected: usize,
    next_seq: u64,
}

/// What became of one callback (for tests and the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// The instance's state changed (or it is new).
    Changed,
    /// Same state as before; its moment may have moved on.
    Unchanged,
    /// Older than the newest callback seen for that instance: ignored.
    Stale,
    /// A new instance with no room left: not tracked.
    Untracked,
}

/// The instances' connection state and its metrics. Share it behind an
/// `Arc`; every method takes `&self` (one short mutex inside).
#[derive(Debug)]
pub struct Connections {
    state: Mutex<State>,
    limit: usize,
    disconnected_gauge: IntGauge,
    untracked: IntCounter,
}

impl Connections {
    /// Creates the series and registers them on `registry` (none: the
    /// series exist but are not exported, for tests and tools).
    pub fn new(registry: Option<&Registry>) -> Result<Self, prometheus::Error> {
        Self::with_limit(registry, MAX_TRACKED_INSTANCES)
    }

    fn with_limit(registry: Option<&Registry>, limit: usize) -> Result<Self, prometheus::Error> {
        let disconnected_gauge = IntGauge::with_opts(
            Opts::new(
                "instances_disconnected",
                "Z-API instances whose last Connected/Disconnected callback since the start says \
                 disconnected: their WhatsApp number sends no webhook.",
            )
            .namespace(NS),
        )?;
        let untracked = IntCounter::with_opts(
            Opts::new(
                "connection_callbacks_untracked_total",
                "Connected/Disconnected callbacks of an instance left out of \
                 presence_bridge_instances_disconnected: the table of tracked instances was \
                 full of disconnected ones (or the id was too long).",
            )
            .namespace(NS),
        )?;
        if let Some(registry) = registry {
            registry.register(Box::new(disconnected_gauge.clone()))?;
            registry.register(Box::new(untracked.clone()))?;
        }
        Ok(Self {
            state: Mutex::new(State::default()),
            limit,
            disconnected_gauge,
            untracked,
        })
    }

    /// One accepted Connected (`connected = true`) or Disconnected
    /// (`connected = false`) callback of `instance`, with its moment in
    /// Unix milliseconds when it carried one. See the module doc for order
    /// and bounds.
    pub fn record(&self, instance: &str, connected: bool, moment_ms: Option<i64>) {
        let applied = self.apply(instance, connected, moment_ms);
        match applied {
            Applied::Changed => {
                if connected {
                    tracing::info!(instance_id = instance, "Z-API instance connected");
                } else {
                    tracing::info!(
                        instance_id = instance,
                        "Z-API instance disconnected: its WhatsApp number sends no webhook"
                    );
                }
            }
            Applied::Stale => tracing::debug!(
                instance_id = instance,
                connected,
                moment_ms,
                "connection callback older than the newest seen for that instance: ignored"
            ),
            Applied::Untracked => {
                self.untracked.inc();
                tracing::debug!(
                    instance_id = instance,
                    connected,
                    "connection callback of an untracked instance (table full)"
                );
            }
            Applied::Unchanged => {}
        }
    }

    /// Instances whose last callback says disconnected (the gauge's value).
    pub fn disconnected(&self) -> usize {
        self.lock().disconnected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, instance: &str, connected: bool, moment_ms: Option<i64>) -> Applied {
        if instance.len() > zapi::MAX_INSTANCE_ID_LEN {
            return Applied::Untracked;
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let seq = state.next_seq;
        state.next_seq += 1;
        let applied = match state.instances.get_mut(instance) {
            Some(entry) => {
                if let (Some(newest), Some(moment)) = (entry.moment_ms, moment_ms) {
                    if moment < newest {
                        return Applied::Stale;
                    }
                }
                if entry.connected {
                    state.connected.remove(&entry.seq);
                }
                let was_connected = entry.connected;
                entry.connected = connected;
                entry.moment_ms = moment_ms.or(entry.moment_ms);
                entry.seq = seq;
                if connected {
                    state.connected.insert(seq, instance.into());
                }
                match (was_connected, connected) {
                    (true, false) => state.disconnected += 1,
                    (false, true) => state.disconnected -= 1,
                    _ => {}
                }
                if was_connected == connected {
                    Applied::Unchanged
                } else {
                    Applied::Changed
                }
            }
            None => {
                if state.instances.len() >= self.limit {
                    match state.connected.pop_first() {
                        Some((_, oldest)) => {
                            state.instances.remove(&oldest);
                        }
                        None => return Applied::Untracked,
                    }
                }
                state.instances.insert(
                    instance.into(),
                    Entry {
                        connected,
                        moment_ms,
                        seq,
                    },
                );
                if connected {
                    state.connected.insert(seq, instance.into());
                } else {
                    state.disconnected += 1;
                }
                Applied::Changed
            }
        };
        self.disconnected_gauge.set(state.disconnected as i64);
        applied
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().instances.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render;

    fn fresh(limit: usize) -> (Registry, Connections) {
        let registry = Registry::new();
        let c = Connections::with_limit(Some(&registry), limit).unwrap();
        (registry, c)
    }

    fn scraped(registry: &Registry) -> String {
        String::from_utf8(render(registry)).unwrap()
    }

    #[test]
    fn the_gauge_counts_instances_whose_last_callback_says_disconnected() {
        let (registry, c) = fresh(MAX_TRACKED_INSTANCES);
        let text = scraped(&registry);
        assert!(
            text.contains("presence_bridge_instances_disconnected 0\n"),
            "{text}"
        );
        assert!(
            text.contains("presence_bridge_connection_callbacks_untracked_total 0\n"),
            "{text}"
        );

        c.record("A", false, Some(1_000));
        c.record("B", false, Some(1_000));
        c.record("B", false, Some(2_000)); // still offline: counted once
        c.record("C", true, Some(1_000));
        assert_eq!(c.disconnected(), 2);
        assert!(scraped(&registry).contains("presence_bridge_instances_disconnected 2\n"));

        c.record("A", true, Some(3_000));
        assert_eq!(c.disconnected(), 1);
        c.record("C", false, None);
        assert_eq!(c.disconnected(), 2);
        c.record("B", true, None);
        c.record("C", true, None);
        assert_eq!(c.disconnected(), 0);
        assert!(scraped(&registry).contains("presence_bridge_instances_disconnected 0\n"));
    }

    #[test]
    fn an_older_callback_is_ignored() {
        let (registry, c) = fresh(MAX_TRACKED_INSTANCES);
        // Reconnected at 2 s; the disconnect of 1 s arrives late.
        c.record("A", true, Some(2_000));
        c.record("A", false, Some(1_000));
        assert_eq!(c.disconnected(), 0);
        // And the other way round: offline at 5 s, a connect of 4 s arrives late.
        c.record("A", false, Some(5_000));
        c.record("A", true, Some(4_000));
        assert_eq!(c.disconnected(), 1);
        assert!(scraped(&registry).contains("presence_bridge_instances_disconnected 1\n"));
        // The same moment: arrival order decides.
        c.record("A", true, Some(5_000));
        assert_eq!(c.disconnected(), 0);
    }

    #[test]
    fn a_callback_without_moment_is_the_newest_and_keeps_the_newest_moment() {
        let (_, c) = fresh(MAX_TRACKED_INSTANCES);
        c.record("A", false, Some(10_000));
        c.record("A", true, None);
        assert_eq!(c.disconnected(), 0, "no moment: applied");
        c.record("A", false, Some(9_000));
        assert_eq!(c.disconnected(), 0, "older than the newest moment seen");
        c.record("A", false, Some(11_000));
        assert_eq!(c.disconnected(), 1, "newer: applied");

        // An instance first seen without a moment takes any later moment.
        c.record("B", false, None);
        c.record("B", true, Some(1));
        assert_eq!(c.disconnected(), 1);
    }

    #[test]
    fn a_full_table_forgets_the_longest_connected_instance_first() {
        let (registry, c) = fresh(3);
        c.record("old", true, Some(1)); // connected first
        c.record("off", false, Some(1));
        c.record("new", true, Some(1));
        assert_eq!(c.tracked(), 3);

        // A fourth instance: "old" (connected the longest) makes room.
        c.record("fourth", false, Some(1));
        assert_eq!((c.tracked(), c.disconnected()), (3, 2));
        // "old" is forgotten: its late, older disconnect now counts...
        c.record("old", false, Some(0));
        assert_eq!(c.disconnected(), 3, "old was forgotten, not new");
        // ...which forgot "new", the only connected one left.
        assert_eq!(c.tracked(), 3);
        assert!(
            scraped(&registry).contains("presence_bridge_connection_callbacks_untracked_total 0\n")
        );

        // Full of disconnected instances: a new one is not tracked, and counted.
        c.record("fifth", false, Some(1));
        c.record("sixth", true, Some(1));
        assert_eq!((c.tracked(), c.disconnected()), (3, 3));
        let text = scraped(&registry);
        assert!(
            text.contains("presence_bridge_connection_callbacks_untracked_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("presence_bridge_instances_disconnected 3\n"),
            "{text}"
        );

        // Tracked instances are still updated, and their reconnection makes room again.
        c.record("off", true, Some(2));
        assert_eq!(c.disconnected(), 2);
        c.record("fifth", false, Some(1));
        assert_eq!((c.tracked(), c.disconnected()), (3, 3));
        assert!(
            scraped(&registry).contains("presence_bridge_connection_callbacks_untracked_total 2\n")
        );
    }

    #[test]
    fn reconnecting_refreshes_an_instance_s_place_in_the_forgetting_order() {
        let (_, c) = fresh(2);
        c.record("a", true, None);
        c.record("b", true, None);
        c.record("a", true, None); // a is now the most recent
        c.record("c", false, None); // forgets b
        c.record("b", false, Some(0));
        // b was forgotten (so counts), a then made room for it.
        assert_eq!(c.disconnected(), 2);
        c.record("a", false, None); // a is new again: no room, untracked
        assert_eq!(c.disconnected(), 2);
    }

    #[test]
    fn the_default_bound_holds() {
        let (registry, c) = fresh(MAX_TRACKED_INSTANCES);
        for i in 0..MAX_TRACKED_INSTANCES + 5 {
            c.record(&format!("i{i}"), false, None);
        }
        assert_eq!(c.tracked(), MAX_TRACKED_INSTANCES);
        assert_eq!(c.disconnected(), MAX_TRACKED_INSTANCES);
        assert!(
            scraped(&registry).contains("presence_bridge_connection_callbacks_untracked_total 5\n")
        );
        assert!(c.lock().connected.is_empty());
    }

    #[test]
    fn an_overlong_id_is_counted_not_tracked() {
        let (registry, c) = fresh(MAX_TRACKED_INSTANCES);
        c.record(&"x".repeat(zapi::MAX_INSTANCE_ID_LEN + 1), false, None);
        c.record(&"x".repeat(zapi::MAX_INSTANCE_ID_LEN), false, None);
        assert_eq!((c.tracked(), c.disconnected()), (1, 1));
        assert!(
            scraped(&registry).contains("presence_bridge_connection_callbacks_untracked_total 1\n")
        );
    }

    #[test]
    fn without_a_registry_nothing_is_exported() {
        let registry = Registry::new();
        let c = Connections::new(None).unwrap();
        c.record("A", false, None);
        assert_eq!(c.disconnected(), 1);
        assert!(!scraped(&registry).contains("instances_disconnected"));
    }
}
