//! The shutdown drain: readiness off, the webhook listener drained, the spool
//! synced, the forwarder flushed and checkpointed, the admin listener stopped,
//! each step within what is left of `shutdown.deadline`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ShutdownReport;
use crate::health::Health;
use crate::publisher::forward::StopSignal;
use crate::spool::store::Store;

/// What the drain stops and waits for, in the order it does.
pub(super) struct Drain {
    pub(super) shutdown: CancellationToken,
    pub(super) health: Arc<Health>,
    pub(super) deadline: Duration,
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
        self.forwarder_stop.stop(end);
        if tokio::time::timeout_at(end + Duration::from_secs(1), self.forwarder_task)
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
