//! `presence-bridge presence forget`: deletes a contact's state from the
//! compacted latest-presence topic with a tombstone (the contact's key, a
//! null value), for example for a data-erasure request. Written straight to
//! Kafka with the bridge's producer settings (idempotent, `acks=all`), and
//! done only once the broker acknowledged it.
//!
//! A running bridge does not know: a state it writes for the contact after
//! the tombstone (a new presence event, or the expiry of a typing state
//! within `presence.typing_ttl`) puts the contact back. Compaction removes
//! the older records and, after the topic's `delete.retention.ms`, the
//! tombstone itself.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::Settings;
use crate::envelope::state;
use crate::presence::{InstanceId, Phone, PresenceError};
use crate::publisher::{producer_config, BridgeContext, Scrubber};

/// Why a tombstone was not written.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("kafka.latest.enabled is false: there is no latest-presence topic")]
    Disabled,
    #[error("kafka.brokers is empty: nowhere to write the tombstone")]
    NoBrokers,
    #[error("--instance: {0}")]
    Instance(PresenceError),
    #[error("--phone: {0}")]
    Phone(PresenceError),
    #[error("cannot create the Kafka producer: {0}")]
    Producer(String),
    #[error("the broker did not take the tombstone: {0}")]
    Send(String),
    #[error("no acknowledgement within {0:?}; the tombstone may or may not have been written (running the command again is safe)")]
    Timeout(Duration),
}

/// A tombstone the broker acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub topic: String,
    /// `<instanceId>:<phone>` with the phone masked (for output).
    pub masked_key: String,
    pub partition: i32,
    pub offset: i64,
}

/// Writes the tombstone of (`instance`, `phone`) to its latest topic and
/// waits up to `timeout` for the broker's acknowledgement.
pub async fn forget(
    settings: &Settings,
    instance: &str,
    phone: &str,
    timeout: Duration,
) -> Result<Forgotten, ForgetError> {
    if settings.kafka.latest.is_none() {
        return Err(ForgetError::Disabled);
    }
    if settings.kafka.brokers.is_empty() {
        return Err(ForgetError::NoBrokers);
    }
    let instance = InstanceId::parse(instance).map_err(ForgetError::Instance)?;
    let phone = Phone::parse(phone).map_err(ForgetError::Phone)?;
    let topic = settings
        .kafka
        .latest_topic(instance.as_str())
        .ok_or(ForgetError::Disabled)?
        .to_owned();
    let key = state::key(instance.as_str(), phone.as_str());
    let scrubber = Scrubber::new(&settings.kafka.properties);
    let producer: FutureProducer<BridgeContext> =
        producer_config(&settings.kafka, &settings.kafka.brokers.join(","))
            .create_with_context(BridgeContext::new(scrubber.clone()))
            .map_err(|e| ForgetError::Producer(scrubber.error(e).to_string()))?;
    let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic).key(&key);
    let delivery = producer
        .send_result(record)
        .map_err(|(e, _)| ForgetError::Send(scrubber.error(e).to_string()))?;
    let delivered = match tokio::time::timeout(timeout, delivery).await {
        Err(_) => return Err(ForgetError::Timeout(timeout)),
        Ok(Err(_)) => return Err(ForgetError::Send(KafkaError::Canceled.to_string())),
        Ok(Ok(Err((e, _)))) => return Err(ForgetError::Send(scrubber.error(e).to_string())),
        Ok(Ok(Ok(d))) => d,
    };
    Ok(Forgotten {
        topic,
        masked_key: format!("{}:{}", instance.as_str(), phone.masked()),
        partition: delivered.partition,
        offset: delivered.offset,
    })
}
