//! Liveness and readiness state, shared by the app (which updates it) and the
//! admin listener (which reports it).
//!
//! Ready means "a webhook posted now can be accepted": not shutting down, every
//! supervised task running, and the spool accepting (room left, and appends
//! not failing). The spool levels are read from the store itself at each
//! report, never from a task's last report, so a stalled or dead task cannot
//! leave `/readyz` saying 200 while the spool fills.
//!
//! A broker outage does NOT make the bridge unready: the spool absorbs it, and
//! an outage must not make Kubernetes pull every pod at once. Neither does a
//! missing topic nor a blocked destination: accepting is still right, and the
//! events wait in the spool. The JSON body names each component's state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::metrics::Metrics;
use crate::spool::store::Store;

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// Most destinations `/readyz` lists by name; reports for further topics are
/// shown under [`OTHER_DESTINATIONS`].
pub const MAX_DESTINATIONS: usize = 1024;
/// The entry that stands for every destination beyond [`MAX_DESTINATIONS`]
/// (parentheses are not allowed in Kafka topic names: it never collides).
pub const OTHER_DESTINATIONS: &str = "(other)";

/// Why a destination is blocked, as the forwarder reports it (a closed set).
pub const BLOCKED_REASONS: &[&str] = &[
    "unknown_topic",
    "not_authorized",
    "authentication",
    "policy",
    "refused",
];

/// The long-lived tasks the app's supervisor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The spool's writer thread (group commit).
    SpoolWriter,
    /// Reads the spool and publishes to Kafka.
    Forwarder,
    /// The webhook (`http.listen`) listener.
    WebhookListener,
    /// The admin (`admin.listen`) listener: `/metrics`, `/livez`, `/readyz`.
    AdminListener,
    /// The periodic Kafka metadata probe.
    BrokerProbe,
    /// Reloads the TLS certificate (only with `http.tls`).
    TlsReloader,
    /// The periodic spool sync (only with `spool.fsync = "interval"`).
    SpoolSync,
    /// Fires the typing timers (only with `presence.typing_ttl` on).
    TypingTimers,
}

impl Component {
    pub const ALL: [Self; 8] = [
        Self::SpoolWriter,
        Self::Forwarder,
        Self::WebhookListener,
        Self::AdminListener,
        Self::BrokerProbe,
        Self::TlsReloader,
        Self::SpoolSync,
        Self::TypingTimers,
    ];

    /// The name in logs, in `/readyz` and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SpoolWriter => "spool_writer",
            Self::Forwarder => "forwarder",
            Self::WebhookListener => "webhook_listener",
            Self::AdminListener => "admin_listener",
            Self::BrokerProbe => "broker_probe",
            Self::TlsReloader => "tls_reloader",
            Self::SpoolSync => "spool_sync",
            Self::TypingTimers => "typing_timers",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A supervised task's state (0: not started, e.g. the TLS reloader without TLS).
const TASK_RUNNING: u8 = 1;
const TASK_FAILED: u8 = 2;
const TASK_STOPPED: u8 = 3;

/// Facts about the embedded development broker, shown in `/readyz`.
#[derive(Debug, Clone)]
pub struct DevBroker {
    pub bootstrap: String,
    pub topic: String,
}

/// What the forwarder last said about one destination topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Destination {
    blocked: Option<&'static str>,
    held_events: u64,
}

pub struct Health {
    shutting_down: AtomicBool,
    broker: AtomicU8,
    /// The default topic (`kafka.topic`), for the `topic` field.
    default_topic: String,
    /// Every configured topic and its last probed state, fixed at start.
    topics: Vec<(String, AtomicU8)>,
    destinations: Mutex<BTreeMap<String, Destination>>,
    tasks: [AtomicU8; Component::ALL.len()],
    /// The failed tasks in the order they failed (the first is the cause).
    failures: Mutex<Vec<Component>>,
    store: Arc<Store>,
    /// Not ready once less than `headroom` bytes of `spool.max_bytes` are free.
    spool_headroom: u64,
    dev: Option<DevBroker>,
    metrics: Metrics,
}

