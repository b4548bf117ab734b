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
//!    (413) → the body's bytes reserved from the memory budget, waiting at
//!    most a second (429 `body_budget_client`, 503 `body_budget_exhausted`,
//!    see [`budget`]) → body read under a size limit (413) and a timeout (408) →
//!    validation (400) → path/body instance match (400)
//! 7. without an instance in the path, the body's `instanceId` now goes
//!    through the checks of step 5 (same codes)
//! 8. the sink (200 or 503)
//!
//! A request answered before its body was read to its end (any rejection
//! before the body read, and 413 on the declared length or while reading) has
//! the rest of its body read and thrown away before the answer goes out, up
//! to [`DISCARD_MAX_BYTES`] in all (or `http.max_body_bytes` if larger) and
//! for at most [`DISCARD_TIMEOUT`]: an HTTP/2 client still uploading would
//! otherwise have its stream reset mid-upload and, with some clients (curl
//! 7.88), lose the answer; an HTTP/1.1 connection stays usable. A body that
//! cannot be discarded within those bounds (declared larger, `Expect:
//! 100-continue` over HTTP/1.1, too slow, broken), or one given up mid-read
//! (408, unreadable), marks the answer [`CloseConnection`]: over HTTP/1.1 it
//! carries `Connection: close` and the connection ends; over HTTP/2 the
//! stream alone is reset after the answer.
//!
//! With `rejected.topic` set, a request refused at validation or at the
//! path/body instance match (step 6) also has its body captured through the
//! sink (see [`crate::envelope::rejected`]); its answer stays the 400.
//!
//! So nothing is spooled that any check refused, an unauthenticated caller
//! cannot drain a tenant's rate limit, and instance allowlisting is not
//! revealed to callers without a token.
//!
//! Never logs a token, a query string, a raw path, or a full phone number;
//! rejections are logged with the client address, the route's template and,
//! when known, the instance id (a valid one from the path, or the body's).
//! Every rejection is counted in a metric; its log line is bounded by
//! [`crate::lograte`] (a quota per reason and interval, then a summary line
//! with the count), so no client can flood the logs.

pub mod access;
pub mod auth;
pub mod budget;
pub mod metrics;
pub mod ratelimit;
pub mod reply;
pub mod routes;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Request, Response, Version};
use percent_encoding::percent_decode_str;
use time::OffsetDateTime;

use crate::config::{KafkaSettings, RejectedSettings};
use crate::envelope::rejected::RejectedInput;
use crate::envelope::{new_event_id, OutboundRecord};
use crate::metrics::Metrics;
use crate::presence::{InstanceId, PresenceEvent};
use crate::server::{BodyProgress, CloseConnection, Handler, Peer};
use crate::sink::{Sink, SinkError};
use access::Access;
use auth::{Auth, Grant};
use budget::{BodyBudget, BodyPermit, Exhausted};
use ratelimit::RateLimits;
use reply::{Outcome, Rejection};
use routes::Route;

/// Longest the handler spends reading and throwing away the body of a request
/// it answers without needing the body (the body read timeout, if shorter).
/// A client already sending a small body finishes well within it.
pub const DISCARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The most body bytes the handler reads and throws away for a request it
/// answers without needing the body (`http.max_body_bytes` if larger): enough
/// for a body somewhat over the limit to be drained so its 413 arrives.
pub const DISCARD_MAX_BYTES: u64 = 1024 * 1024;

/// The default of `http.pressure_body_read_timeout`.
pub const DEFAULT_PRESSURE_READ_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Memory for bodies in flight (see [`budget`]).
    budget: BodyBudget,
    /// The read timeout of a body that starts while over 90 % of the budget
    /// is in use (the shorter of it and `limits.read_timeout` applies).
    pressure_read_timeout: Duration,
    /// Capture of invalid input (off unless `rejected.topic` is set).
    rejected: RejectedSettings,
    /// 503s (spool full or failing) come in floods: one log line per
    /// interval with a count, not one per request.
    unavailable_log: std::sync::Mutex<crate::spool::RepeatedError>,
}

/// Where a request's body stands when the handler has decided its answer.
enum RequestBody {
    /// Not read to its end: the request was answered from its head alone
    /// (`read` 0), or its body turned out too large after `read` bytes.
    Unread { body: Incoming, read: u64 },
    /// Read to its end.
    Read,
    /// Partly read, then given up (too slow, broken).
    Abandoned,
}

/// What became of the body of a request answered without reading it (the
/// `result` label of `presence_bridge_http_unread_bodies_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Read to its end and thrown away: the answer goes out normally.
    Discarded,
    /// Declared, or found while reading, larger than [`DISCARD_MAX_BYTES`]
    /// (or `http.max_body_bytes` if larger).
    TooLarge,
    /// Not complete within [`DISCARD_TIMEOUT`].
    Timeout,
    /// The client asked for `100 Continue` (HTTP/1.1): it has not sent the
    /// body and will not, once it has the answer.
    NotSent,
    /// The body stream failed (client reset, protocol error).
    Error,
}

