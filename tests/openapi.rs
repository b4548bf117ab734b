//! Keeps `deploy/openapi.yaml` true: its paths are the routes, its statuses and
//! error codes are exactly what `reply::catalogue()` can answer, every answer
//! the handler can give validates against the documented schema and headers,
//! and its request examples get the documented answer from a real bridge.

mod common;
#[path = "../crates/events/tests/support/golden.rs"]
mod golden;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use presence_bridge::ingress::reply::{self, Rejection};
use presence_bridge::ingress::routes::Route;
use serde_json::{json, Value};

const PRESENCE: &str = "/webhooks/zapi/presence";
const FOR_INSTANCE: &str = "/webhooks/zapi/instances/{instanceId}/presence";
const ANY: &str = "/webhooks/zapi";
const ANY_FOR_INSTANCE: &str = "/webhooks/zapi/instances/{instanceId}";

fn doc() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/openapi.yaml"))
        .expect("deploy/openapi.yaml");
    serde_norway::from_str(&text).expect("openapi.yaml is YAML")
}

/// Follows a local `$ref` (`#/components/...`) once, if there is one.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.strip_prefix('#').expect("local ref"))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// OpenAPI 3.0 schema object → JSON Schema (2020-12): `nullable` becomes a
/// union with null, `example` and `x-` extensions go, refs point at `$defs`.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                match k.as_str() {
                    "nullable" | "example" => {}
                    k if k.starts_with("x-") => {}
                    "$ref" => {
                        let r = v.as_str().unwrap();
                        let name = r.strip_prefix("#/components/schemas/").expect("schema ref");
                        out.insert(k.clone(), json!(format!("#/$defs/{name}")));
                    }
                    _ => {
                        out.insert(k.clone(), to_json_schema(v));
                    }
                }
            }
            let out = Value::Object(out);
            if map.get("nullable") == Some(&Value::Bool(true)) {
                json!({ "anyOf": [out, { "type": "null" }] })
            } else {
                out
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// A validator for an OpenAPI schema object of `doc` (refs resolved).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = to_json_schema(schema);
    let defs: serde_json::Map<String, Value> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), to_json_schema(v)))
        .collect();
    root.as_object_mut()
        .unwrap()
        .insert("$defs".into(), Value::Object(defs));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}: {root}"))
}

fn check(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let v = validator(doc, schema);
    if let Err(e) = v.validate(instance) {
        panic!("{what}: {instance} breaks the documented schema: {e}");
    }
}

fn operations(doc: &Value) -> Vec<(&'static str, &Value)> {
    [PRESENCE, FOR_INSTANCE]
        .into_iter()
        .map(|p| (p, &doc["paths"][p]["post"]))
        .collect()
}

/// The documented response object of `op` for `status`.
fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    op["responses"]
        .get(status.to_string())
        .map(|r| deref(doc, r))
}

/// Every (code, status) the handler can answer.
fn answers() -> BTreeMap<&'static str, u16> {
    let mut all = BTreeMap::new();
    for r in reply::catalogue() {
        let prev = all.insert(r.code(), r.status().as_u16());
        assert!(
            prev.is_none() || prev == Some(r.status().as_u16()),
            "{} has two statuses",
            r.code()
        );
    }
    all
}

#[test]
fn the_paths_are_the_routes() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([PRESENCE, FOR_INSTANCE, ANY, ANY_FOR_INSTANCE])
    );
    assert_eq!(Route::parse(ANY), Route::Any);
    assert_eq!(
        Route::parse(&ANY_FOR_INSTANCE.replace("{instanceId}", "abc")),
        Route::AnyForInstance("abc".into())
    );
    assert_eq!(Route::parse(PRESENCE), Route::Presence);
    assert_eq!(
        Route::parse(&FOR_INSTANCE.replace("{instanceId}", "abc")),
        Route::PresenceForInstance("abc".into())
    );
    for path in paths {
        let methods: Vec<&String> = doc["paths"][path].as_object().unwrap().keys().collect();
        assert_eq!(methods, ["post"], "{path}: only POST is served");
    }
}

