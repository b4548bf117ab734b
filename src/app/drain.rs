//! The shutdown drain: readiness off, the webhook listener drained, the spool
//! synced, the spool emptied to Kafka (bounded by `shutdown.drain_spool`), the
//! forwarder flushed and checkpointed, the admin listener stopped. The
//! requests and the flush share `shutdown.deadline`; the spool drain has its
//! own bound on top of it, so a stop takes at most `deadline + drain_spool`
//! (plus the last guards).
//!
//! # The spool drain
//! A pod removed by a scale-in never starts again on its volume, so the
//! events in its spool would wait for nobody. After the requests drained,
//! the forwarder keeps running exactly as it does while serving (same order,
//! dead letters, resends; an event is settled only once Kafka acknowledged
//! it) until the spool is empty, the bound passes, or the forwarder is gone.
//! It is logged when it starts and ends (events pending, left, how long) and
//! shown in `presence_bridge_shutdown_spool_pending_events` and
//! `presence_bridge_shutdown_spool_drain_seconds` while it runs (the admin
//! listener stops last). What is left stays in the spool for the next start
//! or `presence-bridge spool forward`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use prometheus::{Gauge, IntGauge, Opts, Registry};

use super::{ShutdownReport, SpoolDrain, SpoolDrainOutcome};
use crate::health::Health;
use crate::publisher::forward::StopSignal;
use crate::spool::store::Store;

/// What the drain stops and waits for, in the order it does.
pub(super) struct Drain {
    pub(super) shutdown: CancellationToken,
    pub(super) health: Arc<Health>,
    pub(super) deadline: Duration,
    /// `shutdown.drain_spool` (zero: off).
    pub(super) drain_spool: Duration,
    pub(super) metrics: DrainMetrics,
    pub(super) store: Arc<Store>,
    pub(super) stop_webhook: CancellationToken,
    pub(super) webhook_task: JoinHandle<()>,
    pub(super) forwarder_stop: StopSignal,
    pub(super) forwarder_task: JoinHandle<()>,
    pub(super) background: Vec<JoinHandle<()>>,
    pub(super) writer_task: JoinHandle<()>,
    pub(super) stop_admin: CancellationToken,
    pub(super) admin_task: JoinHandle<()>,
}

/// Waits for the shutdown, drains in order, and says what was left undone.
impl Drain {
    pub(super) async fn run(self) -> ShutdownReport {
        self.shutdown.cancelled().await;
        let (health, deadline) = (self.health, self.deadline);
        let started = Instant::now();
        let end = tokio::time::Instant::now() + deadline;
        health.begin_shutdown();
        match health.failed().first() {
            Some(c) => {
                tracing::warn!(deadline = ?deadline, component = c.as_str(), "shutting down after a task failed: readiness off, draining requests")
            }
            None => {
                tracing::info!(deadline = ?deadline, "shutting down: readiness off, draining requests")
            }
        }
        self.stop_webhook.cancel();
        let mut report = ShutdownReport::default();
        if tokio::time::timeout_at(end, self.webhook_task)
            .await
            .is_err()
        {
            report.connections_abandoned = true;
            tracing::warn!("requests still in flight at the shutdown deadline were abandoned");
        }
        let synced = {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.sync()).await
        };
        if !matches!(synced, Ok(Ok(_))) {
            tracing::error!("final spool sync failed");
        }
        report.spool_drain = drain_spool(
            self.drain_spool,
            &self.store,
            &self.forwarder_task,
            &self.metrics,
        )
        .await;
        // The spool drain may have run past `end`: the forwarder still gets
        // its stop (a flush of what already went out, the final checkpoint).
        let flush_end = end.max(tokio::time::Instant::now());
        self.forwarder_stop.stop(flush_end);
        if tokio::time::timeout_at(flush_end + Duration::from_secs(1), self.forwarder_task)
            .await
            .is_err()
        {
            tracing::warn!("the forwarder did not stop by the deadline");
        }
        report.events_left_in_spool = self.store.stats().pending;
        let _ = tokio::time::timeout_at(end, async {
            for t in self.background {
                let _ = t.await;
            }
        })
        .await;
        // The writer ends once the ingress is gone; not waited for (an
        // abandoned connection may still hold the ingress).
        drop(self.writer_task);
        self.stop_admin.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.admin_task).await;
        report.took = started.elapsed();
        report.failed = health.failed();
        // The counts of lines held back since the last summary.
        crate::lograte::flush();
        tracing::info!(took = ?report.took, "shutdown complete");
        report
    }
}

/// How often the spool drain looks at the spool, and how often it logs.
const DRAIN_POLL: Duration = Duration::from_millis(100);
const DRAIN_LOG_EVERY: Duration = Duration::from_secs(5);