impl Health {
    /// `topics`: every configured topic (`kafka.topic` first); duplicates are
    /// ignored. Only these get a `presence_bridge_kafka_topic_missing` series.
    pub fn new(
        dev: Option<DevBroker>,
        metrics: Metrics,
        store: Arc<Store>,
        spool_headroom: u64,
        default_topic: &str,
        topics: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut names: Vec<String> = vec![default_topic.to_owned()];
        for t in topics {
            if !names.contains(&t) {
                names.push(t);
            }
        }
        for t in &names {
            metrics.kafka_topic_missing(t, false);
        }
        metrics.read_spool_from(&store);
        let h = Self {
            shutting_down: AtomicBool::new(false),
            broker: AtomicU8::new(UNKNOWN),
            default_topic: default_topic.to_owned(),
            topics: names
                .into_iter()
                .map(|t| (t, AtomicU8::new(UNKNOWN)))
                .collect(),
            destinations: Mutex::new(BTreeMap::new()),
            tasks: Default::default(),
            failures: Mutex::new(Vec::new()),
            store,
            spool_headroom,
            dev,
            metrics,
        };
        h.refresh();
        h
    }

    /// Kept for the forwarder's periodic report: the levels themselves are read
    /// from the store (here and by the metrics, at each scrape), this only
    /// refreshes `presence_bridge_ready`.
    pub fn spool_levels(&self, _events: u64, _bytes: u64) {
        self.refresh();
    }