#[test]
fn documented_statuses_and_codes_are_exactly_the_answers() {
    let doc = doc();
    let answers = answers();
    // The webhook operations document every status but 404, which only other paths get.
    let mut want: BTreeSet<String> = answers
        .values()
        .filter(|s| **s != 404)
        .map(u16::to_string)
        .collect();
    want.insert("200".into());
    for (path, op) in operations(&doc) {
        let documented: BTreeSet<String> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(documented, want, "statuses of POST {path}");
    }
    // The error code enum is exactly the codes, and each status's enum exactly its codes.
    let schemas = &doc["components"]["schemas"];
    let enum_of = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not an enum: {v}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    let all: BTreeSet<String> = answers.keys().map(|c| c.to_string()).collect();
    assert_eq!(
        enum_of(&schemas["Error"]["properties"]["error"]["enum"]),
        all
    );
    let statuses: BTreeSet<u16> = answers.values().copied().collect();
    for status in statuses {
        let codes: BTreeSet<String> = answers
            .iter()
            .filter(|(_, s)| **s == status)
            .map(|(c, _)| c.to_string())
            .collect();
        let schema = &schemas[format!("Error{status}")];
        let documented = enum_of(&schema["allOf"][1]["properties"]["error"]["enum"]);
        assert_eq!(documented, codes, "codes of {status}");
    }
    // The fields an error can name.
    let fields = enum_of(&schemas["Error"]["properties"]["field"]["enum"]);
    // The presence fields, then those of the other callbacks (zapi's errors).
    let expected: BTreeSet<String> = [
        "type",
        "phone",
        "status",
        "lastSeen",
        "instanceId",
        "momment",
        "moment",
        "ids",
        "id",
        "fromMe",
        "messageId",
        "zaapId",
        "notification",
        "connected",
        "disconnected",
    ]
    .map(String::from)
    .into();
    assert_eq!(fields, expected);
}

/// Every answer `reply::respond` can give validates against the documented
/// response of its status: body schema, content type and required headers.
#[tokio::test]
async fn every_answer_matches_its_documented_response() {
    let doc = doc();
    let ops = operations(&doc);
    let mut outcomes: Vec<reply::Outcome> = vec![Ok(uuid::Uuid::now_v7())];
    outcomes.extend(
        reply::catalogue()
            .into_iter()
            .map(Err::<uuid::Uuid, Rejection>),
    );
    for outcome in &outcomes {
        let resp = reply::respond(outcome);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let documented: Vec<&Value> = if status == 404 {
            vec![deref(&doc, &doc["components"]["responses"]["NotFound"])]
        } else {
            ops.iter()
                .map(|(path, op)| {
                    response(&doc, op, status)
                        .unwrap_or_else(|| panic!("{status} not documented for {path}"))
                })
                .collect()
        };
        for r in documented {
            let media = &r["content"]["application/json"];
            assert_eq!(headers["content-type"], "application/json");
            check(&doc, &media["schema"], &body, &format!("{status} body"));
            let doc_headers = r.get("headers").and_then(Value::as_object);
            for (name, h) in doc_headers.into_iter().flatten() {
                let h = deref(&doc, h);
                let value = headers.get(name.as_str());
                if h["required"] == true {
                    assert!(value.is_some(), "{status} lacks header {name}");
                }
                if let Some(value) = value {
                    let text = value.to_str().unwrap();
                    let as_json = if h["schema"]["type"] == "integer" {
                        json!(text.parse::<i64>().expect("an integer header"))
                    } else {
                        json!(text)
                    };
                    check(
                        &doc,
                        &h["schema"],
                        &as_json,
                        &format!("{status} header {name}"),
                    );
                }
            }
        }
    }
}

