//! The top-level members of any callback that the bridge reads ([`Members`]),
//! each kept as a loosely typed [`Member`], and the checks that turn one into
//! a required or optional value with a precise error naming the field.
//!
//! Unlike [`crate::RawCallback`] (the presence path, strict serde: a duplicate
//! key is malformed JSON), a repeated key is allowed here and the **last**
//! occurrence wins, as with `serde_json::Value`, JavaScript's `JSON.parse` and
//! Python's `json`: the provider's own examples repeat `instanceId`. Members
//! the bridge does not read are skipped (they travel in the payload), but
//! read to the end: every string in the body must decode ([`Checked`]).

use std::borrow::Cow;
use std::fmt;

#[cfg(doc)]
use serde::de::IgnoredAny;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::PresenceError;

/// The content keys of a `ReceivedCallback` the reference documents, in its
/// table's order (§2.2.2): the first one present names the content kind.
pub const CONTENT_KINDS: [&str; 29] = [
    "text",
    "image",
    "audio",
    "video",
    "document",
    "location",
    "contact",
    "sticker",
    "reaction",
    "buttonsResponseMessage",
    "listResponseMessage",
    "buttonsMessage",
    "hydratedTemplate",
    "carouselMessage",
    "pixKeyMessage",
    "requestPayment",
    "sendPayment",
    "product",
    "order",
    "poll",
    "pollVote",
    "reviewAndPay",
    "reviewOrder",
    "newsletterAdminInvite",
    "pinMessage",
    "event",
    "eventResponse",
    "statusImage",
    "externalAdReply",
];

/// One JSON value of a member, strings borrowed when unescaped. Arrays keep
/// their strings (for `ids`); objects are skipped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Member<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    /// An integer above `i64::MAX`.
    BigInt,
    /// A number written with a fraction or an exponent.
    Float(f64),
    Null,
    Bool(bool),
    /// An array: its string elements, and the JSON type of the first element
    /// that is not a string, if any.
    Array {
        strings: Vec<Cow<'a, str>>,
        other: Option<&'static str>,
    },
    Object,
}

impl Member<'_> {
    /// The JSON type, as an error message names it (`got null`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) | Self::BigInt | Self::Float(_) => "a number",
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Array { .. } => "an array",
            Self::Object => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Member<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MemberVisitor)
    }
}

struct MemberVisitor;

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Member<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Member::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Member::BigInt, Member::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Member::Float(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Member::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Member::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Member::Bool(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut strings = Vec::new();
        let mut other = None;
        while let Some(element) = a.next_element::<Member<'de>>()? {
            match element {
                Member::Str(s) => strings.push(s),
                e => {
                    other.get_or_insert(e.kind());
                }
            }
        }
        Ok(Member::Array { strings, other })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Member::Object)
    }
}

/// Any JSON value, read to the end and dropped, with every string (keys
/// included) decoded: unlike [`IgnoredAny`], an escape that is not a Unicode
/// scalar value (a lone surrogate such as `"\ud800"`) is an error. The
/// payload is forwarded as sent, so this is what keeps a record's value
/// readable by any JSON parser.
pub(crate) struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_none<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Checked, A::Error> {
                while a.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Checked, A::Error> {
                while a.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        d.deserialize_any(V)
    }
}

/// The members of any callback the bridge reads; every other member is
/// skipped. A repeated key: the last occurrence wins.
#[derive(Debug, Default)]
pub(crate) struct Members<'a> {
    pub kind: Option<Member<'a>>,
    pub instance_id: Option<Member<'a>>,
    pub phone: Option<Member<'a>>,
    pub status: Option<Member<'a>>,
    pub momment: Option<Member<'a>>,
    pub moment: Option<Member<'a>>,
    pub from_me: Option<Member<'a>>,
    pub message_id: Option<Member<'a>>,
    pub zaap_id: Option<Member<'a>>,
    pub ids: Option<Member<'a>>,
    pub id: Option<Member<'a>>,
    pub notification: Option<Member<'a>>,
    pub connected: Option<Member<'a>>,
    pub disconnected: Option<Member<'a>>,
    /// The index in [`CONTENT_KINDS`] of the first content key present (in
    /// that list's order, not the body's), when its value is not `null`.
    pub content: Option<usize>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut m = Members::default();
                while let Some(key) = a.next_key::<Member<'de>>()? {
                    let Member::Str(key) = key else {
                        a.next_value::<Checked>()?;
                        continue;
                    };
                    let slot = match key.as_ref() {
                        "type" => &mut m.kind,
                        "instanceId" => &mut m.instance_id,
                        "phone" => &mut m.phone,
                        "status" => &mut m.status,
                        "momment" => &mut m.momment,
                        "moment" => &mut m.moment,
                        "fromMe" => &mut m.from_me,
                        "messageId" => &mut m.message_id,
                        "zaapId" => &mut m.zaap_id,
                        "ids" => &mut m.ids,
                        "id" => &mut m.id,
                        "notification" => &mut m.notification,
                        "connected" => &mut m.connected,
                        "disconnected" => &mut m.disconnected,
                        other => {
                            if let Some(i) = CONTENT_KINDS.iter().position(|k| *k == other) {
                                // Keep the value's type only: `null` is no content.
                                let v = a.next_value::<Member<'de>>()?;
                                if v != Member::Null {
                                    m.content = Some(m.content.map_or(i, |c| c.min(i)));
                                }
                            } else {
                                a.next_value::<Checked>()?;
                            }
                            continue;
                        }
                    };
                    *slot = Some(a.next_value::<Member<'de>>()?);
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

/// A required string: absent is `Missing`, blank is `Empty`, any other JSON
/// type (`null` included) is `WrongType` naming what was sent.
pub(crate) fn required_str<'a>(
    value: Option<&'a Member<'_>>,
    field: &'static str,
) -> Result<&'a str, PresenceError> {
    match value {
        None => Err(PresenceError::Missing { field }),
        Some(Member::Str(s)) if s.trim().is_empty() => Err(PresenceError::Empty { field }),
        Some(Member::Str(s)) => Ok(s),
        Some(other) => Err(PresenceError::WrongType {
            field,
            expected: "a string",
            got: other.kind(),
        }),
    }
}

