//! The memory budget for request bodies in flight: a byte semaphore for the
//! whole listener and one per client address, counted across HTTP/1.1 and
//! HTTP/2, plus the HTTP/2 flow-control and stream limits sized from it.
//!
//! Before the handler reads a body it reserves the body's size in bytes (its
//! `Content-Length` when known, else `http.max_body_bytes`) from the client's
//! share (`limits.body_budget_per_client_bytes`) and then from the global
//! budget (`limits.body_budget_bytes`). The reservation ([`BodyPermit`]) is
//! held until the request is answered, and so covers the bytes collected. A
//! body that cannot get its bytes within [`BUDGET_WAIT`] is refused without
//! being read: 429 when its client is over its share, 503 with
//! `Retry-After` when the whole budget is taken.
//!
//! Bytes the handler has not read yet sit in hyper's buffers: over HTTP/1.1
//! at most the read buffer of each connection; over HTTP/2 at most the
//! connection's flow-control window, which [`Http2Limits`] keeps at the
//! protocol's default (64 KiB) instead of hyper's 1 MiB. So memory for bodies
//! stays under the budget plus one window per open connection.
//!
//! Clients are counted by the address the access layer uses (the
//! `X-Forwarded-For` client behind a trusted proxy), IPv6 by /64. Requests
//! whose client is unknown share the global budget only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest a body waits for budget before it is refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// `Retry-After` (seconds) of a refusal for want of budget.
pub const BUDGET_RETRY_AFTER_SECS: u64 = 1;

pub use crate::bounds::{DEFAULT_BUDGET_BYTES, DEFAULT_PER_CLIENT_BYTES};

/// HTTP/2 flow-control window of a stream and of a connection: the
/// protocol's default, so one connection holds at most this much unread.
pub const HTTP2_WINDOW_BYTES: u32 = 65_535;
/// Most concurrent HTTP/2 streams per connection, whatever the budget.
pub const HTTP2_MAX_STREAMS: u32 = 256;
/// Bytes of response data buffered per HTTP/2 stream (answers are small).
pub const HTTP2_SEND_BUF_BYTES: usize = 64 * 1024;

/// Why a body got no budget (the `scope` label of
/// `presence_bridge_http_body_budget_exhausted_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// The whole budget is in use (503).
    #[error("the memory budget for request bodies is in use")]
    Global,
    /// This client's share is in use (429).
    #[error("this client's share of the memory budget for request bodies is in use")]
    Client,
}

impl Exhausted {
    pub const ALL: [Self; 2] = [Self::Global, Self::Client];

    pub fn scope(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Client => "client",
        }
    }
}

/// The HTTP/2 settings of the webhook listener, sized from the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub max_send_buf_size: usize,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Self::sized(DEFAULT_PER_CLIENT_BYTES, 64 * 1024)
    }
}

impl Http2Limits {
    /// One connection may have as many bodies in flight as its client's
    /// share holds at `max_body_bytes` each (at least 1, at most
    /// [`HTTP2_MAX_STREAMS`]); windows stay at the protocol default.
    pub fn sized(per_client_bytes: u64, max_body_bytes: u64) -> Self {
        let streams = (per_client_bytes / max_body_bytes.max(1)).clamp(1, HTTP2_MAX_STREAMS as u64);
        Self {
            max_concurrent_streams: streams as u32,
            initial_stream_window_size: HTTP2_WINDOW_BYTES,
            initial_connection_window_size: HTTP2_WINDOW_BYTES,
            max_send_buf_size: HTTP2_SEND_BUF_BYTES,
        }
    }
}

/// The budget's metrics.
#[derive(Clone)]
struct BudgetMetrics {
    in_use: IntGauge,
    exhausted: IntCounterVec,
}

impl BudgetMetrics {
    fn new(registry: Option<&Registry>) -> Result<Self, prometheus::Error> {
        let in_use = IntGauge::with_opts(
            Opts::new(
                "http_body_budget_bytes_in_use",
                "Bytes of the memory budget for request bodies reserved by bodies in flight.",
            )
            .namespace("presence_bridge"),
        )?;
        let exhausted = IntCounterVec::new(
            Opts::new(
                "http_body_budget_exhausted_total",
                "Request bodies refused because the memory budget for bodies was in use, by scope (global: 503, client: 429).",
            )
            .namespace("presence_bridge"),
            &["scope"],
        )?;
        for e in Exhausted::ALL {
            exhausted.with_label_values(&[e.scope()]);
        }
        if let Some(registry) = registry {
            registry.register(Box::new(in_use.clone()))?;
            registry.register(Box::new(exhausted.clone()))?;
        }
        Ok(Self { in_use, exhausted })
    }
}

