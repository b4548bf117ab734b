//! The broker probe loop: asks the broker about every configured topic and
//! tells readiness what it found.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::publisher::KafkaPublisher;

/// Longest a metadata probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Probes the broker now and every `interval` until shutdown: every configured
/// topic, `kafka.topic` first (when no broker answers for it, the others are
/// not asked that round and keep their last known state).
pub(super) async fn probe_loop(
    publisher: KafkaPublisher,
    interval: Duration,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let topics: Vec<String> = health.configured_topics().map(str::to_owned).collect();
    let timeout = PROBE_TIMEOUT.min(interval.max(Duration::from_secs(1)));
    let mut last_reachable: Option<bool> = None;
    let mut last: Vec<Option<bool>> = vec![None; topics.len()];
    loop {
        let mut reachable = false;
        for (i, topic) in topics.iter().enumerate() {
            let probed = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = publisher.probe(topic, timeout) => p.ok(),
            };
            let Some(present) = probed else {
                if i == 0 {
                    break;
                }
                continue;
            };
            if !reachable {
                // A broker answered: readiness says so now, as the
                // `kafka_broker_reachable` gauge does, not after the
                // round's other topics (each a metadata request).
                reachable = true;
                health.broker_probed(true);
            }
            health.topic_probed(topic, present);
            if last[i] != Some(present) {
                if present {
                    tracing::info!(%topic, "kafka topic present");
                } else {
                    tracing::warn!(%topic, "kafka reachable but this configured topic does not exist (yet); its events wait in the spool");
                }
                last[i] = Some(present);
            }
        }
        if !reachable {
            health.broker_probed(false);
        }
        if last_reachable != Some(reachable) {
            if reachable {
                tracing::info!("kafka reachable");
            } else {
                tracing::warn!("kafka unreachable: no broker answered the metadata probe");
            }
            last_reachable = Some(reachable);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