/// An optional string, kept as sent: absent and `null` are `None`; another
/// JSON type is `WrongType`.
pub(crate) fn optional_str(
    value: Option<&Member<'_>>,
    field: &'static str,
) -> Result<Option<String>, PresenceError> {
    match value {
        None | Some(Member::Null) => Ok(None),
        Some(Member::Str(s)) => Ok(Some(s.as_ref().to_owned())),
        Some(other) => Err(PresenceError::WrongType {
            field,
            expected: "a string",
            got: other.kind(),
        }),
    }
}

/// An optional boolean: absent and `null` are `None`; another JSON type is
/// `WrongType`.
pub(crate) fn optional_bool(
    value: Option<&Member<'_>>,
    field: &'static str,
) -> Result<Option<bool>, PresenceError> {
    match value {
        None | Some(Member::Null) => Ok(None),
        Some(Member::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(PresenceError::WrongType {
            field,
            expected: "a boolean",
            got: other.kind(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(json: &str) -> Members<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_string_that_does_not_decode_is_an_error_anywhere() {
        for body in [
            r#"{"x":"\ud800"}"#,
            r#"{"x":{"y":["\udc00"]}}"#,
            r#"{"\ud800":1}"#,
            r#"{"x":{"\ud800":1}}"#,
            r#"{"ids":["\ud800"]}"#,
        ] {
            assert!(serde_json::from_str::<Members>(body).is_err(), "{body}");
        }
        // A surrogate pair is one character.
        assert!(serde_json::from_str::<Members>(r#"{"x":"\ud83d\ude00"}"#).is_ok());
    }

    #[test]
    fn the_last_of_a_repeated_key_wins() {
        let m = members(r#"{"instanceId":"A","x":{"instanceId":"no"},"instanceId":"B"}"#);
        assert_eq!(m.instance_id, Some(Member::Str("B".into())));
    }

    #[test]
    fn arrays_keep_their_strings_and_name_the_first_other_type() {
        let m = members(r#"{"ids":["a","b\u0063"],"id":["x",1,null]}"#);
        assert_eq!(
            m.ids,
            Some(Member::Array {
                strings: vec!["a".into(), "bc".into()],
                other: None
            })
        );
        assert_eq!(
            m.id,
            Some(Member::Array {
                strings: vec!["x".into()],
                other: Some("a number")
            })
        );
    }

    #[test]
    fn the_first_documented_content_key_names_the_content() {
        assert_eq!(members(r#"{"statusImage":{},"text":{}}"#).content, Some(0));
        assert_eq!(
            members(r#"{"pollVote":{}}"#).content,
            CONTENT_KINDS.iter().position(|k| *k == "pollVote")
        );
        assert_eq!(members(r#"{"text":null,"future":{}}"#).content, None);
    }

    #[test]
    fn optional_values_check_their_type() {
        assert_eq!(optional_bool(None, "fromMe"), Ok(None));
        assert_eq!(optional_bool(Some(&Member::Null), "fromMe"), Ok(None));
        assert_eq!(
            optional_bool(Some(&Member::Bool(true)), "fromMe"),
            Ok(Some(true))
        );
        assert_eq!(
            optional_bool(Some(&Member::Str("true".into())), "fromMe"),
            Err(PresenceError::WrongType {
                field: "fromMe",
                expected: "a boolean",
                got: "a string"
            })
        );
        assert_eq!(
            optional_str(Some(&Member::Int(3)), "messageId"),
            Err(PresenceError::WrongType {
                field: "messageId",
                expected: "a string",
                got: "a number"
            })
        );
    }
}
