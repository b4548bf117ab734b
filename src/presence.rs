//! The presence domain: a raw Z-API `PresenceChatCallback` in, a validated
//! [`PresenceEvent`] out.
//!
//! Pure code: no I/O, no clock, no logging. Serde reads the provider's JSON into
//! [`RawCallback`] (every field optional and loosely typed, so that a missing or
//! mistyped field gets a precise error instead of a generic serde message);
//! [`PresenceEvent::try_from`] is the only way to build a validated event, and
//! only a validated event can be put in an envelope.
//!
//! Normalization rules (documented in `docs/http-api.md`, pinned by golden tests):
//! - `type` must be exactly `PresenceChatCallback`.
//! - `phone`: `+`, spaces, dots, dashes and parentheses are stripped; a person's
//!   number is 8 to 15 digits after that (a `@s.whatsapp.net` or `@c.us` suffix is
//!   accepted and removed). Group ids (`<digits>-group`, `<digits>@g.us`, or the
//!   legacy `<digits>-<digits>@g.us`) are normalized to `<id>-group`; `@broadcast`,
//!   `@newsletter` and `@lid` identifiers are kept with their suffix. Anything else
//!   is rejected.
//! - `status`: the five documented values in any letter case, uppercased. An
//!   unknown status made of letters and underscores (at most 32) is *accepted*
//!   and forwarded uppercased as [`PresenceStatus::Other`]: the provider may add
//!   values and Z-API does not retry, so rejecting them would lose data.
//! - `lastSeen`: null, epoch seconds, epoch milliseconds (any value of 10^11 or
//!   more is taken as milliseconds), or an RFC 3339 string; normalized to RFC 3339
//!   UTC with milliseconds. From 1970-01-01 to 9999-12-31 only: a value outside
//!   gets its own message naming the range (same code, `invalid_last_seen`).
//! - A required field that is absent is `missing_field` ("is required"); present
//!   but blank is `missing_field` too ("is empty"); `null` or another JSON type
//!   is `wrong_type`, naming the type that was sent.
//! - The body: a leading UTF-8 byte-order mark is ignored; an empty body and a
//!   body that is JSON but not an object get their own messages.
//! - `instanceId`: required, 1 to 128 characters of `A-Z a-z 0-9 . _ -`.
//!
//! Never log a [`Phone`] with `Display`: use [`Phone::masked`].

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The only callback type this bridge accepts.
pub const CALLBACK_TYPE: &str = "PresenceChatCallback";
/// Longest accepted `instanceId`.
pub const MAX_INSTANCE_ID_LEN: usize = 128;
/// Longest accepted status string (for unknown future statuses).
pub const MAX_STATUS_LEN: usize = 32;
/// Epoch values at or above this are milliseconds, below are seconds.
/// 10^11 seconds is the year 5138; 10^11 milliseconds is March 1973.
const MILLIS_THRESHOLD: i64 = 100_000_000_000;
/// Latest accepted instant, 9999-12-31T23:59:59.999Z, in milliseconds.
const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;

/// The callback as the provider sends it, borrowing from the request body.
/// Every field is optional and loosely typed, so that a missing or mistyped
/// field gets a precise error. Unknown extra fields are tolerated.
#[derive(Debug, Default, Deserialize)]
pub struct RawCallback<'a> {
    #[serde(rename = "type", default, borrow, deserialize_with = "present")]
    pub kind: Option<Field<'a>>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub phone: Option<Field<'a>>,
    #[serde(default, borrow, deserialize_with = "present")]
    pub status: Option<Field<'a>>,
    /// Absent and `null` are the same for this field: no last-seen time.
    #[serde(rename = "lastSeen", default, borrow, deserialize_with = "present")]
    pub last_seen: Option<Field<'a>>,
    #[serde(rename = "instanceId", default, borrow, deserialize_with = "present")]
    pub instance_id: Option<Field<'a>>,
}

/// A field that is present is `Some`, even when it is `null`: serde's own
/// `Option` would read `null` as absent, and `"status": null` would then be
/// reported as missing.
fn present<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Field<'a>>, D::Error> {
    Field::deserialize(d).map(Some)
}

