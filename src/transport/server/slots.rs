//! Who holds the connection slots of a listener, and which connection gives
//! way when a new one needs a slot.
//!
//! Every open connection is in the [`Table`] with its [`Activity`]: how many
//! requests it has in flight and how many of those are still receiving their
//! body. That makes three standings ([`Standing`]):
//! - **idle**: no request in flight (keep-alive between requests, a request
//!   head or a TLS handshake still arriving). Closing it loses nothing.
//! - **receiving**: every request in flight is still receiving its body (the
//!   handler marks the end of a body through [`InFlight::received`]).
//!   Closing it loses nothing either: no body is complete, so no event was
//!   taken; the client gets no answer and may send again.
//! - **busy**: a body is complete and its answer is being worked out (for the
//!   webhook: waiting for the spool's commit). Never closed to free a slot.
//!
//! When every slot is taken, a new connection closes the connection idle the
//! longest, once it has been idle for [`IDLE_AFTER`]; if none is, one that
//! has been receiving for [`SLOW_BODY_AFTER`]: from the client address
//! holding the most connections, the one receiving the longest. So an
//! attacker's slow bodies push out each other, not a normal client's one. Under pressure (over 90 % of the slots
//! taken) the sweep closes idle connections after `pressure_idle_timeout` and
//! receiving ones after `pressure_body_timeout`: the header and body timeouts
//! shorten while slots are scarce.
//!
//! [`ClientSlots`] caps the connections of one client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a connection must have been idle before a new connection may
/// close it when every slot is taken: a client that has just connected is
/// sending its head and is not pushed out by the very next one.
pub const IDLE_AFTER: Duration = Duration::from_millis(20);

/// How long a receiving connection must have been receiving before a new
/// connection may close it when every slot is taken: a client sending its
/// body at a normal pace is done well within it (the body came with its head,
/// or a round trip later).
pub const SLOW_BODY_AFTER: Duration = Duration::from_millis(100);

/// What a connection is doing, as far as freeing its slot goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No request in flight, since then.
    Idle(Instant),
    /// Every request in flight still receiving its body, since then.
    Receiving(Instant),
    /// A request past its body is in flight.
    Busy,
}

impl Standing {
    /// True for a connection that can be dropped at once without losing an
    /// answer worked out for a complete request.
    pub fn can_drop(self) -> bool {
        !matches!(self, Self::Busy)
    }
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    receiving: usize,
    /// The last time the connection made progress: became idle, started a
    /// request from idle, or completed a body.
    since: Instant,
}

/// Requests of one connection: how many so far, how many in flight and
/// receiving, and since when. A few uncontended lock operations per request;
/// the connection's task is woken only when the request cap is reached.
pub struct Activity {
    requests: AtomicUsize,
    max_requests: usize,
    state: Mutex<State>,
    pub cap_reached: Notify,
}

impl Activity {
    pub fn new(max_requests: usize) -> Self {
        Self {
            requests: AtomicUsize::new(0),
            max_requests,
            state: Mutex::new(State {
                in_flight: 0,
                receiving: 0,
                since: Instant::now(),
            }),
            cap_reached: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn standing(&self) -> Standing {
        let s = self.state();
        if s.in_flight == 0 {
            Standing::Idle(s.since)
        } else if s.receiving == s.in_flight {
            Standing::Receiving(s.since)
        } else {
            Standing::Busy
        }
    }

    /// Counts a new request, receiving its body until [`InFlight::received`]
    /// or its end; true if it is the last one under the cap.
    pub fn begin(self: &Arc<Self>) -> (InFlight, bool) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut s = self.state();
            if s.in_flight == 0 {
                s.since = Instant::now();
            }
            s.in_flight += 1;
            s.receiving += 1;
        }
        if n == self.max_requests {
            self.cap_reached.notify_one();
        }
        let in_flight = InFlight {
            activity: self.clone(),
            receiving: AtomicBool::new(true),
        };
        (in_flight, n >= self.max_requests)
    }
}

