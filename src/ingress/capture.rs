//! Capture of rejected input: with `rejected.topic` set, the body of a
//! request refused as invalid goes through the sink to that topic (see
//! [`crate::envelope::rejected`]); the client's answer stays the 4xx.

use bytes::Bytes;
use time::OffsetDateTime;

use super::budget::BodyPermit;
use super::reply::Rejection;
use super::routes::Route;
use super::Webhook;
use crate::envelope::rejected::RejectedInput;
use crate::envelope::{new_event_id, OutboundRecord};
use crate::presence::InstanceId;
use crate::sink::Sink;

/// What the handler keeps of a request in case it is rejected as invalid
/// (only when capture is on).
#[derive(Default)]
pub(super) struct Captured {
    pub(super) body: Option<Bytes>,
    pub(super) content_type: Option<hyper::header::HeaderValue>,
    /// The body's bytes of the memory budget, held until the answer.
    pub(super) permit: Option<BodyPermit>,
}

impl<S: Sink> Webhook<S> {
    /// Stores an invalid request's body and reason through the sink, to the
    /// `rejected.topic`, when capture is on. The client's answer stays the 4xx.
    pub(super) async fn capture(
        &self,
        route: &Route,
        instance: Option<&InstanceId>,
        rejection: &Rejection,
        captured: Captured,
    ) {
        let (Some(topic), Some(body)) = (&self.rejected.topic, captured.body) else {
            return;
        };
        if !rejection.is_invalid_input() {
            return;
        }
        let message = rejection.to_string();
        let input = RejectedInput {
            reason: rejection.code(),
            message: &message,
            field: rejection.field(),
            status: rejection.status().as_u16(),
            path_instance: match route {
                Route::PresenceForInstance(raw) => Some(raw.as_str()),
                _ => None,
            },
            content_type: captured.content_type.as_ref().and_then(|v| v.to_str().ok()),
            body: &body,
        };
        let record = OutboundRecord::rejected(
            &input,
            self.rejected.max_bytes,
            topic,
            new_event_id(),
            OffsetDateTime::now_utc(),
        );
        match self.sink.accept(record).await {
            Ok(()) => self.metrics.rejected_input_captured(true),
            Err(e) => {
                self.metrics.rejected_input_captured(false);
                tracing::warn!(
                    reason = rejection.code(),
                    route = route.template(),
                    instance_id = instance.map(InstanceId::as_str),
                    error = %e,
                    "rejected input could not be captured"
                );
            }
        }
    }
}
