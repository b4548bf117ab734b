//! The webhook ingress: routes, limits, authentication, and the handler that
//! turns a request into an accepted event or a [`Rejection`].
//!
//! Order of checks (each answered by [`reply::respond`], the only place that
//! decides statuses), cheapest and least trusting first:
//!
//! 1. client address against `access.allowed_clients` (403 `client_forbidden`)
//! 2. per-client rate limit (429 `rate_limited_client`)
//! 3. path (404) → method (405) → path instance syntax (400)
//! 4. token (401 `unauthorized`: missing or unknown)
//! 5. with an instance in the path: allowlist (403 `instance_forbidden`),
//!    token owner (403 `token_not_for_instance`), per-instance rate limit
//!    (429 `rate_limited_instance`), all before the body is read
//! 6. Content-Type (415) → Content-Length against the limit before reading
//!    (413) → body read under a size limit (413) and a timeout (408) →
//!    validation (400) → path/body instance match (400)
//! 7. without an instance in the path, the body's `instanceId` now goes
//!    through the checks of step 5 (same codes)
//! 8. the sink (200 or 503)
//!
//! With `rejected.topic` set, a request refused at validation or at the
//! path/body instance match (step 6) also has its body captured through the
//! sink (see [`crate::envelope::rejected`]); its answer stays the 400.
//!
//! So nothing is spooled that any check refused, an unauthenticated caller
//! cannot drain a tenant's rate limit, and instance allowlisting is not
//! revealed to callers without a token.
//!
//! Never logs a token, a query string, or a full phone number; the client
//! address is logged with rejections.

pub mod access;
pub mod auth;
pub mod ratelimit;
pub mod reply;
pub mod routes;

use std::net::IpAddr;
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
use crate::server::{Handler, Peer};
use crate::sink::{Sink, SinkError};
use access::Access;
use auth::{Auth, Grant};
use ratelimit::RateLimits;
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
    access: Access,
    rate: RateLimits,
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
            access: Access::default(),
            rate: RateLimits::default(),
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

    /// Adds the client allowlist, trusted proxies and rate limits (the
    /// default: everyone, no proxy, no limits).
    pub fn with_access(mut self, access: Access, rate: RateLimits) -> Self {
        self.access = access;
        self.rate = rate;
        self
    }

    async fn process(
        &self,
        route: &Route,
        client: Option<IpAddr>,
        req: Request<Incoming>,
        captured: &mut Captured,
    ) -> Outcome {
        if !self.access.allows(client) {
            return Err(Rejection::ClientForbidden);
        }
        if let Some(ip) = client {
            self.rate
                .client(ip)
                .map_err(|l| Rejection::RateLimitedClient {
                    retry_after: l.retry_after_secs(),
                })?;
        }
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
        let grant = self.auth.check(req.headers(), req.uri().query())?;
        if let Some(instance) = &path_instance {
            self.admit_instance(grant, instance)?;
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
        match &path_instance {
            Some(p) if *p != event.instance_id => return Err(Rejection::InstanceMismatch),
            Some(_) => {}
            None => self.admit_instance(grant, &event.instance_id)?,
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

    /// Allowlist, token owner and per-instance rate limit for `instance`.
    fn admit_instance(&self, grant: Grant, instance: &InstanceId) -> Result<(), Rejection> {
        self.auth.permits(grant, instance.as_str())?;
        self.rate
            .instance(instance.as_str())
            .map_err(|l| Rejection::RateLimitedInstance {
                retry_after: l.retry_after_secs(),
            })
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

    fn log_rejection(&self, rejection: &Rejection, client: Option<IpAddr>) {
        let client = client.map(tracing::field::display);
        match rejection {
            Rejection::Unavailable(SinkError::Unavailable(detail)) => {
                tracing::warn!(reason = rejection.code(), detail = %detail, "event not accepted: sink unavailable");
            }
            // Floods are counted in the metric; one log line each would flood too.
            Rejection::NotFound
            | Rejection::MethodNotAllowed
            | Rejection::RateLimitedClient { .. }
            | Rejection::RateLimitedInstance { .. } => {
                tracing::debug!(reason = rejection.code(), client, "request rejected");
            }
            other => {
                tracing::info!(reason = other.code(), client, detail = %other, "request rejected")
            }
        }
    }
}

impl<S: Sink> Handler for Webhook<S> {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let arrived = Instant::now();
        let route = Route::parse(req.uri().path());
        let method = method_label(req.method());
        let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
        let client = self.access.client(peer, req.headers());
        let mut captured = Captured::default();
        let outcome = self.process(&route, client, req, &mut captured).await;
        if let Err(rejection) = &outcome {
            self.metrics.event_rejected(rejection.code());
            self.log_rejection(rejection, client);
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
