//! Prometheus metrics: one struct registered on a registry the app owns, with
//! methods named for what happened.
//!
//! Every name starts with `presence_bridge_`. Label values come from closed sets
//! (routes, methods, statuses, reason codes): never a phone number, an instance
//! id or a token. The known label values are created at zero on start, so
//! `rate()` and alerts see a series before the first event.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::server::{Eviction, Listener};

const NS: &str = "presence_bridge";

/// Routes as metric label values.
pub const ROUTES: &[&str] = &["presence", "presence_instance", "other"];
/// Why an event was rejected: a POST to an event route whose body (its
/// Content-Type, size, JSON, fields, or the instance it names) was refused
/// (the `reason` of `presence_bridge_events_rejected_total`; see
/// `ingress::reply::Rejection::is_rejected_event`).
pub const EVENT_REJECT_REASONS: &[&str] = &[
    "unsupported_media_type",
    "payload_too_large",
    "malformed_json",
    "missing_field",
    "wrong_type",
    "unsupported_type",
    "invalid_phone",
    "invalid_status",
    "invalid_last_seen",
    "invalid_instance_id",
    "instance_mismatch",
];
/// Why a request that was not a rejected event was refused: unknown paths and
/// methods, authentication and access, rate limits, bodies that never
/// arrived, and 503s (the `reason` of
/// `presence_bridge_http_requests_refused_total`).
pub const REQUEST_REFUSED_REASONS: &[&str] = &[
    "not_found",
    "method_not_allowed",
    "unauthorized",
    "client_forbidden",
    "instance_forbidden",
    "token_not_for_instance",
    "rate_limited_client",
    "rate_limited_instance",
    "body_budget_client",
    "body_budget_exhausted",
    "body_timeout",
    "body_unreadable",
    "spool_full",
    "unavailable",
];
/// Why Kafka refused an event for good (dead-letter reasons).
pub const DEAD_LETTER_REASONS: &[&str] =
    &["too_large", "not_authorized", "unknown_topic", "rejected"];
/// What became of a rejected request's capture (`rejected.topic`).
pub const CAPTURE_RESULTS: &[&str] = &["stored", "dropped"];
/// Why the spool dropped stored data at recovery.
pub const DROP_REASONS: &[&str] = &["corrupt_record", "torn_write"];
/// Rate limiters as metric label values.
pub const LIMITERS: &[&str] = &["client", "instance"];
/// Presence statuses as metric label values.
pub const STATUSES: &[&str] = &[
    "UNAVAILABLE",
    "AVAILABLE",
    "COMPOSING",
    "PAUSED",
    "RECORDING",
    "OTHER",
];

/// How one Kafka delivery report (or refusal at send) ended, by the class
/// of its error (`publisher::classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Acknowledged by the broker.
    Delivered,
    /// A retriable error or a lost result: the event is sent again.
    RetriableError,
    /// The record itself was refused: dead-lettered.
    PermanentError,
    /// The destination refused us: the topic is held.
    DestinationError,
    /// The producer is broken: it is replaced and everything resent.
    Fatal,
}

impl DeliveryResult {
    pub const ALL: [Self; 5] = [
        Self::Delivered,
        Self::RetriableError,
        Self::PermanentError,
        Self::DestinationError,
        Self::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetriableError => "retriable_error",
            Self::PermanentError => "permanent_error",
            Self::DestinationError => "destination_error",
            Self::Fatal => "fatal",
        }
    }
}

/// All metrics of the bridge.
#[derive(Clone)]
pub struct Metrics {
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    connections_open: IntGauge,
    events_accepted: IntCounterVec,
    events_rejected: IntCounterVec,
    requests_refused: IntCounterVec,
    kafka_deliveries: IntCounterVec,
    delivery_latency: Histogram,
    broker_reachable: IntGauge,
    ready: IntGauge,
    spool_events: IntGauge,
    spool_bytes: IntGauge,
    spool_capacity: IntGauge,
    spool_oldest_age: prometheus::Gauge,
    /// Where the spool gauges are read from at each scrape.
    spool_source: SpoolSource,
    kafka_client: KafkaClientMetrics,
    spool_append: Histogram,
    spool_fsync: Histogram,
    spool_replayed: prometheus::IntCounter,
    spool_sync_failures: prometheus::IntCounter,
    spool_dropped: IntCounterVec,
    dead_lettered: IntCounterVec,
    dead_letter_file: DeadLetterFileMetrics,
    rejected_captured: IntCounterVec,
    rate_limit_evictions: IntCounterVec,
    listener: ListenerMetrics,
    supervision: SupervisionMetrics,
}

