//! What the forwarder tells operators about each destination (Kafka topic):
//! flowing or held, why, and how many events wait for it.
//!
//! The topic is a metric label, so it is bounded: the configured topics get
//! their own series (created at zero on start, so alerts see them before the
//! first failure); any other topic (left in the spool by an earlier
//! configuration) is counted under `other`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::classify::HoldReason;
use crate::spool::store::Store;

/// The label for topics that are not configured.
pub const OTHER: &str = "other";

#[derive(Clone)]
pub struct DestinationMetrics {
    configured: BTreeSet<String>,
    blocked: IntGaugeVec,
    held: IntGaugeVec,
    errors: IntCounterVec,
    resent: IntCounterVec,
    /// Where `destination_pending_events` is read from at each scrape.
    store: Arc<Mutex<Option<Weak<Store>>>>,
}

/// `presence_bridge_destination_pending_events`, read from the spool when
/// scraped (the configured topics, and the sum of any other under `other`).
struct PendingGauges {
    gauges: IntGaugeVec,
    configured: BTreeSet<String>,
    store: Arc<Mutex<Option<Weak<Store>>>>,
}

impl Collector for PendingGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let store = self
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Weak::upgrade);
        if let Some(store) = store {
            let mut other = 0u64;
            for t in store.topics() {
                if !self.configured.contains(&t) {
                    other += store.pending_of(&t);
                }
            }
            for t in &self.configured {
                let n = store.pending_of(t);
                self.gauges
                    .with_label_values(&[t])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            self.gauges
                .with_label_values(&[OTHER])
                .set(i64::try_from(other).unwrap_or(i64::MAX));
        }
        self.gauges.collect()
    }
}

impl DestinationMetrics {
    /// Registers the metrics; `configured` are every topic the configuration names.
    pub fn new(
        registry: &Registry,
        configured: impl IntoIterator<Item = String>,
    ) -> Result<Self, prometheus::Error> {
        let ns = "presence_bridge";
        let blocked = IntGaugeVec::new(
            Opts::new(
                "destination_blocked",
                "1 while a destination (topic) is held: its events wait in the spool while other topics flow.",
            )
            .namespace(ns),
            &["topic"],
        )?;
        let held = IntGaugeVec::new(
            Opts::new(
                "destination_pending_events",
                "Events in the spool not yet delivered, per destination (topic), read from the spool at each scrape.",
            )
            .namespace(ns),
            &["topic"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "destination_errors_total",
                "Deliveries a destination refused, by the reason it is held for.",
            )
            .namespace(ns),
            &["topic", "reason"],
        )?;
        let resent = IntCounterVec::new(
            Opts::new(
                "kafka_resent_total",
                "Events sent again after a hold, a lost result or a new producer; those the broker had already taken are duplicates (same ce_id).",
            )
            .namespace(ns),
            &["topic"],
        )?;
        let configured: BTreeSet<String> = configured.into_iter().collect();
        let store = Arc::default();
        registry.register(Box::new(blocked.clone()))?;
        registry.register(Box::new(PendingGauges {
            gauges: held.clone(),
            configured: configured.clone(),
            store: Arc::clone(&store),
        }))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(resent.clone()))?;
        let me = Self {
            configured,
            blocked,
            held,
            errors,
            resent,
            store,
        };
        for t in me.configured.iter().map(String::as_str).chain([OTHER]) {
            me.blocked.with_label_values(&[t]).set(0);
            me.held.with_label_values(&[t]).set(0);
            me.resent.with_label_values(&[t]).inc_by(0);
            for r in HoldReason::ALL {
                me.errors.with_label_values(&[t, r.as_str()]).inc_by(0);
            }
        }
        Ok(me)
    }

    /// From now on `presence_bridge_destination_pending_events` is read from
    /// `store` at each scrape (held weakly).
    pub fn read_pending_from(&self, store: &Arc<Store>) {
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(store));
    }

    /// A standalone set on its own registry (tests, tools).
    pub fn standalone(configured: impl IntoIterator<Item = String>) -> Self {
        Self::new(&Registry::new(), configured).expect("fresh registry")
    }

    /// The label value for a topic: itself if configured, else `other`.
    pub fn label<'a>(&self, topic: &'a str) -> &'a str {
        if self.configured.contains(topic) {
            topic
        } else {
            OTHER
        }
    }

    pub fn state(&self, topic: &str, blocked: bool, pending: u64) {
        let l = self.label(topic);
        self.blocked.with_label_values(&[l]).set(i64::from(blocked));
        self.held
            .with_label_values(&[l])
            .set(pending.min(i64::MAX as u64) as i64);
    }

    pub fn error(&self, topic: &str, reason: HoldReason) {
        self.errors
            .with_label_values(&[self.label(topic), reason.as_str()])
            .inc();
    }

    pub fn resent(&self, topic: &str, n: u64) {
        if n > 0 {
            self.resent
                .with_label_values(&[self.label(topic)])
                .inc_by(n);
        }
    }
}
