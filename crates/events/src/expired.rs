//! A typing state that expired, envelope version 1. FROZEN like `v1.rs`:
//! fields may be added (optional ones only), never renamed, removed or
//! retyped. Schema: [`crate::schema::EXPIRED_V1`]
//! (`schemas/presence-expired-envelope.v1.schema.json`). Key: the phone,
//! like the presence events it follows on the same topic, so a phone's order
//! holds.
//!
//! The bridge writes one when a COMPOSING or RECORDING had nothing newer for
//! its (instance, phone) within `presence.typing_ttl`: the provider sends
//! PAUSED only from some devices, and WhatsApp clients drop a typing
//! indicator after about 15 seconds themselves. It is not a provider event:
//! `source` is the instance, `time` when the bridge wrote it, `causeId` the
//! `id` of the typing event that expired.
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/instance.id",
//!   "type": "io.presence-bridge.zapi.chat-presence-expired.v1",
//!   "time": "2026-11-24T12:00:15.010Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:presence-expired-envelope:v1",
//!   "partitionkey": "5544999999999",
//!   "data": {
//!     "instanceId": "instance.id", "phone": "5544999999999", "status": "PAUSED",
//!     "previousStatus": "COMPOSING", "reason": "typing_expired",
//!     "typingSince": "2026-11-24T12:00:00.000Z", "expiredAt": "2026-11-24T12:00:15.000Z",
//!     "causeId": "0193a1b2-...-v7", "isGroup": false, "phoneKind": "person"
//!   }
//! }
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cloudevent::{display, CloudEvent, InstanceSource};
use zapi::Millis;

crate::cloudevent::declare_kind!(
    "io.presence-bridge.zapi.chat-presence-expired.v1",
    "urn:presence-bridge:schema:presence-expired-envelope:v1"
);

/// The `reason` of an expiry (and of the PAUSED state it leaves in the
/// latest-presence topic, [`crate::state`]).
pub const REASON: &str = "typing_expired";

/// A typing state that ran out: what the bridge remembered of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry<'a> {
    pub instance_id: &'a str,
    pub phone: &'a zapi::Phone,
    /// COMPOSING or RECORDING.
    pub previous_status: &'a str,
    /// Arrival of the typing event, Unix milliseconds.
    pub typing_since_ms: i64,
    /// When it expired (arrival + `presence.typing_ttl`), Unix milliseconds.
    pub expired_at_ms: i64,
    /// The typing event's CloudEvents id.
    pub cause_id: Uuid,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    instance_id: &'a str,
    phone: &'a str,
    status: &'static str,
    previous_status: &'a str,
    reason: &'static str,
    #[serde(serialize_with = "display")]
    typing_since: Millis,
    #[serde(serialize_with = "display")]
    expired_at: Millis,
    cause_id: uuid::fmt::Hyphenated,
    is_group: bool,
    phone_kind: &'static str,
}

/// Encodes `e` as a version 1 envelope, written at `time` with `id`.
pub fn encode(e: &Expiry<'_>, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    let data = WireData {
        instance_id: e.instance_id,
        phone: e.phone.as_str(),
        status: "PAUSED",
        previous_status: e.previous_status,
        reason: REASON,
        typing_since: Millis(e.typing_since_ms),
        expired_at: Millis(e.expired_at_ms),
        cause_id: e.cause_id.hyphenated(),
        is_group: e.phone.is_group(),
        phone_kind: e.phone.kind().as_str(),
    };
    let source = InstanceSource(e.instance_id);
    CloudEvent::new::<Data>(id, source, time, Some(e.phone.as_str()), data).encode(640)
}

/// `data` as a consumer reads it. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    pub instance_id: String,
    /// The normalized phone (also the record's key and `partitionkey`).
    pub phone: String,
    /// Always `PAUSED`: what the contact is taken to be now.
    pub status: String,
    /// The typing status that expired: `COMPOSING` or `RECORDING`.
    pub previous_status: String,
    /// Always [`REASON`] in this version.
    pub reason: String,
    /// Arrival of the typing event (RFC 3339 UTC, milliseconds).
    pub typing_since: String,
    /// When the typing state expired: `typingSince` + `presence.typing_ttl`.
    pub expired_at: String,
    /// The `id` of the typing event that expired.
    pub cause_id: Uuid,
    pub is_group: bool,
    pub phone_kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_encode_writes_decodes_back() {
        let phone = zapi::Phone::parse("5544999999999").unwrap();
        let cause = Uuid::now_v7();
        let e = Expiry {
            instance_id: "i1",
            phone: &phone,
            previous_status: "RECORDING",
            typing_since_ms: 1_764_000_000_000,
            expired_at_ms: 1_764_000_015_000,
            cause_id: cause,
        };
        let id = Uuid::now_v7();
        let value = encode(&e, id, OffsetDateTime::UNIX_EPOCH);
        let back = Envelope::decode(&value).unwrap();
        assert_eq!(back.id, id);
        assert_eq!(back.kind, TYPE);
        assert_eq!(back.partitionkey.as_deref(), Some("5544999999999"));
        assert_eq!(back.source, "/zapi/instances/i1");
        assert_eq!(back.data.status, "PAUSED");
        assert_eq!(back.data.previous_status, "RECORDING");
        assert_eq!(back.data.reason, REASON);
        assert_eq!(back.data.typing_since, "2025-11-24T16:00:00.000Z");
        assert_eq!(back.data.expired_at, "2025-11-24T16:00:15.000Z");
        assert_eq!(back.data.cause_id, cause);
        assert_eq!(back.data.phone_kind, "person");
    }
}