/// One JSON value of a callback field, strings borrowed when unescaped.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    /// An integer above `i64::MAX`.
    BigInt,
    /// A number written with a fraction or an exponent (`1.5`, `1e20`).
    Float(f64),
    Null,
    Bool,
    Array,
    Object,
}

impl Field<'_> {
    /// The JSON type, as an error message names it (`got null`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) | Self::BigInt | Self::Float(_) => "a number",
            Self::Null => "null",
            Self::Bool => "a boolean",
            Self::Array => "an array",
            Self::Object => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(Field::BigInt, Field::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Field::Float(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Bool)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Field::Array)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Field::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a callback was rejected. Each variant has a stable [`code`](Self::code)
/// used in HTTP error bodies and in the `reason` label of metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("field `{field}` is required")]
    Missing { field: &'static str },
    /// Present but empty or only whitespace: the same code as [`Self::Missing`].
    #[error("field `{field}` is empty; it is required")]
    Empty { field: &'static str },
    #[error("field `{field}` must be {expected}, got {got}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        /// The JSON type that was sent ([`Field::kind`]).
        got: &'static str,
    },
    #[error("field `type` must be `PresenceChatCallback`")]
    UnsupportedType,
    #[error(
        "field `phone` is not a phone number (8 to 15 digits) nor a WhatsApp group or channel id"
    )]
    InvalidPhone,
    #[error("field `status` must be one of UNAVAILABLE, AVAILABLE, COMPOSING, PAUSED, RECORDING (or up to 32 letters and underscores)")]
    InvalidStatus,
    #[error(
        "field `lastSeen` must be null, an integer of epoch seconds or milliseconds, or an RFC 3339 timestamp"
    )]
    InvalidLastSeen,
    #[error("field `lastSeen` is out of range: accepted are 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, as epoch seconds 0 to 99999999999 or epoch milliseconds 100000000000 to 253402300799999")]
    LastSeenOutOfRange,
    #[error("field `instanceId` must be 1 to 128 characters of A-Z, a-z, 0-9, `.`, `_` or `-`")]
    InvalidInstanceId,
}

impl PresenceError {
    /// Stable machine-readable code; also a metric label value (closed set).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } | Self::Empty { .. } => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::UnsupportedType => "unsupported_type",
            Self::InvalidPhone => "invalid_phone",
            Self::InvalidStatus => "invalid_status",
            Self::InvalidLastSeen | Self::LastSeenOutOfRange => "invalid_last_seen",
            Self::InvalidInstanceId => "invalid_instance_id",
        }
    }

    /// The JSON field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Missing { field } | Self::Empty { field } | Self::WrongType { field, .. } => {
                field
            }
            Self::UnsupportedType => "type",
            Self::InvalidPhone => "phone",
            Self::InvalidStatus => "status",
            Self::InvalidLastSeen | Self::LastSeenOutOfRange => "lastSeen",
            Self::InvalidInstanceId => "instanceId",
        }
    }
}

/// What kind of WhatsApp identifier a [`Phone`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneKind {
    /// A person's number, digits only.
    Person,
    /// A group, normalized to `<id>-group`.
    Group,
    /// A broadcast list, `<id>@broadcast`.
    Broadcast,
    /// A channel, `<id>@newsletter`.
    Newsletter,
    /// A privacy-preserving linked id, `<id>@lid`.
    Lid,
}

impl PhoneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Group => "group",
            Self::Broadcast => "broadcast",
            Self::Newsletter => "newsletter",
            Self::Lid => "lid",
        }
    }
}