impl Discard {
    pub const ALL: [Self; 5] = [
        Self::Discarded,
        Self::TooLarge,
        Self::Timeout,
        Self::NotSent,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discarded => "discarded",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::NotSent => "not_sent",
            Self::Error => "error",
        }
    }
}

/// What the handler keeps of a request in case it is rejected as invalid
/// (only when capture is on).
#[derive(Default)]
struct Captured {
    body: Option<Bytes>,
    content_type: Option<hyper::header::HeaderValue>,
    /// The body's bytes of the memory budget, held until the answer.
    permit: Option<BodyPermit>,
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
            budget: BodyBudget::default(),
            pressure_read_timeout: DEFAULT_PRESSURE_READ_TIMEOUT,
            rejected: RejectedSettings {
                topic: None,
                max_bytes: 0,
            },
            unavailable_log: std::sync::Mutex::new(crate::spool::RepeatedError::new(
                crate::spool::LOG_REPEATS_EVERY,
            )),
        }
    }

    /// Turns on the capture of invalid input (see [`crate::envelope::rejected`]).
    pub fn with_rejected(mut self, rejected: RejectedSettings) -> Self {
        self.rejected = rejected;
        self
    }

    /// Sets the memory budget for bodies in flight (default: 64 MiB, 4 MiB
    /// per client, unregistered metrics).
    pub fn with_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Sets the read timeout of bodies that start while over 90 % of the
    /// budget is in use (default [`DEFAULT_PRESSURE_READ_TIMEOUT`]).
    pub fn with_pressure_read_timeout(mut self, timeout: Duration) -> Self {
        self.pressure_read_timeout = timeout;
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
        req: &Parts,
        body: &mut RequestBody,
        captured: &mut Captured,
        instance: &mut Option<InstanceId>,
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
        if req.method != Method::POST {
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
        // From here on `instance` is the path's instance, known for logs.
        *instance = path_instance;
        let grant = self.auth.check(&req.headers, req.uri.query())?;
        if let Some(instance) = instance.as_ref() {
            self.admit_instance(grant, instance)?;
        }
        if !is_json(&req.headers) {
            return Err(Rejection::UnsupportedMediaType);
        }
        let limit = self.limits.max_bytes;
        if declared_length(&req.headers).is_some_and(|len| len > limit as u64) {
            return Err(Rejection::PayloadTooLarge { limit });
        }
        captured.permit = self.reserve(client, body).await?;
        let capture = self.rejected.topic.is_some();
        if capture {
            captured.content_type = req.headers.get(CONTENT_TYPE).cloned();
        }
        let body = self.read_body(body).await?;
        // The body is complete: the connection is no longer one a new client
        // may push out to get a slot (server::slots).
        if let Some(progress) = req.extensions.get::<BodyProgress>() {
            progress.received();
        }
        if capture {
            captured.body = Some(body.clone());
        }
        let event = match PresenceEvent::from_json(&body) {
            Ok(event) => event,
            Err(e) => {
                if instance.is_none() {
                    *instance = body_instance(&body);
                }
                return Err(e.into());
            }
        };
        match instance.as_ref() {
            Some(p) if *p != event.instance_id => return Err(Rejection::InstanceMismatch),
            Some(_) => {}
            None => {
                if let Err(refused) = self.admit_instance(grant, &event.instance_id) {
                    *instance = Some(event.instance_id);
                    return Err(refused);
                }
            }
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

    /// Reserves the memory budget for the body about to be read: its exact
    /// size when known (`Content-Length`), else `http.max_body_bytes`.
    /// Nothing for a body known to be empty.
    async fn reserve(
        &self,
        client: Option<IpAddr>,
        body: &RequestBody,
    ) -> Result<Option<BodyPermit>, Rejection> {
        let RequestBody::Unread { body, .. } = body else {
            return Ok(None);
        };
        let limit = self.limits.max_bytes as u64;
        let bytes = body.size_hint().exact().unwrap_or(limit).min(limit);
        if bytes == 0 {
            return Ok(None);
        }
        match self.budget.reserve(client, bytes).await {
            Ok(permit) => Ok(Some(permit)),
            Err(Exhausted::Client) => Err(Rejection::BodyBudgetClient {
                retry_after: budget::BUDGET_RETRY_AFTER_SECS,
            }),
            Err(Exhausted::Global) => Err(Rejection::BodyBudgetExhausted {
                retry_after: budget::BUDGET_RETRY_AFTER_SECS,
            }),
        }
    }

    /// Reads the whole body under the size limit and the read timeout. Leaves
    /// `body` [`RequestBody::Read`] if it was read to its end, still
    /// [`RequestBody::Unread`] if it is too large (the rest may be discarded),
    /// else [`RequestBody::Abandoned`].
    async fn read_body(&self, body: &mut RequestBody) -> Result<Bytes, Rejection> {
        let RequestBody::Unread {
            body: incoming,
            read,
        } = body
        else {
            return Err(Rejection::BodyUnreadable(
                "the body was already read".into(),
            ));
        };
        let limit = self.limits.max_bytes;
        let timeout = if self.budget.under_pressure() {
            self.pressure_read_timeout.min(self.limits.read_timeout)
        } else {
            self.limits.read_timeout
        };
        let collected =
            tokio::time::timeout(timeout, Limited::new(&mut *incoming, limit).collect()).await;
        match collected {
            Ok(Ok(c)) => {
                *body = RequestBody::Read;
                Ok(c.to_bytes())
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                *read = limit as u64;
                Err(Rejection::PayloadTooLarge { limit })
            }
            Ok(Err(e)) => {
                *body = RequestBody::Abandoned;
                Err(Rejection::BodyUnreadable(e.to_string()))
            }
            Err(_) => {
                *body = RequestBody::Abandoned;
                Err(Rejection::BodyTimeout)
            }
        }
    }

    /// The most body bytes (already read included) [`Self::discard`] takes.
    fn discard_limit(&self) -> u64 {
        DISCARD_MAX_BYTES.max(self.limits.max_bytes as u64)
    }

    /// Reads and throws away the body of a request answered without it, so
    /// the answer reaches a client that is still sending (see the module doc).
    /// Bounded by [`Self::discard_limit`] (counting the `read` bytes already
    /// taken) and [`DISCARD_TIMEOUT`]; holds no more than one frame in memory.
    async fn discard(&self, req: &Parts, mut body: Incoming, read: u64) -> Discard {
        let limit = self.discard_limit();
        if declared_length(&req.headers).is_some_and(|len| len > limit) {
            return Discard::TooLarge;
        }
        // Over HTTP/1.1 the first read would send `100 Continue`, asking for
        // a body nobody wants; HTTP/2 has no such handshake here.
        if req.version < Version::HTTP_2 && expects_continue(&req.headers) {
            return Discard::NotSent;
        }
        let bound = DISCARD_TIMEOUT.min(self.limits.read_timeout);
        let drain = async {
            let mut seen = read;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            seen += data.len() as u64;
                            if seen > limit {
                                return Discard::TooLarge;
                            }
                        }
                    }
                    Err(_) => return Discard::Error,
                }
            }
            Discard::Discarded
        };
        tokio::time::timeout(bound, drain)
            .await
            .unwrap_or(Discard::Timeout)
    }

    /// Stores an invalid request's body and reason through the sink, to the
    /// `rejected.topic`, when capture is on. The client's answer stays the 4xx.
    async fn capture(
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

    /// Logs a rejection with its reason, route template, client address and,
    /// when known (a valid instance in the path, or a parsed body), the
    /// instance id; never the raw path or query (tokens).
    fn log_rejection(
        &self,
        rejection: &Rejection,
        route: &Route,
        instance: Option<&InstanceId>,
        client: Option<IpAddr>,
    ) {
        let client = client.map(tracing::field::display);
        let route = route.template();
        let instance_id = instance.map(InstanceId::as_str);
        match rejection {
            Rejection::Unavailable(e) => {
                let detail = match e {
                    SinkError::Unavailable(detail) => detail.as_str(),
                    _ => "",
                };
                let key = format!("{}: {detail}", rejection.code());
                let repeats = self
                    .unavailable_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .should_log(&key, std::time::Instant::now());
                if let Some(repeats) = repeats {
                    tracing::warn!(reason = rejection.code(), detail, repeats, "events not accepted: the spool cannot take them (503); the same answer is logged once per interval, `repeats` since the last line");
                }
            }
            // Counted in the metric always; lines go through the limiter
            // (a quota per reason and interval, then one summary line).
            Rejection::NotFound
            | Rejection::MethodNotAllowed
            | Rejection::RateLimitedClient { .. }
            | Rejection::RateLimitedInstance { .. }
            | Rejection::BodyBudgetClient { .. }
            | Rejection::BodyBudgetExhausted { .. } => {
                if tracing::enabled!(tracing::Level::DEBUG)
                    && crate::lograte::admit(caller_of(rejection), rejection.code())
                {
                    tracing::debug!(
                        reason = rejection.code(),
                        route,
                        instance_id,
                        client,
                        "request rejected"
                    );
                }
            }
            other => {
                if tracing::enabled!(tracing::Level::INFO)
                    && crate::lograte::admit(caller_of(other), other.code())
                {
                    tracing::info!(
                        reason = other.code(),
                        route,
                        instance_id,
                        client,
                        detail = %other,
                        "request rejected"
                    )
                }
            }
        }
    }
}

