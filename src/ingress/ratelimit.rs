//! Token-bucket rate limits per client address and per instance id.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` per second; a
//! request takes one token or is refused with the time until one is there
//! (the `Retry-After` of the 429). Refused requests take nothing.
//!
//! Memory is bounded: each limiter keeps at most `max_tracked` buckets, split
//! over [`SHARDS`] mutex-guarded maps so concurrent requests rarely contend.
//! When a shard is full, the buckets that have refilled completely are
//! dropped first (a full bucket is the same as no bucket, so nothing is lost);
//! if none has, the one untouched the longest goes, and that key starts over
//! with a full bucket: with more active keys than the cap, limits become
//! approximate but memory never grows. Checking a known key allocates nothing.
//!
//! Never knows about HTTP: the handler turns a refusal into a `Rejection`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::metrics::LimiterLabel;
use crate::config::{LimitsSettings, RateSettings};
use crate::metrics::Metrics;

/// Maps per limiter; a power of two.
pub const SHARDS: usize = 16;

/// A refusal: how long until the bucket holds a token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The bucket arithmetic, separate from the maps so it can be tested alone.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_sec: f64,
    burst: f64,
}

impl Rate {
    fn new(s: RateSettings) -> Self {
        Self {
            per_sec: s.rate,
            burst: f64::from(s.burst.max(1)),
        }
    }

    fn fresh(&self, now: Instant) -> Bucket {
        Bucket {
            tokens: self.burst,
            last: now,
        }
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        (b.tokens + elapsed * self.per_sec).min(self.burst)
    }

    fn take(&self, b: &mut Bucket, now: Instant) -> Result<(), Limited> {
        let tokens = self.refilled(b, now);
        if tokens >= 1.0 {
            b.tokens = tokens - 1.0;
            b.last = now;
            Ok(())
        } else {
            // Keep `last` and `tokens` consistent: store the refill so far.
            b.tokens = tokens;
            b.last = now;
            Err(Limited {
                retry_after: Duration::from_secs_f64((1.0 - tokens) / self.per_sec),
            })
        }
    }

    fn is_full(&self, b: &Bucket, now: Instant) -> bool {
        self.refilled(b, now) >= self.burst
    }
}

/// A bounded, sharded map of token buckets keyed by `K`.
pub struct Limiter<K> {
    rate: Rate,
    shards: Box<[Mutex<HashMap<K, Bucket>>]>,
    per_shard: usize,
    pick: RandomState,
    /// Counts evictions of buckets still in use, under this limiter label.
    evictions: Option<(Metrics, LimiterLabel)>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: RateSettings, max_tracked: usize) -> Self {
        let per_shard = max_tracked.div_ceil(SHARDS).max(1);
        Self {
            rate: Rate::new(rate),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            pick: RandomState::new(),
            evictions: None,
        }
    }

    /// Counts forced evictions in `presence_bridge_rate_limit_active_evictions_total`.
    pub fn counted(mut self, metrics: Metrics, limiter: LimiterLabel) -> Self {
        self.evictions = Some((metrics, limiter));
        self
    }

    /// Takes a token for `key` now.
    pub fn check<Q>(&self, key: &Q) -> Result<(), Limited>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_at(key, Instant::now())
    }

    fn check_at<Q>(&self, key: &Q, now: Instant) -> Result<(), Limited>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let shard = self.pick.hash_one(key) as usize & (SHARDS - 1);
        // A poisoned shard only means another request panicked mid-update of
        // plain numbers; the map is still usable.
        let mut map = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            return self.rate.take(b, now);
        }
        if map.len() >= self.per_shard {
            self.make_room(&mut map, now);
        }
        let mut b = self.rate.fresh(now);
        let result = self.rate.take(&mut b, now);
        map.insert(key.to_owned(), b);
        result
    }

    fn make_room(&self, map: &mut HashMap<K, Bucket>, now: Instant) {
        map.retain(|_, b| !self.rate.is_full(b, now));
        if map.len() < self.per_shard {
            return;
        }
        let oldest = map
            .iter()
            .min_by_key(|(_, b)| b.last)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            map.remove(&k);
            if let Some((metrics, limiter)) = &self.evictions {
                metrics.rate_limit_bucket_evicted(*limiter);
            }
        }
    }

    /// Buckets held now (for tests and gauges).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// The limits the webhook applies; each one optional.
#[derive(Default)]
pub struct RateLimits {
    pub per_client: Option<Limiter<IpAddr>>,
    pub per_instance: Option<Limiter<String>>,
}

impl RateLimits {
    pub fn new(s: &LimitsSettings, metrics: &Metrics) -> Self {
        let cap = s.max_tracked.get();
        Self {
            per_client: s
                .per_client
                .map(|r| Limiter::new(r, cap).counted(metrics.clone(), LimiterLabel::Client)),
            per_instance: s
                .per_instance
                .map(|r| Limiter::new(r, cap).counted(metrics.clone(), LimiterLabel::Instance)),
        }
    }

    pub fn client(&self, ip: IpAddr) -> Result<(), Limited> {
        self.per_client.as_ref().map_or(Ok(()), |l| l.check(&ip))
    }

