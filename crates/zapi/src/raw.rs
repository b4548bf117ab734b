//! The callback as the provider sends it: [`RawCallback`], every field an
//! optional, loosely typed [`Field`], and the serde visitor that reads one.
//!
//! Nothing is validated here; [`crate::PresenceEvent::try_from`] does that, so
//! that a missing, `null` or mistyped field gets a precise error naming it
//! instead of a generic serde message.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> Option<Field<'_>> {
        serde_json::from_str::<RawCallback>(json).unwrap().status
    }

    #[test]
    fn fields_keep_what_was_sent() {
        assert_eq!(status("{}"), None);
        assert_eq!(status(r#"{"status": null}"#), Some(Field::Null));
        assert_eq!(status(r#"{"status": -7}"#), Some(Field::Int(-7)));
        assert_eq!(
            status(r#"{"status": 18446744073709551615}"#),
            Some(Field::BigInt)
        );
        assert_eq!(status(r#"{"status": 1e3}"#), Some(Field::Float(1000.0)));
        assert_eq!(status(r#"{"status": [1, [2]]}"#), Some(Field::Array));
        assert_eq!(status(r#"{"status": {"a": {}}}"#), Some(Field::Object));
        assert_eq!(status(r#"{"status": false}"#), Some(Field::Bool));
        // Unescaped strings borrow from the body; escaped ones are decoded.
        assert!(matches!(
            status(r#"{"status": "AVAILABLE"}"#),
            Some(Field::Str(Cow::Borrowed("AVAILABLE")))
        ));
        assert!(matches!(status(r#"{"status": "A\u0056AILABLE"}"#),
            Some(Field::Str(Cow::Owned(s))) if s == "AVAILABLE"));
    }
}