/// Whose request a rejection refused, for the log limiter's budget: the
/// rejections answered before the token was accepted are anyone's.
fn caller_of(rejection: &Rejection) -> crate::lograte::Caller {
    use crate::lograte::Caller;
    match rejection {
        Rejection::ClientForbidden
        | Rejection::RateLimitedClient { .. }
        | Rejection::NotFound
        | Rejection::MethodNotAllowed
        | Rejection::InvalidPathInstance
        | Rejection::Unauthorized => Caller::Anonymous,
        Rejection::InstanceForbidden
        | Rejection::TokenNotForInstance
        | Rejection::RateLimitedInstance { .. }
        | Rejection::UnsupportedMediaType
        | Rejection::PayloadTooLarge { .. }
        | Rejection::BodyTimeout
        | Rejection::BodyUnreadable(_)
        | Rejection::Invalid(_)
        | Rejection::InstanceMismatch
        | Rejection::Unavailable(_)
        | Rejection::BodyBudgetClient { .. }
        | Rejection::BodyBudgetExhausted { .. } => Caller::Authenticated,
    }
}

impl<S: Sink> Handler for Webhook<S> {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let arrived = Instant::now();
        let (parts, body) = req.into_parts();
        let route = Route::parse(parts.uri.path());
        let method = method_label(&parts.method);
        let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip());
        let client = self.access.client(peer, &parts.headers);
        let mut captured = Captured::default();
        let mut body = RequestBody::Unread { body, read: 0 };
        let mut instance = None;
        let outcome = self
            .process(
                &route,
                client,
                &parts,
                &mut body,
                &mut captured,
                &mut instance,
            )
            .await;
        if let Err(rejection) = &outcome {
            self.metrics.request_rejected(rejection);
            self.log_rejection(rejection, &route, instance.as_ref(), client);
        }
        // Before the capture (which may wait on the sink): the client is
        // still sending, and the answer waits for this anyway.
        let reusable = match body {
            RequestBody::Read => true,
            RequestBody::Abandoned => false,
            // No body at all (a GET, `Content-Length: 0`): nothing to do.
            RequestBody::Unread { body, .. } if body.is_end_stream() => true,
            RequestBody::Unread { body, read } => {
                let discard = self.discard(&parts, body, read).await;
                self.metrics.unread_body(discard.as_str());
                discard == Discard::Discarded
            }
        };
        if let Err(rejection) = &outcome {
            self.capture(&route, instance.as_ref(), rejection, captured)
                .await;
        }
        let mut response = reply::respond(&outcome);
        if !reusable {
            response.extensions_mut().insert(CloseConnection);
        }
        self.metrics.request_answered(
            route.label(),
            method,
            response.status().as_u16(),
            arrived.elapsed(),
        );
        response
    }
}