fn examples(doc: &Value) -> Vec<(String, Value, Option<Value>)> {
    let media =
        &doc["components"]["requestBodies"]["PresenceChatCallback"]["content"]["application/json"];
    media["examples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, e)| (name.clone(), e["value"].clone(), e.get("x-expect").cloned()))
        .collect()
}

/// The documented examples, sent to a real bridge on both routes and with each
/// token carrier, get the documented answer; valid ones match the request
/// schema, invalid ones do not; answers match the response schemas.
#[tokio::test]
async fn documented_examples_get_the_documented_answers() {
    let doc = doc();
    let request_schema = &doc["components"]["requestBodies"]["PresenceChatCallback"]["content"]
        ["application/json"]["schema"];
    let request_validator = validator(&doc, request_schema);
    let examples = examples(&doc);
    assert!(examples.iter().filter(|e| e.2.is_none()).count() >= 3);
    assert!(examples.iter().filter(|e| e.2.is_some()).count() >= 3);
    let b = Bridge::start().await;
    let bearer = format!("Bearer {TOKEN}");
    for (name, value, expect) in &examples {
        assert_eq!(
            request_validator.is_valid(value),
            expect.is_none(),
            "example {name}: schema validity differs from the documented outcome"
        );
        let instance = value["instanceId"].as_str().unwrap_or("instance.id");
        let body = value.to_string();
        let sends: [(String, Vec<(&str, &str)>); 3] = [
            (
                format!("{PRESENCE}?token={TOKEN}"),
                vec![("content-type", "application/json")],
            ),
            (
                FOR_INSTANCE.replace("{instanceId}", instance),
                vec![
                    ("content-type", "application/json"),
                    ("authorization", bearer.as_str()),
                ],
            ),
            (
                PRESENCE.to_owned(),
                vec![
                    ("content-type", "application/json; charset=utf-8"),
                    ("x-webhook-token", TOKEN),
                ],
            ),
        ];
        for (path, headers) in sends {
            let r = b.send(Method::POST, &path, &headers, &body).await;
            let (op_path, op) = if path.starts_with("/webhooks/zapi/instances/") {
                (FOR_INSTANCE, &doc["paths"][FOR_INSTANCE]["post"])
            } else {
                (PRESENCE, &doc["paths"][PRESENCE]["post"])
            };
            match expect {
                None => assert_eq!(r.status, StatusCode::OK, "{name} on {path}: {:?}", r.body),
                Some(x) => {
                    assert_eq!(r.status.as_u16(), x["status"], "{name} on {path}");
                    assert_eq!(r.body["error"], x["error"], "{name} on {path}");
                    assert_eq!(r.body["field"], x["field"], "{name} on {path}");
                }
            }
            let documented = response(&doc, op, r.status.as_u16())
                .unwrap_or_else(|| panic!("{} undocumented for {op_path}", r.status));
            check(
                &doc,
                &documented["content"]["application/json"]["schema"],
                &r.body,
                &format!("answer to {name} on {path}"),
            );
        }
    }
    // The golden inputs, the provider's shapes, are valid and accepted too.
    // (golden::cases() fails unless the provider's five examples are there.)
    for case in golden::cases() {
        let value: Value = serde_json::from_str(&case.input).unwrap();
        assert!(request_validator.is_valid(&value), "{}", case.name);
        let r = b.post_json(&case.input).await;
        assert_eq!(r.status, StatusCode::OK, "{}: {:?}", case.name, r.body);
    }
}

/// Answers provoked over HTTP (not just built by `respond`) match the document.
#[tokio::test]
async fn provoked_rejections_match_the_document() {
    let doc = doc();
    let b = Bridge::start().await;
    let json_ct = ("content-type", "application/json");
    let good = callback("5544999999999", "AVAILABLE");
    /// Method, path and query, headers, body, the status it must get.
    type Case<'a> = (Method, String, Vec<(&'a str, &'a str)>, String, u16);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            PRESENCE.into(),
            vec![json_ct],
            good.clone(),
            401,
        ),
        (Method::GET, PRESENCE.into(), vec![], String::new(), 405),
        (
            Method::POST,
            format!("{PRESENCE}?token={TOKEN}"),
            vec![("content-type", "text/plain")],
            good.clone(),
            415,
        ),
        (
            Method::POST,
            format!("{PRESENCE}?token={TOKEN}"),
            vec![json_ct],
            " ".repeat(70_000),
            413,
        ),
        (
            Method::POST,
            format!("/webhooks/zapi/instances/a%2Fb/presence?token={TOKEN}"),
            vec![json_ct],
            good.clone(),
            400,
        ),
        (
            Method::POST,
            format!("/webhooks/zapi/instances/other/presence?token={TOKEN}"),
            vec![json_ct],
            good.clone(),
            400,
        ),
    ];
    for (method, path, headers, body, want) in cases {
        let r = b.send(method, &path, &headers, &body).await;
        assert_eq!(r.status.as_u16(), want, "{path}: {:?}", r.body);
        let op = if path.starts_with("/webhooks/zapi/instances/") {
            &doc["paths"][FOR_INSTANCE]["post"]
        } else {
            &doc["paths"][PRESENCE]["post"]
        };
        let documented = response(&doc, op, want).unwrap();
        check(
            &doc,
            &documented["content"]["application/json"]["schema"],
            &r.body,
            &path,
        );
    }
    let r = b.send(Method::POST, "/nope", &[], "").await;
    let not_found = deref(&doc, &doc["components"]["responses"]["NotFound"]);
    check(
        &doc,
        &not_found["content"]["application/json"]["schema"],
        &r.body,
        "404",
    );
}

