//! Every status the webhook answers, with its body, headers and metric.

mod common;

use common::*;
use hyper::{Method, StatusCode};

const PRESENCE: &str = "/webhooks/zapi/presence";

/// Events refused for their content (400 on the body, 413, 415).
fn rejected(reason: &str) -> String {
    format!("presence_bridge_events_rejected_total{{reason=\"{reason}\"}}")
}

/// Requests refused for anything else (404, 405, 401, 408, 503, ...).
fn refused(reason: &str) -> String {
    format!("presence_bridge_http_requests_refused_total{{reason=\"{reason}\"}}")
}

/// Asserts `reason` was counted `n` times as a refused request and has no
/// series among rejected events (a request that never was an event).
fn assert_refused(text: &str, reason: &str, n: f64) {
    assert_eq!(metric_value(text, &refused(reason)), n, "{reason}");
    let event = format!("{} ", rejected(reason));
    assert!(
        !text.lines().any(|l| l.starts_with(&event)),
        "{reason} counted as a rejected event"
    );
}

#[tokio::test]
async fn accepted_event_answers_200_with_its_id_and_counts() {
    let b = Bridge::start().await;
    let r = b.post_json(&callback("5544999999999", "composing")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let id = uuid::Uuid::parse_str(&r.id()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(
        b.metric(r#"presence_bridge_events_accepted_total{status="COMPOSING"}"#),
        1.0
    );
    assert_eq!(
        b.metric(
            r#"presence_bridge_http_requests_total{method="POST",route="presence",status="200"}"#
        ),
        1.0
    );
    // The forwarder delivers it from the spool.
    let records = b.read(1).await;
    assert_eq!(records[0].value["id"], r.id().as_str());
    // Two records: the event, and the contact's state on the latest topic.
    b.wait_for(
        r#"presence_bridge_kafka_deliveries_total{result="delivered"}"#,
        2.0,
    )
    .await;
    assert_eq!(
        b.metric("presence_bridge_event_delivery_latency_seconds_count"),
        2.0
    );
}

#[tokio::test]
async fn bad_payloads_answer_400_naming_the_field() {
    let b = Bridge::start().await;
    let cases = [
        (
            r#"{"type":"Other","phone":"5544999999999","status":"AVAILABLE","instanceId":"i"}"#,
            "unsupported_type",
            Some("type"),
        ),
        (
            r#"{"type":"PresenceChatCallback","phone":"12","status":"AVAILABLE","instanceId":"i"}"#,
            "invalid_phone",
            Some("phone"),
        ),
        (
            r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"AVAILABLE"}"#,
            "missing_field",
            Some("instanceId"),
        ),
        (
            r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"typing!","instanceId":"i"}"#,
            "invalid_status",
            Some("status"),
        ),
        (
            r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"PAUSED","lastSeen":"soon","instanceId":"i"}"#,
            "invalid_last_seen",
            Some("lastSeen"),
        ),
        (
            r#"{"type":"PresenceChatCallback","phone":5544999999999,"status":"PAUSED","instanceId":"i"}"#,
            "wrong_type",
            Some("phone"),
        ),
        (r#"{"type": "PresenceChatCallback""#, "malformed_json", None),
        ("[]", "malformed_json", None),
    ];
    for (body, code, field) in cases {
        let r = b.post_json(body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["error"], code, "{body}");
        assert_eq!(r.body["field"].as_str(), field, "{body}");
        assert!(r.body["message"].as_str().unwrap().len() > 10);
        assert!(b.metric(&rejected(code)) >= 1.0);
    }
    assert_eq!(b.metric(&rejected("invalid_phone")), 1.0);
}

#[tokio::test]
async fn tokens_are_required_and_accepted_from_every_carrier() {
    let b = Bridge::start().await;
    let body = callback("5544999999999", "AVAILABLE");
    let json = ("content-type", "application/json");
    let missing = b.send(Method::POST, PRESENCE, &[json], &body).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    let wrong = b
        .send(
            Method::POST,
            &format!("{PRESENCE}?token=wrong-token-0123456789"),
            &[json],
            &body,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_refused(&b.metrics(), "unauthorized", 2.0);

    let bearer = format!("Bearer {TOKEN}");
    for headers in [
        vec![json, ("authorization", bearer.as_str())],
        vec![json, ("x-webhook-token", TOKEN)],
    ] {
        let r = b.send(Method::POST, PRESENCE, &headers, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
    }
    assert_eq!(b.post_json(&body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_paths_404_and_wrong_methods_405_with_allow() {
    let b = Bridge::start().await;
    let r = b.send(Method::POST, "/webhooks/zapi/nope", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"], "not_found");
    for m in [Method::GET, Method::PUT, Method::DELETE] {
        let r = b.send(m.clone(), PRESENCE, &[], "").await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(r.headers["allow"], "POST");
    }
    // The webhook port never serves metrics.
    assert_eq!(
        b.send(Method::GET, "/metrics", &[], "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_refused(&b.metrics(), "method_not_allowed", 3.0);
    assert_refused(&b.metrics(), "not_found", 2.0);
}

#[tokio::test]
async fn non_json_content_types_answer_415() {
    let b = Bridge::start().await;
    let path = format!("{PRESENCE}?token={TOKEN}");
    let body = callback("5544999999999", "AVAILABLE");
    for headers in [vec![("content-type", "text/plain")], vec![]] {
        let r = b.send(Method::POST, &path, &headers, &body).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}");
    }
    let ok = b
        .send(
            Method::POST,
            &path,
            &[("content-type", "application/json; charset=utf-8")],
            &body,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(b.metric(&rejected("unsupported_media_type")), 2.0);
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413_before_and_while_reading() {
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "1024")]).await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    // Declared length over the limit: rejected from the head alone.
    let r = b.post_json(&big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["error"], "payload_too_large");

    // Chunked (no Content-Length): rejected while reading.
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(b.running.webhook_addr)
        .await
        .unwrap();
    let chunk = "y".repeat(1500);
    let head = format!(
        "POST {PRESENCE}?token={TOKEN} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(b.metric(&rejected("payload_too_large")), 2.0);
}

#[tokio::test]
async fn instance_in_the_path_must_match_the_body() {
    let b = Bridge::start().await;
    let json = [("content-type", "application/json")];
    let body = callback("5544999999999", "AVAILABLE");
    let ok = b
        .send(
            Method::POST,
            &format!("/webhooks/zapi/instances/instance.id/presence?token={TOKEN}"),
            &json,
            &body,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = b
        .send(
            Method::POST,
            &format!("/webhooks/zapi/instances/other/presence?token={TOKEN}"),
            &json,
            &body,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "instance_mismatch");
    assert_eq!(r.body["field"], "instanceId");
    let r = b
        .send(
            Method::POST,
            &format!("/webhooks/zapi/instances/bad%20id/presence?token={TOKEN}"),
            &json,
            &body,
        )
        .await;
    assert_eq!(r.body["error"], "invalid_instance_id");
    assert_eq!(
        b.metric(r#"presence_bridge_http_requests_total{method="POST",route="presence_instance",status="400"}"#),
        2.0
    );
}

/// A sink that refuses everything, to reach the 503 answers without a disk or broker fault.
struct Refusing(fn() -> presence_bridge::sink::SinkError);

impl presence_bridge::sink::Sink for Refusing {
    async fn accept(
        &self,
        _record: presence_bridge::envelope::OutboundRecord,
    ) -> Result<(), presence_bridge::sink::SinkError> {
        Err((self.0)())
    }
}

async fn serve_with(sink: Refusing) -> handler::Handler {
    let limits = presence_bridge::server::Limits {
        max_connections: 8,
        header_read_timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    handler::Handler::serve(sink, &[], limits).await
}

#[tokio::test]
async fn a_sink_that_cannot_take_the_event_answers_503_with_retry_after() {
    use presence_bridge::sink::SinkError;
    type MakeError = fn() -> SinkError;
    let cases: [(MakeError, &str); 2] = [
        (|| SinkError::Full, "spool_full"),
        (
            || SinkError::Unavailable("disk on fire at /dev/sda".into()),
            "unavailable",
        ),
    ];
    for (make, code) in cases {
        let handler::Handler { addr, registry, .. } = serve_with(Refusing(make)).await;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let req = hyper::Request::post(format!("http://{addr}{PRESENCE}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(callback(
                "5544999999999",
                "AVAILABLE",
            ))))
            .unwrap();
        let r = Reply::read(client.request(req).await.unwrap()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{code}");
        assert_eq!(r.headers["retry-after"], "5");
        assert_eq!(r.body["error"], code);
        // Server errors are answered generically: no detail leaks out.
        assert!(!r.body["message"].as_str().unwrap().contains("disk"));
        let text = String::from_utf8(presence_bridge::metrics::render(&registry)).unwrap();
        assert_refused(&text, code, 1.0);
        assert_eq!(
            metric_value(
                &text,
                r#"presence_bridge_events_accepted_total{status="AVAILABLE"}"#
            ),
            0.0
        );
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let b = Bridge::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = hyper::Request::post(b.url(&format!("{PRESENCE}?token={TOKEN}")))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(callback(
            "5544999999999",
            "RECORDING",
        ))))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_endpoints_report_health_and_metrics() {
    let b = Bridge::start().await;
    let (status, body) = b.get(&b.admin_url("/livez")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    b.wait_for("presence_bridge_kafka_broker_reachable", 1.0)
        .await;
    let (status, body) = b.get(&b.admin_url("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["components"]["spool"]["state"], "accepting");
    assert_eq!(v["components"]["kafka"]["broker"], "reachable");
    assert_eq!(v["components"]["kafka"]["topic"], "present");
    assert!(v.get("mode").is_none(), "not dev mode");
    let (status, text) = b.get(&b.admin_url("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("presence_bridge_build_info{"));
    assert!(text.contains("process_resident_memory_bytes"));
    assert_eq!(
        metric_value(&text, "presence_bridge_kafka_broker_reachable"),
        1.0
    );
    assert_eq!(metric_value(&text, "presence_bridge_ready"), 1.0);
    assert_eq!(
        b.get(&b.admin_url("/dev/kafka")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn no_phone_or_token_ever_appears_in_metrics() {
    let b = Bridge::start().await;
    b.post_json(&callback("5544987654321", "AVAILABLE")).await;
    b.post_json(&callback("12", "AVAILABLE")).await;
    let text = b.metrics();
    assert!(!text.contains("5544987654321"));
    assert!(!text.contains(TOKEN));
    assert!(!text.contains("instance.id"));
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(HANG, s.read_to_end(&mut buf))
        .await
        .expect("the server never closed the connection")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// The event id in a raw HTTP/1.1 answer.
fn answer_id(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).expect(answer);
    v["id"].as_str().expect(answer).to_owned()
}

fn head(len: usize) -> String {
    format!(
        "POST {PRESENCE}?token={TOKEN} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn slow_bodies_get_408_and_slow_heads_are_dropped() {
    use tokio::io::AsyncWriteExt;
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__HTTP__BODY_READ_TIMEOUT", "300ms"),
        ("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "300ms"),
    ])
    .await;
    let body = callback("5544999999999", "PAUSED");
    let mut s = tokio::net::TcpStream::connect(b.running.webhook_addr)
        .await
        .unwrap();
    s.write_all(head(body.len()).as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_refused(&b.metrics(), "body_timeout", 1.0);

    // A head that never ends is not answered: the connection is dropped at
    // the header timeout (before which nothing can close it).
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(b.running.webhook_addr)
        .await
        .unwrap();
    s.write_all(b"POST /webhooks/zapi/presence HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s).await;
    assert_eq!(answer, "", "a slow head is dropped, not answered");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn a_slow_body_gives_the_only_slot_to_the_next_client() {
    use tokio::io::AsyncWriteExt;
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__HTTP__MAX_CONNECTIONS", "1")]).await;
    let body = callback("5544999999999", "PAUSED");
    // A holds the only connection slot with a half-sent request, in flight:
    // the handler reading its body sends `100 Continue`.
    let mut a = tokio::net::TcpStream::connect(b.running.webhook_addr)
        .await
        .unwrap();
    let a_head = head(body.len()).replace("\r\n\r\n", "\r\nexpect: 100-continue\r\n\r\n");
    a.write_all(a_head.as_bytes()).await.unwrap();
    let mut cont = [0u8; 25];
    tokio::time::timeout(HANG, tokio::io::AsyncReadExt::read_exact(&mut a, &mut cont))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert!(
        cont.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{cont:?}"
    );
    a.write_all(&body.as_bytes()[..10]).await.unwrap();
    // B's complete request gets the slot: A's body, still arriving, gives
    // way (server::slots), closed without an answer and without an event.
    let mut c = tokio::net::TcpStream::connect(b.running.webhook_addr)
        .await
        .unwrap();
    c.write_all(head(body.len()).as_bytes()).await.unwrap();
    c.write_all(body.as_bytes()).await.unwrap();
    assert_eq!(b.metric("presence_bridge_http_connections_open"), 1.0);
    // A finishes; C is then served.
    a.write_all(&body.as_bytes()[10..]).await.unwrap();
    let a_answer = read_to_close(&mut a).await;
    assert!(a_answer.starts_with("HTTP/1.1 200"), "{a_answer}");
    let c_answer = read_to_close(&mut c).await;
    assert!(c_answer.starts_with("HTTP/1.1 200"), "{c_answer}");
    // Not served past the limit: C's event was accepted after A's, though
    // C's request was complete first (one phone, so one partition, in the
    // order the spool took them).
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    let records = b.read_all().await;
    let order: Vec<&str> = records
        .iter()
        .map(|r| r.value["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [answer_id(&a_answer), answer_id(&c_answer)]);
}
