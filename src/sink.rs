//! The seam between the ingress and whatever keeps accepted events.
//!
//! The webhook handler hands every validated, enveloped event to a [`Sink`]
//! and answers 200 only when the sink returns `Ok`: from then on the sink owns
//! the promise that the event is not lost. The sink is the durable spool
//! ([`crate::spool::Spool`]); tests use fakes.

use std::future::Future;

use crate::envelope::OutboundRecord;

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
