//! The CloudEvents Kafka protocol binding's binary content mode, for any
//! envelope: [`to_binary`] turns a structured envelope (the JSON the bridge
//! stores in its spool and writes in structured mode) into the record value
//! (the `data` only) and its headers (`ce_<attribute>` for every attribute,
//! `content-type` for `datacontenttype`); [`to_structured`] and
//! [`decode_binary`] read a binary-mode record back, and [`decode_any`] reads
//! a record of either mode the way the binding says a receiver tells them
//! apart (any `ce_` header means binary mode).
//!
//! Generic on purpose: nothing here knows the kinds, so a kind added later is
//! converted the same way. The `data` bytes are moved as they are (never
//! re-serialized), so a payload kept byte for byte in structured mode is kept
//! byte for byte in binary mode too.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::{DecodeError, Record};

/// The prefix of the header of every attribute in binary mode.
pub const HEADER_PREFIX: &str = "ce_";
/// The header that carries `datacontenttype` in binary mode.
pub const HEADER_CONTENT_TYPE: &str = "content-type";

/// A record in binary content mode: its headers and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryRecord {
    /// `(name, value)`, sorted by name: `ce_<attribute>` for every attribute
    /// but `datacontenttype`, which is `content-type`.
    pub headers: Vec<(String, String)>,
    /// The event's `data` exactly as the envelope held it (JSON), or the
    /// decoded bytes of `data_base64`; empty when the event has no data.
    pub data: Vec<u8>,
}

/// Why a record could not be converted between the modes.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    /// The structured value is not a JSON object.
    #[error("not a structured CloudEvents envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// An attribute whose value is an object or an array: binary mode carries
    /// only strings, numbers and booleans as headers.
    #[error("attribute `{0}` is not a string, number or boolean")]
    NotScalar(String),
    /// `data_base64` that is not a base64 string.
    #[error("`data_base64` is not valid base64")]
    Base64,
    /// A `ce_` or `content-type` header whose value is not UTF-8 text.
    #[error("header `{0}` is not UTF-8")]
    NotUtf8(String),
    /// A binary record without one of the attributes every event has.
    #[error("binary record without the `{0}` header")]
    Missing(&'static str),
    /// A binary record with a JSON content type whose value is not JSON.
    #[error("the value is not the JSON its content type says: {0}")]
    Data(serde_json::Error),
}

/// The structured envelope `envelope` in binary content mode.
pub fn to_binary(envelope: &[u8]) -> Result<BinaryRecord, BinaryError> {
    let members: BTreeMap<String, &RawValue> = serde_json::from_slice(envelope)?;
    let mut headers = Vec::with_capacity(members.len());
    let mut data = Vec::new();
    for (name, raw) in members {
        match name.as_str() {
            "data" => data = raw.get().as_bytes().to_vec(),
            "data_base64" => {
                let text: String =
                    serde_json::from_str(raw.get()).map_err(|_| BinaryError::Base64)?;
                data = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| BinaryError::Base64)?;
            }
            _ => {
                let value = match serde_json::from_str::<Value>(raw.get())? {
                    // An absent attribute: no header.
                    Value::Null => continue,
                    Value::String(s) => s,
                    v @ (Value::Bool(_) | Value::Number(_)) => v.to_string(),
                    Value::Array(_) | Value::Object(_) => return Err(BinaryError::NotScalar(name)),
                };
                let header = if name == "datacontenttype" {
                    HEADER_CONTENT_TYPE.to_owned()
                } else {
                    format!("{HEADER_PREFIX}{name}")
                };
                headers.push((header, value));
            }
        }
    }
    headers.sort();
    Ok(BinaryRecord { headers, data })
}

/// The attributes in the order the bridge's envelopes write them; any other
/// comes after them (by name), and `data` last.
const ORDER: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "dataschema",
    "subject",
    "partitionkey",
];

/// True when `headers` say the record is in binary content mode: any header
/// named `ce_...` (in any case), as the CloudEvents Kafka binding and its
/// SDKs decide.
pub fn is_binary<'a>(headers: impl IntoIterator<Item = &'a str>) -> bool {
    headers.into_iter().any(|name| {
        name.get(..HEADER_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(HEADER_PREFIX))
    })
}

