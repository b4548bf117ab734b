//! [`Callback`]: any of Z-API's six webhook callbacks, parsed by
//! [`Callback::from_json`], which dispatches on `type`; [`CallbackKind`], the
//! six kinds with their type names and metric labels; and each callback's
//! Kafka key ([`Callback::key`]).
//!
//! A `PresenceChatCallback` goes through [`PresenceEvent::from_json`]
//! unchanged, so the dispatching route and the presence routes give the same
//! event (and the same errors). The other kinds are read by one pass that
//! keeps the last of a repeated key (see `member.rs`) and by one that keeps
//! the object as sent ([`Payload`]).

use serde_json::value::RawValue;

use crate::member::{required_str, Members};
use crate::{
    Connection, Delivery, InstanceId, MessageStatus, ParseError, PresenceError, PresenceEvent,
    Received,
};

/// The six callback types of Z-API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallbackKind {
    Presence,
    Received,
    Delivery,
    MessageStatus,
    Connected,
    Disconnected,
}

impl CallbackKind {
    pub const ALL: [Self; 6] = [
        Self::Presence,
        Self::Received,
        Self::Delivery,
        Self::MessageStatus,
        Self::Connected,
        Self::Disconnected,
    ];

    /// The `type` the provider sends (`PresenceChatCallback`, ...).
    pub const fn type_name(self) -> &'static str {
        match self {
            Self::Presence => "PresenceChatCallback",
            Self::Received => "ReceivedCallback",
            Self::Delivery => "DeliveryCallback",
            Self::MessageStatus => "MessageStatusCallback",
            Self::Connected => "ConnectedCallback",
            Self::Disconnected => "DisconnectedCallback",
        }
    }

    /// The metric label value (a closed set).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Presence => "presence",
            Self::Received => "received",
            Self::Delivery => "delivery",
            Self::MessageStatus => "message_status",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
        }
    }

    /// The kind a `type` names: exactly one of the six [`type_name`](Self::type_name)s,
    /// or `ReceivedCallBack` (the spelling of the provider's field tables).
    pub fn from_type_name(name: &str) -> Option<Self> {
        if name == "ReceivedCallBack" {
            return Some(Self::Received);
        }
        Self::ALL.into_iter().find(|k| k.type_name() == name)
    }
}

/// Any callback, validated and normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    Presence(PresenceEvent),
    Received(Received),
    Delivery(Delivery),
    MessageStatus(MessageStatus),
    Connected(Connection),
    Disconnected(Connection),
}

impl Callback {
    /// Parses a body of any of the six kinds, dispatching on `type`. A
    /// leading UTF-8 byte-order mark is ignored. Checked in a fixed order:
    /// the body, `type`, `instanceId`, then the kind's own fields.
    pub fn from_json(body: &[u8]) -> Result<Callback, ParseError> {
        let body = object_body(body)?;
        let raw: Box<RawValue> = serde_json::from_slice(body).map_err(ParseError::Json)?;
        // The same text, read again for the members the bridge needs.
        let members: Members = serde_json::from_slice(body).map_err(ParseError::Json)?;
        let kind = CallbackKind::from_type_name(required_str(members.kind.as_ref(), "type")?)
            .ok_or(PresenceError::UnknownType)?;
        let payload = crate::Payload::new(raw);
        Ok(match kind {
            CallbackKind::Presence => Self::Presence(PresenceEvent::from_json(body)?),
            CallbackKind::Received => Self::Received(Received::build(&members, payload)?),
            CallbackKind::Delivery => Self::Delivery(Delivery::build(&members, payload)?),
            CallbackKind::MessageStatus => {
                Self::MessageStatus(MessageStatus::build(&members, payload)?)
            }
            CallbackKind::Connected => {
                Self::Connected(Connection::build(&members, "connected", payload)?)
            }
            CallbackKind::Disconnected => {
                Self::Disconnected(Connection::build(&members, "disconnected", payload)?)
            }
        })
    }

