//! The listeners' connection metrics: connections open, refused right after
//! accept and closed to free their slot ([`Eviction`]), for the webhook and
//! the admin listener apart, and the webhook listener's TLS handshakes,
//! reloads and certificate expiry.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::{Eviction, Listener};
use crate::metrics::{Metrics, NS};

/// Why a listener closed a connection right after accept (the `reason` of
/// `presence_bridge_{http,admin}_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already held `max_connections_per_client`.
    PerClientLimit,
}

impl Refusal {
    pub const ALL: [Self; 1] = [Self::PerClientLimit];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PerClientLimit => "per_client_limit",
        }
    }
}

/// Why a TLS handshake failed (the `reason` of
/// `presence_bridge_tls_handshake_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not done within `http.header_read_timeout`.
    Timeout,
    /// Refused by rustls or broken off.
    Error,
}

impl HandshakeFailure {
    pub const ALL: [Self; 2] = [Self::Timeout, Self::Error];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// The label values of [`Refusal::ALL`].
pub const CONNECTION_REFUSED_REASONS: [&str; 1] = [Refusal::ALL[0].as_str()];
/// The label values of [`HandshakeFailure::ALL`].
pub const TLS_HANDSHAKE_FAILURES: [&str; 2] = [
    HandshakeFailure::ALL[0].as_str(),
    HandshakeFailure::ALL[1].as_str(),
];

/// Connection-level metrics of the webhook listener (refusals, evictions and
/// TLS) and of the admin listener (open, refusals, evictions).
#[derive(Clone)]
pub(crate) struct ListenerMetrics {
    connections_open: IntGauge,
    connections_refused: IntCounterVec,
    connections_evicted: IntCounterVec,
    admin_connections_open: IntGauge,
    admin_connections_refused: IntCounterVec,
    admin_connections_evicted: IntCounterVec,
    tls_reloads: IntCounterVec,
    tls_expiry: IntGauge,
    tls_handshake_failures: IntCounterVec,
}

impl ListenerMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let connections_open = IntGauge::with_opts(
            Opts::new(
                "http_connections_open",
                "Open connections on the webhook listener.",
            )
            .namespace(NS),
        )?;
        registry.register(Box::new(connections_open.clone()))?;
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
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(tls_reloads.clone()))?;
        registry.register(Box::new(tls_expiry.clone()))?;
        registry.register(Box::new(tls_handshake_failures.clone()))?;
        for reason in Refusal::ALL {
            connections_refused.with_label_values(&[reason.as_str()]);
        }
        registry.register(Box::new(connections_evicted.clone()))?;
        registry.register(Box::new(admin_connections_open.clone()))?;
        registry.register(Box::new(admin_connections_refused.clone()))?;
        registry.register(Box::new(admin_connections_evicted.clone()))?;
        for reason in Refusal::ALL {
            admin_connections_refused.with_label_values(&[reason.as_str()]);
        }
        for why in Eviction::ALL {
            connections_evicted.with_label_values(&[why.as_str()]);
            admin_connections_evicted.with_label_values(&[why.as_str()]);
        }
        for result in ["ok", "error"] {
            tls_reloads.with_label_values(&[result]);
        }
        for reason in HandshakeFailure::ALL {
            tls_handshake_failures.with_label_values(&[reason.as_str()]);
        }
        Ok(Self {
            connections_open,
            connections_refused,
            connections_evicted,
            admin_connections_open,
            admin_connections_refused,
            admin_connections_evicted,
            tls_reloads,
            tls_expiry,
            tls_handshake_failures,
        })
    }
}

impl Metrics {
    pub fn connection_opened(&self, listener: Listener) {
        match listener {
            Listener::Webhook => self.listener.connections_open.inc(),
            Listener::Admin => self.listener.admin_connections_open.inc(),
        }
    }

    pub fn connection_closed(&self, listener: Listener) {
        match listener {
            Listener::Webhook => self.listener.connections_open.dec(),
            Listener::Admin => self.listener.admin_connections_open.dec(),
        }
    }

    /// A connection was closed right after accept.
    pub fn connection_refused(&self, listener: Listener, reason: Refusal) {
        let family = match listener {
            Listener::Webhook => &self.listener.connections_refused,
            Listener::Admin => &self.listener.admin_connections_refused,
        };
        family.with_label_values(&[reason.as_str()]).inc();
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

    /// A TLS handshake failed.
    pub fn tls_handshake_failed(&self, reason: HandshakeFailure) {
        self.listener
            .tls_handshake_failures
            .with_label_values(&[reason.as_str()])
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
