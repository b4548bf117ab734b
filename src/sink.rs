//! The seam between the ingress and whatever keeps accepted events.
//!
//! The webhook handler hands every validated, enveloped event to a [`Sink`]
//! and answers 200 only when the sink returns `Ok`: from then on the sink owns
//! the promise that the event is not lost. The sink is the durable spool
//! ([`crate::spool::Spool`], whose [`Sink`] implementation is here); tests
//! use fakes.

use std::future::Future;
use std::pin::Pin;

use crate::envelope::OutboundRecord;
use crate::spool::store::NewRecord;
use crate::spool::{RecordKind, Spool, SpoolError};

/// Why a sink could not take an event. Every variant is answered 503 with
/// `Retry-After`; the variant decides the metric reason and the log level.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The buffer is full: nothing is dropped to make room.
    #[error("the spool is full")]
    Full,
    /// Temporarily unable (disk error, timed out, stopping).
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
}

/// Resolves once the records of a [`Sink::queue_all`] are kept (`Ok`: they
/// will not be lost) or not (none of them is).
pub type Committing = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send>>;

/// Where accepted events go.
pub trait Sink: Send + Sync + 'static {
    /// Takes `record`. `Ok` means the event will not be lost.
    fn accept(&self, record: OutboundRecord) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Queues `records` to be kept together, in this order, after everything
    /// queued before; resolves once queued (so a caller can order its queueing
    /// with its own state under a lock) with what resolves once they are kept.
    /// The presence state ([`crate::state`]) writes an event and the
    /// contact's latest state this way.
    ///
    /// The default takes them one by one through [`Sink::accept`] (for sinks
    /// that keep nothing: tests).
    fn queue_all(
        &self,
        records: Vec<OutboundRecord>,
    ) -> impl Future<Output = Result<Committing, SinkError>> + Send {
        async move {
            for r in records {
                self.accept(r).await?;
            }
            Ok(Box::pin(std::future::ready(Ok(()))) as Committing)
        }
    }
}

fn new_record(record: OutboundRecord) -> NewRecord {
    NewRecord {
        arrival_ms: record.arrival_ms,
        id: record.id,
        kind: RecordKind(record.kind.code()),
        topic: record.topic,
        key: record.key,
        value: record.value,
    }
}

fn sink_error(e: SpoolError) -> SinkError {
    match e {
        SpoolError::Full => SinkError::Full,
        e => SinkError::Unavailable(e.to_string()),
    }
}

impl Sink for Spool {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        let tag = record.status_label;
        match self.append(new_record(record), tag).await {
            Ok(_) => Ok(()),
            Err(e) => Err(sink_error(e)),
        }
    }

    async fn queue_all(&self, records: Vec<OutboundRecord>) -> Result<Committing, SinkError> {
        let mut records = records.into_iter();
        let Some(first) = records.next() else {
            return Ok(Box::pin(std::future::ready(Ok(()))));
        };
        let tag = first.status_label;
        let more = records.map(new_record).collect();
        let queued = self
            .queue(new_record(first), more, tag)
            .await
            .map_err(sink_error)?;
        Ok(Box::pin(async move {
            queued.committed().await.map(drop).map_err(sink_error)
        }))
    }
}
