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
pub mod connections;
pub mod metrics;
pub mod ratelimit;
pub mod reply;
pub mod routes;

mod body;
mod capture;
mod encoding;
mod log;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response};
use percent_encoding::percent_decode_str;
use time::OffsetDateTime;

use crate::config::{KafkaSettings, RejectedSettings, Stream};
use crate::envelope::{new_event_id, OutboundRecord};
use crate::metrics::Metrics;
use crate::presence::{Callback, CallbackKind, InstanceId};
use crate::server::{CloseConnection, Handler, RequestMeta};
use crate::sink::Sink;
use access::Access;
use auth::{Auth, Grant};
use budget::BodyBudget;
use ratelimit::RateLimits;
use reply::{Outcome, Rejection};
use routes::Route;

use body::{declared_length, is_json, RequestBody};
pub use body::{Discard, DEFAULT_PRESSURE_READ_TIMEOUT, DISCARD_MAX_BYTES, DISCARD_TIMEOUT};
use capture::Captured;
use encoding::Encoding;
use log::body_instance;

/// Limits the handler enforces on each request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

/// The limits of message bodies and of gzip (see [`Webhook::with_messages`]).
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// `http.max_message_body_bytes`: the body limit of the any-type routes.
    pub max_bytes: usize,
    /// `http.max_decompression_ratio`.
    pub decompression_ratio: usize,
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
    messages: MessageLimits,
    /// Capture of invalid input (off unless `rejected.topic` is set).
    rejected: RejectedSettings,
    /// 503s (spool full or failing) come in floods: one log line per
    /// interval with a count, not one per request.
    unavailable_log: std::sync::Mutex<crate::spool::RepeatedError>,
    /// Connection state of the instances (see [`connections`]); none until
    /// [`Webhook::with_connections`].
    connections: Option<std::sync::Arc<connections::Connections>>,
    /// Presence as state (the latest topic, typing timers, [`crate::state`]);
    /// none until [`Webhook::with_presence_state`]: presence events then go
    /// to the sink alone.
    state: Option<std::sync::Arc<crate::state::PresenceState<S>>>,
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
            messages: MessageLimits {
                max_bytes: limits.max_bytes,
                decompression_ratio: 100,
            },
            rejected: RejectedSettings {
                topic: None,
                max_bytes: 0,
                content_mode: None,
            },
            unavailable_log: std::sync::Mutex::new(crate::spool::RepeatedError::new(
                crate::spool::LOG_REPEATS_EVERY,
            )),
            connections: None,
            state: None,
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

    /// Sets the body limit of the any-type routes and the gzip ratio
    /// (default: `limits.max_bytes` and 100).
    pub fn with_messages(mut self, messages: MessageLimits) -> Self {
        self.messages = messages;
        self
    }

    /// Keeps the instances' connection state up to date from accepted
    /// Connected/Disconnected callbacks (default: none kept).
    /// Presence events go through `state` ([`crate::state`]): the latest
    /// topic and the typing timers.
    pub fn with_presence_state(
        mut self,
        state: std::sync::Arc<crate::state::PresenceState<S>>,
    ) -> Self {
        self.state = Some(state);
        self
    }

    pub fn with_connections(
        mut self,
        connections: std::sync::Arc<connections::Connections>,
    ) -> Self {
        self.connections = Some(connections);
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
        arrival: Arrival<'_>,
        body: &mut RequestBody,
        captured: &mut Captured,
        instance: &mut Option<InstanceId>,
    ) -> Outcome {
        let Arrival {
            route,
            client,
            parts: req,
            meta,
        } = arrival;
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
        if *route == Route::Unknown {
            return Err(Rejection::NotFound);
        }
        let path_instance = route.instance_segment();
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
        let encoding = Encoding::of(&req.headers)?;
        // The presence routes read presence-sized bodies; the any-type
        // routes room for a long message (each kind is checked once parsed).
        let limit = if route.presence_only() {
            self.limits.max_bytes
        } else {
            self.messages.max_bytes
        };
        if declared_length(&req.headers).is_some_and(|len| len > limit as u64) {
            return Err(Rejection::PayloadTooLarge { limit });
        }
        captured.permit = self.reserve(client, body, limit).await?;
        let capture = self.rejected.topic.is_some();
        if capture {
            captured.content_type = req.headers.get(CONTENT_TYPE).cloned();
        }
        let body = self.read_body(body, limit).await?;
        // The body is complete: the connection is no longer one a new client
        // may push out to get a slot (server::slots).
        meta.body_received();
        let bounds = encoding::Bounds {
            limit,
            free: self.limits.max_bytes,
            ratio: self.messages.decompression_ratio,
        };
        let body = encoding::decode(encoding, body, bounds)?;
        if capture {
            captured.body = Some(body.clone());
        }
        let callback = match Callback::from_json(&body) {
            Ok(callback) => callback,
            Err(e) => {
                if instance.is_none() {
                    *instance = body_instance(&body);
                }
                return Err(e.into());
            }
        };
        let kind = callback.kind();
        if route.presence_only() && kind != CallbackKind::Presence {
            return Err(Rejection::NotPresence(kind));
        }
        // Every kind but a received message fits the presence-sized limit.
        if kind != CallbackKind::Received && body.len() > self.limits.max_bytes {
            return Err(Rejection::PayloadTooLarge {
                limit: self.limits.max_bytes,
            });
        }
        let event_instance = callback.instance_id();
        match instance.as_ref() {
            Some(p) if p != event_instance => return Err(Rejection::InstanceMismatch),
            Some(_) => {}
            None => {
                if let Err(refused) = self.admit_instance(grant, event_instance) {
                    *instance = Some(event_instance.clone());
                    return Err(refused);
                }
            }
        }

        let id = new_event_id();
        let topic = self
            .topics
            .stream_topic(stream_of(kind), event_instance.as_str());
        let time = OffsetDateTime::now_utc();
        // The sink counts the event as accepted when it commits it, so the
        // count stays exact even if the client hangs up while we wait.
        match (&callback, &self.state) {
            (Callback::Presence(event), Some(state)) if state.is_active() => {
                state.accept(event, topic, id, time).await?;
            }
            _ => {
                let record = OutboundRecord::from_callback(&callback, topic, id, time);
                self.sink.accept(record).await?;
            }
        }
        self.track_connection(&callback);
        log_accepted(&callback, id);
        Ok(id)
    }

    /// A connected or disconnected callback, once accepted, moves its
    /// instance's state ([`connections`]). A `DisconnectedCallback` whose
    /// `disconnected` is `false`, or a `ConnectedCallback` whose `connected`
    /// is `false`, says the opposite of its type and is taken at its word.
    fn track_connection(&self, callback: &Callback) {
        let Some(tracker) = &self.connections else {
            return;
        };
        let (c, connected) = match callback {
            Callback::Connected(c) => (c, c.flag.unwrap_or(true)),
            Callback::Disconnected(c) => (c, !c.flag.unwrap_or(true)),
            _ => return,
        };
        tracker.record(c.instance_id.as_str(), connected, c.moment_ms);
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
}

