//! `[presence]`: presence as state: how long a typing status (COMPOSING,
//! RECORDING) lasts without anything newer before the bridge expires it, and
//! how many typing contacts it keeps timers for.

use std::time::Duration;

use serde::Serialize;

use super::values::{human, DurOrOff};
use super::{invalid, ConfigError};

/// The longest `presence.typing_ttl` taken: WhatsApp clients drop a typing
/// indicator after about 15 s; minutes would be a configuration mistake.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// The most timers `presence.max_typing_timers` allows (about 360 bytes each,
/// `cargo bench --bench typing_timers`).
const MAX_TIMERS: u64 = 50_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct PresenceSettings {
    /// A COMPOSING or RECORDING with nothing newer for its (instance, phone)
    /// within this expires (an expiry event, PAUSED in the latest topic).
    /// Zero: off (no timers, no `typingExpiresAt`).
    #[serde(with = "human")]
    pub typing_ttl: Duration,
    /// Typing contacts with a timer at most; past it a typing event is still
    /// delivered with its `typingExpiresAt`, without a timer (counted in
    /// `presence_bridge_typing_timers_dropped_total`).
    pub max_typing_timers: u64,
}

impl PresenceSettings {
    /// The TTL, `None` when off.
    pub fn ttl(&self) -> Option<Duration> {
        (!self.typing_ttl.is_zero()).then_some(self.typing_ttl)
    }
}

raw_section! {
    /// `[presence]` as read.
    pub struct RawPresence {
        typing_ttl: DurOrOff = DurOrOff(Duration::from_secs(15)),
        max_typing_timers: u64 = 250_000,
    }
}

impl TryFrom<RawPresence> for PresenceSettings {
    type Error = ConfigError;

    fn try_from(raw: RawPresence) -> Result<Self, ConfigError> {
        let ttl = raw.typing_ttl.0;
        if ttl > MAX_TTL || !ttl.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(invalid(
                "presence.typing_ttl",
                "must be whole milliseconds, at most 1h (0s turns expiry off)",
            ));
        }
        if raw.max_typing_timers == 0 || raw.max_typing_timers > MAX_TIMERS {
            return Err(invalid(
                "presence.max_typing_timers",
                format!("must be 1 to {MAX_TIMERS} (set presence.typing_ttl = \"0s\" to turn expiry off)"),
            ));
        }
        Ok(Self {
            typing_ttl: ttl,
            max_typing_timers: raw.max_typing_timers,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    fn load(pairs: &[(&str, &str)]) -> Result<super::PresenceSettings, String> {
        let env = pairs
            .iter()
            .map(|(k, v)| (format!("PRESENCE_BRIDGE__PRESENCE__{k}"), (*v).to_owned()));
        crate::config::load(None, env)
            .map(|s| s.presence)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_zero_turns_expiry_off_and_bad_values_are_named() {
        let d = load(&[]).unwrap();
        assert_eq!(d.ttl(), Some(Duration::from_secs(15)));
        assert_eq!(d.max_typing_timers, 250_000);
        assert_eq!(load(&[("TYPING_TTL", "0s")]).unwrap().ttl(), None);
        assert_eq!(
            load(&[("TYPING_TTL", "10s")]).unwrap().ttl(),
            Some(Duration::from_secs(10))
        );
        for bad in ["2h", "1500us", "soon"] {
            let e = load(&[("TYPING_TTL", bad)]).unwrap_err();
            assert!(e.contains("presence.typing_ttl"), "{bad}: {e}");
        }
        for bad in ["0", "50000001"] {
            let e = load(&[("MAX_TYPING_TIMERS", bad)]).unwrap_err();
            assert!(e.contains("presence.max_typing_timers"), "{bad}: {e}");
        }
    }
}
