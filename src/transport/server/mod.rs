//! The accept loop shared by the webhook and admin listeners: HTTP/1.1 and
//! HTTP/2 (h2c by prior knowledge, or `h2` by ALPN over native TLS, see
//! [`crate::tls`]) through hyper-util, bounded connections, and a graceful drain.
//!
//! [`serve`] takes its listener and a cancellation token: tests bind port 0
//! and cancel whenever they like. On cancellation it stops accepting, lets
//! in-flight requests finish (idle keep-alive connections are closed), and
//! returns once every connection is gone. The caller bounds that wait.
//!
//! Connection-level limits (see [`Limits`]): at most `max_connections` at
//! once, of which at most `max_connections_per_client` from one address (an
//! IPv6 /64), so one slow client cannot take every slot. Slots cannot be held
//! by connections that do nothing useful (see `slots.rs`): when every slot is
//! taken, a new connection closes the one idle the longest (no request in
//! flight: idle keep-alive, a head or a TLS handshake still arriving; for at
//! least [`IDLE_AFTER`]), else the one whose request body has been arriving
//! the longest (at least [`SLOW_BODY_AFTER`]; from the address holding the
//! most connections), instead of waiting; and under pressure (over 90 % of
//! the slots taken) connections idle for `pressure_idle_timeout` or receiving
//! a body for `pressure_body_timeout` are closed. Only when every connection
//! has a complete request in flight does a new one wait in the kernel's
//! backlog. The TLS handshake runs in the connection's own task and, like an
//! HTTP/1.1 request head, must finish within `header_read_timeout`; a
//! connection with no request in flight is closed after `header_read_timeout`
//! (HTTP/1.1 by hyper's head timer, which starts when the previous response
//! is done; HTTP/2, and a connection that has not sent anything yet, by the
//! idle watch here); after `max_requests_per_connection` requests a
//! connection is closed gracefully (HTTP/2: GOAWAY; HTTP/1.1: see below).
//! A connection being closed that is not done within 30 s is dropped.
//! Request heads over 64 KiB get 431 (HTTP/1.1); HTTP/2 header lists are
//! capped at the same size.
//!
//! Every HTTP/1.x answer after which the connection ends carries
//! `connection: close`, whatever its status: the answer to the last request
//! under the cap, an answer given while shutting down, and one the handler
//! marks [`CloseConnection`] (it left the request body unread). The header is
//! set here, when the answer leaves the handler, not left to the timing of the
//! graceful close: an answer ready at once would otherwise be written before
//! the close is requested, and a keep-alive client would send its next
//! request into a socket about to close.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::tls::Tls;

pub mod metrics;
mod slots;

use slots::{Activity, ClientSlots, InFlight, Standing, Table};
pub use slots::{Eviction, IDLE_AFTER, SLOW_BODY_AFTER};

/// Largest request head (HTTP/1.1) or header list (HTTP/2) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest a connection may take to finish once it is being closed (idle,
/// request cap, shutdown), e.g. an HTTP/2 client that never answers the
/// GOAWAY ping. Long enough for any request within the body read timeout.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake, to send a complete
    /// request head (HTTP/1.1), and longest a connection may sit idle.
    pub header_read_timeout: Duration,
    /// Connections one client address (an IPv6 /64) may hold at once; further
    /// ones are closed right after accept.
    pub max_connections_per_client: usize,
    /// Requests served on one connection before it is closed gracefully.
    pub max_requests_per_connection: usize,
    /// HTTP/2 streams and flow-control windows (sized from the body budget).
    pub http2: crate::ingress::budget::Http2Limits,
    /// Under pressure (over 90 % of `max_connections` open), a connection
    /// with no request in flight for this long is closed.
    pub pressure_idle_timeout: Duration,
    /// Under pressure, a connection whose requests have all been receiving
    /// their body for this long is closed (no answer: no body is complete).
    pub pressure_body_timeout: Duration,
    /// Which listener these are, for its metrics.
    pub listener: Listener,
}

/// The listener a connection metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listener {
    /// The webhook listener (`presence_bridge_http_connections_*`).
    #[default]
    Webhook,
    /// The admin listener (`presence_bridge_admin_connections_*`).
    Admin,
}

impl Default for Limits {
    fn default() -> Self {
        // An idle connection costs about 15 KiB (4,000 of them took 55 MiB:
        // benches/idle_connections.py), so many slots are cheap; at 64 per
        // address, 64 addresses are needed to fill them, and idle ones give
        // way anyway.
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(5),
            max_connections_per_client: 64,
            max_requests_per_connection: 1000,
            http2: Default::default(),
            pressure_idle_timeout: Duration::from_secs(1),
            pressure_body_timeout: Duration::from_secs(2),
            listener: Listener::Webhook,
        }
    }
}

