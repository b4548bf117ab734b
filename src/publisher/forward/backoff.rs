//! Backoff jitter: deterministic from the forwarder's seed, so a simulation
//! replays, and a random seed for a real run.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::Forwarder;
use crate::publisher::produce::Produce;

impl<P: Produce> Forwarder<P> {
    /// A duration between half of `d` and `d`, from the seed and `salt`
    /// (deterministic: a simulation replays from its seed).
    pub(super) fn jitter(&self, d: Duration, salt: u64) -> Duration {
        jitter(d, self.seed ^ salt.rotate_left(17))
    }
}

/// A duration between half of `d` and `d`, chosen by `seed` (splitmix64).
pub(super) fn jitter(d: Duration, seed: u64) -> Duration {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let r = (z % 1000) as u32;
    d / 2 + d / 2 * r / 1000
}

/// A seed for the jitter of a real run.
pub fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_whole() {
        for seed in 0..100 {
            let j = jitter(Duration::from_secs(2), seed);
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_secs(2),
                "{j:?}"
            );
        }
    }
}