/// A normalized WhatsApp identifier. Personal data: its `Display` is the full
/// value (for the Kafka key and payload only); logs must use [`Phone::masked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    value: String,
    kind: PhoneKind,
}

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, PresenceError> {
        let raw = raw.trim();
        let suffixes: [(&str, PhoneKind); 7] = [
            ("-group", PhoneKind::Group),
            ("@g.us", PhoneKind::Group),
            ("@broadcast", PhoneKind::Broadcast),
            ("@newsletter", PhoneKind::Newsletter),
            ("@lid", PhoneKind::Lid),
            ("@s.whatsapp.net", PhoneKind::Person),
            ("@c.us", PhoneKind::Person),
        ];
        let (body, kind) = suffixes
            .iter()
            .find_map(|(suffix, kind)| strip_suffix_ignore_case(raw, suffix).map(|b| (b, *kind)))
            .unwrap_or((raw, PhoneKind::Person));
        let value = match kind {
            PhoneKind::Person => {
                let digits = strip_formatting(body).ok_or(PresenceError::InvalidPhone)?;
                if !(8..=15).contains(&digits.len()) {
                    return Err(PresenceError::InvalidPhone);
                }
                digits
            }
            PhoneKind::Group => {
                // `<digits>` or the legacy `<creator digits>-<timestamp digits>`.
                let mut parts = body.splitn(2, '-');
                let head = parts.next().unwrap_or_default();
                let tail = parts.next();
                if !all_digits(head, 5, 30) || tail.is_some_and(|t| !all_digits(t, 5, 20)) {
                    return Err(PresenceError::InvalidPhone);
                }
                format!("{body}-group")
            }
            PhoneKind::Broadcast | PhoneKind::Newsletter | PhoneKind::Lid => {
                if !all_digits(body, 5, 30) {
                    return Err(PresenceError::InvalidPhone);
                }
                let suffix = match kind {
                    PhoneKind::Broadcast => "broadcast",
                    PhoneKind::Newsletter => "newsletter",
                    _ => "lid",
                };
                format!("{body}@{suffix}")
            }
        };
        Ok(Self { value, kind })
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    pub fn kind(&self) -> PhoneKind {
        self.kind
    }

    pub fn is_group(&self) -> bool {
        self.kind == PhoneKind::Group
    }

    /// Safe for logs: the first two and last two characters, the rest starred,
    /// e.g. `55*********99`.
    pub fn masked(&self) -> Masked<'_> {
        Masked(&self.value)
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// A phone number that is safe to log (see [`Phone::masked`]).
pub struct Masked<'a>(&'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.chars().count();
        for (i, c) in self.0.chars().enumerate() {
            let shown = n > 6 && (i < 2 || i + 2 >= n);
            if shown {
                write!(f, "{c}")?;
            } else {
                f.write_str("*")?;
            }
        }
        Ok(())
    }
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

/// Removes `+`, spaces, dots, dashes and parentheses; `None` if anything but
/// digits remains.
fn strip_formatting(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '0'..='9' => out.push(c),
            '+' | ' ' | '.' | '-' | '(' | ')' => {}
            _ => return None,
        }
    }
    Some(out)
}

fn all_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

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
            Self::Unavailable => "UNAVAILABLE",
            Self::Available => "AVAILABLE",
            Self::Composing => "COMPOSING",
            Self::Paused => "PAUSED",
            Self::Recording => "RECORDING",
            Self::Other(s) => s,
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

/// A Z-API instance id, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn parse(raw: &str) -> Result<Self, PresenceError> {
        let ok = (1..=MAX_INSTANCE_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(PresenceError::InvalidInstanceId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated, normalized presence change. Only [`TryFrom<RawCallback>`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    pub instance_id: InstanceId,
    pub phone: Phone,
    pub status: PresenceStatus,
    /// The contact's last-seen time, Unix milliseconds.
    pub last_seen_ms: Option<i64>,
}

impl TryFrom<RawCallback<'_>> for PresenceEvent {
    type Error = PresenceError;

    fn try_from(raw: RawCallback<'_>) -> Result<Self, PresenceError> {
        // Checked in a fixed order so the first error is deterministic.
        match required_str(raw.kind.as_ref(), "type")? {
            CALLBACK_TYPE => {}
            _ => return Err(PresenceError::UnsupportedType),
        }
        let instance_id = InstanceId::parse(required_str(raw.instance_id.as_ref(), "instanceId")?)?;
        let phone = Phone::parse(required_str(raw.phone.as_ref(), "phone")?)?;
        let status = PresenceStatus::parse(required_str(raw.status.as_ref(), "status")?)?;
        let last_seen_ms = normalize_last_seen(raw.last_seen.as_ref())?;
        Ok(Self {
            instance_id,
            phone,
            status,
            last_seen_ms,
        })
    }
}

impl PresenceEvent {
    /// `lastSeen` as RFC 3339 UTC with milliseconds, e.g. `2024-01-02T03:04:05.678Z`.
    pub fn last_seen(&self) -> Option<String> {
        self.last_seen_ms.map(|ms| Millis(ms).to_string())
    }

    /// Parses and validates a JSON body. A leading UTF-8 byte-order mark is
    /// ignored (RFC 8259, section 8.1, allows a parser to).
    pub fn from_json(body: &[u8]) -> Result<Self, ParseError> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let first = body
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .ok_or(ParseError::Empty)?;
        if *first != b'{' {
            // Serde would read a JSON array positionally into the struct: say
            // what the body is instead, or where it stops being JSON.
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Err(e) => ParseError::Json(e),
                    Ok(_) => ParseError::NotAnObject {
                        got: json_kind(*first),
                    },
                },
            );
        }
        let raw: RawCallback = serde_json::from_slice(body).map_err(ParseError::Json)?;
        Ok(Self::try_from(raw)?)
    }
}