/// The global budget and the clients' shares. Cheap to clone.
#[derive(Clone)]
pub struct BodyBudget {
    inner: Arc<Inner>,
}

struct Inner {
    total: u64,
    per_client: u64,
    global: Arc<Semaphore>,
    /// Semaphores of clients with a reservation or a wait in progress, and
    /// how many of those each has: entries go when that reaches 0.
    clients: Mutex<HashMap<IpAddr, (Arc<Semaphore>, usize)>>,
    metrics: BudgetMetrics,
    /// The most bytes reserved at once since [`BodyBudget::take_peak`].
    peak: AtomicU64,
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget")
            .field("total", &self.inner.total)
            .field("per_client", &self.inner.per_client)
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET_BYTES, DEFAULT_PER_CLIENT_BYTES, None)
            .expect("unregistered metrics cannot fail")
    }
}

impl BodyBudget {
    /// A budget of `total` bytes of which one client may hold `per_client`,
    /// its metrics registered in `registry` when given.
    pub fn new(
        total: u64,
        per_client: u64,
        registry: Option<&Registry>,
    ) -> Result<Self, prometheus::Error> {
        let total = total.min(Semaphore::MAX_PERMITS as u64);
        Ok(Self {
            inner: Arc::new(Inner {
                total,
                per_client: per_client.min(total),
                global: Arc::new(Semaphore::new(total as usize)),
                clients: Mutex::new(HashMap::new()),
                metrics: BudgetMetrics::new(registry)?,
                peak: AtomicU64::new(0),
            }),
        })
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.inner.total - self.inner.global.available_permits() as u64
    }

    /// Over 90 % of the budget reserved: bodies starting now get the shorter
    /// read timeout (`http.pressure_body_read_timeout`).
    pub fn under_pressure(&self) -> bool {
        self.in_use() * 10 > self.inner.total * 9
    }

    /// The most bytes reserved at once since the last call (the memory
    /// trimmer's cue that a burst has passed, see [`crate::memtrim`]).
    pub fn take_peak(&self) -> u64 {
        self.inner.peak.swap(self.in_use(), Ordering::Relaxed)
    }

    /// Clients with a reservation or a wait in progress.
    pub fn clients_tracked(&self) -> usize {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Reserves `bytes` (capped at the client's share) for a body of
    /// `client`, waiting at most [`BUDGET_WAIT`] in all.
    pub async fn reserve(
        &self,
        client: Option<IpAddr>,
        bytes: u64,
    ) -> Result<BodyPermit, Exhausted> {
        let inner = &self.inner;
        let bytes = bytes.min(inner.per_client).min(u32::MAX as u64) as u32;
        let deadline = tokio::time::Instant::now() + BUDGET_WAIT;
        let mut permit = BodyPermit {
            budget: self.clone(),
            client: None,
            client_bytes: None,
            global_bytes: None,
        };
        if let Some(ip) = client {
            let key = client_key(ip);
            let sem = {
                let mut clients = inner.clients.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = clients
                    .entry(key)
                    .or_insert_with(|| (Arc::new(Semaphore::new(inner.per_client as usize)), 0));
                entry.1 += 1;
                entry.0.clone()
            };
            // From here on, dropping `permit` gives the entry back.
            permit.client = Some(key);
            match tokio::time::timeout_at(deadline, sem.acquire_many_owned(bytes)).await {
                Ok(Ok(p)) => permit.client_bytes = Some(p),
                _ => return Err(self.exhausted(Exhausted::Client)),
            }
        }
        match tokio::time::timeout_at(deadline, inner.global.clone().acquire_many_owned(bytes))
            .await
        {
            Ok(Ok(p)) => permit.global_bytes = Some(p),
            _ => return Err(self.exhausted(Exhausted::Global)),
        }
        let in_use = self.in_use();
        inner.metrics.in_use.set(in_use as i64);
        inner.peak.fetch_max(in_use, Ordering::Relaxed);
        Ok(permit)
    }

    fn exhausted(&self, why: Exhausted) -> Exhausted {
        self.inner
            .metrics
            .exhausted
            .with_label_values(&[why.scope()])
            .inc();
        why
    }
}

/// Bytes of the budget held by one body; given back when dropped.
pub struct BodyPermit {
    budget: BodyBudget,
    client: Option<IpAddr>,
    client_bytes: Option<OwnedSemaphorePermit>,
    global_bytes: Option<OwnedSemaphorePermit>,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let inner = &self.budget.inner;
        drop(self.global_bytes.take());
        drop(self.client_bytes.take());
        if let Some(key) = self.client {
            let mut clients = inner.clients.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = clients.get_mut(&key) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    clients.remove(&key);
                }
            }
        }
        inner.metrics.in_use.set(self.budget.in_use() as i64);
    }
}