/// A binary-mode record (its headers, a value of `None` for a header without
/// one, and its value) as the structured envelope: the attributes in the
/// bridge's order, then `data` (the value as is when the content type is
/// JSON or absent, else `data_base64`). Headers other than `ce_*` and
/// `content-type` are ignored. For the bridge's own records this gives back
/// the very bytes the bridge stored.
pub fn to_structured<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    value: &[u8],
) -> Result<Vec<u8>, BinaryError> {
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for (name, v) in headers {
        let lower = name.to_ascii_lowercase();
        let attribute = if lower == HEADER_CONTENT_TYPE {
            "datacontenttype".to_owned()
        } else if let Some(a) = lower.strip_prefix(HEADER_PREFIX) {
            a.to_owned()
        } else {
            continue;
        };
        let Some(v) = v else { continue };
        let text = std::str::from_utf8(v).map_err(|_| BinaryError::NotUtf8(name.to_owned()))?;
        attributes.insert(attribute, text.to_owned());
    }
    for required in ["specversion", "id", "source", "type"] {
        if !attributes.contains_key(required) {
            return Err(BinaryError::Missing(match required {
                "specversion" => "ce_specversion",
                "id" => "ce_id",
                "source" => "ce_source",
                _ => "ce_type",
            }));
        }
    }
    let mut out = Vec::with_capacity(value.len() + 512);
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str, v: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        // Plain strings into a Vec: serializing cannot fail.
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    };
    let json = attributes.get("datacontenttype").is_none_or(|t| is_json(t));
    for name in ORDER {
        if let Some(v) = attributes.remove(name) {
            member(&mut out, name, &v);
        }
    }
    for (name, v) in &attributes {
        member(&mut out, name, v);
    }
    if !value.is_empty() {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        if json {
            let data: &RawValue = serde_json::from_slice(value).map_err(BinaryError::Data)?;
            out.extend_from_slice(b"\"data\":");
            out.extend_from_slice(data.get().as_bytes());
        } else {
            out.extend_from_slice(b"\"data_base64\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(value)
                    .as_bytes(),
            );
            out.push(b'"');
        }
    }
    out.push(b'}');
    Ok(out)
}

/// A JSON media type (`application/json`, `text/json`, `…+json`, with or
/// without parameters), as the CloudEvents JSON format recognizes one.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    (top == "application" || top == "text") && (sub == "json" || sub.ends_with("+json"))
}

/// Decodes a binary-mode record of any kind this version knows (see
/// [`crate::decode`]).
pub fn decode_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    value: &[u8],
) -> Result<Record, DecodeError> {
    let envelope = to_structured(headers, value)?;
    crate::decode(&envelope)
}