/// Why a body could not be turned into an event.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("body is empty; it must be a JSON object")]
    Empty,
    #[error("body must be a JSON object, got {got}")]
    NotAnObject {
        /// The JSON type that was sent ([`Field::kind`]'s words).
        got: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] PresenceError),
}

impl ParseError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) | Self::Empty | Self::NotAnObject { .. } => "malformed_json",
            Self::Invalid(e) => e.code(),
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Json(_) | Self::Empty | Self::NotAnObject { .. } => None,
            Self::Invalid(e) => Some(e.field()),
        }
    }
}

/// The JSON type of a value that starts with `first`, in [`Field::kind`]'s words.
fn json_kind(first: u8) -> &'static str {
    match first {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'{' => "an object",
        _ => "a number",
    }
}

/// A required string: absent is `Missing`, present but blank is `Empty`, any
/// other JSON type (`null` included) is `WrongType` naming what was sent.
fn required_str<'a>(
    value: Option<&'a Field<'_>>,
    field: &'static str,
) -> Result<&'a str, PresenceError> {
    match value {
        None => Err(PresenceError::Missing { field }),
        Some(Field::Str(s)) if s.trim().is_empty() => Err(PresenceError::Empty { field }),
        Some(Field::Str(s)) => Ok(s),
        Some(other) => Err(PresenceError::WrongType {
            field,
            expected: "a string",
            got: other.kind(),
        }),
    }
}