    pub fn kind(&self) -> CallbackKind {
        match self {
            Self::Presence(_) => CallbackKind::Presence,
            Self::Received(_) => CallbackKind::Received,
            Self::Delivery(_) => CallbackKind::Delivery,
            Self::MessageStatus(_) => CallbackKind::MessageStatus,
            Self::Connected(_) => CallbackKind::Connected,
            Self::Disconnected(_) => CallbackKind::Disconnected,
        }
    }

    pub fn instance_id(&self) -> &InstanceId {
        match self {
            Self::Presence(e) => &e.instance_id,
            Self::Received(e) => &e.instance_id,
            Self::Delivery(e) => &e.instance_id,
            Self::MessageStatus(e) => &e.instance_id,
            Self::Connected(e) | Self::Disconnected(e) => &e.instance_id,
        }
    }

    /// The Kafka key, never empty: the normalized phone of a presence event;
    /// the chat (normalized `phone`: a person's digits, `<id>-group`,
    /// `<id>@lid`, `<id>@newsletter`, `<id>@broadcast`) of a received,
    /// delivery or status callback, so one chat's events stay in order; the
    /// instance id of a connected or disconnected callback.
    pub fn key(&self) -> &str {
        match self {
            Self::Presence(e) => e.phone.as_str(),
            Self::Received(e) => e.chat.as_str(),
            Self::Delivery(e) => e.chat.as_str(),
            Self::MessageStatus(e) => e.chat.as_str(),
            Self::Connected(e) | Self::Disconnected(e) => e.instance_id.as_str(),
        }
    }

    /// The provider's object as sent; None for a presence event (whose
    /// envelope carries the normalized fields only).
    pub fn payload(&self) -> Option<&crate::Payload> {
        match self {
            Self::Presence(_) => None,
            Self::Received(e) => Some(&e.payload),
            Self::Delivery(e) => Some(&e.payload),
            Self::MessageStatus(e) => Some(&e.payload),
            Self::Connected(e) | Self::Disconnected(e) => Some(&e.payload),
        }
    }
}

/// The body without a leading byte-order mark, if it is (or starts like) a
/// JSON object; otherwise why not: empty, or the JSON type it is, or where it
/// stops being JSON.
pub(crate) fn object_body(body: &[u8]) -> Result<&[u8], ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .ok_or(ParseError::Empty)?;
    if *first != b'{' {
        // Serde would read a JSON array positionally into a struct: say
        // what the body is instead, or where it stops being JSON.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Err(e) => ParseError::Json(e),
                Ok(_) => ParseError::NotAnObject {
                    got: json_kind(*first),
                },
            },
        );
    }
    Ok(body)
}

