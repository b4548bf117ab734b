//! `serve --dev`: an embedded Kafka-protocol broker (librdkafka's mock
//! cluster) on loopback, with the configured topics created. For development
//! and the quick start only: it keeps nothing, and the bridge says so loudly.
//!
//! The mock cluster is not `Send`; it lives on the main thread for the whole
//! run and is dropped after the runtime has stopped.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// Partitions of each topic created in the embedded broker.
pub const DEV_PARTITIONS: i32 = 3;

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster and creates `topics`.
    pub fn start<'a>(
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let cluster = MockCluster::new(1)?;
        for topic in topics {
            cluster.create_topic(topic, DEV_PARTITIONS, 1)?;
        }
        Ok(Self { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
