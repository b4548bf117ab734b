//! The publisher's metrics: delivery reports by result and the delivery
//! latency, broker reachability from the metadata probe, configured topics
//! missing, events dead-lettered and the dead-letter file, and what
//! librdkafka does on its own (connection attempts, request retries).

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::metrics::{Metrics, NS};

/// Why Kafka refused an event for good (the `reason` of
/// `presence_bridge_events_dead_lettered_total` and of a dead letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Over the broker's size limit.
    TooLarge,
    /// Refused for itself for any other reason.
    Rejected,
    /// Never produced any more (such a failure holds the destination);
    /// exported at 0 for the dashboards and alerts that name it.
    NotAuthorized,
    /// As [`Self::NotAuthorized`].
    UnknownTopic,
}

impl DeadLetterReason {
    pub const ALL: [Self; 4] = [
        Self::TooLarge,
        Self::NotAuthorized,
        Self::UnknownTopic,
        Self::Rejected,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Rejected => "rejected",
            Self::NotAuthorized => "not_authorized",
            Self::UnknownTopic => "unknown_topic",
        }
    }
}

/// The label values of [`DeadLetterReason::ALL`].
pub const DEAD_LETTER_REASONS: [&str; 4] = {
    let mut out = [""; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = DeadLetterReason::ALL[i].as_str();
        i += 1;
    }
    out
};

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

/// Registered by [`PublisherMetrics::new`].
#[derive(Clone)]
pub(crate) struct PublisherMetrics {
    kafka_deliveries: IntCounterVec,
    delivery_latency: Histogram,
    broker_reachable: IntGauge,
    topic_missing: IntGaugeVec,
    dead_lettered: IntCounterVec,
    dead_letter_file: DeadLetterFileMetrics,
    kafka_client: KafkaClientMetrics,
    binary_fallbacks: IntCounter,
}

impl PublisherMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
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
        let topic_missing = IntGaugeVec::new(
            Opts::new(
                "kafka_topic_missing",
                "1 when the last metadata probe that reached a broker did not find this configured topic.",
            )
            .namespace(NS),
            &["topic"],
        )?;
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "events_dead_lettered_total",
                "Events Kafka refused permanently, moved to the dead-letter file (and topic).",
            )
            .namespace(NS),
            &["reason"],
        )?;
        let binary_fallbacks = IntCounter::with_opts(
            Opts::new(
                "kafka_binary_mode_fallbacks_total",
                "Records of a binary-mode topic sent in structured mode because their stored value \
                 is not a CloudEvents envelope binary mode can take apart (never one the bridge wrote).",
            )
            .namespace(NS),
        )?;
        registry.register(Box::new(binary_fallbacks.clone()))?;
        registry.register(Box::new(kafka_deliveries.clone()))?;
        registry.register(Box::new(delivery_latency.clone()))?;
        registry.register(Box::new(broker_reachable.clone()))?;
        registry.register(Box::new(topic_missing.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        for result in DeliveryResult::ALL {
            kafka_deliveries.with_label_values(&[result.as_str()]);
        }
        for reason in DeadLetterReason::ALL {
            dead_lettered.with_label_values(&[reason.as_str()]);
        }
        Ok(Self {
            kafka_deliveries,
            delivery_latency,
            broker_reachable,
            topic_missing,
            dead_lettered,
            dead_letter_file: DeadLetterFileMetrics::new(registry)?,
            kafka_client: KafkaClientMetrics::new(registry)?,
            binary_fallbacks,
        })
    }
}

impl Metrics {
    pub fn delivery_finished(&self, result: DeliveryResult, since_arrival: Option<Duration>) {
        self.publisher
            .kafka_deliveries
            .with_label_values(&[result.as_str()])
            .inc();
        if let (DeliveryResult::Delivered, Some(d)) = (result, since_arrival) {
            self.publisher.delivery_latency.observe(d.as_secs_f64());
        }
    }

    /// An acknowledged event was settled, `since_arrival` after it arrived.
    pub fn delivery_acknowledged(&self, since_arrival: Duration) {
        self.publisher
            .delivery_latency
            .observe(since_arrival.as_secs_f64());
    }

    pub fn broker_reachability(&self, reachable: bool) {
        self.publisher.broker_reachable.set(i64::from(reachable));
    }

    /// Whether a configured topic (only those: a bounded label) is missing.
    pub fn kafka_topic_missing(&self, topic: &str, missing: bool) {
        self.publisher
            .topic_missing
            .with_label_values(&[topic])
            .set(i64::from(missing));
    }

    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        self.publisher
            .dead_lettered
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// A record of a binary-mode topic went out in structured mode.
    pub fn binary_mode_fallback(&self) {
        self.publisher.binary_fallbacks.inc();
    }

    /// A dead letter could not be written (the event stays in the spool).
    pub fn dead_letter_write_failed(&self) {
        self.publisher.dead_letter_file.write_failures.inc();
    }

    /// The dead-letter file's size, in bytes.
    pub fn dead_letter_bytes(&self, bytes: u64) {
        self.publisher
            .dead_letter_file
            .bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Growth of librdkafka's counters since its previous statistics report.
    pub fn kafka_client_activity(&self, connection_attempts: u64, request_retries: u64) {
        self.publisher
            .kafka_client
            .connection_attempts
            .inc_by(connection_attempts);
        self.publisher
            .kafka_client
            .request_retries
            .inc_by(request_retries);
    }
}

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
