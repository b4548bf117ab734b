//! The webhook ingress: routes, limits, authentication, and the handler that
//! turns a request into an accepted event or a [`Rejection`].
//!
//! Order of checks (each answered by [`reply::respond`], the only place that
//! decides statuses): path (404) → method (405) → path instance (400) →
//! token (401) → Content-Type (415) → Content-Length against the limit before
//! reading (413) → body read under a size limit (413) and a timeout (408) →
//! validation (400) → path/body instance match (400) → the sink (200 or 503).
//! With `rejected.topic` set, a request rejected at validation or at the
//! instance match also has its body captured through the sink (see
//! [`crate::envelope::rejected`]); its answer stays the 400.
//!
//! Never logs a token, a query string, or a full phone number.

pub mod auth;
pub mod reply;
pub mod routes;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response};
use percent_encoding::percent_decode_str;
use time::OffsetDateTime;

use crate::config::{KafkaSettings, RejectedSettings};
use crate::envelope::rejected::RejectedInput;
use crate::envelope::{new_event_id, OutboundRecord};
use crate::metrics::Metrics;
use crate::presence::{InstanceId, PresenceEvent};
use crate::server::Handler;
use crate::sink::{Sink, SinkError};
use auth::Auth;
use reply::{Outcome, Rejection};
use routes::Route;

/// Limits the handler enforces on each request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

/// The webhook handler, generic over where accepted events go.
pub struct Webhook<S> {
    sink: S,
    auth: Auth,
    limits: BodyLimits,
    topics: KafkaSettings,
    metrics: Metrics,
    /// Capture of invalid input (off unless `rejected.topic` is set).
    rejected: RejectedSettings,
}

/// What the handler keeps of a request in case it is rejected as invalid
/// (only when capture is on).
#[derive(Default)]
struct Captured {
    body: Option<Bytes>,
    content_type: Option<hyper::header::HeaderValue>,
}

impl<S: Sink> Webhook<S> {
    pub fn new(
        sink: S,
        auth: Auth,
        limits: BodyLimits,
        topics: KafkaSettings,
        metrics: Metrics,
    ) -> Self {
        Self {
            sink,
            auth,
            limits,
            topics,
            metrics,
            rejected: RejectedSettings {
                topic: None,
                max_bytes: 0,
            },
        }
    }

    /// Turns on the capture of invalid input (see [`crate::envelope::rejected`]).
    pub fn with_rejected(mut self, rejected: RejectedSettings) -> Self {
        self.rejected = rejected;
        self
    }

    async fn process(
        &self,
        route: &Route,
        req: Request<Incoming>,
        captured: &mut Captured,
    ) -> Outcome {
        let path_instance = match route {
            Route::Unknown => return Err(Rejection::NotFound),
            Route::Presence => None,
            Route::PresenceForInstance(raw) => Some(raw),
        };
        if req.method() != Method::POST {
            return Err(Rejection::MethodNotAllowed);
        }
        let path_instance = path_instance
            .map(|raw| {
                let decoded = percent_decode_str(raw)
                    .decode_utf8()
                    .map_err(|_| Rejection::InvalidPathInstance)?;
                InstanceId::parse(&decoded).map_err(|_| Rejection::InvalidPathInstance)
            })
            .transpose()?;
        if !self.auth.allows(req.headers(), req.uri().query()) {
            return Err(Rejection::Unauthorized);
        }
        if !is_json(req.headers()) {
            return Err(Rejection::UnsupportedMediaType);
        }
        let limit = self.limits.max_bytes;
        if declared_length(req.headers()).is_some_and(|len| len > limit as u64) {
            return Err(Rejection::PayloadTooLarge { limit });
        }
        let capture = self.rejected.topic.is_some();
        if capture {
            captured.content_type = req.headers().get(CONTENT_TYPE).cloned();
        }
        let body = self.read_body(req.into_body()).await?;
        if capture {
            captured.body = Some(body.clone());
        }
        let event = PresenceEvent::from_json(&body)?;
        if path_instance.is_some_and(|p| p != event.instance_id) {
            return Err(Rejection::InstanceMismatch);
        }

        let id = new_event_id();
        let topic = self.topics.topic_for(event.instance_id.as_str());
        let record = OutboundRecord::new(&event, topic, id, OffsetDateTime::now_utc());
        // The sink counts the event as accepted when it commits it, so the
        // count stays exact even if the client hangs up while we wait.
        self.sink.accept(record).await?;
        tracing::debug!(
            event_id = %id,
            phone = %event.phone.masked(),
            status = event.status.as_str(),
            "event accepted"
        );
        Ok(id)
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, Rejection> {
        let limit = self.limits.max_bytes;
        let collected = tokio::time::timeout(
            self.limits.read_timeout,
            Limited::new(body, limit).collect(),
        )
        .await
        .map_err(|_| Rejection::BodyTimeout)?;
        match collected {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Rejection::PayloadTooLarge { limit })
            }
            Err(e) => Err(Rejection::BodyUnreadable(e.to_string())),
        }
    }

    /// Stores an invalid request's body and reason through the sink, to the
    /// `rejected.topic`, when capture is on. The client's answer stays the 4xx.
    async fn capture(&self, route: &Route, rejection: &Rejection, captured: Captured) {
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
                tracing::warn!(reason = rejection.code(), error = %e, "rejected input could not be captured");
            }
        }
    }

    fn log_rejection(&self, rejection: &Rejection) {
        match rejection {
            Rejection::Unavailable(SinkError::Unavailable(detail)) => {
                tracing::warn!(reason = rejection.code(), detail = %detail, "event not accepted: sink unavailable");
            }
            Rejection::NotFound | Rejection::MethodNotAllowed => {
                tracing::debug!(reason = rejection.code(), "request rejected");
            }
            other => tracing::info!(reason = other.code(), detail = %other, "request rejected"),
        }
    }
}

impl<S: Sink> Handler for Webhook<S> {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let arrived = Instant::now();
        let route = Route::parse(req.uri().path());
        let method = method_label(req.method());
        let mut captured = Captured::default();
        let outcome = self.process(&route, req, &mut captured).await;
        if let Err(rejection) = &outcome {
            self.metrics.event_rejected(rejection.code());
            self.log_rejection(rejection);
            self.capture(&route, rejection, captured).await;
        }
        let response = reply::respond(&outcome);
        self.metrics.request_answered(
            route.label(),
            method,
            response.status().as_u16(),
            arrived.elapsed(),
        );
        response
    }
}

/// `application/json`, or any `application/*+json`, with optional parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Metric label for a method (closed set).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::POST => "POST",
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn json_media_types() {
        for (ct, want) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/cloudevents+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            assert_eq!(is_json(&h), want, "{ct}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