/// The JSON type of a value that starts with `first`, in [`crate::Field::kind`]'s words.
fn json_kind(first: u8) -> &'static str {
    match first {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'{' => "an object",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Callback, ParseError> {
        Callback::from_json(json.as_bytes())
    }

    fn invalid(json: &str) -> PresenceError {
        match parse(json) {
            Err(ParseError::Invalid(e)) => e,
            other => panic!("{json}: expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn kinds_name_their_type_and_label() {
        for k in CallbackKind::ALL {
            assert_eq!(CallbackKind::from_type_name(k.type_name()), Some(k));
        }
        assert_eq!(
            CallbackKind::from_type_name("ReceivedCallBack"),
            Some(CallbackKind::Received)
        );
        assert_eq!(CallbackKind::from_type_name("receivedcallback"), None);
        // The metric labels and type names the root's routes and metrics use.
        let named: Vec<(&str, &str)> = CallbackKind::ALL
            .iter()
            .map(|k| (k.type_name(), k.label()))
            .collect();
        assert_eq!(
            named,
            [
                ("PresenceChatCallback", "presence"),
                ("ReceivedCallback", "received"),
                ("DeliveryCallback", "delivery"),
                ("MessageStatusCallback", "message_status"),
                ("ConnectedCallback", "connected"),
                ("DisconnectedCallback", "disconnected"),
            ]
        );
    }

    #[test]
    fn each_kind_is_dispatched_and_keyed() {
        let cases = [
            (
                r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"PAUSED","lastSeen":null,"instanceId":"instance.id"}"#,
                CallbackKind::Presence,
                "5544999999999",
            ),
            (
                r#"{"type":"ReceivedCallBack","phone":"120363019502650977-group","fromMe":false,"momment":1632228638000,"instanceId":"i1","text":{"message":"hi"}}"#,
                CallbackKind::Received,
                "120363019502650977-group",
            ),
            (
                r#"{"phone":"554499999999","zaapId":"A2","messageId":"A2","type":"DeliveryCallback","instanceId":"instance.id"}"#,
                CallbackKind::Delivery,
                "554499999999",
            ),
            (
                r#"{"status":"READ","ids":["999"],"momment":1632234645000,"phone":"65998849469@lid","type":"MessageStatusCallback","instanceId":"instance.id"}"#,
                CallbackKind::MessageStatus,
                "65998849469@lid",
            ),
            (
                r#"{"type":"ConnectedCallback","connected":true,"momment":26151515154,"instanceId":"instance.id","phone":"número"}"#,
                CallbackKind::Connected,
                "instance.id",
            ),
            (
                r#"{"momment":1580163342,"error":"Device has been disconnected","disconnected":true,"type":"DisconnectedCallback","instanceId":"instance.id"}"#,
                CallbackKind::Disconnected,
                "instance.id",
            ),
        ];
        for (json, kind, key) in cases {
            let cb = parse(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(cb.kind(), kind, "{json}");
            assert_eq!(cb.key(), key, "{json}");
            match &cb {
                Callback::Presence(_) => assert!(cb.payload().is_none()),
                _ => assert_eq!(cb.payload().unwrap().get(), json),
            }
        }
    }

    #[test]
    fn presence_is_parsed_as_by_the_presence_route() {
        let body = br#"{"type":"PresenceChatCallback","phone":"+55 44 99999-9999","status":"composing","instanceId":"i1"}"#;
        assert_eq!(
            Callback::from_json(body).unwrap(),
            Callback::Presence(PresenceEvent::from_json(body).unwrap())
        );
        let bad = br#"{"type":"PresenceChatCallback","phone":"x","status":"AVAILABLE","instanceId":"i1"}"#;
        assert_eq!(
            Callback::from_json(bad).unwrap_err().to_string(),
            PresenceEvent::from_json(bad).unwrap_err().to_string()
        );
    }

    #[test]
    fn an_unknown_type_lists_the_six() {
        let e = invalid(r#"{"type":"InitialDataCallback","instanceId":"i1"}"#);
        assert_eq!(e, PresenceError::UnknownType);
        assert_eq!(e.code(), "unsupported_type");
        assert_eq!(e.field(), "type");
        for k in CallbackKind::ALL {
            assert!(e.to_string().contains(k.type_name()), "{e}");
        }
        assert_eq!(
            invalid(r#"{"instanceId":"i1"}"#),
            PresenceError::Missing { field: "type" }
        );
    }

    #[test]
    fn the_body_must_be_one_object() {
        for (body, code) in [
            (&b""[..], "malformed_json"),
            (b"[1]", "malformed_json"),
            (b"{\"type\":", "malformed_json"),
            (b"{} {}", "malformed_json"),
        ] {
            assert_eq!(Callback::from_json(body).unwrap_err().code(), code);
        }
        let bom = "\u{feff}{\"type\":\"DeliveryCallback\",\"phone\":\"554499999999\",\"instanceId\":\"i\"}";
        let cb = Callback::from_json(bom.as_bytes()).unwrap();
        assert!(cb.payload().unwrap().get().starts_with('{'));
    }
}