/// The valid `instanceId` of a body that failed validation for another
/// reason, for the rejection's log line (only bodies of authenticated
/// requests get here; the rejection path alone pays for the second parse).
fn body_instance(body: &[u8]) -> Option<InstanceId> {
    #[derive(serde::Deserialize)]
    struct OnlyInstance<'a> {
        #[serde(rename = "instanceId", borrow)]
        instance_id: Option<std::borrow::Cow<'a, str>>,
    }
    let only: OnlyInstance<'_> = serde_json::from_slice(body).ok()?;
    InstanceId::parse(&only.instance_id?).ok()
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

/// `Expect: 100-continue` (the only expectation HTTP defines).
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
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

    #[test]
    fn a_failed_body_names_its_instance_only_when_valid() {
        let instance = |body: &str| body_instance(body.as_bytes()).map(|i| i.to_string());
        assert_eq!(
            instance(r#"{"phone":"12","instanceId":"tenant-b"}"#).as_deref(),
            Some("tenant-b")
        );
        assert_eq!(instance(r#"{"phone":"12","instanceId":"a b/c"}"#), None);
        assert_eq!(instance(r#"{"phone":"12","instanceId":7}"#), None);
        assert_eq!(instance(r#"{"phone":"12"}"#), None);
        assert_eq!(instance("not json"), None);
    }

    #[test]
    fn expect_continue_is_recognised_in_any_case() {
        for (value, want) in [
            ("100-continue", true),
            ("100-Continue", true),
            (" 100-continue ", true),
            ("something-else", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(EXPECT, HeaderValue::from_str(value).unwrap());
            assert_eq!(expects_continue(&h), want, "{value}");
        }
        assert!(!expects_continue(&HeaderMap::new()));
    }
}
