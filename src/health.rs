//! Liveness and readiness state, shared by the app (which updates it) and the
//! admin listener (which reports it).
//!
//! Ready means "a webhook posted now can be accepted": not shutting down and a
//! broker reachable (until the durable spool lands, 200 means the broker
//! acknowledged). The JSON body names each component's state.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

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
    dev: Option<DevBroker>,
    metrics: Metrics,
}

impl Health {
    pub fn new(dev: Option<DevBroker>, metrics: Metrics) -> Self {
        metrics.readiness(false);
        Self {
            shutting_down: AtomicBool::new(false),
            broker: AtomicU8::new(UNKNOWN),
            topic: AtomicU8::new(UNKNOWN),
            dev,
            metrics,
        }
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
        !self.shutting_down.load(Ordering::SeqCst) && self.broker.load(Ordering::SeqCst) == YES
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
