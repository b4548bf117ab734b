//! Properties of every callback kind, over generated bodies: parsing never
//! panics on any JSON object (nor on any bytes); a callback that is
//! accepted has a key that is never empty and gives an envelope that is
//! JSON, validates against its kind's schema, is keyed as it says and
//! carries the body as sent; callbacks built like the provider's are
//! accepted, whatever else they carry.

use std::collections::HashMap;
use std::sync::OnceLock;

use events::{EventKind, OutboundRecord};
use proptest::prelude::*;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use zapi::{Callback, CallbackKind};

/// Each kind's compiled schema, once.
fn schemas() -> &'static HashMap<&'static str, jsonschema::Validator> {
    static SCHEMAS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        EventKind::ALL
            .into_iter()
            .map(|k| {
                let schema: Value = serde_json::from_str(events::schema::of_kind(k)).unwrap();
                (k.ce_type(), jsonschema::validator_for(&schema).unwrap())
            })
            .collect()
    })
}

/// The checks every accepted callback must pass.
fn check_accepted(cb: &Callback, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(!cb.key().is_empty());
    let rec =
        OutboundRecord::from_callback(cb, "t", events::new_event_id(), OffsetDateTime::now_utc());
    prop_assert_eq!(&rec.key, cb.key());
    let value: Value = serde_json::from_slice(&rec.value)
        .map_err(|e| TestCaseError::fail(format!("the envelope is not JSON: {e}")))?;
    let errors: Vec<String> = schemas()[rec.kind.ce_type()]
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    prop_assert!(errors.is_empty(), "{:?}: {:?}", cb.kind(), errors);
    prop_assert_eq!(value["partitionkey"].as_str(), Some(cb.key()));
    if let Some(payload) = cb.payload() {
        let sent: Value = serde_json::from_slice(strip_bom(body)).unwrap();
        prop_assert_eq!(&value["data"]["payload"], &sent);
        prop_assert_eq!(
            payload.get(),
            std::str::from_utf8(strip_bom(body)).unwrap().trim()
        );
    }
    Ok(())
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

/// Any JSON value, nested a few levels, with strings of any characters.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The members a callback's parser reads, with values of any type, and
/// the documented `type` values (and a few others) more often than chance.
fn any_object() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_owned()),
        Just("instanceId".to_owned()),
        Just("phone".to_owned()),
        Just("status".to_owned()),
        Just("momment".to_owned()),
        Just("moment".to_owned()),
        Just("ids".to_owned()),
        Just("id".to_owned()),
        Just("fromMe".to_owned()),
        Just("messageId".to_owned()),
        Just("zaapId".to_owned()),
        Just("notification".to_owned()),
        Just("connected".to_owned()),
        Just("disconnected".to_owned()),
        Just("lastSeen".to_owned()),
        Just("text".to_owned()),
        ".{0,8}",
    ];
    let value = prop_oneof![
        3 => any_json(),
        2 => prop::sample::select(
            CallbackKind::ALL.iter().map(|k| k.type_name()).chain(["ReceivedCallBack", "X"]).collect::<Vec<_>>()
        ).prop_map(Value::from),
        1 => prop::sample::select(vec!["5544999999999", "120363019502650977-group", "1@lid", "65998849469@lid", "i1"]).prop_map(Value::from),
    ];
    prop::collection::vec((key, value), 0..12)
        .prop_map(|members| Value::Object(members.into_iter().collect::<Map<String, Value>>()))
}

/// A chat id in one of the forms the provider sends.
fn chat() -> impl Strategy<Value = String> {
    prop_oneof![
        "[1-9][0-9]{11,12}",
        "1203630[0-9]{11}-group",
        "[0-9]{10}-[0-9]{10}-group",
        "[0-9]{10}-broadcast",
        "[0-9]{15}@lid",
        "1203630[0-9]{11}@newsletter",
    ]
}

