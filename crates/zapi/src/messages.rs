//! The message callbacks, validated and normalized: [`Received`]
//! (`ReceivedCallback`), [`Delivery`] (`DeliveryCallback`) and
//! [`MessageStatus`] (`MessageStatusCallback`). Each is keyed by its chat
//! (`phone`, normalized as for presence: a person's digits, `<id>-group`,
//! `<id>@broadcast`, `<id>@newsletter`, `<id>@lid`) and carries the
//! provider's object as sent ([`Payload`]).
//!
//! Strict about what the bridge relies on (`instanceId`, `phone`, the
//! timestamp, a status's `status` and `ids`); the other normalized fields are
//! type-checked when present and `null` when absent; everything else is only
//! in the payload. Open value sets (`status`, `notification`) stay open.
//!
//! `Debug` never shows message bodies, names, photos, media URLs or a full
//! phone: the chat is masked and the payload shows its size only.

use std::fmt;

use crate::member::{optional_bool, optional_str, required_str, Member, Members, CONTENT_KINDS};
use crate::timestamp::normalize_moment;
use crate::{InstanceId, Masked, Millis, Payload, Phone, PresenceError};

/// A `ReceivedCallback`: a message (or a system notification) in a chat of
/// the instance, including the instance's own messages when "notify sent by
/// me" is on (`from_me`).
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    pub instance_id: InstanceId,
    /// The chat (`phone`): also the Kafka key.
    pub chat: Phone,
    /// `fromMe`: sent by the connected number. None when absent or `null`.
    pub from_me: Option<bool>,
    /// `messageId`, as sent; absent in some notifications.
    pub message_id: Option<String>,
    /// `status` as sent (an open set: `RECEIVED`, `SENT`, `MESSAGE_RECEIVED`, ...).
    pub status: Option<String>,
    /// `notification` as sent (an open set: `CALL_VOICE`, `GROUP_CREATE`, ...);
    /// None for an ordinary message.
    pub notification: Option<String>,
    /// The first documented content key present (`text`, `image`, `audio`,
    /// ..., see [`CONTENT_KINDS`]); None for a notification or a kind the
    /// reference does not document (the payload carries it).
    pub content_kind: Option<&'static str>,
    /// `momment` (or `moment`), Unix milliseconds.
    pub moment_ms: Option<i64>,
    pub payload: Payload,
}

/// A `DeliveryCallback`: a message the instance sent was handed to WhatsApp.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    pub instance_id: InstanceId,
    /// The chat the message went to (`phone`): also the Kafka key.
    pub chat: Phone,
    /// `messageId` (WhatsApp's id), as sent.
    pub message_id: Option<String>,
    /// `zaapId` (Z-API's id), as sent.
    pub zaap_id: Option<String>,
    /// `momment` (or `moment`), Unix milliseconds; the published docs have
    /// none for this callback.
    pub moment_ms: Option<i64>,
    pub payload: Payload,
}

/// A `MessageStatusCallback`: one status change of one or more messages.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageStatus {
    pub instance_id: InstanceId,
    /// The chat of the messages (`phone`): also the Kafka key.
    pub chat: Phone,
    /// `status` as sent, trimmed (an open set, see [`MESSAGE_STATUSES`]).
    pub status: String,
    /// The affected message ids: `ids` (an array, or one string), or `id`
    /// (as the field tables spell it) when `ids` is absent. At least one.
    pub ids: Vec<String>,
    /// `momment` (or `moment`), Unix milliseconds.
    pub moment_ms: Option<i64>,
    pub payload: Payload,
}

/// The message statuses the provider documents; others are carried too.
pub const MESSAGE_STATUSES: [&str; 5] = ["SENT", "RECEIVED", "READ", "READ_BY_ME", "PLAYED"];

impl MessageStatus {
    /// True for a status of [`MESSAGE_STATUSES`].
    pub fn status_known(&self) -> bool {
        MESSAGE_STATUSES.contains(&self.status.as_str())
    }

    /// `moment_ms` as RFC 3339 UTC with milliseconds.
    pub fn moment(&self) -> Option<String> {
        self.moment_ms.map(|ms| Millis(ms).to_string())
    }
}

impl Received {
    /// `moment_ms` as RFC 3339 UTC with milliseconds.
    pub fn moment(&self) -> Option<String> {
        self.moment_ms.map(|ms| Millis(ms).to_string())
    }
}

impl Delivery {
    /// `moment_ms` as RFC 3339 UTC with milliseconds.
    pub fn moment(&self) -> Option<String> {
        self.moment_ms.map(|ms| Millis(ms).to_string())
    }
}

