//! `[limits]`: token buckets per instance and per client address, how many
//! buckets are kept, and the bytes of request bodies in flight at once. The
//! check against `http.max_body_bytes` is the loader's.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use super::values::nonzero;
use super::{invalid, ConfigError};
use crate::bounds::{DEFAULT_BUDGET_BYTES, DEFAULT_PER_CLIENT_BYTES};

#[derive(Debug, Clone, Serialize)]
pub struct LimitsSettings {
    /// Token bucket per instance id; None: no limit.
    pub per_instance: Option<RateSettings>,
    /// Token bucket per client address; None: no limit.
    pub per_client: Option<RateSettings>,
    /// Buckets each limiter keeps at most (idle, full ones are evicted first).
    pub max_tracked: NonZeroUsize,
    /// Bytes of request bodies in flight at once, all clients together.
    pub body_budget_bytes: u64,
    /// Bytes of request bodies in flight at once from one client address.
    pub body_budget_per_client_bytes: u64,
}

/// A token bucket: `rate` requests per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateSettings {
    pub rate: f64,
    pub burst: u32,
}

raw_section! {
    /// `[limits]` as read.
    pub struct RawLimits {
        per_instance: RawRate = RawRate::default(),
        per_client: RawRate = RawRate::default(),
        max_tracked: u64 = 65_536,
        body_budget_bytes: u64 = DEFAULT_BUDGET_BYTES,
        body_budget_per_client_bytes: u64 = DEFAULT_PER_CLIENT_BYTES,
    }
}

/// `rate` per second (0: off), `burst` (0: one second's worth).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRate {
    pub rate: f64,
    pub burst: u64,
}

impl TryFrom<RawLimits> for LimitsSettings {
    type Error = ConfigError;

    fn try_from(raw: RawLimits) -> Result<Self, ConfigError> {
        let limits = Self {
            per_instance: rate_settings("limits.per_instance", &raw.per_instance)?,
            per_client: rate_settings("limits.per_client", &raw.per_client)?,
            max_tracked: nonzero("limits.max_tracked", raw.max_tracked)?,
            body_budget_bytes: raw.body_budget_bytes,
            body_budget_per_client_bytes: raw.body_budget_per_client_bytes,
        };
        if limits.max_tracked.get() > 10_000_000 {
            return Err(invalid("limits.max_tracked", "must be at most 10000000"));
        }
        Ok(limits)
    }
}

impl LimitsSettings {
    /// The body budgets against the largest body (`http.max_body_bytes`):
    /// one client's share holds one body, the whole budget one client's share.
    pub(super) fn check_budgets(&self, max_body: u64) -> Result<(), ConfigError> {
        if self.body_budget_per_client_bytes < max_body {
            return Err(invalid(
                "limits.body_budget_per_client_bytes",
                format!(
                    "must be at least http.max_message_body_bytes ({max_body}), or no message could be read"
                ),
            ));
        }
        if self.body_budget_bytes < self.body_budget_per_client_bytes {
            return Err(invalid(
                "limits.body_budget_bytes",
                format!(
                    "must be at least limits.body_budget_per_client_bytes ({})",
                    self.body_budget_per_client_bytes
                ),
            ));
        }
        if self.body_budget_bytes > 1 << 40 {
            return Err(invalid("limits.body_budget_bytes", "must be at most 1 TiB"));
        }
        Ok(())
    }
}

fn rate_settings(key: &str, raw: &RawRate) -> Result<Option<RateSettings>, ConfigError> {
    if !raw.rate.is_finite() || raw.rate < 0.0 || raw.rate > 1e6 {
        return Err(invalid(
            format!("{key}.rate"),
            "must be a number of requests per second from 0 (off) to 1000000",
        ));
    }
    if raw.burst > 1_000_000 {
        return Err(invalid(format!("{key}.burst"), "must be at most 1000000"));
    }
    if raw.rate == 0.0 {
        if raw.burst != 0 {
            return Err(invalid(
                format!("{key}.rate"),
                "must be above 0 when burst is set (rate 0 turns the limit off)",
            ));
        }
        return Ok(None);
    }
    let burst = if raw.burst == 0 {
        // One second's worth, at least one request.
        raw.rate.ceil().max(1.0) as u32
    } else {
        raw.burst as u32
    };
    Ok(Some(RateSettings {
        rate: raw.rate,
        burst,
    }))
}
