//! Rejected-input capture, version 1 (opt-in, `rejected.topic`). FROZEN like
//! `v1.rs`: fields may be added (optional ones only), never renamed, removed
//! or retyped. Schema:
//! [`crate::schema::REJECTED_V1`] (`schemas/rejected-input.v1.schema.json`).
//!
//! When an authenticated request's body was read but failed validation, the
//! bridge still answers 4xx, and also stores the raw bytes (capped at
//! `rejected.max_bytes`) with the reason in this CloudEvents envelope, through
//! the same durable spool, to the configured topic. A provider change that
//! breaks validation can then be replayed after a fix instead of being lost.
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/presence-bridge/rejected",
//!   "type": "io.presence-bridge.zapi.rejected-input.v1",
//!   "time": "2026-11-24T12:00:00.000Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:rejected-input:v1",
//!   "data": {
//!     "reason": "invalid_status", "message": "...", "field": "status", "status": 400,
//!     "pathInstanceId": null, "contentType": "application/json",
//!     "size": 131, "truncated": false, "body": "{\"type\":...}"
//!   }
//! }
//! ```
//! `body` holds the bytes when they are UTF-8 (cut at a character boundary
//! when truncated); otherwise `bodyBase64` holds them in standard base64.
//!
//! A consumer reads it back with [`Envelope::decode`] into an [`Envelope`]
//! whose `data` is a [`Data`]; [`Data::body_bytes`] gives the captured bytes
//! for a replay.

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cloudevent::CloudEvent;

crate::cloudevent::declare_kind!(
    "io.presence-bridge.zapi.rejected-input.v1",
    "urn:presence-bridge:schema:rejected-input:v1"
);
/// `source` of every capture: the bridge itself.
pub const SOURCE: &str = "/presence-bridge/rejected";

/// What the handler knows about a rejected request.
#[derive(Debug, Clone, Copy)]
pub struct RejectedInput<'a> {
    /// The rejection's stable code (the 4xx body's `error`).
    pub reason: &'a str,
    pub message: &'a str,
    pub field: Option<&'a str>,
    pub status: u16,
    /// The instance id from the URL path, if the route had one (as sent).
    pub path_instance: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// What [`encode`] writes as `data`; [`Data`] reads it back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    reason: &'a str,
    message: &'a str,
    field: Option<&'a str>,
    status: u16,
    path_instance_id: Option<&'a str>,
    content_type: Option<&'a str>,
    size: usize,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// Encodes `input`, keeping at most `max_bytes` of its body.
pub fn encode(
    input: &RejectedInput<'_>,
    max_bytes: usize,
    id: Uuid,
    time: OffsetDateTime,
) -> Vec<u8> {
    let kept = &input.body[..input.body.len().min(max_bytes)];
    let (body, body_base64, kept_len) = match std::str::from_utf8(kept) {
        Ok(s) => (Some(s), None, kept.len()),
        // Cut in the middle of a character only because of the cap: keep the
        // valid prefix as text.
        Err(e) if kept.len() < input.body.len() && e.error_len().is_none() => {
            let s = std::str::from_utf8(&kept[..e.valid_up_to()]).unwrap_or_default();
            (Some(s), None, s.len())
        }
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(kept)),
            kept.len(),
        ),
    };
    let data = WireData {
        reason: input.reason,
        message: input.message,
        field: input.field,
        status: input.status,
        path_instance_id: input.path_instance,
        content_type: input.content_type,
        size: input.body.len(),
        truncated: kept_len < input.body.len(),
        body,
        body_base64,
    };
    CloudEvent::new::<Data>(id, SOURCE, time, None, data).encode(256 + kept.len() * 4 / 3)
}

/// The captured request inside the envelope, as a consumer reads it.
/// Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    /// The rejection's stable code (the 4xx body's `error`).
    pub reason: String,
    pub message: String,
    pub field: Option<String>,
    /// The HTTP status the bridge answered.
    pub status: u16,
    /// The instance id from the URL path, if the route had one (as sent).
    pub path_instance_id: Option<String>,
    pub content_type: Option<String>,
    /// The size of the whole body as received, in bytes.
    pub size: u64,
    /// True when only the first `rejected.max_bytes` were kept.
    pub truncated: bool,
    /// The kept bytes, when they are UTF-8.
    #[serde(default)]
    pub body: Option<String>,
    /// The kept bytes in standard base64, when they are not UTF-8.
    #[serde(default)]
    pub body_base64: Option<String>,
}

