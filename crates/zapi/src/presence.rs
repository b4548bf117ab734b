//! [`PresenceEvent`]: a `PresenceChatCallback` validated and normalized, built
//! from a [`RawCallback`] ([`PresenceEvent::try_from`]) or from the request
//! body's bytes ([`PresenceEvent::from_json`]). The fields are checked in a
//! fixed order, so the first error, and the answer, are deterministic.

use crate::timestamp::normalize_last_seen;
use crate::{
    Field, InstanceId, Millis, ParseError, Phone, PresenceError, PresenceStatus, RawCallback,
};

/// The only callback type this bridge accepts.
pub const CALLBACK_TYPE: &str = "PresenceChatCallback";

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
        let body = crate::callback::object_body(body)?;
        let raw: RawCallback = serde_json::from_slice(body).map_err(ParseError::Json)?;
        Ok(Self::try_from(raw)?)
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::test_support::{base, event, with};

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