impl Metrics {
    /// Registers every metric (and the process collector) on `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered on the webhook listener.",
            )
            .namespace(NS),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request head to response, by route.",
            )
            .namespace(NS)
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )?;
        let connections_open = IntGauge::with_opts(
            Opts::new(
                "http_connections_open",
                "Open connections on the webhook listener.",
            )
            .namespace(NS),
        )?;
        let events_accepted = IntCounterVec::new(
            Opts::new(
                "events_accepted_total",
                "Presence events committed to the spool (answered 200 unless the client hung up first), by status.",
            )
            .namespace(NS),
            &["status"],
        )?;
        let events_rejected = IntCounterVec::new(
            Opts::new(
                "events_rejected_total",
                "Events refused for their content: POSTs to an event route whose body \
                 (Content-Type, size, JSON, fields, instance) was refused, by reason.",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let requests_refused = IntCounterVec::new(
            Opts::new(
                "http_requests_refused_total",
                "Webhook requests refused for anything but their event's content (unknown path \
                 or method, authentication, access, rate limits, body timeout, 503), by reason.",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let kafka_deliveries = IntCounterVec::new(
            Opts::new(
                "kafka_deliveries_total",
                "Delivery reports the forwarder received (one per record handed to the producer, \
                 or refused by it at send), by result: delivered, retriable_error (incl. lost results; \
                 sent again), permanent_error (record refused: dead-lettered), destination_error \
                 (topic held), fatal (producer replaced). librdkafka retries on its own and reports \
                 nothing while no broker answers: see kafka_connection_attempts_total.",
            )
            .namespace(NS),
            &["result"],
        )?;
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "event_delivery_latency_seconds",
                "Time from an event's arrival to the broker's acknowledgement.",
            )
            .namespace(NS)
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ]),
        )?;
        let broker_reachable = IntGauge::with_opts(
            Opts::new(
                "kafka_broker_reachable",
                "1 when the last metadata probe reached a broker, else 0.",
            )
            .namespace(NS),
        )?;
        let ready = IntGauge::with_opts(
            Opts::new("ready", "1 while /readyz answers 200, else 0.").namespace(NS),
        )?;
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
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "events_dead_lettered_total",
                "Events Kafka refused permanently, moved to the dead-letter file (and topic).",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let rejected_captured = IntCounterVec::new(
            Opts::new(
                "rejected_input_captured_total",
                "Rejected requests captured for replay (rejected.topic): stored in the spool, or dropped because the spool could not take them.",
            )
            .namespace(NS),
            &["result"],
        )?;
        let rate_limit_evictions = IntCounterVec::new(
            Opts::new(
                "rate_limit_active_evictions_total",
                "Rate-limit buckets still in use dropped to stay within limits.max_tracked; \
                 a steady rise means limits are approximate: raise limits.max_tracked.",
            )
            .namespace(NS),
            &["limiter"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Always 1; labels carry the build's version.").namespace(NS),
            &["version", "rdkafka_version"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &rdkafka::util::get_rdkafka_version().1,
            ])
            .set(1);

        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(events_accepted.clone()))?;
        registry.register(Box::new(events_rejected.clone()))?;
        registry.register(Box::new(requests_refused.clone()))?;
        registry.register(Box::new(kafka_deliveries.clone()))?;
        registry.register(Box::new(delivery_latency.clone()))?;
        registry.register(Box::new(broker_reachable.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(ScrapedCounter::log_lines_dropped()?))?;
        registry.register(Box::new(ScrapedCounter::log_lines_suppressed()?))?;
        let spool_source = SpoolSource::default();
        registry.register(Box::new(SpoolLevels {
            events: spool_events.clone(),
            bytes: spool_bytes.clone(),
            oldest_age: spool_oldest_age.clone(),
            source: spool_source.clone(),
        }))?;
        registry.register(Box::new(spool_capacity.clone()))?;
        registry.register(Box::new(spool_append.clone()))?;
        registry.register(Box::new(spool_fsync.clone()))?;
        registry.register(Box::new(spool_replayed.clone()))?;
        registry.register(Box::new(spool_dropped.clone()))?;
        registry.register(Box::new(spool_sync_failures.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(rejected_captured.clone()))?;
        for result in CAPTURE_RESULTS {
            rejected_captured.with_label_values(&[result]);
        }
        registry.register(Box::new(rate_limit_evictions.clone()))?;
        for limiter in LIMITERS {
            rate_limit_evictions.with_label_values(&[limiter]);
        }
        for reason in DEAD_LETTER_REASONS {
            dead_lettered.with_label_values(&[reason]);
        }
        for reason in DROP_REASONS {
            spool_dropped.with_label_values(&[reason]);
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(ProcessMetrics::for_self()?))?;

        for route in ROUTES {
            http_duration.with_label_values(&[route]);
        }
        for status in STATUSES {
            events_accepted.with_label_values(&[status]);
        }
        for reason in EVENT_REJECT_REASONS {
            events_rejected.with_label_values(&[reason]);
        }
        for reason in REQUEST_REFUSED_REASONS {
            requests_refused.with_label_values(&[reason]);
        }
        for result in DeliveryResult::ALL {
            kafka_deliveries.with_label_values(&[result.as_str()]);
        }
        let listener = ListenerMetrics::new(registry)?;
        let supervision = SupervisionMetrics::new(registry)?;
        let dead_letter_file = DeadLetterFileMetrics::new(registry)?;
        Ok(Self {
            http_requests,
            http_duration,
            connections_open,
            events_accepted,
            events_rejected,
            requests_refused,
            kafka_deliveries,
            delivery_latency,
            broker_reachable,
            ready,
            spool_events,
            spool_bytes,
            spool_capacity,
            spool_oldest_age,
            spool_source,
            kafka_client: KafkaClientMetrics::new(registry)?,
            spool_append,
            spool_fsync,
            spool_replayed,
            spool_sync_failures,
            spool_dropped,
            dead_lettered,
            dead_letter_file,
            rejected_captured,
            rate_limit_evictions,
            listener,
            supervision,
        })
    }

    /// A fresh registry with the bridge's metrics, for tests and tools.
    pub fn standalone() -> (Registry, Self) {
        let registry = Registry::new();
        let metrics = Self::new(&registry).expect("metric names are static and unique");
        (registry, metrics)
    }

    pub fn request_answered(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn connection_opened(&self, listener: Listener) {
        match listener {
            Listener::Webhook => self.connections_open.inc(),
            Listener::Admin => self.listener.admin_connections_open.inc(),
        }
    }

    pub fn connection_closed(&self, listener: Listener) {
        match listener {
            Listener::Webhook => self.connections_open.dec(),
            Listener::Admin => self.listener.admin_connections_open.dec(),
        }
    }

    pub fn event_accepted(&self, status_label: &str) {
        self.events_accepted
            .with_label_values(&[status_label])
            .inc();
    }

    /// A webhook request was not accepted: counted in
    /// `presence_bridge_events_rejected_total` when it was an event refused
    /// for its content ([`EVENT_REJECT_REASONS`]), else in
    /// `presence_bridge_http_requests_refused_total`
    /// ([`REQUEST_REFUSED_REASONS`]).
    pub fn request_rejected(&self, rejection: &crate::ingress::reply::Rejection) {
        let counter = if rejection.is_rejected_event() {
            &self.events_rejected
        } else {
            &self.requests_refused
        };
        counter.with_label_values(&[rejection.code()]).inc();
    }

    pub fn delivery_finished(&self, result: DeliveryResult, since_arrival: Option<Duration>) {
        self.kafka_deliveries
            .with_label_values(&[result.as_str()])
            .inc();
        if let (DeliveryResult::Delivered, Some(d)) = (result, since_arrival) {
            self.delivery_latency.observe(d.as_secs_f64());
        }
    }

    /// An acknowledged event was settled, `since_arrival` after it arrived.
    pub fn delivery_acknowledged(&self, since_arrival: Duration) {
        self.delivery_latency.observe(since_arrival.as_secs_f64());
    }

    pub fn broker_reachability(&self, reachable: bool) {
        self.broker_reachable.set(i64::from(reachable));
    }

    pub fn readiness(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn spool_appended(&self, took: Duration) {
        self.spool_append.observe(took.as_secs_f64());
    }

    pub fn spool_synced(&self, took: Duration) {
        self.spool_fsync.observe(took.as_secs_f64());
    }

    /// Sets the spool gauges; overwritten at the next scrape once
    /// [`Metrics::read_spool_from`] named a store.
    pub fn spool_levels(&self, events: u64, bytes: u64, oldest_age: Duration) {
        self.spool_events.set(events as i64);
        self.spool_bytes.set(bytes as i64);
        self.spool_oldest_age.set(oldest_age.as_secs_f64());
    }

    /// From now on `presence_bridge_spool_events`, `_bytes` and
    /// `_oldest_event_age_seconds` are read from `store` at each scrape
    /// (held weakly: the registry does not keep a closed spool locked).
    pub fn read_spool_from(&self, store: &std::sync::Arc<crate::spool::store::Store>) {
        *self
            .spool_source
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::downgrade(store));
    }

    /// The arrival time (Unix ms) of the oldest event the forwarder holds
    /// unsettled (`None`: it holds none); the age gauge counts from it at
    /// each scrape while the spool has pending events.
    pub fn spool_oldest_arrival(&self, arrival_ms: Option<i64>) {
        self.spool_source.oldest_arrival_ms.store(
            arrival_ms.unwrap_or(i64::MIN),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn spool_capacity(&self, bytes: u64) {
        self.spool_capacity.set(bytes as i64);
    }

    /// Failed spool fsyncs (`count` may be 0).
    pub fn spool_sync_failures(&self, count: u64) {
        self.spool_sync_failures.inc_by(count);
    }

    pub fn spool_replayed(&self, events: u64) {
        self.spool_replayed.inc_by(events);
    }

    /// `reason` is one of [`DROP_REASONS`].
    pub fn spool_dropped(&self, reason: &'static str, count: u64) {
        self.spool_dropped
            .with_label_values(&[reason])
            .inc_by(count);
    }

    /// A rate-limit bucket still in use was dropped for room; `limiter` is
    /// one of [`LIMITERS`].
    pub fn rate_limit_bucket_evicted(&self, limiter: &'static str) {
        self.rate_limit_evictions
            .with_label_values(&[limiter])
            .inc();
    }

    /// `reason` is one of [`DEAD_LETTER_REASONS`].
    pub fn dead_lettered(&self, reason: &'static str) {
        self.dead_lettered.with_label_values(&[reason]).inc();
    }

    /// A dead letter could not be written (the event stays in the spool).
    pub fn dead_letter_write_failed(&self) {
        self.dead_letter_file.write_failures.inc();
    }

    /// The dead-letter file's size, in bytes.
    pub fn dead_letter_bytes(&self, bytes: u64) {
        self.dead_letter_file
            .bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A rejected request's capture was `stored` or `dropped`.
    pub fn rejected_input_captured(&self, stored: bool) {
        let result = if stored { "stored" } else { "dropped" };
        self.rejected_captured.with_label_values(&[result]).inc();
    }
}

/// The statuses the bridge answers, as label values (a closed set).
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// A counter kept outside any registry (by logging, which starts before one
/// exists) and read at scrape time: `read` gives the total per label value
/// (`label` None: one unlabelled total).
struct ScrapedCounter {
    opts: Opts,
    label: Option<&'static str>,
    read: fn() -> Vec<(&'static str, u64)>,
    template: IntCounterVec,
}

impl ScrapedCounter {
    fn new(
        opts: Opts,
        label: Option<&'static str>,
        read: fn() -> Vec<(&'static str, u64)>,
    ) -> Result<Self, prometheus::Error> {
        let opts = opts.namespace(NS);
        let template = IntCounterVec::new(opts.clone(), label.as_slice())?;
        Ok(Self {
            opts,
            label,
            read,
            template,
        })
    }

    /// `presence_bridge_log_lines_dropped_total`, from [`crate::logging::lines_dropped`].
    fn log_lines_dropped() -> Result<Self, prometheus::Error> {
        Self::new(
            Opts::new(
                "log_lines_dropped_total",
                "Log lines dropped because stderr could not take them (closed or full pipe).",
            ),
            None,
            || vec![("", crate::logging::lines_dropped())],
        )
    }

    /// `presence_bridge_log_lines_suppressed_total{reason}`, from the
    /// process-wide [`crate::lograte::global`] limiter.
    fn log_lines_suppressed() -> Result<Self, prometheus::Error> {
        Self::new(
            Opts::new(
                "log_lines_suppressed_total",
                "Log lines not written because their reason was over its quota for the interval \
                 (rejections, refused connections); each interval's count is in a `log lines \
                 suppressed` summary line. By reason (rejection codes, connection reasons, other).",
            ),
            Some("reason"),
            || crate::lograte::global().suppressed_totals().collect(),
        )
    }
}

impl prometheus::core::Collector for ScrapedCounter {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Ok(now) = IntCounterVec::new(self.opts.clone(), self.label.as_slice()) else {
            return Vec::new();
        };
        for (value, n) in (self.read)() {
            let values: &[&str] = if self.label.is_some() { &[value] } else { &[] };
            now.with_label_values(values).inc_by(n);
        }
        now.collect()
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Vec<u8> {
    use prometheus::Encoder;
    let mut out = Vec::with_capacity(16 * 1024);
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unexpected_statuses_share_one_label() {
        assert_eq!(status_label(503), "503");
        assert_eq!(status_label(418), "other");
    }

    #[test]
    fn every_name_has_the_prefix() {
        let (registry, m) = Metrics::standalone();
        m.request_answered("presence", "POST", 200, Duration::from_millis(3));
        for family in registry.gather() {
            let name = family.name();
            assert!(
                name.starts_with("presence_bridge_") || name.starts_with("process_"),
                "{name}"
            );
        }
        let text = String::from_utf8(render(&registry)).unwrap();
        assert!(text.contains(
            r#"presence_bridge_http_requests_total{method="POST",route="presence",status="200"} 1"#
        ));
        assert!(text.contains(r#"presence_bridge_events_rejected_total{reason="invalid_phone"} 0"#));
    }

    /// The two rejection counters split `reply::catalogue()` between them:
    /// every reason in exactly one vocabulary, that vocabulary's counter is
    /// the one that moves, and every series exists at 0 before the first
    /// request.
    #[test]
    fn rejection_vocabularies_match_the_catalogue() {
        use std::collections::BTreeSet;
        const EVENTS: &str = "presence_bridge_events_rejected_total";
        const REFUSED: &str = "presence_bridge_http_requests_refused_total";
        let events: BTreeSet<&str> = EVENT_REJECT_REASONS.iter().copied().collect();
        let refused: BTreeSet<&str> = REQUEST_REFUSED_REASONS.iter().copied().collect();
        assert_eq!(events.len(), EVENT_REJECT_REASONS.len(), "duplicate");
        assert_eq!(refused.len(), REQUEST_REFUSED_REASONS.len(), "duplicate");
        assert!(
            events.is_disjoint(&refused),
            "{:?}",
            events.intersection(&refused)
        );

        let (registry, _) = Metrics::standalone();
        let fresh = String::from_utf8(render(&registry)).unwrap();
        for (name, vocabulary) in [(EVENTS, &events), (REFUSED, &refused)] {
            for reason in vocabulary.iter() {
                let sample = format!("{name}{{reason=\"{reason}\"}} 0\n");
                assert!(fresh.contains(&sample), "{sample} not pre-registered");
            }
        }

        let mut seen = BTreeSet::new();
        for rejection in crate::ingress::reply::catalogue() {
            let code = rejection.code();
            seen.insert(code);
            let (counter, vocabulary, other) = if rejection.is_rejected_event() {
                (EVENTS, &events, REFUSED)
            } else {
                (REFUSED, &refused, EVENTS)
            };
            assert!(
                vocabulary.contains(code),
                "{code} ({rejection:?}) not in {counter}'s vocabulary"
            );
            let (registry, m) = Metrics::standalone();
            m.request_rejected(&rejection);
            let text = String::from_utf8(render(&registry)).unwrap();
            let moved = format!("{counter}{{reason=\"{code}\"}} 1\n");
            assert!(
                text.contains(&moved),
                "{rejection:?} did not count in {counter}"
            );
            assert!(
                !text.contains(&format!("{other}{{reason=\"{code}\"}}")),
                "{code} also has a series in {other}"
            );
        }
        let vocabularies: BTreeSet<&str> = events.union(&refused).copied().collect();
        assert_eq!(
            seen, vocabularies,
            "vocabulary reasons the catalogue never answers, or the reverse"
        );
    }
}

/// Why the webhook listener closed a connection before serving it.
pub const CONNECTION_REFUSED_REASONS: &[&str] = &["per_client_limit"];
/// Why a TLS handshake failed.
pub const TLS_HANDSHAKE_FAILURES: &[&str] = &["timeout", "error"];

/// The dead-letter file (`publisher::dead_letter`).
#[derive(Clone)]
struct DeadLetterFileMetrics {
    write_failures: prometheus::IntCounter,
    bytes: IntGauge,
}

impl DeadLetterFileMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let write_failures = prometheus::IntCounter::with_opts(
            Opts::new(
                "dead_letter_write_failures_total",
                "Dead letters that could not be written to the dead-letter file; the event stays in the spool and is retried.",
            )
            .namespace(NS),
        )?;
        let bytes = IntGauge::with_opts(
            Opts::new(
                "dead_letter_bytes",
                "Size of the dead-letter file in the spool directory; it counts against spool.max_bytes.",
            )
            .namespace(NS),
        )?;
        registry.register(Box::new(write_failures.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        Ok(Self {
            write_failures,
            bytes,
        })
    }
}

/// Connection-level metrics of the webhook listener (refusals, evictions and
/// TLS) and of the admin listener (open, refusals, evictions).
#[derive(Clone)]
struct ListenerMetrics {
    connections_refused: IntCounterVec,
    connections_evicted: IntCounterVec,
    admin_connections_open: IntGauge,
    admin_connections_refused: IntCounterVec,
    admin_connections_evicted: IntCounterVec,
    tls_reloads: IntCounterVec,
    tls_expiry: IntGauge,
    tls_handshake_failures: IntCounterVec,
    unread_bodies: IntCounterVec,
}

impl ListenerMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "http_connections_refused_total",
                "Connections closed by the webhook listener right after accept, by reason.",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let connections_evicted = IntCounterVec::new(
            Opts::new(
                "http_connections_evicted_total",
                "Connections doing nothing useful closed by the webhook listener to free their \
                 slot, by reason (slots_full: the longest idle, to let a new one in; slow_body: \
                 the longest receiving a body, slots full and none idle; pressure_timeout: idle \
                 past the shortened timeout over 90 % of the slots; pressure_body_timeout: \
                 receiving a body past the shortened timeout over 90 % of the slots).",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let admin_connections_open = IntGauge::with_opts(
            Opts::new(
                "admin_connections_open",
                "Connections open on the admin listener (probes and scrapes).",
            )
            .namespace(NS),
        )?;
        let admin_connections_refused = IntCounterVec::new(
            Opts::new(
                "admin_connections_refused_total",
                "Connections closed by the admin listener right after accept, by reason.",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let admin_connections_evicted = IntCounterVec::new(
            Opts::new(
                "admin_connections_evicted_total",
                "Connections closed by the admin listener to free their slot, by reason \
                 (as presence_bridge_http_connections_evicted_total).",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "tls_reloads_total",
                "Attempts to load a changed TLS certificate and key, by result (ok, error).",
            )
            .namespace(NS),
            &["result"],
        )?;
        let tls_expiry = IntGauge::with_opts(
            Opts::new(
                "tls_certificate_expiry_timestamp_seconds",
                "Not-after time of the TLS certificate in use, in Unix seconds (0: unknown).",
            )
            .namespace(NS),
        )?;
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "tls_handshake_failures_total",
                "TLS handshakes on the webhook listener that failed, by reason (timeout, error).",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let unread_bodies = IntCounterVec::new(
            Opts::new(
                "http_unread_bodies_total",
                "Bodies of requests answered before their body was read, by what became of them \
                 (discarded: read and thrown away, so the answer reaches the client; too_large, \
                 timeout, not_sent, error: left unread, the answer closes the HTTP/1.1 connection).",
            )
            .namespace(NS),
            &["result"],
        )?;
        registry.register(Box::new(unread_bodies.clone()))?;
        for result in crate::ingress::Discard::ALL {
            unread_bodies.with_label_values(&[result.as_str()]);
        }
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(tls_reloads.clone()))?;
        registry.register(Box::new(tls_expiry.clone()))?;
        registry.register(Box::new(tls_handshake_failures.clone()))?;
        for reason in CONNECTION_REFUSED_REASONS {
            connections_refused.with_label_values(&[reason]);
        }
        registry.register(Box::new(connections_evicted.clone()))?;
        registry.register(Box::new(admin_connections_open.clone()))?;
        registry.register(Box::new(admin_connections_refused.clone()))?;
        registry.register(Box::new(admin_connections_evicted.clone()))?;
        for reason in CONNECTION_REFUSED_REASONS {
            admin_connections_refused.with_label_values(&[reason]);
        }
        for why in Eviction::ALL {
            connections_evicted.with_label_values(&[why.as_str()]);
            admin_connections_evicted.with_label_values(&[why.as_str()]);
        }
        for result in ["ok", "error"] {
            tls_reloads.with_label_values(&[result]);
        }
        for reason in TLS_HANDSHAKE_FAILURES {
            tls_handshake_failures.with_label_values(&[reason]);
        }
        Ok(Self {
            connections_refused,
            connections_evicted,
            admin_connections_open,
            admin_connections_refused,
            admin_connections_evicted,
            tls_reloads,
            tls_expiry,
            tls_handshake_failures,
            unread_bodies,
        })
    }
}

impl Metrics {
    /// A connection was closed right after accept (`reason` from
    /// [`CONNECTION_REFUSED_REASONS`]).
    pub fn connection_refused(&self, listener: Listener, reason: &'static str) {
        let family = match listener {
            Listener::Webhook => &self.listener.connections_refused,
            Listener::Admin => &self.listener.admin_connections_refused,
        };
        family.with_label_values(&[reason]).inc();
    }

    /// `n` connections were closed to free their slots.
    pub fn connections_evicted(&self, listener: Listener, why: Eviction, n: u64) {
        if n > 0 {
            let family = match listener {
                Listener::Webhook => &self.listener.connections_evicted,
                Listener::Admin => &self.listener.admin_connections_evicted,
            };
            family.with_label_values(&[why.as_str()]).inc_by(n);
        }
    }

    /// The body of a request answered from its head was discarded or left
    /// unread (`result` from [`crate::ingress::Discard::as_str`]).
    pub fn unread_body(&self, result: &'static str) {
        self.listener
            .unread_bodies
            .with_label_values(&[result])
            .inc();
    }

    /// A TLS handshake failed (`reason` from [`TLS_HANDSHAKE_FAILURES`]).
    pub fn tls_handshake_failed(&self, reason: &'static str) {
        self.listener
            .tls_handshake_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// A changed certificate/key pair was loaded (`ok`) or refused (`error`).
    pub fn tls_reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.listener.tls_reloads.with_label_values(&[result]).inc();
    }

    /// The not-after time of the certificate now in use (Unix seconds).
    pub fn tls_certificate_expiry(&self, unix_seconds: i64) {
        self.listener.tls_expiry.set(unix_seconds);
    }
}

/// Supervised tasks and configured topics (`app`'s supervisor, the broker probe).
#[derive(Clone)]
struct SupervisionMetrics {
    task_failed: IntGaugeVec,
    topic_missing: IntGaugeVec,
}

impl SupervisionMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let task_failed = IntGaugeVec::new(
            Opts::new(
                "task_failed",
                "1 when a supervised task ended or panicked outside shutdown (the bridge then exits with code 3), by task.",
            )
            .namespace(NS),
            &["task"],
        )?;
        let topic_missing = IntGaugeVec::new(
            Opts::new(
                "kafka_topic_missing",
                "1 when the last metadata probe that reached a broker did not find this configured topic.",
            )
            .namespace(NS),
            &["topic"],
        )?;
        registry.register(Box::new(task_failed.clone()))?;
        registry.register(Box::new(topic_missing.clone()))?;
        Ok(Self {
            task_failed,
            topic_missing,
        })
    }
}

impl Metrics {
    /// A supervised task (a closed set: `health::Component`) is running (false)
    /// or failed (true).
    pub fn task_failed(&self, task: &'static str, failed: bool) {
        self.supervision
            .task_failed
            .with_label_values(&[task])
            .set(i64::from(failed));
    }

    /// Whether a configured topic (only those: a bounded label) is missing.
    pub fn kafka_topic_missing(&self, topic: &str, missing: bool) {
        self.supervision
            .topic_missing
            .with_label_values(&[topic])
            .set(i64::from(missing));
    }
}

/// The process metrics of `prometheus`' `ProcessCollector` (memory, file
/// descriptors, threads, start time), except `process_cpu_seconds_total`:
/// that crate counts it in whole seconds (an integer counter), so a bridge
/// that used 0.63 s showed 0 and `rate()` was a staircase. This one reads the
/// same source (`utime + stime` of `/proc/self/stat`, every thread, living or
/// ended) divided by the kernel's clock tick rate (`AT_CLKTCK`, usually
/// 100 Hz): a resolution of one tick, 10 ms.
#[cfg(target_os = "linux")]
struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
    cpu: prometheus::Counter,
    ticks_per_second: f64,
}

#[cfg(target_os = "linux")]
const CPU_SECONDS: &str = "process_cpu_seconds_total";

#[cfg(target_os = "linux")]
impl ProcessMetrics {
    fn for_self() -> Result<Self, prometheus::Error> {
        let cpu = prometheus::Counter::with_opts(Opts::new(
            CPU_SECONDS,
            "Total user and system CPU time spent in seconds (every thread; resolution: one clock tick, 10 ms).",
        ))?;
        Ok(Self {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
            cpu,
            ticks_per_second: clock_ticks_per_second().unwrap_or(100.0),
        })
    }
}

#[cfg(target_os = "linux")]
impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs: Vec<&prometheus::core::Desc> = self
            .inner
            .desc()
            .into_iter()
            .filter(|d| d.fq_name != CPU_SECONDS)
            .collect();
        descs.extend(self.cpu.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families: Vec<_> = self
            .inner
            .collect()
            .into_iter()
            .filter(|f| f.name() != CPU_SECONDS)
            .collect();
        if let Some(ticks) = process_cpu_ticks() {
            let delta = ticks / self.ticks_per_second - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        families.extend(self.cpu.collect());
        families
    }
}

/// User plus system CPU time of this process (every thread, living or
/// ended), in clock ticks, from `/proc/self/stat`.
#[cfg(target_os = "linux")]
pub fn process_cpu_ticks() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64)
}

/// The kernel's clock tick rate (`AT_CLKTCK` of `/proc/self/auxv`), which
/// `/proc/self/stat` counts CPU time in.
#[cfg(target_os = "linux")]
pub fn clock_ticks_per_second() -> Option<f64> {
    const AT_CLKTCK: u64 = 17;
    let auxv = std::fs::read("/proc/self/auxv").ok()?;
    let word = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * word).find_map(|pair| {
        let read = |b: &[u8]| -> u64 {
            let mut buf = [0u8; 8];
            buf[..word].copy_from_slice(b);
            u64::from_ne_bytes(buf)
        };
        (read(&pair[..word]) == AT_CLKTCK).then(|| read(&pair[word..]) as f64)
    })
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

/// What librdkafka does on its own, from its statistics (every
/// `statistics.interval.ms`): with `message.timeout.ms = 0` it retries without
/// end and reports nothing to the forwarder while no broker answers, so these
/// are the counters that move during an outage.
#[derive(Clone)]
struct KafkaClientMetrics {
    connection_attempts: prometheus::IntCounter,
    request_retries: prometheus::IntCounter,
}

impl KafkaClientMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let connection_attempts = prometheus::IntCounter::with_opts(
            Opts::new(
                "kafka_connection_attempts_total",
                "Connection attempts of the bridge's Kafka clients to brokers, successful or failed \
                 (librdkafka statistics `connects`, summed over brokers). Climbs during a broker outage: \
                 librdkafka reconnects with backoff (100 ms doubling to 10 s) while events wait in it.",
            )
            .namespace(NS),
        )?;
        let request_retries = prometheus::IntCounter::with_opts(
            Opts::new(
                "kafka_request_retries_total",
                "Requests (produce batches among them) librdkafka sent to a broker again after a \
                 failure or timeout (statistics `txretries`, summed over brokers).",
            )
            .namespace(NS),
        )?;
        registry.register(Box::new(connection_attempts.clone()))?;
        registry.register(Box::new(request_retries.clone()))?;
        Ok(Self {
            connection_attempts,
            request_retries,
        })
    }
}

impl Metrics {
    /// Growth of librdkafka's counters since its previous statistics report.
    pub fn kafka_client_activity(&self, connection_attempts: u64, request_retries: u64) {
        self.kafka_client
            .connection_attempts
            .inc_by(connection_attempts);
        self.kafka_client.request_retries.inc_by(request_retries);
    }
}
