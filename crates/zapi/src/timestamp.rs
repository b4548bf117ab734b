//! Time on the wire: `lastSeen` in any of the provider's forms (null, epoch
//! seconds, epoch milliseconds, RFC 3339) and `momment` (the same, and digits
//! in a string) normalized to Unix milliseconds, and
//! the one RFC 3339 form the bridge writes: UTC with exactly three fractional
//! digits ([`Millis`], [`format_millis`]), also used by the envelope and the
//! operator tools.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::member::Member;
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

/// The event time of a callback other than presence, as Unix milliseconds:
/// `momment` (the provider's spelling), or `moment` (some of its examples)
/// when `momment` is absent or `null`; `None` when neither is there.
///
/// Epoch seconds or milliseconds by magnitude (10^11 and above are
/// milliseconds), as an integer, a whole number written with an exponent, or
/// the same digits in a string (the field tables say "string"); an RFC 3339
/// string too. From 1970-01-01 to 9999-12-31 only.
pub(crate) fn normalize_moment(
    momment: Option<&Member<'_>>,
    moment: Option<&Member<'_>>,
) -> Result<Option<i64>, PresenceError> {
    fn present<'a, 'b>(m: Option<&'a Member<'b>>) -> Option<&'a Member<'b>> {
        m.filter(|v| **v != Member::Null)
    }
    let (field, value) = match (present(momment), present(moment)) {
        (Some(v), _) => ("momment", v),
        (None, Some(v)) => ("moment", v),
        (None, None) => return Ok(None),
    };
    let out_of_range = PresenceError::MomentOutOfRange { field };
    let epoch = |v: i64| match v {
        v if v < 0 => Err(out_of_range.clone()),
        v if v >= MILLIS_THRESHOLD => Ok(v),
        v => Ok(v * 1000),
    };
    let millis = match value {
        Member::Int(v) => epoch(*v)?,
        Member::BigInt => return Err(out_of_range),
        Member::Float(v) if v.fract() == 0.0 => {
            if *v < 0.0 || *v > MAX_EPOCH_MILLIS as f64 {
                return Err(out_of_range);
            }
            epoch(*v as i64)?
        }
        Member::Str(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                epoch(s.parse::<i64>().map_err(|_| out_of_range.clone())?)?
            } else {
                let t = OffsetDateTime::parse(s, &Rfc3339)
                    .map_err(|_| PresenceError::InvalidMoment { field })?;
                i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
                    .map_err(|_| out_of_range.clone())?
            }
        }
        _ => return Err(PresenceError::InvalidMoment { field }),
    };
    if !(0..=MAX_EPOCH_MILLIS).contains(&millis) {
        return Err(out_of_range);
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

/// Every event carries several of these (its `time`, `lastSeen`, a state's
/// `since`...): the digits are put in place in a fixed-width buffer, one
/// `write_str`, instead of seven trips through the formatting machinery
/// (which a CPU profile of the bridge under load showed at 2 % of the
/// request path). Years outside 0..=9999 (never accepted on the wire) take
/// the general path.
fn write_millis(t: OffsetDateTime, f: &mut impl fmt::Write) -> fmt::Result {
    let t = t.to_offset(UtcOffset::UTC);
    let (year, month, day) = t.to_calendar_date();
    let (hour, minute, second, milli) = t.to_hms_milli();
    if !(0..=9999).contains(&year) {
        return write!(
            f,
            "{year:04}-{:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z",
            u8::from(month)
        );
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    digits(&mut b[0..4], year as u32);
    digits(&mut b[5..7], u32::from(u8::from(month)));
    digits(&mut b[8..10], u32::from(day));
    digits(&mut b[11..13], u32::from(hour));
    digits(&mut b[14..16], u32::from(minute));
    digits(&mut b[17..19], u32::from(second));
    digits(&mut b[20..23], u32::from(milli));
    // Only ASCII digits went in.
    f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
}

/// `n` in decimal, right-aligned and zero-padded to `out.len()` digits.
fn digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
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

    /// The fixed-width writer against the general formatting it replaced,
    /// over the whole accepted range (seeded, replayable) and its edges.
    #[test]
    fn millis_are_written_as_the_general_formatter_does() {
        fn general(t: OffsetDateTime) -> String {
            let t = t.to_offset(UtcOffset::UTC);
            format!(
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
        let min = -62_167_219_200_000_i64; // 0000-01-01T00:00:00.000Z
        let mut ms = vec![min, 0, 951_782_400_000, 1_709_164_800_123, MAX_EPOCH_MILLIS];
        let mut x: u64 = 0x5eed_0016;
        for _ in 0..20_000 {
            // xorshift64*: a fixed sequence over the accepted range.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span = (MAX_EPOCH_MILLIS - min) as u64;
            ms.push(min + (x % span) as i64);
        }
        for m in ms {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000_000).unwrap();
            assert_eq!(format_millis(t), general(t), "{m}");
            assert_eq!(Millis(m).to_string(), general(t), "{m}");
        }
        let far = OffsetDateTime::from_unix_timestamp(-62_167_219_200 - 86_400).unwrap();
        assert_eq!(format_millis(far), general(far));
    }

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

    fn moment(json: &str) -> Result<Option<String>, PresenceError> {
        let m: crate::member::Members = serde_json::from_str(json).unwrap();
        normalize_moment(m.momment.as_ref(), m.moment.as_ref())
            .map(|ms| ms.map(|ms| Millis(ms).to_string()))
    }

    #[test]
    fn moment_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("{}", None),
            (r#"{"momment":null}"#, None),
            // The provider's examples: milliseconds, and seconds (disconnected).
            (
                r#"{"momment":1632228638000}"#,
                Some("2021-09-21T12:50:38.000Z"),
            ),
            (
                r#"{"momment":1580163342}"#,
                Some("2020-01-27T22:15:42.000Z"),
            ),
            // The connected example's placeholder: 11 digits, read as seconds.
            (
                r#"{"momment":26151515154}"#,
                Some("2798-09-16T13:45:54.000Z"),
            ),
            // `moment` (one m) when `momment` is absent or null; `momment` wins.
            (
                r#"{"moment":1632228638000}"#,
                Some("2021-09-21T12:50:38.000Z"),
            ),
            (
                r#"{"momment":null,"moment":1580163342}"#,
                Some("2020-01-27T22:15:42.000Z"),
            ),
            (
                r#"{"moment":1,"momment":1580163342}"#,
                Some("2020-01-27T22:15:42.000Z"),
            ),
            // Digits in a string, a whole number with an exponent, RFC 3339.
            (
                r#"{"momment":" 1580163342 "}"#,
                Some("2020-01-27T22:15:42.000Z"),
            ),
            (
                r#"{"momment":1.632228638e12}"#,
                Some("2021-09-21T12:50:38.000Z"),
            ),
            (
                r#"{"momment":"2024-01-02T00:04:05.6789-03:00"}"#,
                Some("2024-01-02T03:04:05.678Z"),
            ),
            (r#"{"momment":0}"#, Some("1970-01-01T00:00:00.000Z")),
        ];
        for (json, want) in cases {
            assert_eq!(moment(json).unwrap().as_deref(), *want, "{json}");
        }
        for (json, field) in [
            (r#"{"momment":1.5}"#, "momment"),
            (r#"{"momment":"soon"}"#, "momment"),
            (r#"{"momment":""}"#, "momment"),
            (r#"{"momment":true}"#, "momment"),
            (r#"{"momment":[1]}"#, "momment"),
            (r#"{"moment":{}}"#, "moment"),
            (r#"{"momment":"-5"}"#, "momment"),
        ] {
            assert_eq!(
                moment(json),
                Err(PresenceError::InvalidMoment { field }),
                "{json}"
            );
        }
        for (json, field) in [
            (r#"{"momment":-1}"#, "momment"),
            (r#"{"momment":18446744073709551615}"#, "momment"),
            (r#"{"momment":"99999999999999999999"}"#, "momment"),
            (r#"{"moment":1e20}"#, "moment"),
            (r#"{"momment":253402300800000}"#, "momment"),
            (r#"{"momment":"1969-12-31T23:59:59Z"}"#, "momment"),
        ] {
            assert_eq!(
                moment(json),
                Err(PresenceError::MomentOutOfRange { field }),
                "{json}"
            );
        }
    }
}
