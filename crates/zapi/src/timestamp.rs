//! Time on the wire: `lastSeen` in any of the provider's forms (null, epoch
//! seconds, epoch milliseconds, RFC 3339) normalized to Unix milliseconds, and
//! the one RFC 3339 form the bridge writes: UTC with exactly three fractional
//! digits ([`Millis`], [`format_millis`]), also used by the envelope and the
//! operator tools.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::{Field, PresenceError};

/// Epoch values at or above this are milliseconds, below are seconds.
/// 10^11 seconds is the year 5138; 10^11 milliseconds is March 1973.
const MILLIS_THRESHOLD: i64 = 100_000_000_000;
/// Latest accepted instant, 9999-12-31T23:59:59.999Z, in milliseconds.
const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;

/// `lastSeen` as Unix milliseconds: absent and `null` are `None`; anything
/// outside 1970-01-01 to 9999-12-31 is [`PresenceError::LastSeenOutOfRange`].
pub(crate) fn normalize_last_seen(value: Option<&Field<'_>>) -> Result<Option<i64>, PresenceError> {
    let millis = match value {
        None | Some(Field::Null) => return Ok(None),
        Some(Field::Int(v)) if *v < 0 => return Err(PresenceError::LastSeenOutOfRange),
        Some(Field::Int(v)) if *v >= MILLIS_THRESHOLD => *v,
        Some(Field::Int(v)) => v * 1000,
        Some(Field::BigInt) => return Err(PresenceError::LastSeenOutOfRange),
        // A whole number written with an exponent (`1e20`) that no epoch
        // value can reach is out of range; any other non-integer is malformed.
        Some(Field::Float(v)) if v.fract() == 0.0 && (*v < 0.0 || *v > MAX_EPOCH_MILLIS as f64) => {
            return Err(PresenceError::LastSeenOutOfRange)
        }
        Some(Field::Str(s)) => {
            let t = OffsetDateTime::parse(s.trim(), &Rfc3339)
                .map_err(|_| PresenceError::InvalidLastSeen)?;
            i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
                .map_err(|_| PresenceError::LastSeenOutOfRange)?
        }
        Some(_) => return Err(PresenceError::InvalidLastSeen),
    };
    if !(0..=MAX_EPOCH_MILLIS).contains(&millis) {
        return Err(PresenceError::LastSeenOutOfRange);
    }
    Ok(Some(millis))
}

/// Unix milliseconds displayed as RFC 3339 UTC with exactly three fractional
/// digits (`2024-01-02T03:04:05.678Z`), written without an intermediate string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub i64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000) {
            Ok(t) => write_millis(t, f),
            Err(_) => f.write_str("invalid"),
        }
    }
}

fn write_millis(t: OffsetDateTime, f: &mut impl fmt::Write) -> fmt::Result {
    let t = t.to_offset(UtcOffset::UTC);
    write!(
        f,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 3339, UTC, exactly three fractional digits: `2024-01-02T03:04:05.678Z`.
pub fn format_millis(t: OffsetDateTime) -> String {
    let mut out = String::with_capacity(24);
    let _ = write_millis(t, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::test_support::{base, event, with};

    #[test]
    fn last_seen_forms() {
        let cases: &[(Value, Option<&str>)] = &[
            (json!(null), None),
            (json!(1700000000), Some("2023-11-14T22:13:20.000Z")),
            (json!(1700000000123_i64), Some("2023-11-14T22:13:20.123Z")),
            (json!(0), Some("1970-01-01T00:00:00.000Z")),
            // The seconds/milliseconds boundary: 10^11 - 1 is seconds, 10^11 milliseconds.
            (
                json!(MILLIS_THRESHOLD - 1),
                Some("5138-11-16T09:46:39.000Z"),
            ),
            (json!(MILLIS_THRESHOLD), Some("1973-03-03T09:46:40.000Z")),
            (
                json!("2024-01-02T03:04:05Z"),
                Some("2024-01-02T03:04:05.000Z"),
            ),
            (
                json!("2024-01-02T00:04:05.6789-03:00"),
                Some("2024-01-02T03:04:05.678Z"),
            ),
        ];
        for (raw, want) in cases {
            let got = event(with("lastSeen", raw.clone())).unwrap().last_seen();
            assert_eq!(got.as_deref(), *want, "lastSeen {raw}");
        }
        for bad in [
            json!(1.5),
            json!(1.7e9),
            json!("yesterday"),
            json!(true),
            json!([]),
            json!("1700000000"),
        ] {
            assert_eq!(
                event(with("lastSeen", bad.clone())),
                Err(PresenceError::InvalidLastSeen),
                "{bad}"
            );
        }
        for out_of_range in [
            json!(-1),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e20),
            json!(-1e20),
            json!(MAX_EPOCH_MILLIS + 1),
            json!("1969-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(
                event(with("lastSeen", out_of_range.clone())),
                Err(PresenceError::LastSeenOutOfRange),
                "{out_of_range}"
            );
        }
        let mut absent = base();
        absent.as_object_mut().unwrap().remove("lastSeen");
        assert_eq!(event(absent).unwrap().last_seen_ms, None);
    }
}
