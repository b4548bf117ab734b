//! The seam between the forwarder and the Kafka client: what the forwarder
//! needs from a producer, and the rdkafka implementation. The deterministic
//! simulation (`tests/simulation.rs`) puts a seeded fake behind the same
//! trait, so every schedule of deliveries, errors, outages and crashes the
//! fake can produce runs through the real forwarder.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::KafkaPublisher;
use crate::envelope::{CONTENT_TYPE, HEADER_CE_ID, HEADER_CE_TYPE, HEADER_CONTENT_TYPE};
use crate::spool::format::StoredRecord;

/// A boxed future, for the object-safe parts of the seams.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the forwarder needs from a Kafka producer.
pub trait Produce: Send + Sync + 'static {
    /// Resolves once the broker acknowledged the record (`Ok`) or the client
    /// gave up on it (`Err`; [`KafkaError::Canceled`] when the result was lost).
    type Delivery: Future<Output = Result<(), KafkaError>> + Send + Unpin + 'static;

    /// Hands one record to the client. `Err` when it was refused before it
    /// was queued (too large, queue full, unknown topic...).
    fn send(&self, rec: &StoredRecord, ce_type: &'static str)
        -> Result<Self::Delivery, KafkaError>;

    /// Fails everything queued and in flight at once (their deliveries resolve
    /// with an error); used before a producer is replaced.
    fn purge(&self);

    /// Waits until everything queued is delivered or `timeout` passes; returns
    /// how many records are still queued.
    fn flush(&self, timeout: Duration) -> BoxFuture<'static, i32>;
}

/// [`DeliveryFuture`] with the result reduced to what the forwarder uses.
pub struct RdDelivery(DeliveryFuture);

impl Future for RdDelivery {
    type Output = Result<(), KafkaError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        })
    }
}

impl Produce for KafkaPublisher {
    type Delivery = RdDelivery;

    fn send(
        &self,
        rec: &StoredRecord,
        ce_type: &'static str,
    ) -> Result<Self::Delivery, KafkaError> {
        let id = rec.id.hyphenated().to_string();
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_CONTENT_TYPE,
                value: Some(CONTENT_TYPE),
            })
            .insert(Header {
                key: HEADER_CE_ID,
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: HEADER_CE_TYPE,
                value: Some(ce_type),
            });
        let record = FutureRecord::to(&rec.topic)
            .key(rec.key.as_str())
            .payload(rec.value.as_slice())
            .headers(headers);
        self.producer()
            .send_result(record)
            .map(RdDelivery)
            .map_err(|(e, _)| e)
    }

    fn purge(&self) {
        KafkaPublisher::purge(self);
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'static, i32> {
        let me = self.clone();
        Box::pin(async move { KafkaPublisher::flush(&me, timeout).await })
    }
}