/// Keeps the forwarder running until the spool is empty, `bound` passed, or
/// the forwarder ended. `None` when the drain is off (`bound` zero).
pub(super) async fn drain_spool(
    bound: Duration,
    store: &Store,
    forwarder: &JoinHandle<()>,
    metrics: &DrainMetrics,
) -> Option<SpoolDrain> {
    if bound.is_zero() {
        return None;
    }
    let started = tokio::time::Instant::now();
    let end = started + bound;
    let pending_at_start = store.stats().pending;
    metrics.show(pending_at_start, Duration::ZERO);
    if pending_at_start > 0 {
        tracing::info!(
            pending = pending_at_start,
            bound = ?bound,
            "draining the spool to Kafka before exiting"
        );
    }
    let mut logged = started;
    let (outcome, left) = loop {
        let left = store.stats().pending;
        let now = tokio::time::Instant::now();
        metrics.show(left, now - started);
        if left == 0 {
            break (SpoolDrainOutcome::Emptied, left);
        }
        if forwarder.is_finished() {
            break (SpoolDrainOutcome::ForwarderGone, left);
        }
        if now >= end {
            break (SpoolDrainOutcome::BoundReached, left);
        }
        if now - logged >= DRAIN_LOG_EVERY {
            tracing::info!(pending = left, elapsed = ?(now - started), "still draining the spool");
            logged = now;
        }
        tokio::time::sleep_until((now + DRAIN_POLL).min(end)).await;
    };
    let took = started.elapsed();
    metrics.show(left, took);
    let delivered = pending_at_start.saturating_sub(left);
    match outcome {
        SpoolDrainOutcome::Emptied if pending_at_start > 0 => {
            tracing::info!(pending = pending_at_start, delivered, left, took = ?took, "spool drained: every event delivered")
        }
        SpoolDrainOutcome::Emptied => {
            tracing::info!("spool empty at shutdown: nothing to drain")
        }
        SpoolDrainOutcome::BoundReached => {
            tracing::warn!(pending = pending_at_start, delivered, left, took = ?took, "shutdown.drain_spool passed with events left in the spool: they wait for the next start on this volume, or `presence-bridge spool forward`")
        }
        SpoolDrainOutcome::ForwarderGone => {
            tracing::warn!(pending = pending_at_start, delivered, left, took = ?took, "the forwarder is not running: events left in the spool for the next start, or `presence-bridge spool forward`")
        }
    }
    Some(SpoolDrain {
        pending_at_start,
        left,
        took,
        outcome,
    })
}

/// The spool drain's gauges (0 until a shutdown drains the spool).
#[derive(Clone)]
pub(super) struct DrainMetrics {
    pending: IntGauge,
    seconds: Gauge,
}

impl DrainMetrics {
    pub(super) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let pending = IntGauge::with_opts(
            Opts::new(
                "shutdown_spool_pending_events",
                "Events still in the spool while the shutdown drains it to Kafka (shutdown.drain_spool); 0 before a shutdown.",
            )
            .namespace(crate::metrics::NS),
        )?;
        let seconds = Gauge::with_opts(
            Opts::new(
                "shutdown_spool_drain_seconds",
                "How long the shutdown's spool drain has run (its total once it ended); 0 before a shutdown.",
            )
            .namespace(crate::metrics::NS),
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(Self { pending, seconds })
    }

    fn show(&self, pending: u64, elapsed: Duration) {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.seconds.set(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::testkit;

    fn store_with(dir: &std::path::Path, n: u64) -> Store {
        let store = testkit::open(dir);
        let batch: Vec<_> = (1..=n).map(|i| testkit::record(i, "t")).collect();
        store.append(&batch, false).unwrap();
        store
    }

    fn gauges() -> (Registry, DrainMetrics) {
        let registry = Registry::new();
        let m = DrainMetrics::new(&registry).unwrap();
        (registry, m)
    }

    fn sample(registry: &Registry, name: &str) -> f64 {
        let text = String::from_utf8(crate::metrics::render(registry)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    }

    /// A stand-in for a forwarder that never delivers (a broker that is down).
    fn stuck_forwarder() -> JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_bound_leaving_the_events_in_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 5);
        let (registry, m) = gauges();
        let forwarder = stuck_forwarder();
        let started = tokio::time::Instant::now();
        let d = drain_spool(Duration::from_secs(20), &store, &forwarder, &m)
            .await
            .unwrap();
        assert_eq!(d.outcome, SpoolDrainOutcome::BoundReached);
        assert_eq!((d.pending_at_start, d.left), (5, 5));
        // The paused clock: exactly the bound, not a moment less, and not a poll more.
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(d.took, Duration::from_secs(20));
        assert_eq!(
            sample(&registry, "presence_bridge_shutdown_spool_pending_events"),
            5.0
        );
        assert_eq!(
            sample(&registry, "presence_bridge_shutdown_spool_drain_seconds"),
            20.0
        );
        assert_eq!(store.stats().pending, 5);
        forwarder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn ends_as_soon_as_the_spool_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(store_with(dir.path(), 5));
        let (_registry, m) = gauges();
        // Settles everything 3 s into the drain, as a forwarder would.
        let forwarder = tokio::spawn({
            let store = store.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                store.advance("t", 5, 5);
                std::future::pending::<()>().await;
            }
        });
        let d = drain_spool(Duration::from_secs(3600), &store, &forwarder, &m)
            .await
            .unwrap();
        assert_eq!(d.outcome, SpoolDrainOutcome::Emptied);
        assert_eq!((d.pending_at_start, d.left), (5, 0));
        assert!(
            d.took >= Duration::from_secs(3) && d.took <= Duration::from_secs(3) + DRAIN_POLL,
            "{:?}",
            d.took
        );
        forwarder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_wait_for_a_forwarder_that_is_gone_nor_when_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 2);
        let (_registry, m) = gauges();
        let gone = tokio::spawn(async {});
        while !gone.is_finished() {
            tokio::task::yield_now().await;
        }
        let d = drain_spool(Duration::from_secs(3600), &store, &gone, &m)
            .await
            .unwrap();
        assert_eq!(d.outcome, SpoolDrainOutcome::ForwarderGone);
        assert_eq!(d.took, Duration::ZERO);
        assert!(drain_spool(Duration::ZERO, &store, &gone, &m)
            .await
            .is_none());
    }
}