/// The any-type routes: their documented examples get the documented
/// answers on both, every provider example of every kind (the golden
/// inputs) is valid against the documented body and accepted, and every
/// answer matches the response schemas.
#[tokio::test]
async fn every_callback_kind_gets_the_documented_answers_on_the_any_routes() {
    let doc = doc();
    let media = &doc["components"]["requestBodies"]["AnyCallback"]["content"]["application/json"];
    let request_validator = validator(&doc, &media["schema"]);
    let mut sends: Vec<(String, Value, Option<Value>)> = media["examples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, e)| (name.clone(), e["value"].clone(), e.get("x-expect").cloned()))
        .collect();
    assert!(sends.iter().any(|e| e.2.is_some()));
    for (kind, case) in golden::all_cases() {
        let value: Value = serde_json::from_str(&case.input).unwrap();
        sends.push((format!("golden {kind}/{}", case.name), value, None));
    }
    let b = Bridge::start().await;
    for (name, value, expect) in sends {
        assert_eq!(
            request_validator.is_valid(&value),
            expect.is_none(),
            "{name}: schema validity differs from the documented outcome"
        );
        let instance = value["instanceId"].as_str().unwrap_or("instance.id");
        for (op_path, path) in [
            (ANY, ANY.to_owned()),
            (
                ANY_FOR_INSTANCE,
                ANY_FOR_INSTANCE.replace("{instanceId}", instance),
            ),
        ] {
            let r = b
                .send(
                    Method::POST,
                    &format!("{path}?token={TOKEN}"),
                    &[("content-type", "application/json")],
                    &value.to_string(),
                )
                .await;
            match &expect {
                None => assert_eq!(r.status, StatusCode::OK, "{name} on {path}: {:?}", r.body),
                Some(x) => {
                    assert_eq!(r.status.as_u16(), x["status"], "{name} on {path}");
                    assert_eq!(r.body["error"], x["error"], "{name} on {path}");
                    assert_eq!(r.body["field"], x["field"], "{name} on {path}");
                }
            }
            let op = &doc["paths"][op_path]["post"];
            let documented = response(&doc, op, r.status.as_u16())
                .unwrap_or_else(|| panic!("{} undocumented for {op_path}", r.status));
            check(
                &doc,
                &documented["content"]["application/json"]["schema"],
                &r.body,
                &format!("answer to {name} on {path}"),
            );
        }
    }
}
