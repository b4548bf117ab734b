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

use crate::member::{optional_bool, optional_str, required_str, Member, Members, CONTENT_KINDS};
use crate::timestamp::normalize_moment;
use crate::{InstanceId, Millis, Payload, Phone, PresenceError};

/// A `ReceivedCallback`: a message (or a system notification) in a chat of
/// the instance, including the instance's own messages when "notify sent by
/// me" is on (`from_me`).
#[derive(Clone, PartialEq, Eq, Debug)]
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
#[derive(Clone, PartialEq, Eq, Debug)]
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
#[derive(Clone, PartialEq, Eq, Debug)]
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::{Callback, ParseError, PresenceError};

    fn parse(v: &Value) -> Result<Callback, PresenceError> {
        match Callback::from_json(v.to_string().as_bytes()) {
            Ok(cb) => Ok(cb),
            Err(ParseError::Invalid(e)) => Err(e),
            Err(e) => panic!("{v}: not a field error: {e}"),
        }
    }

    fn received() -> Value {
        json!({"type": "ReceivedCallback", "instanceId": "i1", "phone": "5544999999999",
               "fromMe": false, "messageId": "M1", "momment": 1632228638000_i64,
               "status": "RECEIVED", "senderName": "Maria", "chatName": "Maria",
               "photo": "https://pps.whatsapp.net/secret.jpg",
               "text": {"message": "my secret body"}})
    }

    fn status() -> Value {
        json!({"type": "MessageStatusCallback", "instanceId": "i1", "phone": "5544999999999",
               "status": "READ", "ids": ["M1"], "momment": 1632234645000_i64})
    }

    fn with(mut v: Value, field: &str, value: Value) -> Value {
        v[field] = value;
        v
    }

    fn without(mut v: Value, field: &str) -> Value {
        v.as_object_mut().unwrap().remove(field);
        v
    }

    #[test]
    fn field_errors_name_the_field() {
        let delivery =
            json!({"type": "DeliveryCallback", "instanceId": "i1", "phone": "554499999999"});
        let cases: Vec<(Value, PresenceError)> = vec![
            (
                without(received(), "phone"),
                PresenceError::Missing { field: "phone" },
            ),
            (
                without(received(), "instanceId"),
                PresenceError::Missing {
                    field: "instanceId",
                },
            ),
            (
                with(received(), "instanceId", json!("a/b")),
                PresenceError::InvalidInstanceId,
            ),
            (
                with(received(), "phone", json!("not a chat")),
                PresenceError::InvalidPhone,
            ),
            (
                with(received(), "phone", json!(5544999999999_i64)),
                PresenceError::WrongType {
                    field: "phone",
                    expected: "a string",
                    got: "a number",
                },
            ),
            (
                with(received(), "fromMe", json!("false")),
                PresenceError::WrongType {
                    field: "fromMe",
                    expected: "a boolean",
                    got: "a string",
                },
            ),
            (
                with(received(), "messageId", json!(7)),
                PresenceError::WrongType {
                    field: "messageId",
                    expected: "a string",
                    got: "a number",
                },
            ),
            (
                with(received(), "notification", json!({})),
                PresenceError::WrongType {
                    field: "notification",
                    expected: "a string",
                    got: "an object",
                },
            ),
            (
                with(received(), "momment", json!("yesterday")),
                PresenceError::InvalidMoment { field: "momment" },
            ),
            (
                with(without(received(), "momment"), "moment", json!(-5)),
                PresenceError::MomentOutOfRange { field: "moment" },
            ),
            (
                with(delivery.clone(), "zaapId", json!(false)),
                PresenceError::WrongType {
                    field: "zaapId",
                    expected: "a string",
                    got: "a boolean",
                },
            ),
            (
                without(delivery, "phone"),
                PresenceError::Missing { field: "phone" },
            ),
            (
                without(status(), "status"),
                PresenceError::Missing { field: "status" },
            ),
            (
                with(status(), "status", json!(" ")),
                PresenceError::Empty { field: "status" },
            ),
            (
                without(status(), "ids"),
                PresenceError::Missing { field: "ids" },
            ),
            (
                with(status(), "ids", json!([])),
                PresenceError::Empty { field: "ids" },
            ),
            (
                with(status(), "ids", json!(["M1", ""])),
                PresenceError::Empty { field: "ids" },
            ),
            (
                with(status(), "ids", json!(["M1", 2])),
                PresenceError::WrongType {
                    field: "ids",
                    expected: "a string or an array of strings",
                    got: "an array holding a number",
                },
            ),
            (
                with(without(status(), "ids"), "id", json!(null)),
                PresenceError::WrongType {
                    field: "id",
                    expected: "a string or an array of strings",
                    got: "null",
                },
            ),
            (
                with(status(), "momment", json!(1.5)),
                PresenceError::InvalidMoment { field: "momment" },
            ),
        ];
        for (body, want) in cases {
            let got = parse(&body).unwrap_err();
            assert_eq!(got, want, "{body}");
            assert!(
                got.to_string().contains(&format!("`{}`", got.field())),
                "{got}"
            );
        }
    }

    #[test]
    fn what_the_bridge_does_not_rely_on_is_optional_and_carried() {
        let bare = json!({"type": "ReceivedCallback", "instanceId": "i1", "phone": "5544999999999",
                          "notification": "PROFILE_NAME_UPDATED", "profileName": "x",
                          "fromMe": null, "futureContent": {"a": 1}});
        let Callback::Received(r) = parse(&bare).unwrap() else {
            panic!()
        };
        assert_eq!(r.from_me, None);
        assert_eq!(r.message_id, None);
        assert_eq!(r.moment_ms, None);
        assert_eq!(r.content_kind, None);
        assert_eq!(r.notification.as_deref(), Some("PROFILE_NAME_UPDATED"));
        let payload: Value = r.payload.parse().unwrap();
        assert_eq!(payload, bare);
    }

    #[test]
    fn ids_may_be_one_string_or_spelled_id() {
        for (body, ids) in [
            (status(), vec!["M1"]),
            (with(status(), "ids", json!("M2")), vec!["M2"]),
            (
                with(without(status(), "ids"), "id", json!("M3")),
                vec!["M3"],
            ),
            (
                with(without(status(), "ids"), "id", json!(["M4", "M5"])),
                vec!["M4", "M5"],
            ),
            // Both: `ids`, as every example spells it, wins.
            (with(status(), "id", json!("ignored")), vec!["M1"]),
        ] {
            let Callback::MessageStatus(s) = parse(&body).unwrap() else {
                panic!()
            };
            assert_eq!(s.ids, ids, "{body}");
        }
    }

    #[test]
    fn statuses_stay_open() {
        for (raw, known) in [
            ("READ", true),
            ("READ_BY_ME", true),
            ("READ-SELF", false),
            ("read", false),
        ] {
            let Callback::MessageStatus(s) = parse(&with(status(), "status", json!(raw))).unwrap()
            else {
                panic!()
            };
            assert_eq!(s.status, raw);
            assert_eq!(s.status_known(), known, "{raw}");
        }
    }

    #[test]
    fn a_repeated_key_counts_once_the_last_time_and_stays_in_the_payload() {
        // The provider's EN image example: `instanceId` twice, `thumbnailUrl` twice.
        let body = r#"{"instanceId":"A20DA9C0183A2D35A260F53F5D2B9244","phone":"5544999999999","type":"ReceivedCallback","image":{"thumbnailUrl":"https://","thumbnailUrl":"https://"},"instanceId":"instance.id"}"#;
        let cb = Callback::from_json(body.as_bytes()).unwrap();
        assert_eq!(cb.instance_id().as_str(), "instance.id");
        assert_eq!(cb.payload().unwrap().get(), body);
        // A repeated `type` too: the last one decides the kind.
        let body = r#"{"type":"PresenceChatCallback","type":"DeliveryCallback","phone":"554499999999","instanceId":"i"}"#;
        assert_eq!(
            Callback::from_json(body.as_bytes()).unwrap().kind(),
            crate::CallbackKind::Delivery
        );
    }

    #[test]
    fn debug_shows_no_personal_data() {
        let debug = format!("{:?}", parse(&received()).unwrap());
        for secret in ["5544999999999", "Maria", "secret", "pps.whatsapp.net"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("55*********99"), "{debug}");
        let debug = format!("{:?}", parse(&status()).unwrap());
        assert!(!debug.contains("5544999999999"), "{debug}");
        let connected = json!({"type": "ConnectedCallback", "instanceId": "i1", "connected": true,
                               "phone": "5544999999999", "momment": 1});
        let debug = format!("{:?}", parse(&connected).unwrap());
        assert!(!debug.contains("5544999999999"), "{debug}");
    }

    #[test]
    fn connection_events_are_keyed_by_instance_and_check_their_flag() {
        let body =
            json!({"type": "DisconnectedCallback", "instanceId": "i1", "disconnected": "yes"});
        assert_eq!(
            parse(&body).unwrap_err(),
            PresenceError::WrongType {
                field: "disconnected",
                expected: "a boolean",
                got: "a string"
            }
        );
        // The connected example's `phone` is a placeholder: not validated.
        let body = json!({"type": "ConnectedCallback", "instanceId": "i1", "phone": "número"});
        let cb = parse(&body).unwrap();
        assert_eq!(cb.key(), "i1");
        let Callback::Connected(c) = cb else { panic!() };
        assert_eq!((c.flag, c.moment_ms), (None, None));
    }
}