/// A request in flight, its place in its connection's [`Activity`]; its end
/// (or abandonment) restarts the idle clock. The handler sees it through
/// [`super::RequestMeta`] and calls [`InFlight::received`] once the body is
/// complete, so that the connection is no longer one a new client may push
/// out. A handler that never calls it (its requests are answered at once)
/// loses nothing.
pub struct InFlight {
    activity: Arc<Activity>,
    receiving: AtomicBool,
}

impl InFlight {
    /// The body is read to its end (calling it again does nothing).
    pub fn received(&self) {
        let mut s = self.activity.state();
        if self.body_done(&mut s) {
            s.since = Instant::now();
        }
    }

    /// Ends the receiving phase once; true if it was still on.
    fn body_done(&self, s: &mut State) -> bool {
        let was = self.receiving.swap(false, Ordering::Relaxed);
        if was {
            s.receiving = s.receiving.saturating_sub(1);
        }
        was
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.activity.state();
        self.body_done(&mut s);
        s.in_flight = s.in_flight.saturating_sub(1);
        s.since = Instant::now();
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

/// Why a connection was told to close (the `reason` label of
/// `presence_bridge_http_connections_evicted_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Every slot taken: the connection idle the longest.
    SlotsFull,
    /// Every slot taken and none idle: the one receiving a body the longest.
    SlowBody,
    /// Under pressure, idle for `pressure_idle_timeout`.
    PressureTimeout,
    /// Under pressure, receiving for `pressure_body_timeout`.
    PressureBodyTimeout,
}

impl Eviction {
    pub const ALL: [Self; 4] = [
        Self::SlotsFull,
        Self::SlowBody,
        Self::PressureTimeout,
        Self::PressureBodyTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlotsFull => "slots_full",
            Self::SlowBody => "slow_body",
            Self::PressureTimeout => "pressure_timeout",
            Self::PressureBodyTimeout => "pressure_body_timeout",
        }
    }
}

/// The open connections of one listener, so that the ones doing nothing can
/// be closed to let others in (see the module doc). Choosing scans the table:
/// done only when the slots are full, or at most four times per
/// `pressure_idle_timeout` under pressure.
#[derive(Default)]
pub struct Table {
    conns: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    next: u64,
    entries: HashMap<u64, Tracked>,
}

