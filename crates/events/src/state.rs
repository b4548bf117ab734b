//! A contact's latest presence, the record of the compacted latest-presence
//! topic (`kafka.latest.topic`, `whatsapp.presence.latest.v1`), envelope
//! version 1. FROZEN like `v1.rs`: fields may be added (optional ones only),
//! never renamed, removed or retyped. Schema: [`crate::schema::STATE_V1`]
//! (`schemas/presence-state-envelope.v1.schema.json`).
//!
//! Key: `<instanceId>:<phone>` ([`key`]; an instance id has no `:`, so the
//! last `:` splits it, [`split_key`]). The topic is compacted: a consumer
//! that reads it from the beginning gets the current state of every contact.
//! A record with a null value (a tombstone, `presence-bridge presence
//! forget`) deletes a contact's state.
//!
//! The bridge writes one with every presence event (reason `reported`), in
//! the same spool batch, and one when a typing state expires (status
//! `PAUSED`, reason `typing_expired`, see [`crate::expired`]).
//!
//! ```json
//! {
//!   "specversion": "1.0", "id": "0193a1b2-...-v7",
//!   "source": "/zapi/instances/instance.id",
//!   "type": "io.presence-bridge.zapi.presence-state.v1",
//!   "time": "2026-11-24T12:00:00.000Z", "datacontenttype": "application/json",
//!   "dataschema": "urn:presence-bridge:schema:presence-state-envelope:v1",
//!   "partitionkey": "instance.id:5544999999999",
//!   "data": {
//!     "instanceId": "instance.id", "phone": "5544999999999", "status": "COMPOSING",
//!     "since": "2026-11-24T12:00:00.000Z", "lastSeen": null,
//!     "typingExpiresAt": "2026-11-24T12:00:15.000Z", "reason": "reported",
//!     "eventId": "0193a1b2-...-v7", "isGroup": false, "phoneKind": "person",
//!     "statusKnown": true
//!   }
//! }
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cloudevent::{display, display_opt, CloudEvent, InstanceSource};
use zapi::Millis;

crate::cloudevent::declare_kind!(
    "io.presence-bridge.zapi.presence-state.v1",
    "urn:presence-bridge:schema:presence-state-envelope:v1"
);

/// Why the contact is in this state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A presence callback reported it.
    Reported,
    /// A typing state had nothing newer within `presence.typing_ttl`: the
    /// contact is taken to be `PAUSED` ([`crate::expired`]).
    TypingExpired,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::TypingExpired => crate::expired::REASON,
        }
    }
}

/// A contact's state, as the bridge writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State<'a> {
    pub instance_id: &'a str,
    pub phone: &'a zapi::Phone,
    /// Upper case, as reported (`PAUSED` after an expiry).
    pub status: &'a str,
    pub status_known: bool,
    /// When this status was reported (the event's arrival) or the typing
    /// state expired, Unix milliseconds.
    pub since_ms: i64,
    pub last_seen_ms: Option<i64>,
    /// For a typing status: when it expires if nothing newer comes.
    pub typing_expires_ms: Option<i64>,
    pub reason: Reason,
    /// The `id` of the event on the presence topic this state follows (the
    /// presence event, or the [`crate::expired`] event).
    pub event_id: Uuid,
}

/// The record key of a contact: `<instanceId>:<phone>`.
pub fn key(instance_id: &str, phone: &str) -> String {
    let mut k = String::with_capacity(instance_id.len() + 1 + phone.len());
    k.push_str(instance_id);
    k.push(':');
    k.push_str(phone);
    k
}

/// The instance id and phone of a key written by [`key`].
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once(':')
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireData<'a> {
    instance_id: &'a str,
    phone: &'a str,
    status: &'a str,
    #[serde(serialize_with = "display")]
    since: Millis,
    #[serde(serialize_with = "display_opt")]
    last_seen: Option<Millis>,
    #[serde(serialize_with = "display_opt")]
    typing_expires_at: Option<Millis>,
    reason: &'static str,
    event_id: uuid::fmt::Hyphenated,
    is_group: bool,
    phone_kind: &'static str,
    status_known: bool,
}

/// Encodes `s` as a version 1 envelope written at `time` with `id`, keyed
/// (`partitionkey`) by `key` (see [`key`]).
pub fn encode(s: &State<'_>, key: &str, id: Uuid, time: OffsetDateTime) -> Vec<u8> {
    let data = WireData {
        instance_id: s.instance_id,
        phone: s.phone.as_str(),
        status: s.status,
        since: Millis(s.since_ms),
        last_seen: s.last_seen_ms.map(Millis),
        typing_expires_at: s.typing_expires_ms.map(Millis),
        reason: s.reason.as_str(),
        event_id: s.event_id.hyphenated(),
        is_group: s.phone.is_group(),
        phone_kind: s.phone.kind().as_str(),
        status_known: s.status_known,
    };
    let source = InstanceSource(s.instance_id);
    CloudEvent::new::<Data>(id, source, time, Some(key), data).encode(640)
}

/// `data` as a consumer reads it. Unknown fields are ignored; `status` and
/// `reason` may be values this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Data {
    pub instance_id: String,
    pub phone: String,
    /// `UNAVAILABLE`, `AVAILABLE`, `COMPOSING`, `PAUSED`, `RECORDING`, or a
    /// value the provider added later (`statusKnown` false).
    pub status: String,
    /// When this status was reported (the event's arrival at the bridge) or
    /// the typing state expired (RFC 3339 UTC, milliseconds).
    pub since: String,
    /// The contact's last-seen time as the provider sent it, or None.
    pub last_seen: Option<String>,
    /// For COMPOSING and RECORDING with `presence.typing_ttl` on: when the
    /// state expires if nothing newer comes. A consumer that reads this
    /// state after that time may take the contact as `PAUSED` on its own.
    pub typing_expires_at: Option<String>,
    /// `reported` or `typing_expired`.
    pub reason: String,
    /// The `id` of the event on the presence topic this state follows.
    pub event_id: Uuid,
    pub is_group: bool,
    pub phone_kind: String,
    pub status_known: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_and_encode_decodes_back() {
        let phone = zapi::Phone::parse("120363019502650977-group").unwrap();
        let k = key("inst.1", phone.as_str());
        assert_eq!(k, "inst.1:120363019502650977-group");
        assert_eq!(split_key(&k), Some(("inst.1", "120363019502650977-group")));
        let event_id = Uuid::now_v7();
        let s = State {
            instance_id: "inst.1",
            phone: &phone,
            status: "COMPOSING",
            status_known: true,
            since_ms: 1_764_000_000_000,
            last_seen_ms: None,
            typing_expires_ms: Some(1_764_000_015_000),
            reason: Reason::Reported,
            event_id,
        };
        let id = Uuid::now_v7();
        let back = Envelope::decode(&encode(&s, &k, id, OffsetDateTime::UNIX_EPOCH)).unwrap();
        assert_eq!(back.id, id);
        assert_eq!(back.partitionkey.as_deref(), Some(k.as_str()));
        assert_eq!(back.data.status, "COMPOSING");
        assert_eq!(back.data.since, "2025-11-24T16:00:00.000Z");
        assert_eq!(
            back.data.typing_expires_at.as_deref(),
            Some("2025-11-24T16:00:15.000Z")
        );
        assert_eq!(back.data.reason, "reported");
        assert_eq!(back.data.event_id, event_id);
        assert!(back.data.is_group);
        assert_eq!(back.data.phone_kind, "group");
        assert_eq!(back.data.last_seen, None);
    }
}