/// What the server tells a handler of a request besides the request: the
/// direct TCP peer of its connection and its place in the connection's slot
/// accounting. Passed by reference beside the request, not as a request
/// extension: extensions cost a map and a box each, per request.
#[derive(Debug)]
pub struct RequestMeta {
    peer: SocketAddr,
    in_flight: Option<InFlight>,
}

impl RequestMeta {
    /// A request served outside a listener (tests, tools): `peer` as its
    /// peer, no slot to account.
    pub fn detached(peer: SocketAddr) -> Self {
        Self {
            peer,
            in_flight: None,
        }
    }

    /// The direct TCP peer of the connection.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The request's body is complete: its connection is no longer one a new
    /// client may push out to get a slot (the `slots` module). Calling it again,
    /// or never, is harmless.
    pub fn body_received(&self) {
        if let Some(in_flight) = &self.in_flight {
            in_flight.received();
        }
    }
}

/// A response extension: the connection must not carry another request after
/// this answer (the handler left the request body unread). Over HTTP/1.x the
/// answer gets `connection: close` and the connection ends after it; over
/// HTTP/2 it changes nothing (an unread body only ends its own stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseConnection;

/// A request handler: one async function from request to response.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        req: Request<Incoming>,
        meta: &RequestMeta,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Serves `handler` over plain HTTP on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: CancellationToken,
    metrics: Option<Metrics>,
) {
    serve_with_tls(listener, handler, limits, None, shutdown, metrics).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_with_tls<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: CancellationToken,
    metrics: Option<Metrics>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2.max_concurrent_streams)
        .initial_stream_window_size(limits.http2.initial_stream_window_size)
        .initial_connection_window_size(limits.http2.initial_connection_window_size)
        .max_send_buf_size(limits.http2.max_send_buf_size)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(ClientSlots::new(limits.max_connections_per_client));
    let table = Arc::new(Table::default());
    let tracker = TaskTracker::new();
    let mut sweep =
        tokio::time::interval((limits.pressure_idle_timeout / 4).max(Duration::from_millis(10)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sweep.tick() => {
                sweep_stale(&table, &limits, metrics.as_ref());
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if crate::lograte::admit(crate::lograte::Caller::Anonymous, "accept_failed") {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_client.acquire(peer.ip()) else {
            if let Some(m) = &metrics {
                m.connection_refused(limits.listener, metrics::Refusal::PerClientLimit);
            }
            if tracing::enabled!(tracing::Level::DEBUG)
                && crate::lograte::admit(
                    crate::lograte::Caller::Anonymous,
                    "connection_per_client_limit",
                )
            {
                tracing::debug!(%peer, "connection refused: per-client connection limit");
            }
            continue;
        };
        let room = make_room(&permits, &table, &limits, &shutdown, metrics.as_ref());
        let Some(permit) = room.await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new(limits.max_requests_per_connection));
        let (entry, evict) = table.register(activity.clone(), peer.ip());
        let conn = Connection {
            handler: handler.clone(),
            builder: builder.clone(),
            limits,
            peer,
            shutdown: shutdown.clone(),
            activity,
            evict,
        };
        let (tls, metrics) = (tls.clone(), metrics.clone());
        tracker.spawn(async move {
            if let Some(m) = &metrics {
                m.connection_opened(limits.listener);
            }
            match tls {
                None => conn.run(stream).await,
                Some(tls) => {
                    let handshake = crate::tls::handshake(
                        &tls,
                        stream,
                        limits.header_read_timeout,
                        metrics.as_ref(),
                    );
                    let stream = tokio::select! {
                        _ = conn.shutdown.cancelled() => None,
                        _ = conn.evict.notified() => None,
                        s = handshake => s,
                    };
                    if let Some(stream) = stream {
                        conn.run(stream).await;
                    }
                }
            }
            if let Some(m) = &metrics {
                m.connection_closed(limits.listener);
            }
            // Out of the table before the slot is free again.
            drop(entry);
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// A free connection slot: at once if there is one; otherwise a connection
/// doing nothing useful is closed to make one (see [`slots`]; looked for
/// again every [`IDLE_AFTER`] while none qualifies). None on shutdown.
async fn make_room(
    permits: &Arc<Semaphore>,
    table: &Table,
    limits: &Limits,
    shutdown: &CancellationToken,
    metrics: Option<&Metrics>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        match permits.clone().try_acquire_owned() {
            Ok(p) => return Some(p),
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {}
        }
        if let (Some(why), Some(m)) = (table.evict_one(), metrics) {
            m.connections_evicted(limits.listener, why, 1);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            p = permits.clone().acquire_owned() => return p.ok(),
            _ = tokio::time::sleep(IDLE_AFTER) => sweep_stale(table, limits, metrics),
        }
    }
}

/// Under pressure (over 90 % of the slots taken), tells every connection
/// idle for `pressure_idle_timeout`, or receiving a body for
/// `pressure_body_timeout`, to close.
fn sweep_stale(table: &Table, limits: &Limits, metrics: Option<&Metrics>) {
    if !slots::under_pressure(table.len(), limits.max_connections) {
        return;
    }
    let now = Instant::now();
    let (idle, receiving) = table.evict_stale(
        now.checked_sub(limits.pressure_idle_timeout).unwrap_or(now),
        now.checked_sub(limits.pressure_body_timeout).unwrap_or(now),
    );
    if let Some(m) = metrics {
        m.connections_evicted(limits.listener, Eviction::PressureTimeout, idle);
        m.connections_evicted(limits.listener, Eviction::PressureBodyTimeout, receiving);
    }
}

/// One accepted connection and what serving it needs.
struct Connection<H> {
    handler: Arc<H>,
    builder: Arc<Builder<TokioExecutor>>,
    limits: Limits,
    peer: SocketAddr,
    shutdown: CancellationToken,
    /// Its requests, as the [`Table`] sees them.
    activity: Arc<Activity>,
    /// Notified when the [`Table`] closes it to free its slot.
    evict: Arc<Notify>,
}

impl<H: Handler> Connection<H> {
    /// Serves HTTP on `io` until the client is done, the connection is idle
    /// too long or has served its requests, or shutdown; the last three close
    /// it gracefully (in-flight requests finish).
    async fn run<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
        let svc = {
            let (handler, activity, peer) = (self.handler.clone(), activity.clone(), self.peer);
            let shutdown = self.shutdown.clone();
            service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                let shutdown = shutdown.clone();
                let version = req.version();
                let (in_flight, last) = activity.begin();
                let meta = RequestMeta {
                    peer,
                    in_flight: Some(in_flight),
                };
                async move {
                    let mut resp = handler.handle(req, &meta).await;
                    let unreusable = resp.extensions_mut().remove::<CloseConnection>().is_some();
                    if version < Version::HTTP_2 && (last || unreusable || shutdown.is_cancelled())
                    {
                        resp.headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    drop(meta);
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let idle_limit = self.limits.header_read_timeout;
        let max_requests = self.limits.max_requests_per_connection;
        let mut closed_by: Option<Instant> = None;
        // Re-armed only when it fires: requests never touch the timer.
        let check = tokio::time::sleep(idle_limit);
        tokio::pin!(check);
        loop {
            let open = closed_by.is_none();
            let close = tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        if tracing::enabled!(tracing::Level::DEBUG)
                            && crate::lograte::admit(crate::lograte::Caller::Anonymous, "connection_error")
                        {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if open => true,
                _ = self.evict.notified(), if open => {
                    if activity.standing().can_drop() {
                        tracing::debug!(peer = %self.peer, "closing a connection to free its slot");
                        return;
                    }
                    // A body was completed meanwhile: its request finishes first.
                    true
                }
                _ = activity.cap_reached.notified(), if open => activity.requests() >= max_requests,
                _ = check.as_mut(), if open => {
                    // Idle for the whole limit? Otherwise look again when the
                    // current quiet spell (or a request's end) would reach it.
                    let now = Instant::now();
                    match activity.standing() {
                        Standing::Idle(since) if since + idle_limit <= now => {
                            if tracing::enabled!(tracing::Level::DEBUG)
                                && crate::lograte::admit(crate::lograte::Caller::Anonymous, "connection_idle_closed")
                            {
                                tracing::debug!(peer = %self.peer, "closing an idle connection");
                            }
                            true
                        }
                        Standing::Idle(since) => {
                            check.as_mut().reset(since + idle_limit);
                            false
                        }
                        Standing::Receiving(_) | Standing::Busy => {
                            check.as_mut().reset(now + idle_limit);
                            false
                        }
                    }
                }
                _ = tokio::time::sleep_until(closed_by.unwrap_or_else(Instant::now)), if !open => {
                    if tracing::enabled!(tracing::Level::DEBUG)
                        && crate::lograte::admit(crate::lograte::Caller::Anonymous, "connection_not_closed")
                    {
                        tracing::debug!(peer = %self.peer, "dropping a connection that did not close in time");
                    }
                    return;
                }
            };
            if close {
                conn.as_mut().graceful_shutdown();
                closed_by = Some(Instant::now() + CLOSE_GRACE);
            }
        }
    }
}