/// What is known of a request before its body is read.
#[derive(Clone, Copy)]
struct Arrival<'a> {
    route: &'a Route,
    /// The client address ([`access`]).
    client: Option<IpAddr>,
    parts: &'a Parts,
    meta: &'a RequestMeta,
}

/// The family of topics a kind of callback goes to.
fn stream_of(kind: CallbackKind) -> Stream {
    match kind {
        CallbackKind::Presence => Stream::Presence,
        CallbackKind::Received => Stream::Received,
        CallbackKind::Delivery => Stream::Delivery,
        CallbackKind::MessageStatus => Stream::MessageStatus,
        CallbackKind::Connected | CallbackKind::Disconnected => Stream::Connection,
    }
}

/// The debug line of an accepted callback: its kind and its key, masked
/// where it is a phone; never a message, a name or a URL.
fn log_accepted(callback: &Callback, id: uuid::Uuid) {
    let kind = callback.kind().label();
    match callback {
        Callback::Presence(e) => tracing::debug!(
            event_id = %id, kind, phone = %e.phone.masked(), status = e.status.as_str(), "event accepted"
        ),
        Callback::Received(e) => {
            tracing::debug!(event_id = %id, kind, chat = %e.chat.masked(), "event accepted")
        }
        Callback::Delivery(e) => {
            tracing::debug!(event_id = %id, kind, chat = %e.chat.masked(), "event accepted")
        }
        Callback::MessageStatus(e) => {
            tracing::debug!(event_id = %id, kind, chat = %e.chat.masked(), "event accepted")
        }
        Callback::Connected(e) | Callback::Disconnected(e) => {
            tracing::debug!(event_id = %id, kind, instance = e.instance_id.as_str(), "event accepted")
        }
    }
}

impl<S: Sink> Handler for Webhook<S> {
    async fn handle(&self, req: Request<Incoming>, meta: &RequestMeta) -> Response<Full<Bytes>> {
        let arrived = Instant::now();
        let (parts, body) = req.into_parts();
        let route = Route::parse(parts.uri.path());
        let method = method_label(&parts.method);
        let client = Some(self.access.client(meta.peer().ip(), &parts.headers));
        let mut captured = Captured::default();
        let mut body = RequestBody::Unread { body, read: 0 };
        let mut instance = None;
        let outcome = self
            .process(
                Arrival {
                    route: &route,
                    client,
                    parts: &parts,
                    meta,
                },
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
