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
//! by connections that do nothing (see [`Table`]): when every slot is taken,
//! a new connection closes the one idle the longest (no request in flight:
//! idle keep-alive, a head or a TLS handshake still arriving) instead of
//! waiting; and under pressure (over 90 % of the slots taken) connections
//! idle for `pressure_idle_timeout` are closed. Only when every connection
//! has a request in flight does a new one wait in the kernel's backlog. The
//! TLS handshake runs in the connection's own task and, like an HTTP/1.1
//! request head, must
//! finish within `header_read_timeout`; a connection with no request in flight
//! is closed after `header_read_timeout` (HTTP/1.1 by hyper's head timer, which
//! starts when the previous response is done; HTTP/2, and a connection that
//! has not sent anything yet, by the idle watch here); after
//! `max_requests_per_connection` requests a connection is closed gracefully
//! (HTTP/2: GOAWAY; HTTP/1.1: see below).
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

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
        }
    }
}

/// The direct TCP peer of a connection, attached to every request it carries
/// as an extension (`req.extensions().get::<Peer>()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// A response extension: the connection must not carry another request after
/// this answer (the handler left the request body unread). Over HTTP/1.x the
/// answer gets `connection: close` and the connection ends after it; over
/// HTTP/2 it changes nothing (an unread body only ends its own stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseConnection;

/// A request handler: one async function from request to response.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send;
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
                table.sweep(&limits, metrics.as_ref());
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
                m.connection_refused("per_client_limit");
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
        let (entry, evict) = table.register(activity.clone());
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
                m.connection_opened();
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
                m.connection_closed();
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

