//! Liveness and readiness state, shared by the app (which updates it) and the
//! admin listener (which reports it).
//!
//! Ready means "a webhook posted now can be accepted": not shutting down and
//! the spool has room. A broker outage does NOT make the bridge unready: the
//! spool absorbs it, and an outage must not make Kubernetes pull every pod at
//! once. The JSON body names each component's state.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use serde_json::{json, Value};

use crate::metrics::Metrics;

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// Facts about the embedded development broker, shown in `/readyz`.
#[derive(Debug, Clone)]
pub struct DevBroker {
    pub bootstrap: String,
    pub topic: String,
}

pub struct Health {
    shutting_down: AtomicBool,
    broker: AtomicU8,
    topic: AtomicU8,
    spool_events: AtomicU64,
    spool_bytes: AtomicU64,
    /// Not ready once less than `headroom` bytes of `capacity` are free.
    spool_capacity: u64,
    spool_headroom: u64,
    dev: Option<DevBroker>,
    metrics: Metrics,
}

impl Health {
    pub fn new(
        dev: Option<DevBroker>,
        metrics: Metrics,
        spool_capacity: u64,
        spool_headroom: u64,
    ) -> Self {
        let h = Self {
            shutting_down: AtomicBool::new(false),
            broker: AtomicU8::new(UNKNOWN),
            topic: AtomicU8::new(UNKNOWN),
            spool_events: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_capacity,
            spool_headroom,
            dev,
            metrics,
        };
        h.metrics.readiness(h.is_ready());
        h
    }

    pub fn spool_levels(&self, events: u64, bytes: u64) {
        self.spool_events.store(events, Ordering::Relaxed);
        self.spool_bytes.store(bytes, Ordering::Relaxed);
        self.metrics.readiness(self.is_ready());
    }

    fn spool_full(&self) -> bool {
        self.spool_bytes.load(Ordering::Relaxed) + self.spool_headroom > self.spool_capacity
    }

    pub fn broker_reachable(&self) -> bool {
        self.broker.load(Ordering::SeqCst) == YES
    }

    pub fn dev(&self) -> Option<&DevBroker> {
        self.dev.as_ref()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.metrics.readiness(false);
    }

    /// Records a metadata probe: `None` when no broker answered, else whether
    /// the topic exists.
    pub fn probed(&self, topic_present: Option<bool>) {
        self.broker.store(
            if topic_present.is_some() { YES } else { NO },
            Ordering::SeqCst,
        );
        if let Some(p) = topic_present {
            self.topic.store(if p { YES } else { NO }, Ordering::SeqCst);
        }
        self.metrics.readiness(self.is_ready());
    }

    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::SeqCst) && !self.spool_full()
    }

    /// The `/readyz` body.
    pub fn report(&self) -> Value {
        let word = |v: u8, yes: &'static str, no: &'static str| match v {
            YES => yes,
            NO => no,
            _ => "unknown",
        };
        let shutting_down = self.shutting_down.load(Ordering::SeqCst);
        let mut body = json!({
            "ready": self.is_ready(),
            "components": {
                "ingress": if shutting_down { "shutting_down" } else { "accepting" },
                "kafka": {
                    "broker": word(self.broker.load(Ordering::SeqCst), "reachable", "unreachable"),
                    "topic": word(self.topic.load(Ordering::SeqCst), "present", "missing"),
                },
                "spool": {
                    "state": if self.spool_full() { "full" } else { "accepting" },
                    "events": self.spool_events.load(Ordering::Relaxed),
                    "bytes": self.spool_bytes.load(Ordering::Relaxed),
                    "capacity_bytes": self.spool_capacity,
                },
            },
        });
        if let Some(dev) = &self.dev {
            body["mode"] = "dev".into();
            body["warning"] = DEV_WARNING.into();
            body["components"]["kafka"]["bootstrap"] = dev.bootstrap.clone().into();
        }
        body
    }
}

/// Said in the log and in `/readyz` whenever the embedded broker runs.
pub const DEV_WARNING: &str =
    "DEVELOPMENT MODE: events go to an embedded in-memory Kafka broker that keeps nothing; never use --dev in production";
