//! Hostile input never hurts: property tests that send arbitrary bodies,
//! JSON values, Content-Types, methods, paths and token carriers to the real
//! webhook handler (behind the real accept loop) with a healthy sink.
//!
//! Every answer must be a 200 with `{"id": <UUIDv7>}` or a 4xx with the
//! documented error body `{error, message, field?}` whose `error` is one of
//! the codes `reply::catalogue()` lists; never a 5xx, never a hang, never a
//! panic. Valid callbacks with a good token are always accepted.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use presence_bridge::envelope::OutboundRecord;
use presence_bridge::ingress::reply;
use presence_bridge::sink::{Sink, SinkError};
use proptest::prelude::*;
use serde_json::{json, Value};

const TOKEN: &str = "hostile-token-0123456789";
const MAX_BODY: usize = 4096;

/// A healthy sink that checks what it is given and counts it.
#[derive(Clone, Default)]
struct Healthy(Arc<AtomicUsize>);

impl Sink for Healthy {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        let v: Value = serde_json::from_slice(&record.value).expect("record is JSON");
        assert_eq!(v["data"]["phone"], record.key.as_str());
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    accepted: Healthy,
    codes: BTreeSet<&'static str>,
}

impl Harness {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let accepted = Healthy::default();
        let sink = accepted.clone();
        let addr = rt.block_on(async move {
            let limits = presence_bridge::server::Limits {
                max_connections: 16,
                header_read_timeout: Duration::from_secs(5),
                ..Default::default()
            };
            let env = [
                ("PRESENCE_BRIDGE__AUTH__TOKENS", TOKEN),
                (
                    "PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES",
                    &MAX_BODY.to_string(),
                ),
            ];
            common::handler::Handler::serve(sink, &env, limits)
                .await
                .addr
        });
        let client = {
            let _guard = rt.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        let codes: BTreeSet<&'static str> = reply::catalogue().iter().map(|r| r.code()).collect();
        Self {
            rt,
            addr,
            client,
            accepted,
            codes,
        }
    }

    /// Sends one request and checks the answer's contract; returns the status
    /// and the body.
    fn send(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Value), TestCaseError> {
        let fut = async {
            let resp = tokio::time::timeout(Duration::from_secs(20), self.client.request(req))
                .await
                .expect("answered within 20 s")
                .expect("the request went through");
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, bytes)
        };
        let (status, headers, bytes) = self.rt.block_on(fut);
        prop_assert!(
            status == StatusCode::OK || status.is_client_error(),
            "status {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        prop_assert_eq!(
            headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("body is not JSON: {e}")))?;
        let obj = body.as_object().expect("body is an object");
        if status == StatusCode::OK {
            prop_assert_eq!(obj.len(), 1, "{}", body);
            let id = uuid::Uuid::parse_str(body["id"].as_str().unwrap_or_default())
                .map_err(|e| TestCaseError::fail(format!("id: {e}")))?;
            prop_assert_eq!(id.get_version_num(), 7);
        } else {
            let code = body["error"].as_str().unwrap_or_default();
            prop_assert!(self.codes.contains(code), "undocumented code {code}");
            prop_assert!(!body["message"].as_str().unwrap_or_default().is_empty());
            for key in obj.keys() {
                prop_assert!(
                    ["error", "message", "field"].contains(&key.as_str()),
                    "{body}"
                );
            }
            if let Some(field) = obj.get("field") {
                let field = field.as_str().unwrap_or_default();
                prop_assert!(
                    ["type", "phone", "status", "lastSeen", "instanceId"].contains(&field),
                    "{body}"
                );
            }
        }
        Ok((status, body))
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }
}

fn harness() -> &'static Harness {
    static H: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    H.get_or_init(Harness::start)
}

/// How the request presents a token.
#[derive(Debug, Clone)]
enum Carrier {
    None,
    Bearer(String),
    Header(String),
    Query(String),
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(TOKEN.to_owned()),
        1 => "[ -~]{0,40}",
    ]
}

fn carrier() -> impl Strategy<Value = Carrier> {
    prop_oneof![
        1 => Just(Carrier::None),
        2 => token().prop_map(Carrier::Bearer),
        2 => token().prop_map(Carrier::Header),
        2 => token().prop_map(Carrier::Query),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => Just(Some("application/cloudevents+json".to_owned())),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,60}".prop_map(Some),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        8 => Just(Method::POST),
        1 => Just(Method::GET),
        1 => Just(Method::PUT),
        1 => Just(Method::DELETE),
        1 => Just(Method::PATCH),
        1 => Just(Method::OPTIONS),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("/webhooks/zapi/presence".to_owned()),
        2 => Just("/webhooks/zapi/instances/instance.id/presence".to_owned()),
        1 => any::<String>().prop_map(|s| format!(
            "/webhooks/zapi/instances/{}/presence",
            utf8_percent_encode(&s, NON_ALPHANUMERIC)
        )),
        1 => "(/[a-zA-Z0-9._~-]{0,12}){0,4}",
    ]
}