impl Data {
    /// The kept bytes of the body, whichever way they were written; None
    /// when `bodyBase64` is not valid base64 (or neither field is there).
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match (&self.body, &self.body_base64) {
            (Some(text), _) => Some(text.as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DecodeError;
    use serde_json::Value;

    fn input(body: &[u8]) -> RejectedInput<'_> {
        RejectedInput {
            reason: "invalid_json",
            message: "bad",
            field: None,
            status: 400,
            path_instance: Some("abc"),
            content_type: Some("application/json"),
            body,
        }
    }

    fn enc(body: &[u8], max: usize) -> Value {
        let v = encode(
            &input(body),
            max,
            Uuid::now_v7(),
            OffsetDateTime::UNIX_EPOCH,
        );
        serde_json::from_slice(&v).unwrap()
    }

    #[test]
    fn text_bodies_are_kept_as_text() {
        let v = enc(br#"{"type":"x"}"#, 100);
        assert_eq!(v["data"]["body"], r#"{"type":"x"}"#);
        assert_eq!(v["data"]["truncated"], false);
        assert_eq!(v["data"]["size"], 12);
        assert!(v["data"].get("bodyBase64").is_none());
        assert_eq!(v["type"], TYPE);
    }

    #[test]
    fn binary_bodies_are_base64() {
        let v = enc(&[0xff, 0x00, 0xfe], 100);
        assert_eq!(v["data"]["bodyBase64"], "/wD+");
        assert!(v["data"].get("body").is_none());
    }

    #[test]
    fn the_cap_cuts_at_a_character_boundary() {
        // "é" is two bytes: a cap of 3 on "aéé" keeps "aé".
        let v = enc("aéé".as_bytes(), 3);
        assert_eq!(v["data"]["body"], "aé");
        assert_eq!(v["data"]["truncated"], true);
        assert_eq!(v["data"]["size"], 5);
        let v = enc(&[1u8; 50], 10);
        assert_eq!(v["data"]["body"].as_str().unwrap().len(), 10);
        assert_eq!(v["data"]["truncated"], true);
    }

    #[test]
    fn what_encode_writes_decodes_to_the_same_capture() {
        let cases: [(RejectedInput<'_>, usize); 3] = [
            (input(br#"{"type":"x"}"#), 100),
            (
                RejectedInput {
                    reason: "invalid_status",
                    message: "field `status` is not a status",
                    field: Some("status"),
                    status: 422,
                    path_instance: None,
                    content_type: None,
                    body: "aéé".as_bytes(),
                },
                3,
            ),
            (input(&[0xff, 0x00, 0xfe, 0x01]), 3),
        ];
        let kept: [&[u8]; 3] = [br#"{"type":"x"}"#, "aé".as_bytes(), &[0xff, 0x00, 0xfe]];
        for ((input, max), kept) in cases.iter().zip(kept) {
            let id = Uuid::now_v7();
            let e = Envelope::decode(&encode(input, *max, id, OffsetDateTime::UNIX_EPOCH)).unwrap();
            assert_eq!(e.specversion, crate::SPECVERSION);
            assert_eq!(e.id, id);
            assert_eq!(e.source, SOURCE);
            assert_eq!(e.kind, TYPE);
            assert_eq!(e.time, "1970-01-01T00:00:00.000Z");
            assert_eq!(e.datacontenttype, crate::DATACONTENTTYPE);
            assert_eq!(e.dataschema, DATASCHEMA);
            assert_eq!(e.partitionkey, None);
            let d = &e.data;
            assert_eq!(d.reason, input.reason);
            assert_eq!(d.message, input.message);
            assert_eq!(d.field.as_deref(), input.field);
            assert_eq!(d.status, input.status);
            assert_eq!(d.path_instance_id.as_deref(), input.path_instance);
            assert_eq!(d.content_type.as_deref(), input.content_type);
            assert_eq!(d.size, input.body.len() as u64);
            assert_eq!(d.truncated, kept.len() < input.body.len());
            assert_eq!(d.body.is_some(), std::str::from_utf8(kept).is_ok());
            assert_eq!(d.body_bytes().as_deref(), Some(kept));
        }
    }

    #[test]
    fn every_kind_decodes_to_its_own_variant() {
        let value = encode(&input(b"x"), 10, Uuid::now_v7(), OffsetDateTime::UNIX_EPOCH);
        match crate::decode(&value).unwrap() {
            crate::Record::Rejected(e) => assert_eq!(e.data.body.as_deref(), Some("x")),
            other => panic!("expected a rejected capture, got {other:?}"),
        }
        let mut json: Value = serde_json::from_slice(&value).unwrap();
        json["type"] = "io.example.other.v9".into();
        match crate::decode(&serde_json::to_vec(&json).unwrap()) {
            Err(DecodeError::UnknownType(t)) => assert_eq!(t, "io.example.other.v9"),
            other => panic!("expected UnknownType, got {other:?}"),
        }
    }
}
