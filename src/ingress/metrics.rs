//! The webhook handler's metrics: requests answered and how long they took,
//! events accepted, rejected for their content or refused for anything
//! else, captures of rejected input, rate-limit bucket evictions and bodies
//! left unread. Label values come from closed sets: the routes, the answered
//! statuses, the presence statuses and the rejection codes of
//! [`reply::catalogue`](super::reply::catalogue).

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::reply::Reason;
use crate::metrics::{Metrics, NS};
use crate::presence::CallbackKind;

/// Routes as metric label values.
pub const ROUTES: [&str; 5] = super::routes::ROUTE_LABELS;
/// Why an event was rejected: a POST to an event route whose body (its
/// Content-Type, size, JSON, fields, or the instance it names) was refused
/// (the `reason` of `presence_bridge_events_rejected_total`), from
/// [`Reason::ALL`](super::reply::Reason::ALL).
pub const EVENT_REJECT_REASONS: [&str; Reason::count(true)] = Reason::codes(true);
/// Why a request that was not a rejected event was refused: unknown paths and
/// methods, authentication and access, rate limits, bodies that never
/// arrived, and 503s (the `reason` of
/// `presence_bridge_http_requests_refused_total`), from [`Reason::ALL`](super::reply::Reason::ALL).
pub const REQUEST_REFUSED_REASONS: [&str; Reason::count(false)] = Reason::codes(false);
/// What became of a rejected request's capture (`rejected.topic`).
pub const CAPTURE_RESULTS: &[&str] = &["stored", "dropped"];
/// The rate limiters (the `limiter` label of
/// `presence_bridge_rate_limit_active_evictions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterLabel {
    Client,
    Instance,
}

impl LimiterLabel {
    pub const ALL: [Self; 2] = [Self::Client, Self::Instance];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Instance => "instance",
        }
    }
}

/// The label values of [`LimiterLabel::ALL`].
pub const LIMITERS: [&str; 2] = [LimiterLabel::ALL[0].as_str(), LimiterLabel::ALL[1].as_str()];
/// Presence statuses as metric label values.
pub const STATUSES: &[&str] = &[
    "UNAVAILABLE",
    "AVAILABLE",
    "COMPOSING",
    "PAUSED",
    "RECORDING",
    "OTHER",
];

/// Registered by [`IngressMetrics::new`].
#[derive(Clone)]
pub(crate) struct IngressMetrics {
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    events_accepted: IntCounterVec,
    callbacks_accepted: IntCounterVec,
    events_rejected: IntCounterVec,
    requests_refused: IntCounterVec,
    rejected_captured: IntCounterVec,
    rate_limit_evictions: IntCounterVec,
    unread_bodies: IntCounterVec,
}

impl IngressMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
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
        let events_accepted = IntCounterVec::new(
            Opts::new(
                "events_accepted_total",
                "Presence events committed to the spool (answered 200 unless the client hung up first), by status.",
            )
            .namespace(NS),
            &["status"],
        )?;
        let callbacks_accepted = IntCounterVec::new(
            Opts::new(
                "callbacks_accepted_total",
                "Callbacks of every kind committed to the spool (answered 200 unless the client hung up first), by kind.",
            )
            .namespace(NS),
            &["kind"],
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
        for c in [
            &http_requests,
            &events_accepted,
            &callbacks_accepted,
            &events_rejected,
            &requests_refused,
            &rejected_captured,
            &rate_limit_evictions,
            &unread_bodies,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(http_duration.clone()))?;
        for route in ROUTES {
            http_duration.with_label_values(&[route]);
        }
        for status in STATUSES {
            events_accepted.with_label_values(&[status]);
        }
        for kind in CallbackKind::ALL {
            callbacks_accepted.with_label_values(&[kind.label()]);
        }
        for reason in EVENT_REJECT_REASONS {
            events_rejected.with_label_values(&[reason]);
        }
        for reason in REQUEST_REFUSED_REASONS {
            requests_refused.with_label_values(&[reason]);
        }
        for result in CAPTURE_RESULTS {
            rejected_captured.with_label_values(&[result]);
        }
        for limiter in LimiterLabel::ALL {
            rate_limit_evictions.with_label_values(&[limiter.as_str()]);
        }
        for result in super::Discard::ALL {
            unread_bodies.with_label_values(&[result.as_str()]);
        }
        Ok(Self {
            http_requests,
            http_duration,
            events_accepted,
            callbacks_accepted,
            events_rejected,
            requests_refused,
            rejected_captured,
            rate_limit_evictions,
            unread_bodies,
        })
    }
}

impl Metrics {
    pub fn request_answered(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.ingress
            .http_requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        self.ingress
            .http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// A callback of `kind` was committed.
    pub fn callback_accepted(&self, kind: CallbackKind) {
        self.ingress
            .callbacks_accepted
            .with_label_values(&[kind.label()])
            .inc();
    }

    pub fn event_accepted(&self, status_label: &str) {
        self.ingress
            .events_accepted
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
            &self.ingress.events_rejected
        } else {
            &self.ingress.requests_refused
        };
        counter.with_label_values(&[rejection.code()]).inc();
    }

    /// A rate-limit bucket still in use was dropped for room.
    pub fn rate_limit_bucket_evicted(&self, limiter: LimiterLabel) {
        self.ingress
            .rate_limit_evictions
            .with_label_values(&[limiter.as_str()])
            .inc();
    }

    /// A rejected request's capture was `stored` or `dropped`.
    pub fn rejected_input_captured(&self, stored: bool) {
        let result = if stored { "stored" } else { "dropped" };
        self.ingress
            .rejected_captured
            .with_label_values(&[result])
            .inc();
    }

    /// The body of a request answered from its head was discarded or left
    /// unread (`result` from [`crate::ingress::Discard::as_str`]).
    pub fn unread_body(&self, result: &'static str) {
        self.ingress
            .unread_bodies
            .with_label_values(&[result])
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render;

    #[test]
    fn unexpected_statuses_share_one_label() {
        assert_eq!(status_label(503), "503");
        assert_eq!(status_label(418), "other");
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
