//! The seam between the ingress and whatever keeps accepted events.
//!
//! The webhook handler hands every validated, enveloped event to a [`Sink`]
//! and answers 200 only when the sink returns `Ok`: from then on the sink owns
//! the promise that the event is not lost. The sink is the durable spool
//! ([`crate::spool::Spool`], whose [`Sink`] implementation is here); tests
//! use fakes.

use std::future::Future;

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

/// Where accepted events go.
pub trait Sink: Send + Sync + 'static {
    /// Takes `record`. `Ok` means the event will not be lost.
    fn accept(&self, record: OutboundRecord) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl Sink for Spool {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        let new = NewRecord {
            arrival_ms: record.arrival_ms,
            id: record.id,
            kind: RecordKind(record.kind.code()),
            topic: record.topic,
            key: record.key,
            value: record.value,
        };
        match self.append(new, record.status_label).await {
            Ok(_) => Ok(()),
            Err(SpoolError::Full) => Err(SinkError::Full),
            Err(e) => Err(SinkError::Unavailable(e.to_string())),
        }
    }
}
