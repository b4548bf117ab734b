//! Rejected-input capture, version 1 (opt-in, `rejected.topic`). FROZEN like
//! `v1.rs`: fields may be added (optional ones only), never renamed, removed
//! or retyped. Schema: `deploy/schemas/rejected-input.v1.schema.json`.
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

use base64::Engine;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::cloudevent::{CloudEvent, Kind};

/// The CloudEvents `type` (also the `ce_type` Kafka header).
pub const TYPE: &str = "io.presence-bridge.zapi.rejected-input.v1";
pub const DATASCHEMA: &str = "urn:presence-bridge:schema:rejected-input:v1";
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

const KIND: Kind = Kind {
    ce_type: TYPE,
    dataschema: DATASCHEMA,
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
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
    let data = Data {
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
    CloudEvent::new(&KIND, id, SOURCE, time, None, data).encode(256 + kept.len() * 4 / 3)
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
