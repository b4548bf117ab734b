//! The compaction check of the latest-presence topics: at start, the bridge
//! asks the broker for each `kafka.latest` topic's `cleanup.policy` and says
//! clearly, in the log and in `presence_bridge_latest_topic_compacted{topic}`,
//! when it is not compacted. Asked again every `kafka.probe_interval` until
//! the broker answers for every topic (a broker down at start, a topic not
//! created yet), then never again.

use std::time::Duration;

use prometheus::{IntGaugeVec, Opts, Registry};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::publisher::{producer_config, BridgeContext, Scrubber};

/// What the broker said about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compaction {
    /// `cleanup.policy` includes `compact` (`compact` or `compact,delete`).
    Compacted,
    /// Another policy (`delete`): the topic keeps history and loses old states.
    NotCompacted(String),
    /// The broker cannot tell (no such API, not authorized): said once.
    Unknown(String),
    /// No answer yet (no broker, no topic): asked again.
    NotYet,
}

impl Compaction {
    /// The gauge's value: 1, 0, or -1 while not known.
    pub fn gauge(&self) -> i64 {
        match self {
            Self::Compacted => 1,
            Self::NotCompacted(_) => 0,
            Self::Unknown(_) | Self::NotYet => -1,
        }
    }
}

/// The verdict on a topic's `cleanup.policy` value.
pub fn verdict(policy: Option<&str>) -> Compaction {
    match policy {
        Some(p)
            if p.split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("compact")) =>
        {
            Compaction::Compacted
        }
        Some(p) => Compaction::NotCompacted(p.to_owned()),
        None => Compaction::Unknown("the broker did not report cleanup.policy".into()),
    }
}

/// The gauge, a series per latest topic (configured: bounded), -1 at start.
pub fn gauge(registry: &Registry, topics: &[String]) -> Result<IntGaugeVec, prometheus::Error> {
    let g = IntGaugeVec::new(
        Opts::new(
            "latest_topic_compacted",
            "1 when the latest-presence topic's cleanup.policy includes compact, 0 when it does not (consumers starting then read history, and old states are deleted), -1 while the broker has not told.",
        )
        .namespace("presence_bridge"),
        &["topic"],
    )?;
    registry.register(Box::new(g.clone()))?;
    for t in topics {
        g.with_label_values(&[t]).set(-1);
    }
    Ok(g)
}

/// Asks until every topic has an answer, or `shutdown`.
pub(super) async fn check_loop(
    settings: KafkaSettings,
    brokers: String,
    gauge: IntGaugeVec,
    shutdown: CancellationToken,
) {
    let mut topics: Vec<String> = settings.latest_topics().cloned().collect();
    topics.sort();
    topics.dedup();
    if topics.is_empty() {
        return;
    }
    let scrubber = Scrubber::new(&settings.properties);
    let admin: AdminClient<BridgeContext> = match producer_config(&settings, &brokers)
        .create_with_context(BridgeContext::new(scrubber.clone()))
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %scrubber.error(e), "cannot check the latest topic's cleanup.policy");
            return;
        }
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let interval = settings.probe_interval.max(Duration::from_secs(1));
    loop {
        let mut waiting = Vec::new();
        for topic in topics {
            let answer = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = ask(&admin, &topic, &opts) => a,
            };
            gauge.with_label_values(&[&topic]).set(answer.gauge());
            match answer {
                Compaction::Compacted => {
                    tracing::info!(%topic, "the latest-presence topic is compacted")
                }
                Compaction::NotCompacted(policy) => tracing::error!(
                    %topic,
                    cleanup_policy = %policy,
                    "the latest-presence topic is NOT compacted: consumers that start read the whole history instead of each contact's latest state, and retention deletes the state of contacts quiet for longer than it; set cleanup.policy=compact on it (kafka-configs.sh --alter --entity-type topics --entity-name TOPIC --add-config cleanup.policy=compact)"
                ),
                Compaction::Unknown(why) => tracing::warn!(
                    %topic,
                    reason = %why,
                    "cannot tell whether the latest-presence topic is compacted; check that its cleanup.policy is compact"
                ),
                Compaction::NotYet => waiting.push(topic),
            }
        }
        if waiting.is_empty() {
            return;
        }
        topics = waiting;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn ask(admin: &AdminClient<BridgeContext>, topic: &str, opts: &AdminOptions) -> Compaction {
    let resource = ResourceSpecifier::Topic(topic);
    match admin.describe_configs([&resource], opts).await {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(r)) => verdict(r.get("cleanup.policy").and_then(|e| e.value.as_deref())),
            Some(Err(code)) => from_code(code),
            None => Compaction::NotYet,
        },
        Err(KafkaError::AdminOp(code)) => from_code(code),
        Err(_) => Compaction::NotYet,
    }
}

fn from_code(code: RDKafkaErrorCode) -> Compaction {
    use RDKafkaErrorCode as C;
    match code {
        C::UnknownTopicOrPartition
        | C::LeaderNotAvailable
        | C::NotController
        | C::RequestTimedOut
        | C::OperationTimedOut
        | C::BrokerTransportFailure
        | C::AllBrokersDown => Compaction::NotYet,
        other => Compaction::Unknown(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_policy_with_compact_is_compacted() {
        assert_eq!(verdict(Some("compact")), Compaction::Compacted);
        assert_eq!(verdict(Some("compact,delete")), Compaction::Compacted);
        assert_eq!(verdict(Some("delete, Compact")), Compaction::Compacted);
        assert_eq!(
            verdict(Some("delete")),
            Compaction::NotCompacted("delete".into())
        );
        assert_eq!(verdict(Some("delete")).gauge(), 0);
        assert!(matches!(verdict(None), Compaction::Unknown(_)));
        assert_eq!(verdict(None).gauge(), -1);
        assert_eq!(
            from_code(RDKafkaErrorCode::UnknownTopicOrPartition),
            Compaction::NotYet
        );
        assert!(matches!(
            from_code(RDKafkaErrorCode::TopicAuthorizationFailed),
            Compaction::Unknown(_)
        ));
    }
}