/// A header name and value that hyper will send.
fn extra_header() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("content-length".to_owned()),
            Just("authorization".to_owned()),
            Just("x-webhook-token".to_owned()),
            Just("content-encoding".to_owned()),
            Just("expect".to_owned()),
            "x-[a-z0-9-]{1,20}",
        ],
        "[ -~]{0,40}",
    )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[A-Za-z_]{1,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A callback whose fields are each either valid or an arbitrary JSON value.
fn callback_like() -> impl Strategy<Value = Value> {
    let field = |valid: Vec<Value>| {
        prop_oneof![
            3 => prop::sample::select(valid),
            1 => json_value(),
        ]
    };
    (
        field(vec![json!("PresenceChatCallback")]),
        field(vec![
            json!("5544999999999"),
            json!("+55 (44) 99999-9999"),
            json!("120363019502650977@g.us"),
            json!("1234567890@broadcast"),
        ]),
        field(vec![
            json!("AVAILABLE"),
            json!("composing"),
            json!("online_now"),
        ]),
        field(vec![
            Value::Null,
            json!(1700000000),
            json!(1700000000123_i64),
            json!("2024-01-02T03:04:05Z"),
        ]),
        field(vec![json!("instance.id"), json!("3C0A1B2C3D4E5F")]),
        any::<bool>(),
    )
        .prop_map(|(t, p, s, l, i, drop_last_seen)| {
            let mut v = json!({"type": t, "phone": p, "status": s, "lastSeen": l, "instanceId": i});
            if drop_last_seen {
                v.as_object_mut().unwrap().remove("lastSeen");
            }
            v
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..600),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        3 => callback_like().prop_map(|v| v.to_string().into_bytes()),
        1 => (callback_like(), 0usize..200).prop_map(|(v, cut)| {
            let mut b = v.to_string().into_bytes();
            b.truncate(b.len().saturating_sub(cut));
            b
        }),
        1 => (MAX_BODY - 8..MAX_BODY + 64).prop_map(|n| vec![b' '; n]),
    ]
}

fn build(
    method: Method,
    path: &str,
    carrier: &Carrier,
    content_type: Option<&str>,
    extra: &[(String, String)],
    body: Vec<u8>,
) -> Option<Request<Full<Bytes>>> {
    let h = harness();
    let url = match carrier {
        Carrier::Query(t) => format!(
            "{path}?a=1&token={}",
            utf8_percent_encode(t, NON_ALPHANUMERIC)
        ),
        _ => path.to_owned(),
    };
    let mut req = Request::builder().method(method).uri(h.url(&url));
    match carrier {
        Carrier::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
        Carrier::Header(t) => req = req.header("x-webhook-token", t.as_str()),
        _ => {}
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    for (k, v) in extra {
        // A wrong Content-Length would only test the client; hyper frames the body.
        if k != "content-length" {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    req.body(Full::new(Bytes::from(body))).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_200_or_a_documented_4xx(
        method in method(),
        path in path(),
        carrier in carrier(),
        content_type in content_type(),
        extra in prop::collection::vec(extra_header(), 0..3),
        body in body(),
    ) {
        let Some(req) = build(method, &path, &carrier, content_type.as_deref(), &extra, body) else {
            return Ok(());
        };
        harness().send(req)?;
    }

    #[test]
    fn any_bytes_with_a_good_token_get_200_or_400(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let req = build(
            Method::POST,
            "/webhooks/zapi/presence",
            &Carrier::Bearer(TOKEN.to_owned()),
            Some("application/json"),
            &[],
            body.clone(),
        ).unwrap();
        let (status, reply) = harness().send(req)?;
        let parsed = presence_bridge::presence::PresenceEvent::from_json(&body);
        match parsed {
            Ok(_) => prop_assert_eq!(status, StatusCode::OK),
            Err(e) => {
                prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                prop_assert_eq!(reply["error"].as_str(), Some(e.code()));
            }
        }
    }

    #[test]
    fn valid_callbacks_are_always_accepted(
        phone in prop_oneof![
            "[0-9]{8,15}",
            "\\+[0-9]{2} \\([0-9]{2}\\) [0-9]{5}-[0-9]{4}",
            "[0-9]{5,30}(-group|@g\\.us|@broadcast|@newsletter|@lid)",
        ],
        status in "[A-Za-z_]{1,32}",
        last_seen in prop_oneof![
            Just(Value::Null),
            (0i64..253_402_300_799_999).prop_map(Value::from),
        ],
        instance in "[A-Za-z0-9._-]{1,128}",
        carrier in prop_oneof![
            Just(Carrier::Bearer(TOKEN.to_owned())),
            Just(Carrier::Header(TOKEN.to_owned())),
            Just(Carrier::Query(TOKEN.to_owned())),
        ],
    ) {
        let body = json!({"type": "PresenceChatCallback", "phone": phone, "status": status,
                          "lastSeen": last_seen, "instanceId": instance});
        let before = harness().accepted.0.load(Ordering::Relaxed);
        let req = build(
            Method::POST,
            &format!("/webhooks/zapi/instances/{instance}/presence"),
            &carrier,
            Some("application/json"),
            &[],
            body.to_string().into_bytes(),
        ).unwrap();
        let (status, reply) = harness().send(req)?;
        prop_assert_eq!(status, StatusCode::OK, "{} -> {}", body, reply);
        prop_assert!(harness().accepted.0.load(Ordering::Relaxed) > before);
    }
}
