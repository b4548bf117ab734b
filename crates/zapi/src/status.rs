//! [`PresenceStatus`]: the `status` field of a callback, the five documented
//! values in any letter case, or a future one kept as [`PresenceStatus::Other`]
//! (Z-API does not retry, so an unknown status is forwarded, not rejected).
//! Its metric label is a closed set: the known values and `OTHER`.

use crate::PresenceError;

/// Longest accepted status string (for unknown future statuses).
pub const MAX_STATUS_LEN: usize = 32;

/// A chat presence status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceStatus {
    Unavailable,
    Available,
    Composing,
    Paused,
    Recording,
    /// A status the provider's page does not list yet, uppercased.
    Other(String),
}

impl PresenceStatus {
    pub fn parse(raw: &str) -> Result<Self, PresenceError> {
        let raw = raw.trim();
        const KNOWN: [(&str, PresenceStatus); 5] = [
            ("UNAVAILABLE", PresenceStatus::Unavailable),
            ("AVAILABLE", PresenceStatus::Available),
            ("COMPOSING", PresenceStatus::Composing),
            ("PAUSED", PresenceStatus::Paused),
            ("RECORDING", PresenceStatus::Recording),
        ];
        if let Some((_, known)) = KNOWN
            .iter()
            .find(|(name, _)| raw.eq_ignore_ascii_case(name))
        {
            return Ok(known.clone());
        }
        let ok = (1..=MAX_STATUS_LEN).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
        if ok {
            Ok(Self::Other(raw.to_ascii_uppercase()))
        } else {
            Err(PresenceError::InvalidStatus)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(s) => s,
            // A known status is its own label.
            known => known.label(),
        }
    }

    /// Metric label value: the known statuses, or `OTHER` (a closed set).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unavailable => "UNAVAILABLE",
            Self::Available => "AVAILABLE",
            Self::Composing => "COMPOSING",
            Self::Paused => "PAUSED",
            Self::Recording => "RECORDING",
            Self::Other(_) => "OTHER",
        }
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_any_case_uppercase_out() {
        for (raw, want) in [
            ("available", "AVAILABLE"),
            ("Composing", "COMPOSING"),
            ("PAUSED", "PAUSED"),
            ("recording", "RECORDING"),
            ("unavailable", "UNAVAILABLE"),
        ] {
            let s = PresenceStatus::parse(raw).unwrap();
            assert_eq!(s.as_str(), want);
            assert!(s.is_known());
        }
        let future = PresenceStatus::parse("online_now").unwrap();
        assert_eq!(future, PresenceStatus::Other("ONLINE_NOW".into()));
        assert_eq!(future.label(), "OTHER");
        for bad in ["", "TYPING!", "ÜBER", "A B", &"X".repeat(33)] {
            assert_eq!(
                PresenceStatus::parse(bad),
                Err(PresenceError::InvalidStatus),
                "{bad:?}"
            );
        }
    }
}