/// A free connection slot: at once if there is one; otherwise the connection
/// idle the longest is closed to make one (again every 100 ms while none is
/// idle, in case the chosen one started a request meanwhile). None on shutdown.
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
        if table.evict_oldest_idle() {
            if let Some(m) = metrics {
                m.connections_evicted("slots_full", 1);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            p = permits.clone().acquire_owned() => return p.ok(),
            _ = tokio::time::sleep(Duration::from_millis(100)) => table.sweep(limits, metrics),
        }
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
            service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                let handler = handler.clone();
                let shutdown = shutdown.clone();
                let version = req.version();
                let (in_flight, last) = activity.begin();
                async move {
                    let mut resp = handler.handle(req).await;
                    let unreusable = resp.extensions_mut().remove::<CloseConnection>().is_some();
                    if version < Version::HTTP_2 && (last || unreusable || shutdown.is_cancelled())
                    {
                        resp.headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    drop(in_flight);
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
                    if activity.idle_since().is_some() {
                        tracing::debug!(peer = %self.peer, "closing an idle connection to free its slot");
                        return;
                    }
                    // A request started meanwhile: it finishes first.
                    true
                }
                _ = activity.cap_reached.notified(), if open => activity.requests() >= max_requests,
                _ = check.as_mut(), if open => {
                    // Idle for the whole limit? Otherwise look again when the
                    // current quiet spell (or a request's end) would reach it.
                    let now = Instant::now();
                    match activity.idle_since() {
                        Some(since) if since + idle_limit <= now => {
                            if tracing::enabled!(tracing::Level::DEBUG)
                                && crate::lograte::admit(crate::lograte::Caller::Anonymous, "connection_idle_closed")
                            {
                                tracing::debug!(peer = %self.peer, "closing an idle connection");
                            }
                            true
                        }
                        Some(since) => {
                            check.as_mut().reset(since + idle_limit);
                            false
                        }
                        None => {
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

/// Requests of one connection: how many so far, how many in flight, and
/// since when none is. Two uncontended lock operations per request; the
/// connection's task is woken only when the request cap is reached.
struct Activity {
    requests: AtomicUsize,
    max_requests: usize,
    state: Mutex<(usize, Instant)>,
    cap_reached: Notify,
}

impl Activity {
    fn new(max_requests: usize) -> Self {
        Self {
            requests: AtomicUsize::new(0),
            max_requests,
            state: Mutex::new((0, Instant::now())),
            cap_reached: Notify::new(),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// None while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        let (in_flight, since) = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (in_flight == 0).then_some(since)
    }

    /// Counts a new request; true if it is the last one under the cap.
    fn begin(self: &Arc<Self>) -> (InFlight, bool) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        if n == self.max_requests {
            self.cap_reached.notify_one();
        }
        (InFlight(self.clone()), n >= self.max_requests)
    }
}

/// A request in flight; its end (or abandonment) restarts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = state.0.saturating_sub(1);
        state.1 = Instant::now();
    }
}

/// The open connections of one listener, so that the ones doing nothing can
/// be closed to let others in. A connection is idle while it has no request
/// in flight: before its first request head is complete (or its TLS
/// handshake done), and between requests. Choosing scans the table: done
/// only when the slots are full, or at most four times per
/// `pressure_idle_timeout` under pressure.
#[derive(Default)]
struct Table {
    conns: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    next: u64,
    entries: HashMap<u64, Tracked>,
}

struct Tracked {
    activity: Arc<Activity>,
    evict: Arc<Notify>,
    /// Already told to close: not chosen again.
    evicting: bool,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Adds a connection; it leaves the table when the entry is dropped.
    fn register(self: &Arc<Self>, activity: Arc<Activity>) -> (TableEntry, Arc<Notify>) {
        let evict = Arc::new(Notify::new());
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        inner.entries.insert(
            id,
            Tracked {
                activity,
                evict: evict.clone(),
                evicting: false,
            },
        );
        (
            TableEntry {
                table: self.clone(),
                id,
            },
            evict,
        )
    }

    /// Tells the connection idle the longest to close; false if none is idle.
    fn evict_oldest_idle(&self) -> bool {
        let mut inner = self.lock();
        let oldest = inner
            .entries
            .values_mut()
            .filter(|t| !t.evicting)
            .filter_map(|t| t.activity.idle_since().map(|since| (since, t)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, t)) => {
                t.evicting = true;
                t.evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// Under pressure (over 90 % of the slots taken), tells every connection
    /// idle for `pressure_idle_timeout` to close.
    fn sweep(&self, limits: &Limits, metrics: Option<&Metrics>) {
        if under_pressure(self.len(), limits.max_connections) {
            let before = Instant::now() - limits.pressure_idle_timeout;
            let n = self.evict_idle_since(before);
            if let Some(m) = metrics {
                m.connections_evicted("pressure_timeout", n);
            }
        }
    }

    /// Tells every connection idle since `before` or longer to close; returns how many.
    fn evict_idle_since(&self, before: Instant) -> u64 {
        let mut n = 0;
        for t in self.lock().entries.values_mut() {
            if !t.evicting && t.activity.idle_since().is_some_and(|s| s <= before) {
                t.evicting = true;
                t.evict.notify_one();
                n += 1;
            }
        }
        n
    }
}

/// Over 90 % of the slots taken.
fn under_pressure(open: usize, max: usize) -> bool {
    open * 10 > max * 9
}

/// A connection's place in the [`Table`].
struct TableEntry {
    table: Arc<Table>,
    id: u64,
}

impl Drop for TableEntry {
    fn drop(&mut self) {
        self.table.lock().entries.remove(&self.id);
    }
}

/// Open connections per client address. Entries exist only while a client
/// has connections, so the map holds at most `max_connections` entries.
struct ClientSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientSlots {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `ip`, or None if it already holds `max` connections.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            key,
        })
    }
}

/// IPv4 addresses count one by one; IPv6 ones by /64 (what one host usually gets).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

struct ClientSlot {
    slots: Arc<ClientSlots>,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_gets_at_most_its_share_and_slots_come_back() {
        let slots = Arc::new(ClientSlots::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = slots.acquire(a).unwrap();
        let _s2 = slots.acquire(a).unwrap();
        assert!(slots.acquire(a).is_none());
        assert!(slots.acquire(b).is_some());
        drop(s1);
        assert!(slots.acquire(a).is_some());
        // Entries of clients with no connection are removed.
        let slots = Arc::new(ClientSlots::new(1));
        drop(slots.acquire(a));
        assert!(slots.open.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_the_longest_goes_first_and_busy_ones_stay() {
        let table = Arc::new(Table::default());
        let old = Arc::new(Activity::new(10));
        tokio::time::advance(Duration::from_secs(1)).await;
        let busy = Arc::new(Activity::new(10));
        let (in_flight, _) = busy.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        let young = Arc::new(Activity::new(10));
        // Registered youngest first: the order of the map is not the order chosen.
        let (_e3, young_evict) = table.register(young.clone());
        let (_e2, busy_evict) = table.register(busy.clone());
        let (e1, old_evict) = table.register(old.clone());
        assert_eq!(table.len(), 3);
        assert!(table.evict_oldest_idle());
        tokio::time::timeout(Duration::from_secs(1), old_evict.notified())
            .await
            .expect("the oldest idle connection is told to close");
        // Already closing: not chosen twice; the busy one is never chosen.
        assert!(table.evict_oldest_idle());
        tokio::time::timeout(Duration::from_secs(1), young_evict.notified())
            .await
            .expect("then the next idle one");
        assert!(!table.evict_oldest_idle(), "only a busy connection is left");
        let before = Instant::now();
        assert_eq!(table.evict_idle_since(before), 0);
        drop(in_flight);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(table.evict_idle_since(before + Duration::from_secs(1)), 1);
        tokio::time::timeout(Duration::from_secs(1), busy_evict.notified())
            .await
            .expect("idle long enough under pressure");
        drop(e1);
        assert_eq!(table.len(), 2, "a closed connection leaves the table");
    }

    #[test]
    fn pressure_starts_past_90_percent_of_the_slots() {
        assert!(!under_pressure(90, 100));
        assert!(under_pressure(91, 100));
        assert!(!under_pressure(9, 10));
        assert!(under_pressure(10, 10));
        assert!(!under_pressure(3686, 4096));
        assert!(under_pressure(3687, 4096));
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(x), client_key(y));
        assert_ne!(client_key(x), client_key(z));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
