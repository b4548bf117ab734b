//! When the bridge ends a connection it says so, and an early answer reaches
//! a client still uploading (issue #10, item H), over plain HTTP:
//!
//! - HTTP/1.1: the last answer under `http.max_requests_per_connection`
//!   carries `connection: close` whatever its status (200, 400, 401, 413),
//!   then the connection ends, so a keep-alive client never sends into a
//!   closed connection; an early answer to a client mid-upload comes after its body
//!   and keeps the connection; a body that is not read (too large, `Expect:
//!   100-continue`) gets its answer with `connection: close`, and so does
//!   an answer given during shutdown (a 503 from a stopping sink).
//! - HTTP/2 (h2c): the last stream under the cap ends the connection with a
//!   graceful GOAWAY; every early answer (401, 403, 405, 413, 415, 429)
//!   reaches curl and hyper's client many times in a row.
//! - A request waiting for its commit is never closed to give its slot to
//!   a new client.
//!
//! The same over TLS with ALPN h2 is in `tests/tls.rs`.

mod close_support;
mod common;

use std::time::Duration;

use bytes::Bytes;
use close_support::*;
use common::raw::{assert_closed, read_response};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn request(method: &str, target: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {target} HTTP/1.1\r\nhost: t\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

const PRESENCE: &str = "/webhooks/zapi/presence";

/// A request answered with `status` by a bridge whose body limit is 1 KiB.
fn request_for(status: u16) -> Vec<u8> {
    let with_token = format!("{PRESENCE}?token={TOKEN}");
    let json = "application/json";
    match status {
        200 => request(
            "POST",
            &with_token,
            json,
            "",
            callback("5511999998001", "AVAILABLE").as_bytes(),
        ),
        400 => request(
            "POST",
            &with_token,
            json,
            "",
            callback("not-a-phone", "AVAILABLE").as_bytes(),
        ),
        401 => request(
            "POST",
            PRESENCE,
            json,
            "",
            callback("5511999998001", "AVAILABLE").as_bytes(),
        ),
        413 => request("POST", &with_token, json, "", &in_flight_body()),
        415 => request(
            "POST",
            &with_token,
            "text/plain",
            "",
            callback("5511999998001", "AVAILABLE").as_bytes(),
        ),
        other => unreachable!("no request for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_answer_under_the_request_cap_says_connection_close_whatever_its_status() {
    let bridge = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__HTTP__MAX_REQUESTS_PER_CONNECTION", "3"),
        ("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "1024"),
    ])
    .await;
    for status in [200, 400, 401, 413] {
        let mut s = TcpStream::connect(bridge.running.webhook_addr)
            .await
            .unwrap();
        let mut buf = Vec::new();
        for i in 0..3 {
            s.write_all(&request_for(status)).await.unwrap();
            let r = read_response(&mut s, &mut buf)
                .await
                .unwrap_or_else(|| panic!("request {i} of a {status} connection: closed"));
            assert_eq!(r.status, status, "{r:?}");
            // Answers before the last keep the connection (413's body was
            // read and thrown away); the last one says it ends it.
            assert_eq!(r.closes(), i == 2, "answer {i} of {status}: {r:?}");
        }
        assert_closed(&mut s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_client_never_sends_into_a_connection_the_bridge_closed() {
    let bridge = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__HTTP__MAX_REQUESTS_PER_CONNECTION", "2"),
        ("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "1024"),
    ])
    .await;
    // A strict keep-alive client: it sends its next request on the same
    // connection unless the last answer said `connection: close`. A
    // connection that ends without saying so fails the test (a real client
    // would have written its next POST into a closed socket).
    let statuses = [200u16, 400, 401, 413, 415];
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    let mut connections = 0;
    for i in 0..60 {
        let status = statuses[i % statuses.len()];
        if conn.is_none() {
            let s = TcpStream::connect(bridge.running.webhook_addr)
                .await
                .unwrap();
            conn = Some((s, Vec::new()));
            connections += 1;
        }
        let (s, buf) = conn.as_mut().unwrap();
        s.write_all(&request_for(status))
            .await
            .unwrap_or_else(|e| panic!("request {i}: write failed: {e}"));
        let r = read_response(s, buf).await.unwrap_or_else(|| {
            panic!("request {i} (want {status}): the connection ended without `connection: close`")
        });
        assert_eq!(r.status, status, "request {i}: {r:?}");
        if r.closes() {
            let (mut s, _) = conn.take().unwrap();
            assert_closed(&mut s).await;
        }
    }
    // Two requests per connection, whatever the answers were.
    assert_eq!(connections, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_a_client_mid_upload_comes_after_its_body_and_keeps_the_connection() {
    let bridge = Bridge::start().await;
    let mut s = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    let mut buf = Vec::new();
    // No token: 401 is decided from the head. Half the body now, the rest
    // after: the answer waits for it instead of cutting the upload.
    let body = callback("5511999998003", "COMPOSING");
    let full = request("POST", PRESENCE, "application/json", "", body.as_bytes());
    let (first, rest) = full.split_at(full.len() - body.len() / 2);
    s.write_all(first).await.unwrap();
    s.write_all(rest).await.unwrap();
    let r = read_response(&mut s, &mut buf).await.expect("a 401");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(!r.closes(), "{r:?}");
    // The same connection then carries an accepted event.
    s.write_all(&request_for(200)).await.unwrap();
    let r = read_response(&mut s, &mut buf).await.expect("a 200");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        bridge.metric(r#"presence_bridge_http_unread_bodies_total{result="discarded"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_read_gets_its_answer_with_connection_close() {
    let bridge = Bridge::start().await;
    // Expect: 100-continue and an early answer: the final status instead of
    // 100 (the client then never sends the body), and the connection ends.
    let mut s = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    s.write_all(
        format!(
            "POST {PRESENCE} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
             content-length: 300\r\nexpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf).await.expect("a 401");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.closes(), "{r:?}");
    assert_closed(&mut s).await;

    // Declared over what the bridge discards (1 MiB): 413 at once, and close.
    let mut s = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    s.write_all(
        format!(
            "POST {PRESENCE}?token={TOKEN} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
             content-length: 2000000\r\n\r\n{{\"type\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf).await.expect("a 413");
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.closes(), "{r:?}");
    assert_closed(&mut s).await;
    for (result, n) in [("not_sent", 1.0), ("too_large", 1.0), ("discarded", 0.0)] {
        assert_eq!(
            bridge.metric(&format!(
                r#"presence_bridge_http_unread_bodies_total{{result="{result}"}}"#
            )),
            n,
            "{result}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_h2c_the_last_stream_under_the_cap_ends_the_connection_with_goaway() {
    // Idle connections are closed gracefully too: keep that far away, so
    // only the cap can end these connections within the hang guard.
    let bridge = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__HTTP__MAX_REQUESTS_PER_CONNECTION", "3"),
        ("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "1024"),
        ("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "10m"),
    ])
    .await;
    let base = format!("http://{}", bridge.running.webhook_addr);
    for last in [200u16, 400, 401, 413] {
        let tcp = TcpStream::connect(bridge.running.webhook_addr)
            .await
            .unwrap();
        let (mut h2, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        for (i, status) in [200u16, 401, last].into_iter().enumerate() {
            let (target, body) = match status {
                200 => (
                    format!("{PRESENCE}?token={TOKEN}"),
                    callback("5511999998004", "AVAILABLE").into_bytes(),
                ),
                400 => (format!("{PRESENCE}?token={TOKEN}"), b"[]".to_vec()),
                401 => (
                    PRESENCE.to_owned(),
                    callback("5511999998004", "AVAILABLE").into_bytes(),
                ),
                _ => (format!("{PRESENCE}?token={TOKEN}"), in_flight_body()),
            };
            let req = Request::builder()
                .method(Method::POST)
                .uri(format!("{base}{target}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = h2.send_request(req).await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "stream {i}");
            resp.into_body().collect().await.unwrap();
        }
        // The bridge sends GOAWAY and closes once the streams are done: the
        // client's connection ends cleanly, not with an error.
        let ended = tokio::time::timeout(Duration::from_secs(20), conn)
            .await
            .expect("the bridge kept the HTTP/2 connection open past its cap")
            .unwrap();
        assert!(
            ended.is_ok(),
            "the connection ended with an error: {ended:?}"
        );
        assert!(
            h2.ready().await.is_err(),
            "a closed connection took a stream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_early_answer_reaches_curl_over_h2c_fifty_times_in_a_row() {
    let bridge = Bridge::start_with(EARLY_ANSWER_ENV).await;
    let port = bridge.running.webhook_addr.port();
    curl_gets_every_early_answer(CurlMode::H2c, port, 50, "2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_early_answer_reaches_curl_over_http1_fifty_times_in_a_row() {
    let bridge = Bridge::start_with(EARLY_ANSWER_ENV).await;
    let port = bridge.running.webhook_addr.port();
    curl_gets_every_early_answer(CurlMode::Http1, port, 50, "1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_early_answer_reaches_hyper_over_h2c_fifty_times_in_a_row() {
    let bridge = Bridge::start_with(EARLY_ANSWER_ENV).await;
    let addr = bridge.running.webhook_addr;
    let base = format!("http://{addr}");
    let primed = hyper_h2(
        TcpStream::connect(addr).await.unwrap(),
        &base,
        &prime_rate_limit(),
    )
    .await;
    assert_early(&primed, &prime_rate_limit(), "priming");
    for early in EARLY_ANSWERS {
        for i in 0..50 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let reply = hyper_h2(tcp, &base, early).await;
            assert_early(&reply, early, &format!("try {i}"));
        }
    }
}

/// A sink that holds each event until released, then refuses it (503), as
/// a spool that is stopping would.
struct Held {
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

impl presence_bridge::sink::Sink for Held {
    async fn accept(
        &self,
        _record: presence_bridge::envelope::OutboundRecord,
    ) -> Result<(), presence_bridge::sink::SinkError> {
        let _ = self.entered.send(());
        self.release.notified().await;
        Err(presence_bridge::sink::SinkError::Unavailable(
            "stopping".into(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_during_shutdown_says_connection_close() {
    // Twenty rounds: without the header set when the answer leaves the
    // handler, whether it carried `connection: close` depended on whether
    // hyper wrote it before or after the connection task saw the shutdown.
    for round in 0..20 {
        let (entered, mut entered_rx) = tokio::sync::mpsc::unbounded_channel();
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let held = Held {
            entered,
            release: release.clone(),
        };
        let handler = handler::Handler::serve(held, &[], Default::default()).await;
        let (addr, shutdown, server) = (handler.addr, handler.shutdown, handler.server);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&request(
            "POST",
            PRESENCE,
            "application/json",
            "",
            callback("5511999998005", "PAUSED").as_bytes(),
        ))
        .await
        .unwrap();
        entered_rx
            .recv()
            .await
            .expect("the request reached the sink");
        shutdown.cancel();
        release.notify_one();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf).await.expect("a 503");
        assert_eq!(r.status, 503, "round {round}: {r:?}");
        assert!(r.closes(), "round {round}: {r:?}");
        assert_closed(&mut s).await;
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the server drained")
            .unwrap();
    }
}

/// A request whose body is complete and that waits for the sink's commit
/// holds its connection's slot: a client waiting for the only slot does not
/// close it, however long the commit takes (`server::slots`: busy, because
/// the webhook tells the server when the body is complete). The clock is
/// tokio's paused one: the minute waited is virtual, past both the slow-body
/// and the pressure timeouts.
#[tokio::test(start_paused = true)]
async fn a_request_waiting_for_its_commit_keeps_its_slot() {
    let (entered, mut entered_rx) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = Held {
        entered,
        release: release.clone(),
    };
    let limits = presence_bridge::server::Limits {
        max_connections: 1,
        ..Default::default()
    };
    let handler = handler::Handler::serve(held, &[], limits).await;
    let post = |phone: &str| {
        request(
            "POST",
            PRESENCE,
            "application/json",
            "",
            callback(phone, "PAUSED").as_bytes(),
        )
    };
    let mut a = TcpStream::connect(handler.addr).await.unwrap();
    a.write_all(&post("5511999998006")).await.unwrap();
    entered_rx
        .recv()
        .await
        .expect("the request reached the sink");
    // B waits for the only slot, complete request sent.
    let mut b = TcpStream::connect(handler.addr).await.unwrap();
    b.write_all(&post("5511999998007")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    release.notify_one();
    let mut buf = Vec::new();
    let r = read_response(&mut a, &mut buf)
        .await
        .expect("A's answer, its connection not closed under it");
    assert_eq!(r.status, 503, "{r:?}");
    drop(a);
    // B gets the slot once A's connection ends, and its own answer.
    entered_rx
        .recv()
        .await
        .expect("B's request reached the sink");
    release.notify_one();
    let mut buf = Vec::new();
    let r = read_response(&mut b, &mut buf).await.expect("B's answer");
    assert_eq!(r.status, 503, "{r:?}");
}