/// `instanceId` and `phone`, in that order (after `type`).
fn instance_and_chat(m: &Members<'_>) -> Result<(InstanceId, Phone), PresenceError> {
    let instance_id = InstanceId::parse(required_str(m.instance_id.as_ref(), "instanceId")?)?;
    let chat = Phone::parse(required_str(m.phone.as_ref(), "phone")?)?;
    Ok((instance_id, chat))
}

impl Received {
    pub(crate) fn build(m: &Members<'_>, payload: Payload) -> Result<Self, PresenceError> {
        let (instance_id, chat) = instance_and_chat(m)?;
        let moment_ms = normalize_moment(m.momment.as_ref(), m.moment.as_ref())?;
        Ok(Self {
            instance_id,
            chat,
            from_me: optional_bool(m.from_me.as_ref(), "fromMe")?,
            message_id: optional_str(m.message_id.as_ref(), "messageId")?,
            status: optional_str(m.status.as_ref(), "status")?,
            notification: optional_str(m.notification.as_ref(), "notification")?,
            content_kind: m.content.map(|i| CONTENT_KINDS[i]),
            moment_ms,
            payload,
        })
    }
}

impl Delivery {
    pub(crate) fn build(m: &Members<'_>, payload: Payload) -> Result<Self, PresenceError> {
        let (instance_id, chat) = instance_and_chat(m)?;
        let moment_ms = normalize_moment(m.momment.as_ref(), m.moment.as_ref())?;
        Ok(Self {
            instance_id,
            chat,
            message_id: optional_str(m.message_id.as_ref(), "messageId")?,
            zaap_id: optional_str(m.zaap_id.as_ref(), "zaapId")?,
            moment_ms,
            payload,
        })
    }
}

impl MessageStatus {
    pub(crate) fn build(m: &Members<'_>, payload: Payload) -> Result<Self, PresenceError> {
        let (instance_id, chat) = instance_and_chat(m)?;
        let status = required_str(m.status.as_ref(), "status")?.trim().to_owned();
        let ids = match (&m.ids, &m.id) {
            (Some(ids), _) => message_ids(ids, "ids")?,
            (None, Some(id)) => message_ids(id, "id")?,
            (None, None) => return Err(PresenceError::Missing { field: "ids" }),
        };
        let moment_ms = normalize_moment(m.momment.as_ref(), m.moment.as_ref())?;
        Ok(Self {
            instance_id,
            chat,
            status,
            ids,
            moment_ms,
            payload,
        })
    }
}

/// `ids` or `id`: a non-empty array of non-blank strings, or one such string.
fn message_ids(value: &Member<'_>, field: &'static str) -> Result<Vec<String>, PresenceError> {
    let expected = "a string or an array of strings";
    match value {
        Member::Str(s) if s.trim().is_empty() => Err(PresenceError::Empty { field }),
        Member::Str(s) => Ok(vec![s.as_ref().to_owned()]),
        Member::Array {
            other: Some(kind), ..
        } => Err(PresenceError::WrongType {
            field,
            expected,
            got: match *kind {
                "a number" => "an array holding a number",
                "null" => "an array holding null",
                "a boolean" => "an array holding a boolean",
                "an array" => "an array holding an array",
                _ => "an array holding an object",
            },
        }),
        Member::Array { strings, .. }
            if strings.is_empty() || strings.iter().any(|s| s.trim().is_empty()) =>
        {
            Err(PresenceError::Empty { field })
        }
        Member::Array { strings, .. } => {
            Ok(strings.iter().map(|s| s.as_ref().to_owned()).collect())
        }
        other => Err(PresenceError::WrongType {
            field,
            expected,
            got: other.kind(),
        }),
    }
}

/// The chat masked, as logs must show it.
struct MaskedChat<'a>(Masked<'a>, crate::PhoneKind);

impl fmt::Debug for MaskedChat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.1.as_str())
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("instance_id", &self.instance_id.as_str())
            .field("chat", &MaskedChat(self.chat.masked(), self.chat.kind()))
            .field("from_me", &self.from_me)
            .field("message_id", &self.message_id)
            .field("status", &self.status)
            .field("notification", &self.notification)
            .field("content_kind", &self.content_kind)
            .field("moment_ms", &self.moment_ms)
            .field("payload", &self.payload)
            .finish()
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("instance_id", &self.instance_id.as_str())
            .field("chat", &MaskedChat(self.chat.masked(), self.chat.kind()))
            .field("message_id", &self.message_id)
            .field("zaap_id", &self.zaap_id)
            .field("moment_ms", &self.moment_ms)
            .field("payload", &self.payload)
            .finish()
    }
}

impl fmt::Debug for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStatus")
            .field("instance_id", &self.instance_id.as_str())
            .field("chat", &MaskedChat(self.chat.masked(), self.chat.kind()))
            .field("status", &self.status)
            .field("ids", &self.ids.len())
            .field("moment_ms", &self.moment_ms)
            .field("payload", &self.payload)
            .finish()
    }
}