/// A timestamp the provider might send: absent, seconds, milliseconds, a
/// numeric string, `null`.
fn moment() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        (0i64..100_000_000_000).prop_map(|s| Some(Value::from(s))),
        (100_000_000_000i64..253_402_300_799_999).prop_map(|ms| Some(Value::from(ms))),
        (0i64..253_402_300_799_999).prop_map(|v| Some(Value::from(v.to_string()))),
    ]
}

/// A callback of any kind built like the provider's, with extra members
/// of any content.
fn provider_like() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(CallbackKind::ALL.to_vec()),
        "[A-Za-z0-9._-]{1,40}",
        chat(),
        moment(),
        any::<bool>(),
        prop::collection::vec("[A-Za-z0-9]{1,30}", 1..4),
        "[A-Za-z_-][ -~]{0,19}",
        // Extra members: any content, under names the parser never checks.
        prop::collection::btree_map("x[a-zA-Z]{0,10}", any_json(), 0..5),
    )
        .prop_map(|(kind, instance, chat, moment, flag, ids, status, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("type".into(), kind.type_name().into());
            m.insert("instanceId".into(), instance.into());
            match kind {
                CallbackKind::Presence => {
                    m.insert("phone".into(), chat.into());
                    m.insert("status".into(), "COMPOSING".into());
                    m.remove("lastSeen");
                }
                CallbackKind::Received => {
                    m.insert("phone".into(), chat.into());
                    m.insert("fromMe".into(), flag.into());
                    m.insert("messageId".into(), ids[0].clone().into());
                    m.insert("text".into(), serde_json::json!({"message": status}));
                }
                CallbackKind::Delivery => {
                    m.insert("phone".into(), chat.into());
                    m.insert("zaapId".into(), ids[0].clone().into());
                }
                CallbackKind::MessageStatus => {
                    m.insert("phone".into(), chat.into());
                    m.insert("status".into(), status.into());
                    m.insert("ids".into(), ids.into());
                }
                CallbackKind::Connected => {
                    m.insert("connected".into(), flag.into());
                    m.insert("phone".into(), chat.into());
                }
                CallbackKind::Disconnected => {
                    m.insert("disconnected".into(), flag.into());
                }
            }
            if let Some(t) = moment {
                m.insert("momment".into(), t);
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_object_never_panics_and_what_is_accepted_is_valid(v in any_object()) {
        let body = serde_json::to_vec(&v).unwrap();
        match Callback::from_json(&body) {
            Ok(cb) => check_accepted(&cb, &body)?,
            Err(e) => {
                prop_assert!(!e.code().is_empty());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn parsing_any_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(cb) = Callback::from_json(&body) {
            check_accepted(&cb, &body)?;
        }
    }

    #[test]
    fn a_provider_like_callback_with_one_member_of_any_value_never_panics(
        v in provider_like(),
        member in prop::sample::select(vec![
            "type", "instanceId", "phone", "status", "momment", "moment", "ids", "id",
            "fromMe", "messageId", "zaapId", "notification", "connected", "disconnected",
            "lastSeen",
        ]),
        value in any_json(),
    ) {
        let mut v = v;
        v[member] = value;
        let body = serde_json::to_vec(&v).unwrap();
        match Callback::from_json(&body) {
            Ok(cb) => check_accepted(&cb, &body)?,
            Err(e) => {
                if let Some(field) = e.field() {
                    prop_assert!(
                        field == member || field == "ids" && member == "id",
                        "{} names {} after {} changed: {}", e.code(), field, member, e
                    );
                }
            }
        }
    }

    #[test]
    fn provider_like_callbacks_are_accepted_and_valid(v in provider_like()) {
        let body = serde_json::to_vec_pretty(&v).unwrap();
        let cb = Callback::from_json(&body)
            .map_err(|e| TestCaseError::fail(format!("rejected: {e}: {v}")))?;
        prop_assert_eq!(cb.kind().type_name(), v["type"].as_str().unwrap());
        check_accepted(&cb, &body)?;
    }
}