/// IPv4 addresses count one by one; IPv6 ones by /64 (as the listener's
/// per-address connection cap does).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_over_its_share_waits_then_gets_client_exhausted() {
        let budget = BodyBudget::new(1000, 300, None).unwrap();
        let a = budget.reserve(ip("192.0.2.1"), 200).await.unwrap();
        let started = tokio::time::Instant::now();
        let refused = budget.reserve(ip("192.0.2.1"), 200).await.err();
        assert_eq!(refused, Some(Exhausted::Client));
        assert_eq!(started.elapsed(), BUDGET_WAIT, "waits the bounded time");
        // Another client is not affected.
        let b = budget.reserve(ip("192.0.2.2"), 300).await.unwrap();
        assert_eq!(budget.in_use(), 500);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
        assert_eq!(
            budget.clients_tracked(),
            0,
            "entries go with the last permit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_budget_in_use_gives_global_exhausted() {
        let budget = BodyBudget::new(500, 300, None).unwrap();
        let _a = budget.reserve(ip("192.0.2.1"), 300).await.unwrap();
        let _b = budget.reserve(ip("192.0.2.2"), 200).await.unwrap();
        let refused = budget.reserve(ip("192.0.2.3"), 1).await.err();
        assert_eq!(refused, Some(Exhausted::Global));
        let refused = budget.reserve(None, 1).await.err();
        assert_eq!(refused, Some(Exhausted::Global));
        assert_eq!(budget.in_use(), 500);
        assert_eq!(budget.clients_tracked(), 2, "refused waits leave no entry");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_body_gets_bytes_freed_within_the_wait() {
        let budget = BodyBudget::new(100, 100, None).unwrap();
        let a = budget.reserve(ip("192.0.2.1"), 100).await.unwrap();
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(ip("192.0.2.1"), 60).await.is_ok() }
        });
        tokio::time::sleep(BUDGET_WAIT / 2).await;
        drop(a);
        assert!(waiter.await.unwrap());
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_is_capped_at_the_share_and_ipv6_counts_per_64() {
        let budget = BodyBudget::new(1000, 100, None).unwrap();
        let a = budget.reserve(ip("2001:db8:1:2::1"), 5000).await.unwrap();
        assert_eq!(budget.in_use(), 100);
        let refused = budget.reserve(ip("2001:db8:1:2::9"), 1).await.err();
        assert_eq!(refused, Some(Exhausted::Client));
        drop(a);
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_follow_reservations_and_refusals() {
        let registry = Registry::new();
        let budget = BodyBudget::new(100, 100, Some(&registry)).unwrap();
        let a = budget.reserve(ip("192.0.2.1"), 70).await.unwrap();
        assert_eq!(budget.inner.metrics.in_use.get(), 70);
        let _ = budget.reserve(ip("192.0.2.1"), 70).await;
        let _ = budget.reserve(ip("192.0.2.2"), 70).await;
        let m = &budget.inner.metrics.exhausted;
        assert_eq!(m.with_label_values(&["client"]).get(), 1);
        assert_eq!(m.with_label_values(&["global"]).get(), 1);
        drop(a);
        assert_eq!(budget.inner.metrics.in_use.get(), 0);
    }

    #[test]
    fn http2_limits_follow_the_share() {
        let d = Http2Limits::default();
        assert_eq!(d.max_concurrent_streams, 64);
        assert_eq!(d.initial_connection_window_size, 65_535);
        assert_eq!(Http2Limits::sized(1024, 65_536).max_concurrent_streams, 1);
        assert_eq!(
            Http2Limits::sized(1 << 40, 1).max_concurrent_streams,
            HTTP2_MAX_STREAMS
        );
    }
}
