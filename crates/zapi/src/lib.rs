//! Z-API's webhook callbacks as types: the one place that knows the provider's
//! wire format.
//!
//! Bytes of any of the six callbacks in ([`Callback::from_json`] dispatches
//! on `type`; [`CallbackKind`] lists them), a validated [`Callback`] or a
//! precise [`ParseError`] out; bytes of a `PresenceChatCallback` in, a
//! validated [`PresenceEvent`] out ([`PresenceEvent::from_json`], the
//! presence routes' parser, which [`Callback::from_json`] uses for that kind). Pure code: no I/O, no clock, no logging, no
//! async runtime; the root package (`presence-bridge`) owns the transport,
//! the envelope and the delivery, and reaches this crate as
//! `presence_bridge::presence`.
//!
//! Serde reads the provider's JSON into [`RawCallback`] (every field optional
//! and loosely typed, so that a missing or mistyped field gets a precise error
//! instead of a generic serde message); [`PresenceEvent::try_from`] is the only
//! way to build a validated event, and only a validated event can be put in an
//! envelope.
//!
//! Normalization rules (documented in `docs/http-api.md`, pinned by golden tests):
//! - `type` must be exactly `PresenceChatCallback`.
//! - `phone`: `+`, spaces, dots, dashes and parentheses are stripped; a person's
//!   number is 8 to 15 digits after that (a `@s.whatsapp.net` or `@c.us` suffix is
//!   accepted and removed). Group ids (`<digits>-group`, `<digits>@g.us`, or the
//!   legacy `<digits>-<digits>@g.us`) are normalized to `<id>-group`; `<id>-broadcast`
//!   is normalized to `<id>@broadcast`; `@broadcast`,
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
//! The other callbacks ([`Received`], [`Delivery`], [`MessageStatus`],
//! [`Connection`] for connected and disconnected; rules in `docs/envelope.md`):
//! - `type`: one of the six, or `ReceivedCallBack`; anything else is
//!   [`PresenceError::UnknownType`] (code `unsupported_type`, listing the six).
//! - Strict about what the bridge relies on: `instanceId` (as above); `phone`
//!   of received, delivery and status callbacks, the chat and Kafka key (as
//!   above, and Z-API's `<id>-broadcast` is read as `<id>@broadcast`); a status's
//!   `status` and `ids` (or `id`, as the field tables spell it: one string or an
//!   array of non-blank strings); `momment` (or `moment`), when present, in
//!   epoch seconds or milliseconds by magnitude, digits in a string, or RFC
//!   3339 (code `invalid_moment`).
//! - The other normalized fields (`fromMe`, `messageId`, `zaapId`, `status`,
//!   `notification`, `connected`, `disconnected`) are checked for their type
//!   when present and not null; open sets stay open.
//! - Faithful about the rest: the object is kept byte for byte as [`Payload`].
//! - A repeated key: the last one counts (the payload keeps all). Every string
//!   in the body must decode (a lone surrogate escape is malformed JSON).
//!
//! Never log a [`Phone`] with `Display`: use [`Phone::masked`]. The `Debug` of
//! every type here masks phones and shows a payload's size only.
//!
//! # Modules
//! - `callback`: [`Callback`], [`CallbackKind`], the dispatching parser and the keys.
//! - `messages`: [`Received`], [`Delivery`], [`MessageStatus`].
//! - `connection`: [`Connection`].
//! - `payload`: [`Payload`], the object as sent.
//! - `member`: the members of the other callbacks, read last-wins, and their checks.
//! - `raw`: the callback as sent ([`RawCallback`], [`Field`]) and its serde visitor.
//! - `presence`: [`PresenceEvent`], built from a [`RawCallback`] or a JSON body.
//! - `error`: why a callback was rejected ([`PresenceError`], [`ParseError`]) and
//!   the stable codes used in HTTP bodies and metric labels.
//! - `phone`: [`Phone`] and [`PhoneKind`], normalization and masking.
//! - `status`: [`PresenceStatus`].
//! - `instance`: [`InstanceId`].
//! - `timestamp`: `lastSeen` and `momment` normalization and RFC 3339 formatting with
//!   milliseconds ([`Millis`], [`format_millis`]).

mod callback;
mod connection;
mod error;
mod instance;
mod member;
mod messages;
mod payload;
mod phone;
mod presence;
mod raw;
mod status;
mod timestamp;

pub use callback::{Callback, CallbackKind};
pub use connection::Connection;
pub use error::{ParseError, PresenceError};
pub use instance::{InstanceId, MAX_INSTANCE_ID_LEN};
pub use member::CONTENT_KINDS;
pub use messages::{Delivery, MessageStatus, Received, MESSAGE_STATUSES};
pub use payload::Payload;
pub use phone::{Masked, Phone, PhoneKind};
pub use presence::{PresenceEvent, CALLBACK_TYPE};
pub use raw::{Field, RawCallback};
pub use status::{PresenceStatus, MAX_STATUS_LEN};
pub use timestamp::{format_millis, Millis};

/// Callbacks built from JSON, for the unit tests of every module.
#[cfg(test)]
mod test_support {
    use serde_json::{json, Value};

    use crate::{PresenceError, PresenceEvent, RawCallback};

    pub fn event(v: Value) -> Result<PresenceEvent, PresenceError> {
        let text = v.to_string();
        PresenceEvent::try_from(serde_json::from_str::<RawCallback>(&text).unwrap())
    }

    pub fn base() -> Value {
        json!({"type": "PresenceChatCallback", "phone": "5544999999999",
               "status": "AVAILABLE", "lastSeen": null, "instanceId": "instance.id"})
    }

    pub fn with(field: &str, v: Value) -> Value {
        let mut b = base();
        b[field] = v;
        b
    }
}