/// Decodes a record of either content mode: binary when any header is named
/// `ce_...`, else structured (the value is the envelope).
pub fn decode_any<'a>(
    headers: &[(&'a str, Option<&'a [u8]>)],
    value: &[u8],
) -> Result<Record, DecodeError> {
    if is_binary(headers.iter().map(|(n, _)| *n)) {
        decode_binary(headers.iter().copied(), value)
    } else {
        crate::decode(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejected::{self, RejectedInput};
    use proptest::prelude::*;
    use time::OffsetDateTime;
    use uuid::Uuid;
    use zapi::PresenceEvent;

    fn presence(phone: &str, status: &str, instance: &str) -> Vec<u8> {
        let body = format!(
            r#"{{"type":"PresenceChatCallback","phone":"{phone}","status":"{status}","instanceId":"{instance}"}}"#
        );
        let event = PresenceEvent::from_json(body.as_bytes()).unwrap();
        crate::v1::encode(&event, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH)
    }

    fn borrowed(b: &BinaryRecord) -> Vec<(&str, Option<&[u8]>)> {
        b.headers
            .iter()
            .map(|(n, v)| (n.as_str(), Some(v.as_bytes())))
            .collect()
    }

    #[test]
    fn every_attribute_is_a_header_and_the_value_is_the_data() {
        let value = presence("5544999999999", "COMPOSING", "i1");
        let envelope: Value = serde_json::from_slice(&value).unwrap();
        let b = to_binary(&value).unwrap();
        let headers: BTreeMap<&str, &str> = b
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers.keys().copied().collect::<Vec<_>>(),
            [
                "ce_dataschema",
                "ce_id",
                "ce_partitionkey",
                "ce_source",
                "ce_specversion",
                "ce_time",
                "ce_type",
                "content-type"
            ]
        );
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], envelope["id"]);
        assert_eq!(headers["ce_type"], crate::v1::TYPE);
        assert_eq!(headers["ce_source"], "/zapi/instances/i1");
        assert_eq!(headers["ce_time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(headers["ce_partitionkey"], "5544999999999");
        let data: Value = serde_json::from_slice(&b.data).unwrap();
        assert_eq!(data, envelope["data"]);
        // The data's bytes as the envelope held them.
        let text = std::str::from_utf8(&value).unwrap();
        assert!(text.ends_with(&format!(
            "\"data\":{}}}",
            std::str::from_utf8(&b.data).unwrap()
        )));
    }

    #[test]
    fn binary_reads_back_to_the_same_bytes_and_record() {
        let value = presence("5544999999999", "PAUSED", "i1");
        let b = to_binary(&value).unwrap();
        assert_eq!(to_structured(borrowed(&b), &b.data).unwrap(), value);
        let Record::Presence(e) = decode_binary(borrowed(&b), &b.data).unwrap() else {
            panic!("not a presence event");
        };
        assert_eq!(e.data.status, "PAUSED");
        // Auto-detection: binary by its ce_ headers, structured without.
        assert!(decode_any(&borrowed(&b), &b.data).is_ok());
        let structured = [("content-type", Some(&b"application/cloudevents+json"[..]))];
        assert!(decode_any(&structured, &value).is_ok());
        assert!(decode_any(&structured, &b.data).is_err());
    }

    #[test]
    fn bad_input_is_a_precise_error() {
        assert!(matches!(to_binary(b"not json"), Err(BinaryError::Json(_))));
        assert!(matches!(to_binary(b"[1]"), Err(BinaryError::Json(_))));
        assert!(matches!(
            to_binary(br#"{"id":"x","ext":{"a":1},"data":1}"#),
            Err(BinaryError::NotScalar(n)) if n == "ext"
        ));
        assert!(matches!(
            to_binary(br#"{"id":"x","data_base64":"%%"}"#),
            Err(BinaryError::Base64)
        ));
        let no_source = [
            ("ce_specversion", Some(&b"1.0"[..])),
            ("ce_id", Some(&b"x"[..])),
            ("ce_type", Some(&b"t"[..])),
        ];
        assert!(matches!(
            to_structured(no_source, b"{}"),
            Err(BinaryError::Missing("ce_source"))
        ));
        let full = [
            ("ce_specversion", Some(&b"1.0"[..])),
            ("ce_id", Some(&b"x"[..])),
            ("ce_source", Some(&b"/s"[..])),
            ("ce_type", Some(&b"t"[..])),
        ];
        assert!(matches!(
            to_structured(full, b"{not json"),
            Err(BinaryError::Data(_))
        ));
        let bad_utf8 = [("ce_id", Some(&b"\xff"[..]))];
        assert!(matches!(
            to_structured(bad_utf8, b"{}"),
            Err(BinaryError::NotUtf8(n)) if n == "ce_id"
        ));
    }

    #[test]
    fn other_types_and_binary_data_survive_the_round_trip() {
        let value = br#"{"specversion":"1.0","id":"x","source":"/s","type":"t","datacontenttype":"application/octet-stream","n":3,"ok":true,"gone":null,"data_base64":"AAEC"}"#;
        let b = to_binary(value).unwrap();
        assert_eq!(b.data, [0, 1, 2]);
        assert!(b.headers.contains(&("ce_n".into(), "3".into())));
        assert!(b.headers.contains(&("ce_ok".into(), "true".into())));
        assert!(!b.headers.iter().any(|(n, _)| n == "ce_gone"));
        let back = to_structured(borrowed(&b), &b.data).unwrap();
        assert_eq!(
            std::str::from_utf8(&back).unwrap(),
            r#"{"specversion":"1.0","id":"x","source":"/s","type":"t","datacontenttype":"application/octet-stream","n":"3","ok":"true","data_base64":"AAEC"}"#
        );
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("application/octet-stream"));
        assert!(is_binary(["content-type", "CE_ID"]));
        assert!(!is_binary(["content-type", "event-id", "c"]));
    }

    proptest! {
        /// Structured -> binary -> structured gives back the very bytes, for
        /// presence events and for captures of arbitrary bodies (whose data
        /// holds any text, escapes and all).
        #[test]
        fn structured_binary_structured_round_trips(
            phone in "[1-9][0-9]{9,14}",
            status in prop::sample::select(vec!["AVAILABLE", "UNAVAILABLE", "COMPOSING", "RECORDING", "PAUSED"]),
            instance in "[A-Za-z0-9._-]{1,40}",
            body in prop::collection::vec(any::<u8>(), 0..300),
            message in ".{0,80}",
        ) {
            let value = presence(&phone, status, &instance);
            let b = to_binary(&value).unwrap();
            prop_assert_eq!(to_structured(borrowed(&b), &b.data).unwrap(), value);

            let input = RejectedInput {
                reason: "invalid_status",
                message: &message,
                field: Some("status"),
                status: 400,
                path_instance: Some(&instance),
                content_type: Some("application/json"),
                body: &body,
            };
            let value = rejected::encode(&input, 1024, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
            let b = to_binary(&value).unwrap();
            let back = to_structured(borrowed(&b), &b.data).unwrap();
            prop_assert_eq!(
                serde_json::from_slice::<Value>(&back).unwrap(),
                serde_json::from_slice::<Value>(&value).unwrap()
            );
            prop_assert_eq!(back, value);
        }
    }
}