    /// The spool's state word and, when blocked, why.
    fn spool_state(&self) -> (&'static str, Option<&'static str>) {
        if let Some(reason) = self.store.append_blocked() {
            return ("blocked", Some(reason));
        }
        let capacity = self.store.options().max_bytes;
        if self.store.stats().bytes + self.spool_headroom > capacity {
            ("full", None)
        } else {
            ("accepting", None)
        }
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

    /// Records whether the last metadata probe reached a broker.
    pub fn broker_probed(&self, reachable: bool) {
        self.broker
            .store(if reachable { YES } else { NO }, Ordering::SeqCst);
        self.refresh();
    }

    /// Records whether a configured topic exists (from a probe that reached a
    /// broker). Topics not configured at start are ignored.
    pub fn topic_probed(&self, topic: &str, present: bool) {
        if let Some((name, state)) = self.topics.iter().find(|(t, _)| t == topic) {
            state.store(if present { YES } else { NO }, Ordering::SeqCst);
            self.metrics.kafka_topic_missing(name, !present);
        }
    }

    /// Every configured topic, `kafka.topic` first.
    pub fn configured_topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|(t, _)| t.as_str())
    }

    /// What the forwarder reports about one destination topic: `None` while it
    /// flows, `Some(reason)` (one of [`BLOCKED_REASONS`]) while its events are
    /// held, with how many are held. A blocked destination does not make the
    /// bridge unready. At most [`MAX_DESTINATIONS`] topics are listed by name
    /// (an idle, flowing one gives up its place first); reports for any
    /// further topic are shown as [`OTHER_DESTINATIONS`], the latest one winning.
    pub fn destination_state(&self, topic: &str, blocked: Option<&'static str>, held_events: u64) {
        let state = Destination {
            blocked,
            held_events,
        };
        let mut map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get_mut(topic) {
            *d = state;
            return;
        }
        if map.len() >= MAX_DESTINATIONS {
            let idle = map
                .iter()
                .find(|(t, d)| {
                    d.blocked.is_none() && d.held_events == 0 && t.as_str() != OTHER_DESTINATIONS
                })
                .map(|(t, _)| t.clone());
            match idle {
                Some(t) => {
                    map.remove(&t);
                }
                None => {
                    map.insert(OTHER_DESTINATIONS.to_owned(), state);
                    return;
                }
            }
        }
        map.insert(topic.to_owned(), state);
    }

    /// A supervised task was started.
    pub fn task_started(&self, c: Component) {
        self.tasks[c.index()].store(TASK_RUNNING, Ordering::SeqCst);
        self.metrics.task_failed(c.as_str(), false);
    }

    /// A supervised task ended during shutdown, as it should.
    pub fn task_stopped(&self, c: Component) {
        let _ = self.tasks[c.index()].compare_exchange(
            TASK_RUNNING,
            TASK_STOPPED,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// A supervised task ended or panicked outside shutdown: not ready from
    /// now on. Returns true the first time for this component.
    pub fn task_failed(&self, c: Component) -> bool {
        let first = self.tasks[c.index()].swap(TASK_FAILED, Ordering::SeqCst) != TASK_FAILED;
        if first {
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
        self.metrics.task_failed(c.as_str(), true);
        self.refresh();
        first
    }

    /// The supervised tasks that failed, in the order they failed.
    pub fn failed(&self) -> Vec<Component> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::SeqCst)
            && self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            && self.spool_state().0 == "accepting"
    }

    /// Computes readiness now and sets `presence_bridge_ready` to it.
    pub fn refresh(&self) -> bool {
        let ready = self.is_ready();
        self.metrics.readiness(ready);
        ready
    }

    /// The `/readyz` body.
    pub fn report(&self) -> Value {
        let word = |v: u8, yes: &'static str, no: &'static str| match v {
            YES => yes,
            NO => no,
            _ => "unknown",
        };
        let shutting_down = self.shutting_down.load(Ordering::SeqCst);
        let failed = self.failed();
        let (spool_state, spool_reason) = self.spool_state();
        let stats = self.store.stats();
        let default_state = self
            .topics
            .first()
            .map_or(UNKNOWN, |(_, s)| s.load(Ordering::SeqCst));
        let topics: Map<String, Value> = self
            .topics
            .iter()
            .map(|(t, s)| {
                (
                    t.clone(),
                    word(s.load(Ordering::SeqCst), "present", "missing").into(),
                )
            })
            .collect();
        let destinations: Map<String, Value> = self
            .destinations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, d)| {
                let mut v = json!({
                    "state": if d.blocked.is_some() { "blocked" } else { "flowing" },
                    "held_events": d.held_events,
                });
                if let Some(r) = d.blocked {
                    v["reason"] = r.into();
                }
                (t.clone(), v)
            })
            .collect();
        let tasks: Map<String, Value> = Component::ALL
            .into_iter()
            .filter_map(|c| {
                let state = match self.tasks[c.index()].load(Ordering::SeqCst) {
                    TASK_RUNNING => "running",
                    TASK_FAILED => "failed",
                    TASK_STOPPED => "stopped",
                    _ => return None,
                };
                Some((c.as_str().to_owned(), state.into()))
            })
            .collect();
        let mut spool = json!({
            "state": spool_state,
            "events": stats.pending,
            "bytes": stats.bytes,
            "capacity_bytes": self.store.options().max_bytes,
        });
        if let Some(r) = spool_reason {
            spool["reason"] = r.into();
        }
        let mut body = json!({
            "ready": self.is_ready(),
            "components": {
                "ingress": if shutting_down { "shutting_down" } else { "accepting" },
                "kafka": {
                    "broker": word(self.broker.load(Ordering::SeqCst), "reachable", "unreachable"),
                    "topic": word(default_state, "present", "missing"),
                    "default_topic": self.default_topic,
                    "topics": topics,
                    "destinations": destinations,
                },
                "spool": spool,
                "tasks": tasks,
            },
        });
        if !failed.is_empty() {
            body["failed"] = failed.iter().map(|c| c.as_str()).collect::<Vec<_>>().into();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::store::{NewRecord, StoreOptions};
    use crate::spool::FsyncPolicy;

    fn health(dir: &std::path::Path, max_bytes: u64, headroom: u64) -> (Arc<Store>, Health) {
        let (store, _) = Store::open(StoreOptions {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: 1 << 20,
            fsync: FsyncPolicy::Never,
        })
        .unwrap();
        let store = Arc::new(store);
        let (_, metrics) = Metrics::standalone();
        let topics = ["tenant-x".to_owned(), "main".to_owned(), "dead".to_owned()];
        let h = Health::new(None, metrics, store.clone(), headroom, "main", topics);
        (store, h)
    }

    fn record(n: u64) -> NewRecord {
        NewRecord {
            arrival_ms: 1_700_000_000_000,
            key: "5544999999999".into(),
            value: vec![b'a'; 1000],
            ..crate::spool::testkit::record(n, "main")
        }
    }

    #[test]
    fn spool_levels_come_from_the_store_not_from_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let (store, h) = health(dir.path(), 64 * 1024, 16 * 1024);
        assert!(h.is_ready());
        store.append(&[record(1), record(2)], false).unwrap();
        // Nobody called spool_levels: the report still sees both events.
        let r = h.report();
        assert_eq!(r["components"]["spool"]["events"], 2, "{r}");
        assert_eq!(
            r["components"]["spool"]["bytes"],
            store.stats().bytes,
            "{r}"
        );
        // Filling past capacity minus headroom: unready, "full", without any report.
        let batch: Vec<NewRecord> = (3..50).map(record).collect();
        store.append(&batch, false).unwrap();
        assert!(!h.is_ready());
        assert_eq!(h.report()["components"]["spool"]["state"], "full");
    }

    #[test]
    fn every_configured_topic_is_listed_once_and_a_missing_one_keeps_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, h) = health(dir.path(), 1 << 30, 0);
        let names: Vec<&str> = h.configured_topics().collect();
        assert_eq!(names, ["main", "tenant-x", "dead"]);
        h.broker_probed(true);
        h.topic_probed("main", true);
        h.topic_probed("tenant-x", false);
        h.topic_probed("not-configured", false);
        let r = h.report();
        assert!(
            h.is_ready(),
            "a missing topic does not make the bridge unready"
        );
        assert_eq!(r["ready"], true);
        let kafka = &r["components"]["kafka"];
        assert_eq!(kafka["topic"], "present", "{r}");
        assert_eq!(kafka["topics"]["main"], "present", "{r}");
        assert_eq!(kafka["topics"]["tenant-x"], "missing", "{r}");
        assert_eq!(kafka["topics"]["dead"], "unknown", "{r}");
        assert!(kafka["topics"].get("not-configured").is_none(), "{r}");
    }

    #[test]
    fn a_blocked_destination_is_shown_and_keeps_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, h) = health(dir.path(), 1 << 30, 0);
        h.destination_state("tenant-x", Some("unknown_topic"), 3);
        h.destination_state("main", None, 0);
        let r = h.report();
        assert_eq!(r["ready"], true, "{r}");
        let d = &r["components"]["kafka"]["destinations"];
        assert_eq!(d["tenant-x"]["state"], "blocked", "{r}");
        assert_eq!(d["tenant-x"]["reason"], "unknown_topic", "{r}");
        assert_eq!(d["tenant-x"]["held_events"], 3, "{r}");
        assert_eq!(d["main"]["state"], "flowing", "{r}");
        assert!(d["main"].get("reason").is_none(), "{r}");
        // Unblocked: flowing again.
        h.destination_state("tenant-x", None, 0);
        let r = h.report();
        assert_eq!(
            r["components"]["kafka"]["destinations"]["tenant-x"]["state"],
            "flowing"
        );
    }

    #[test]
    fn destinations_stay_bounded_and_blocked_ones_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, h) = health(dir.path(), 1 << 30, 0);
        for i in 0..MAX_DESTINATIONS {
            h.destination_state(&format!("blocked-{i}"), Some("not_authorized"), 1);
        }
        // Full of blocked ones: a new topic goes to the shared entry.
        h.destination_state("late", Some("policy"), 7);
        let r = h.report();
        let d = r["components"]["kafka"]["destinations"]
            .as_object()
            .unwrap();
        assert_eq!(d.len(), MAX_DESTINATIONS + 1);
        assert!(!d.contains_key("late"));
        assert_eq!(d[OTHER_DESTINATIONS]["reason"], "policy");
        assert_eq!(d[OTHER_DESTINATIONS]["held_events"], 7);
        // One drains: it gives its place up to the next new topic.
        h.destination_state("blocked-5", None, 0);
        h.destination_state("later", Some("refused"), 2);
        let r = h.report();
        let d = r["components"]["kafka"]["destinations"]
            .as_object()
            .unwrap();
        assert_eq!(d.len(), MAX_DESTINATIONS + 1);
        assert!(!d.contains_key("blocked-5"));
        assert_eq!(d["later"]["held_events"], 2);
        assert_eq!(d["blocked-0"]["state"], "blocked");
    }

    #[test]
    fn a_failed_task_makes_the_bridge_unready_and_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, h) = health(dir.path(), 1 << 30, 0);
        h.task_started(Component::Forwarder);
        h.task_started(Component::BrokerProbe);
        assert!(h.refresh());
        assert!(h.task_failed(Component::BrokerProbe));
        assert!(!h.task_failed(Component::BrokerProbe), "named once");
        assert!(h.task_failed(Component::Forwarder));
        assert!(!h.refresh());
        let r = h.report();
        assert_eq!(
            r["failed"],
            serde_json::json!(["broker_probe", "forwarder"])
        );
        assert_eq!(r["components"]["tasks"]["forwarder"], "failed");
        assert!(r["components"]["tasks"].get("tls_reloader").is_none());
    }
}
