//! Prometheus metrics. Each stage defines, registers and names its own
//! series next to its code: [`crate::ingress::metrics`] (requests, events,
//! rejections), [`crate::server::metrics`] (connections, TLS),
//! `spool.rs`, [`crate::publisher::metrics`] (Kafka,
//! dead letters) and, here, health and the process. [`Metrics`] is the
//! bundle the app hands around, with one method per thing that happened.
//!
//! Every name starts with `presence_bridge_`. Label values come from closed sets
//! (routes, methods, statuses, reason codes): never a phone number, an instance
//! id or a token. The known label values are created at zero on start, so
//! `rate()` and alerts see a series before the first event.

mod process;
mod spool;

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

pub use self::spool::{DropReason, DROP_REASONS};
pub use crate::ingress::metrics::{
    CAPTURE_RESULTS, EVENT_REJECT_REASONS, LIMITERS, REQUEST_REFUSED_REASONS, ROUTES, STATUSES,
};
pub use crate::publisher::metrics::{DeliveryResult, DEAD_LETTER_REASONS};
pub use crate::server::metrics::{CONNECTION_REFUSED_REASONS, TLS_HANDSHAKE_FAILURES};
#[cfg(target_os = "linux")]
pub use process::{clock_ticks_per_second, process_cpu_ticks};

/// The prefix of every series but the process ones.
pub(crate) const NS: &str = "presence_bridge";

/// All metrics of the bridge, one part per stage. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) ingress: crate::ingress::metrics::IngressMetrics,
    pub(crate) listener: crate::server::metrics::ListenerMetrics,
    pub(crate) spool: self::spool::SpoolMetrics,
    pub(crate) publisher: crate::publisher::metrics::PublisherMetrics,
    health: HealthMetrics,
}

impl Metrics {
    /// Registers every metric (and the process collector) on `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
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

        registry.register(Box::new(build_info))?;
        registry.register(Box::new(process::ScrapedCounter::log_lines_dropped()?))?;
        registry.register(Box::new(process::ScrapedCounter::log_lines_suppressed()?))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(process::ProcessMetrics::for_self()?))?;
        Ok(Self {
            ingress: crate::ingress::metrics::IngressMetrics::new(registry)?,
            listener: crate::server::metrics::ListenerMetrics::new(registry)?,
            spool: self::spool::SpoolMetrics::new(registry)?,
            publisher: crate::publisher::metrics::PublisherMetrics::new(registry)?,
            health: HealthMetrics::new(registry)?,
        })
    }

    /// A fresh registry with the bridge's metrics, for tests and tools.
    pub fn standalone() -> (Registry, Self) {
        let registry = Registry::new();
        let metrics = Self::new(&registry).expect("metric names are static and unique");
        (registry, metrics)
    }

    pub fn readiness(&self, ready: bool) {
        self.health.ready.set(i64::from(ready));
    }

    /// A supervised task (a closed set: `health::Component`) is running (false)
    /// or failed (true).
    pub fn task_failed(&self, task: &'static str, failed: bool) {
        self.health
            .task_failed
            .with_label_values(&[task])
            .set(i64::from(failed));
    }
}

/// Readiness and the supervised tasks (`app`'s supervisor).
#[derive(Clone)]
struct HealthMetrics {
    ready: IntGauge,
    task_failed: IntGaugeVec,
}

impl HealthMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let ready = IntGauge::with_opts(
            Opts::new("ready", "1 while /readyz answers 200, else 0.").namespace(NS),
        )?;
        let task_failed = IntGaugeVec::new(
            Opts::new(
                "task_failed",
                "1 when a supervised task ended or panicked outside shutdown (the bridge then exits with code 3), by task.",
            )
            .namespace(NS),
            &["task"],
        )?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(task_failed.clone()))?;
        Ok(Self { ready, task_failed })
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
    fn every_name_has_the_prefix() {
        let (registry, m) = Metrics::standalone();
        m.request_answered("presence", "POST", 200, std::time::Duration::from_millis(3));
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
}