fn normalize_last_seen(value: Option<&Field<'_>>) -> Result<Option<i64>, PresenceError> {
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
    use super::*;
    use serde_json::{json, Value};

    fn event(v: Value) -> Result<PresenceEvent, PresenceError> {
        let text = v.to_string();
        PresenceEvent::try_from(serde_json::from_str::<RawCallback>(&text).unwrap())
    }

    fn base() -> Value {
        json!({"type": "PresenceChatCallback", "phone": "5544999999999",
               "status": "AVAILABLE", "lastSeen": null, "instanceId": "instance.id"})
    }

    fn with(field: &str, v: Value) -> Value {
        let mut b = base();
        b[field] = v;
        b
    }

    #[test]
    fn phones_normalize_by_table() {
        let cases: &[(&str, Option<(&str, PhoneKind)>)] = &[
            ("5544999999999", Some(("5544999999999", PhoneKind::Person))),
            (
                "+55 (44) 99999-9999",
                Some(("5544999999999", PhoneKind::Person)),
            ),
            (
                "+55.44.9999.9999",
                Some(("554499999999", PhoneKind::Person)),
            ),
            ("12345678", Some(("12345678", PhoneKind::Person))),
            (
                "123456789012345",
                Some(("123456789012345", PhoneKind::Person)),
            ),
            (
                "5544999999999@s.whatsapp.net",
                Some(("5544999999999", PhoneKind::Person)),
            ),
            (
                "5544999999999@c.us",
                Some(("5544999999999", PhoneKind::Person)),
            ),
            (
                "120363019502650977-group",
                Some(("120363019502650977-group", PhoneKind::Group)),
            ),
            (
                "120363019502650977@g.us",
                Some(("120363019502650977-group", PhoneKind::Group)),
            ),
            (
                "5544999999999-1580000000@g.us",
                Some(("5544999999999-1580000000-group", PhoneKind::Group)),
            ),
            (
                "120363019502650977-GROUP",
                Some(("120363019502650977-group", PhoneKind::Group)),
            ),
            (
                "1234567890@broadcast",
                Some(("1234567890@broadcast", PhoneKind::Broadcast)),
            ),
            (
                "120363123456789012@newsletter",
                Some(("120363123456789012@newsletter", PhoneKind::Newsletter)),
            ),
            (
                "98765432101234@lid",
                Some(("98765432101234@lid", PhoneKind::Lid)),
            ),
            ("1234567", None),
            ("1234567890123456", None),
            ("55449999x9999", None),
            ("", None),
            ("-group", None),
            ("abc-group", None),
            ("12@g.us", None),
            ("5544999999999@example.com", None),
            ("٥٥٤٤٩٩٩٩٩٩٩٩٩", None),
        ];
        for (raw, want) in cases {
            let got = Phone::parse(raw).ok().map(|p| (p.value.clone(), p.kind));
            let want = want.map(|(v, k)| (v.to_string(), k));
            assert_eq!(got, want, "phone {raw:?}");
        }
    }

    #[test]
    fn masked_phone_hides_the_middle() {
        let p = Phone::parse("5544999999999").unwrap();
        assert_eq!(p.masked().to_string(), "55*********99");
        let g = Phone::parse("120363019502650977-group").unwrap();
        assert!(!g.masked().to_string().contains("0363019502650977"));
    }

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

    #[test]
    fn last_seen_forms() {
        let cases: &[(Value, Option<&str>)] = &[
            (json!(null), None),
            (json!(1700000000), Some("2023-11-14T22:13:20.000Z")),
            (json!(1700000000123_i64), Some("2023-11-14T22:13:20.123Z")),
            (json!(0), Some("1970-01-01T00:00:00.000Z")),
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

    #[test]
    fn field_errors_name_the_field() {
        let cases: &[(Value, PresenceError)] = &[
            (
                with("type", json!("MessageCallback")),
                PresenceError::UnsupportedType,
            ),
            (
                with("type", json!(null)),
                PresenceError::WrongType {
                    field: "type",
                    expected: "a string",
                    got: "null",
                },
            ),
            (
                with("status", json!(null)),
                PresenceError::WrongType {
                    field: "status",
                    expected: "a string",
                    got: "null",
                },
            ),
            (
                with("phone", json!(5544999999999_i64)),
                PresenceError::WrongType {
                    field: "phone",
                    expected: "a string",
                    got: "a number",
                },
            ),
            (
                with("phone", json!("")),
                PresenceError::Empty { field: "phone" },
            ),
            (with("status", json!("???")), PresenceError::InvalidStatus),
            (
                with("instanceId", json!(" ")),
                PresenceError::Empty {
                    field: "instanceId",
                },
            ),
            (
                with("instanceId", json!("a/b")),
                PresenceError::InvalidInstanceId,
            ),
            (
                with("instanceId", json!("a".repeat(129))),
                PresenceError::InvalidInstanceId,
            ),
        ];
        for (body, want) in cases {
            let got = event(body.clone()).unwrap_err();
            assert_eq!(&got, want, "{body}");
            assert!(
                got.to_string().contains(&format!("`{}`", got.field())),
                "{got}"
            );
        }
    }

    #[test]
    fn extra_fields_are_tolerated() {
        let e = event(with("momment", json!(1))).unwrap();
        assert_eq!(e.status, PresenceStatus::Available);
    }

    #[test]
    fn malformed_json_has_its_own_code() {
        let err = PresenceEvent::from_json(b"{not json").unwrap_err();
        assert_eq!(err.code(), "malformed_json");
        let err = PresenceEvent::from_json(b"[1,2]").unwrap_err();
        assert_eq!(err.code(), "malformed_json");
        assert_eq!(err.to_string(), "body must be a JSON object, got an array");
        for empty in [&b""[..], b" \r\n\t", b"\xEF\xBB\xBF"] {
            let err = PresenceEvent::from_json(empty).unwrap_err();
            assert!(matches!(err, ParseError::Empty), "{empty:?}: {err}");
            assert_eq!(err.code(), "malformed_json");
        }
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let body = format!("\u{feff}{}", base());
        let e = PresenceEvent::from_json(body.as_bytes()).unwrap();
        assert_eq!(e.status, PresenceStatus::Available);
        // Only one, and only at the start.
        let twice = format!("\u{feff}\u{feff}{}", base());
        assert!(PresenceEvent::from_json(twice.as_bytes()).is_err());
    }
}
