//! The spool's metrics: its levels (events and bytes not yet acknowledged,
//! the oldest event's age, read from the store at each scrape), its capacity,
//! append and fsync latencies, sync failures, events replayed at start and
//! data dropped as damaged.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use crate::envelope::EventKind;
use crate::metrics::{Metrics, NS};
use crate::presence::CallbackKind;
use crate::spool::{Observer, RecordKind};

/// Why the spool dropped stored data (the `reason` of
/// `presence_bridge_spool_dropped_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Records lost in a damaged region.
    CorruptRecord,
    /// A torn write cut off at recovery (never answered 200).
    TornWrite,
}

impl DropReason {
    pub const ALL: [Self; 2] = [Self::CorruptRecord, Self::TornWrite];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CorruptRecord => "corrupt_record",
            Self::TornWrite => "torn_write",
        }
    }
}

/// The label values of [`DropReason::ALL`].
pub const DROP_REASONS: [&str; 2] = [DropReason::ALL[0].as_str(), DropReason::ALL[1].as_str()];

/// Registered by [`SpoolMetrics::new`].
#[derive(Clone)]
pub(crate) struct SpoolMetrics {
    capacity: IntGauge,
    /// Events, bytes, oldest event's age: set here, or at each scrape.
    levels: (IntGauge, IntGauge, prometheus::Gauge),
    /// Where the level gauges are read from at each scrape.
    source: SpoolSource,
    append: Histogram,
    fsync: Histogram,
    replayed: prometheus::IntCounter,
    sync_failures: prometheus::IntCounter,
    dropped: IntCounterVec,
}

impl SpoolMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let spool_events = IntGauge::with_opts(
            Opts::new(
                "spool_events",
                "Events in the spool not yet acknowledged by Kafka.",
            )
            .namespace(NS),
        )?;
        let spool_bytes = IntGauge::with_opts(
            Opts::new(
                "spool_bytes",
                "Bytes of spool segments on disk (counted against spool.max_bytes).",
            )
            .namespace(NS),
        )?;
        let spool_capacity = IntGauge::with_opts(
            Opts::new(
                "spool_capacity_bytes",
                "spool.max_bytes: appends beyond it answer 503.",
            )
            .namespace(NS),
        )?;
        let spool_oldest_age = prometheus::Gauge::with_opts(
            Opts::new(
                "spool_oldest_event_age_seconds",
                "Age of the oldest event not yet acknowledged by Kafka; 0 when the spool is drained.",
            )
            .namespace(NS),
        )?;
        let latency_buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5,
        ];
        let spool_append = Histogram::with_opts(
            HistogramOpts::new(
                "spool_append_duration_seconds",
                "Time from handing an event to the spool until it is committed (group commit included).",
            )
            .namespace(NS)
            .buckets(latency_buckets.clone()),
        )?;
        let spool_fsync = Histogram::with_opts(
            HistogramOpts::new(
                "spool_fsync_duration_seconds",
                "Duration of one spool fsync.",
            )
            .namespace(NS)
            .buckets(latency_buckets),
        )?;
        let spool_replayed = prometheus::IntCounter::with_opts(
            Opts::new(
                "spool_replayed_events_total",
                "Events found undelivered in the spool at start and sent again.",
            )
            .namespace(NS),
        )?;
        let spool_sync_failures = prometheus::IntCounter::with_opts(
            Opts::new(
                "spool_sync_failures_total",
                "Failed fdatasync calls on the spool: each seals its segment; the events waiting on it were answered 503.",
            )
            .namespace(NS),
        )?;
        let spool_dropped = IntCounterVec::new(
            Opts::new(
                "spool_dropped_events_total",
                "Spool data dropped as damaged. corrupt_record: records (events) lost in damaged regions, \
                 counted once from the sequence numbers on both sides of each region, whether recovery \
                 or a reader found it, records already delivered to every topic left out; \
                 torn_write: 1 for each start whose recovery cut a torn write off the spool \
                 (never answered 200).",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let source = SpoolSource::default();
        registry.register(Box::new(SpoolLevels {
            events: spool_events.clone(),
            bytes: spool_bytes.clone(),
            oldest_age: spool_oldest_age.clone(),
            source: source.clone(),
        }))?;
        registry.register(Box::new(spool_capacity.clone()))?;
        registry.register(Box::new(spool_append.clone()))?;
        registry.register(Box::new(spool_fsync.clone()))?;
        registry.register(Box::new(spool_replayed.clone()))?;
        registry.register(Box::new(spool_dropped.clone()))?;
        registry.register(Box::new(spool_sync_failures.clone()))?;
        for reason in DropReason::ALL {
            spool_dropped.with_label_values(&[reason.as_str()]);
        }
        Ok(Self {
            capacity: spool_capacity,
            levels: (spool_events, spool_bytes, spool_oldest_age),
            source,
            append: spool_append,
            fsync: spool_fsync,
            replayed: spool_replayed,
            sync_failures: spool_sync_failures,
            dropped: spool_dropped,
        })
    }
}

