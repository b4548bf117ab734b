//! `Content-Encoding` through a real bridge: a gzip callback is accepted and
//! delivered as if it had come plain; another encoding is a 415; a
//! compressed bomb and a corrupt stream get a precise 413 and 400, each
//! counted under its reason, and nothing reaches the topic.

mod common;

use std::io::Write;

use common::*;
use hyper::{Method, StatusCode};

const PRESENCE: &str = "/webhooks/zapi/presence";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(b: &Bridge, encoding: &str, body: Vec<u8>) -> Reply {
    b.send_bytes(
        Method::POST,
        &format!("{PRESENCE}?token={TOKEN}"),
        &[
            ("content-type", "application/json"),
            ("content-encoding", encoding),
        ],
        body,
    )
    .await
}

fn rejected(b: &Bridge, reason: &str) -> f64 {
    b.metric(&format!(
        "presence_bridge_events_rejected_total{{reason=\"{reason}\"}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_callback_is_delivered_as_a_plain_one() {
    let b = Bridge::start().await;
    let plain = callback("5544999990001", "COMPOSING");
    let r = post(&b, "gzip", gzip(plain.as_bytes())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = post(
        &b,
        "identity",
        callback("5544999990001", "PAUSED").into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let got = b.read(2).await;
    assert_eq!(got[0].key, "5544999990001");
    assert_eq!(got[0].value["data"]["status"], "COMPOSING");
    assert_eq!(got[1].value["data"]["status"], "PAUSED");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_encodings_bombs_and_corrupt_streams_are_refused_precisely() {
    let b = Bridge::start().await;
    let body = callback("5544999990002", "AVAILABLE").into_bytes();

    let r = post(&b, "br", body.clone()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{:?}", r.body);
    assert_eq!(r.body["error"], "unsupported_encoding");
    assert_eq!(rejected(&b, "unsupported_encoding"), 1.0);

    // 16 MiB of zeros in about 16 KiB: read within the 64 KiB limit,
    // refused once its decompressed bytes pass it.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let r = post(&b, "gzip", bomb).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert_eq!(r.body["error"], "payload_too_large");
    assert_eq!(rejected(&b, "payload_too_large"), 1.0);

    let mut corrupt = gzip(&body);
    let n = corrupt.len();
    corrupt[n / 2] ^= 0xff;
    let r = post(&b, "gzip", corrupt).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.body["error"], "malformed_encoding");
    assert_eq!(rejected(&b, "malformed_encoding"), 1.0);

    // Nothing of the three was taken: the next event is the first record.
    let r = post(&b, "gzip", gzip(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    b.wait_for_value("presence_bridge_spool_events", 0.0).await;
    let got = b.read_all().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].key, "5544999990002");
    b.stop().await;
}