    pub fn instance(&self, id: &str) -> Result<(), Limited> {
        self.per_instance.as_ref().map_or(Ok(()), |l| l.check(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(rate: f64, burst: u32) -> RateSettings {
        RateSettings { rate, burst }
    }

    #[test]
    fn burst_then_refill_at_rate() {
        let r = Rate::new(rate(2.0, 3));
        let t0 = Instant::now();
        let mut b = r.fresh(t0);
        for _ in 0..3 {
            assert!(r.take(&mut b, t0).is_ok());
        }
        let refused = r.take(&mut b, t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!(refused.retry_after_secs(), 1);
        // 499 ms later: still short of a token; 500 ms: exactly one.
        assert!(r.take(&mut b, t0 + Duration::from_millis(499)).is_err());
        assert!(r.take(&mut b, t0 + Duration::from_millis(500)).is_ok());
        assert!(r.take(&mut b, t0 + Duration::from_millis(500)).is_err());
        // A long pause refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(r.take(&mut b, later).is_ok());
        }
        assert!(r.take(&mut b, later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = Rate::new(rate(0.25, 1));
        let t0 = Instant::now();
        let mut b = r.fresh(t0);
        r.take(&mut b, t0).unwrap();
        let refused = r.take(&mut b, t0 + Duration::from_millis(100)).unwrap_err();
        assert_eq!(refused.retry_after_secs(), 4); // 3.9 s → 4
        let short = Limited {
            retry_after: Duration::from_millis(1),
        };
        assert_eq!(short.retry_after_secs(), 1);
        let exact = Limited {
            retry_after: Duration::from_secs(2),
        };
        assert_eq!(exact.retry_after_secs(), 2);
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let l: Limiter<String> = Limiter::new(rate(1.0, 1), 1024);
        let t0 = Instant::now();
        assert!(l.check_at("a", t0).is_ok());
        assert!(l.check_at("a", t0).is_err());
        assert!(l.check_at("b", t0).is_ok());
        assert_eq!(l.tracked(), 2);
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_go_first() {
        let cap = SHARDS * 4;
        let l: Limiter<u32> = Limiter::new(rate(1.0, 2), cap);
        let t0 = Instant::now();
        for k in 0..10_000u32 {
            let _ = l.check_at(&k, t0);
            assert!(l.tracked() <= cap, "{} buckets after {k}", l.tracked());
        }
        // An hour later every bucket is full again: new keys evict them and
        // an active key keeps its state only if it is not full.
        let later = t0 + Duration::from_secs(3600);
        assert!(l.check_at(&1_000_000, later).is_ok());
        assert!(l.check_at(&1_000_000, later).is_ok());
        assert!(l.check_at(&1_000_000, later).is_err());
        for k in 0..10_000u32 {
            let _ = l.check_at(&k, later);
        }
        assert!(l.tracked() <= cap);
    }

    #[test]
    fn eviction_drops_full_buckets_then_the_oldest() {
        let l: Limiter<u32> = Limiter::new(rate(1.0, 2), SHARDS * 3);
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let mut map = HashMap::new();
        map.insert(
            1,
            Bucket {
                tokens: 0.0,
                last: now,
            },
        ); // active
        map.insert(
            2,
            Bucket {
                tokens: 0.0,
                last: t0,
            },
        ); // refilled by now
        map.insert(
            3,
            Bucket {
                tokens: 2.0,
                last: now,
            },
        ); // full
        l.make_room(&mut map, now);
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), vec![1]);

        let mut map = HashMap::new();
        map.insert(
            1,
            Bucket {
                tokens: 0.0,
                last: now,
            },
        );
        map.insert(
            2,
            Bucket {
                tokens: 0.0,
                last: now - Duration::from_millis(5),
            },
        );
        map.insert(
            3,
            Bucket {
                tokens: 0.5,
                last: now,
            },
        );
        l.make_room(&mut map, now);
        let mut left: Vec<_> = map.keys().copied().collect();
        left.sort();
        assert_eq!(
            left,
            vec![1, 3],
            "the least recently used active bucket goes"
        );
    }

    #[test]
    fn forced_evictions_are_counted() {
        let (registry, metrics) = Metrics::standalone();
        let l: Limiter<u32> =
            Limiter::new(rate(1.0, 1), SHARDS).counted(metrics, LimiterLabel::Client);
        let t0 = Instant::now();
        // Every bucket emptied and still refilling: room only by force.
        for k in 0..(SHARDS as u32 * 8) {
            let _ = l.check_at(&k, t0);
        }
        let text = String::from_utf8(crate::metrics::render(&registry)).unwrap();
        let sample = r#"presence_bridge_rate_limit_active_evictions_total{limiter="client"} "#;
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(sample))
            .unwrap()
            .parse()
            .unwrap();
        // Each shard holds one bucket; all but the first key of a shard forced one out.
        assert_eq!(n, SHARDS as u64 * 8 - l.tracked() as u64);
        assert!(l.tracked() <= SHARDS);
    }
}