impl Metrics {
    pub fn spool_appended(&self, took: Duration) {
        self.spool.append.observe(took.as_secs_f64());
    }

    pub fn spool_synced(&self, took: Duration) {
        self.spool.fsync.observe(took.as_secs_f64());
    }

    /// Sets the spool gauges; overwritten at the next scrape once
    /// [`Metrics::read_spool_from`] named a store.
    pub fn spool_levels(&self, events: u64, bytes: u64, oldest_age: Duration) {
        self.spool.levels.0.set(events as i64);
        self.spool.levels.1.set(bytes as i64);
        self.spool.levels.2.set(oldest_age.as_secs_f64());
    }

    /// From now on `presence_bridge_spool_events`, `_bytes` and
    /// `_oldest_event_age_seconds` are read from `store` at each scrape
    /// (held weakly: the registry does not keep a closed spool locked).
    pub fn read_spool_from(&self, store: &std::sync::Arc<crate::spool::store::Store>) {
        *self
            .spool
            .source
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::downgrade(store));
    }

    /// The arrival time (Unix ms) of the oldest event the forwarder holds
    /// unsettled (`None`: it holds none); the age gauge counts from it at
    /// each scrape while the spool has pending events.
    pub fn spool_oldest_arrival(&self, arrival_ms: Option<i64>) {
        self.spool.source.oldest_arrival_ms.store(
            arrival_ms.unwrap_or(i64::MIN),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn spool_capacity(&self, bytes: u64) {
        self.spool.capacity.set(bytes as i64);
    }

    /// Failed spool fsyncs (`count` may be 0).
    pub fn spool_sync_failures(&self, count: u64) {
        self.spool.sync_failures.inc_by(count);
    }

    pub fn spool_replayed(&self, events: u64) {
        self.spool.replayed.inc_by(events);
    }

    pub fn spool_dropped(&self, reason: DropReason, count: u64) {
        self.spool
            .dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(count);
    }
}

/// The spool's writer thread reports here: fsync and append latencies,
/// failed fsyncs, and each committed presence event as accepted.
impl Observer for Metrics {
    fn synced(&self, took: Duration) {
        self.spool_synced(took);
    }

    fn committed(&self, waited: Duration, kind: RecordKind, tag: Option<&'static str>) {
        self.spool_appended(waited);
        if let Some(status) = tag {
            self.event_accepted(status);
        }
        let callback = CallbackKind::ALL
            .into_iter()
            .find(|k| EventKind::of_callback(*k).code() == kind.0);
        if let Some(callback) = callback {
            self.callback_accepted(callback);
        }
    }

    fn sync_failures(&self, count: u64) {
        self.spool_sync_failures(count);
    }
}

/// What the spool gauges are read from at scrape time.
#[derive(Clone)]
struct SpoolSource {
    store: std::sync::Arc<std::sync::Mutex<Option<std::sync::Weak<crate::spool::store::Store>>>>,
    /// Unix ms; `i64::MIN`: unknown.
    oldest_arrival_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Default for SpoolSource {
    fn default() -> Self {
        Self {
            store: std::sync::Arc::default(),
            oldest_arrival_ms: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
        }
    }
}

/// The spool gauges, read from the store when scraped: an event committed a
/// moment before the scrape is in `presence_bridge_spool_events`.
struct SpoolLevels {
    events: IntGauge,
    bytes: IntGauge,
    oldest_age: prometheus::Gauge,
    source: SpoolSource,
}

impl prometheus::core::Collector for SpoolLevels {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut d = self.events.desc();
        d.extend(self.bytes.desc());
        d.extend(self.oldest_age.desc());
        d
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let store = self
            .source
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(std::sync::Weak::upgrade);
        if let Some(store) = store {
            let stats = store.stats();
            self.events
                .set(i64::try_from(stats.pending).unwrap_or(i64::MAX));
            self.bytes
                .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
            let oldest = self
                .source
                .oldest_arrival_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let age = if stats.pending == 0 || oldest == i64::MIN {
                0.0
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(oldest, |d| d.as_millis() as i64);
                now.saturating_sub(oldest).max(0) as f64 / 1000.0
            };
            self.oldest_age.set(age);
        }
        let mut out = self.events.collect();
        out.extend(self.bytes.collect());
        out.extend(self.oldest_age.collect());
        out
    }
}