struct Tracked {
    activity: Arc<Activity>,
    /// The client's address as [`ClientSlots`] counts it.
    client: IpAddr,
    evict: Arc<Notify>,
    /// Already told to close: not chosen again.
    evicting: bool,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Adds a connection; it leaves the table when the entry is dropped.
    pub fn register(
        self: &Arc<Self>,
        activity: Arc<Activity>,
        client: IpAddr,
    ) -> (TableEntry, Arc<Notify>) {
        let evict = Arc::new(Notify::new());
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        inner.entries.insert(
            id,
            Tracked {
                activity,
                client: client_key(client),
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

    /// Tells one connection to close to free its slot: the one idle the
    /// longest if that is at least [`IDLE_AFTER`], else, of those receiving
    /// for at least [`SLOW_BODY_AFTER`], the one receiving the longest from
    /// the address holding the most connections; None if none qualifies.
    pub fn evict_one(&self) -> Option<Eviction> {
        let now = Instant::now();
        let idle_before = now.checked_sub(IDLE_AFTER);
        let slow_before = now.checked_sub(SLOW_BODY_AFTER);
        let mut inner = self.lock();
        let mut held: HashMap<IpAddr, usize> = HashMap::new();
        for t in inner.entries.values() {
            *held.entry(t.client).or_default() += 1;
        }
        // Idle: the oldest. Slow: the most connections, then the oldest.
        let mut idle: Option<(Instant, &mut Tracked)> = None;
        let mut slow: Option<((usize, std::cmp::Reverse<Instant>), &mut Tracked)> = None;
        for t in inner.entries.values_mut().filter(|t| !t.evicting) {
            match t.activity.standing() {
                Standing::Idle(since)
                    if idle_before.is_some_and(|b| since <= b)
                        && idle.as_ref().is_none_or(|(s, _)| since < *s) =>
                {
                    idle = Some((since, t));
                }
                Standing::Receiving(since) if slow_before.is_some_and(|b| since <= b) => {
                    let rank = (held[&t.client], std::cmp::Reverse(since));
                    if slow.as_ref().is_none_or(|(r, _)| rank > *r) {
                        slow = Some((rank, t));
                    }
                }
                _ => {}
            }
        }
        let (t, why) = match (idle, slow) {
            (Some((_, t)), _) => (t, Eviction::SlotsFull),
            (None, Some((_, t))) => (t, Eviction::SlowBody),
            (None, None) => return None,
        };
        t.evicting = true;
        t.evict.notify_one();
        Some(why)
    }

    /// Tells every connection idle since `idle_before` or receiving since
    /// `receiving_before` (or longer) to close; returns how many of each.
    pub fn evict_stale(&self, idle_before: Instant, receiving_before: Instant) -> (u64, u64) {
        let (mut idle, mut receiving) = (0, 0);
        for t in self.lock().entries.values_mut().filter(|t| !t.evicting) {
            let stale = match t.activity.standing() {
                Standing::Idle(since) if since <= idle_before => &mut idle,
                Standing::Receiving(since) if since <= receiving_before => &mut receiving,
                _ => continue,
            };
            *stale += 1;
            t.evicting = true;
            t.evict.notify_one();
        }
        (idle, receiving)
    }
}

/// Over 90 % of the slots taken.
pub fn under_pressure(open: usize, max: usize) -> bool {
    open * 10 > max * 9
}

/// A connection's place in the [`Table`].
pub struct TableEntry {
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
pub struct ClientSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `ip`, or None if it already holds `max` connections.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
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

pub struct ClientSlot {
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

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    /// Waits for `evict` to be notified (it was told to close).
    async fn told(evict: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(1), evict.notified())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_go_first_then_slow_bodies_and_busy_ones_stay() {
        let table = Arc::new(Table::default());
        let old = Arc::new(Activity::new(10));
        // Its body started first, 3 s before the choice: slow.
        let slow = Arc::new(Activity::new(10));
        let (slow_req, _) = slow.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        // A request past its body: busy, whatever its age.
        let busy = Arc::new(Activity::new(10));
        let (busy_req, _) = busy.begin();
        busy_req.received();
        let slower = Arc::new(Activity::new(10));
        let (_slower_req, _) = slower.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        let young = Arc::new(Activity::new(10));
        tokio::time::advance(Duration::from_secs(1)).await;
        // A body that started just now: not slow yet.
        let fresh = Arc::new(Activity::new(10));
        let (_fresh_req, _) = fresh.begin();
        assert_eq!(busy.standing(), Standing::Busy);
        assert!(matches!(slow.standing(), Standing::Receiving(_)));
        // Registered youngest first: the order of the map is not the order chosen.
        let (_e6, fresh_evict) = table.register(fresh.clone(), ip(1));
        let (_e5, young_evict) = table.register(young.clone(), ip(1));
        let (_e4, slower_evict) = table.register(slower.clone(), ip(2));
        let (_e3, busy_evict) = table.register(busy.clone(), ip(3));
        let (_e2, slow_evict) = table.register(slow.clone(), ip(4));
        let (e1, old_evict) = table.register(old.clone(), ip(5));
        assert_eq!(table.len(), 6);
        assert_eq!(table.evict_one(), Some(Eviction::SlotsFull));
        assert!(told(&old_evict).await, "the oldest idle connection first");
        assert_eq!(table.evict_one(), Some(Eviction::SlotsFull));
        assert!(told(&young_evict).await, "then the next idle one");
        assert_eq!(table.evict_one(), Some(Eviction::SlowBody));
        assert!(
            told(&slow_evict).await,
            "then the body arriving the longest"
        );
        assert_eq!(table.evict_one(), Some(Eviction::SlowBody));
        assert!(told(&slower_evict).await);
        assert_eq!(
            table.evict_one(),
            None,
            "a busy and a fresh connection are left"
        );
        assert!(!told(&busy_evict).await && !told(&fresh_evict).await);
        tokio::time::advance(SLOW_BODY_AFTER).await;
        assert_eq!(table.evict_one(), Some(Eviction::SlowBody));
        assert!(told(&fresh_evict).await, "slow once past SLOW_BODY_AFTER");
        // The busy one becomes idle when its request ends, and then goes.
        drop(busy_req);
        drop(slow_req);
        let now = Instant::now();
        assert_eq!(table.evict_stale(now - Duration::from_secs(1), now), (0, 0));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(table.evict_stale(now + Duration::from_secs(1), now), (1, 0));
        assert!(told(&busy_evict).await, "idle long enough under pressure");
        drop(e1);
        assert_eq!(table.len(), 5, "a closed connection leaves the table");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_body_of_the_address_holding_most_connections_goes_first() {
        let table = Arc::new(Table::default());
        // The normal client's body has been arriving the longest...
        let client = Arc::new(Activity::new(10));
        let (_c, _) = client.begin();
        let (_ec, client_evict) = table.register(client.clone(), ip(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        // ...but the attacker holds three connections.
        let mut attacker = Vec::new();
        for _ in 0..3 {
            let a = Arc::new(Activity::new(10));
            let req = a.begin();
            let (entry, evict) = table.register(a.clone(), ip(9));
            attacker.push((a, req, entry, evict));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(table.evict_one(), Some(Eviction::SlowBody));
        assert!(told(&attacker[0].3).await, "the attacker's oldest first");
        assert!(!told(&client_evict).await);
        assert_eq!(table.evict_one(), Some(Eviction::SlowBody));
        assert!(told(&attacker[1].3).await);
        // Told to close but still open: it still counts for its address, so
        // the attacker (3) still outranks the client (1).
        assert_eq!(table.evict_one(), Some(Eviction::SlowBody));
        assert!(told(&attacker[2].3).await);
        assert_eq!(table.evict_one(), Some(Eviction::SlowBody));
        assert!(told(&client_evict).await, "only the client is left");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_bodies_arriving_past_the_shortened_timeout() {
        let table = Arc::new(Table::default());
        let a = Arc::new(Activity::new(10));
        let (_a_req, _) = a.begin();
        let (_ea, a_evict) = table.register(a.clone(), ip(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        let b = Arc::new(Activity::new(10));
        let (b_req, _) = b.begin();
        let (_eb, b_evict) = table.register(b.clone(), ip(2));
        let now = Instant::now();
        let body_before = now - Duration::from_secs(1);
        assert_eq!(
            table.evict_stale(now - Duration::from_secs(60), body_before),
            (0, 1)
        );
        assert!(told(&a_evict).await);
        // A second request on a connection whose first is past its body:
        // busy, not receiving.
        b_req.received();
        let (_b2, _) = b.begin();
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = Instant::now();
        assert_eq!(table.evict_stale(now, now), (0, 0));
        assert!(!told(&b_evict).await);
    }

    #[test]
    fn a_body_marked_twice_or_never_counts_once() {
        let a = Arc::new(Activity::new(10));
        let (req, _) = a.begin();
        req.received();
        req.received();
        let (req2, _) = a.begin();
        assert!(matches!(a.standing(), Standing::Busy));
        drop(req);
        assert!(matches!(a.standing(), Standing::Receiving(_)));
        // Abandoned before its body was complete.
        drop(req2);
        assert!(matches!(a.standing(), Standing::Idle(_)));
        assert_eq!(a.state().receiving, 0);
        assert_eq!(a.state().in_flight, 0);
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
