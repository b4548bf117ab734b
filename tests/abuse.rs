//! Slow and abusive clients at the connection level, over plain HTTP:
//! slowloris from one address against the per-client cap, idle keep-alive and
//! silent connections cut at `http.header_read_timeout`, the requests-per-
//! connection cap, oversized heads (431), pipelining, and h2c streams.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{assert_closed, read_responses};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Connects from a chosen loopback address (the whole 127/8 reaches `lo`),
/// so one test can play several clients.
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))?;
    socket.connect(to).await
}

fn post(phone: &str, extra_headers: &str) -> String {
    let body = callback(phone, "AVAILABLE");
    format!(
        "POST /webhooks/zapi/presence?token={TOKEN} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

/// Waits for the server to close `s` (`HANG` guards a hang); returns the
/// time since `since`.
async fn closed(s: &mut TcpStream, since: Instant) -> Duration {
    assert_closed(s).await;
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_from_one_address_cannot_starve_another_client() {
    let bridge = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__HTTP__MAX_CONNECTIONS", "16"),
        ("PRESENCE_BRIDGE__HTTP__MAX_CONNECTIONS_PER_CLIENT", "4"),
        // Heads are never cut in this test: a client that had to wait for
        // an attacker's slot would wait ten minutes, far past HANG.
        ("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "10m"),
    ])
    .await;
    let addr = bridge.running.webhook_addr;

    // 40 connections from 127.0.0.2, each trickling a request head a byte at
    // a time, reconnecting when cut: far more than the listener's 16 slots.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut attackers = Vec::new();
    for _ in 0..40 {
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            let head = b"POST /webhooks/zapi/presence HTTP/1.1\r\nhost: t\r\nx-pad: ";
            let mut cut = 0u32;
            while !stop.is_cancelled() {
                let Ok(mut s) = connect_from("127.0.0.2", addr).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                for b in head.iter().cycle() {
                    if stop.is_cancelled() {
                        return cut;
                    }
                    if s.write_all(&[*b]).await.is_err() {
                        cut += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            cut
        }));
    }
    let refused = r#"presence_bridge_http_connections_refused_total{reason="per_client_limit"}"#;
    bridge.wait_for(refused, 10.0).await;

    // Meanwhile another client is answered, every time, without waiting
    // for a slot (the timeout only guards that hang).
    for i in 0..5 {
        let served = tokio::time::timeout(HANG, async {
            let mut s = connect_from("127.0.0.3", addr).await.unwrap();
            s.write_all(post(&format!("551199999100{i}"), "").as_bytes())
                .await
                .unwrap();
            read_responses(&mut s, 1).await
        })
        .await
        .expect("a normal client waited behind the slowloris");
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].status, 200);
    }
    // The attacker never held more than its share.
    assert!(bridge.metric("presence_bridge_http_connections_open") <= 4.0 + 1.0);
    stop.cancel();
    for a in attackers {
        a.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_cut_at_the_header_read_timeout_not_per_byte() {
    let bridge =
        Bridge::start_with(&[("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "400ms")]).await;
    // Taken before the connection exists, so before the server's timer.
    let started = Instant::now();
    let mut s = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    // Bytes keep coming every 30 ms: a timer reset per byte would never
    // cut (the timeout only guards that hang).
    let writer = async {
        for b in b"POST /webhooks/zapi/presence HTTP/1.1\r\nhost: t\r\n"
            .iter()
            .cycle()
        {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(HANG, writer)
        .await
        .expect("the trickling client was never cut");
    // Not before the timeout (a lower bound no slow machine can break).
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_silent_connections_are_closed_after_the_header_read_timeout() {
    let bridge =
        Bridge::start_with(&[("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "300ms")]).await;
    let addr = bridge.running.webhook_addr;
    // Each wait starts before what starts the server's timer, so the
    // lower bounds hold however slow the machine; HANG guards the close.
    let timeout = Duration::from_millis(300);

    // Connected, never sends a byte (hyper-util's protocol sniffing has no
    // timer of its own: the bridge's idle watch closes it).
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let took = closed(&mut silent, started).await;
    assert!(took >= timeout, "{took:?}");

    // HTTP/1.1 keep-alive: answered, then idle, then closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    s.write_all(post("5511999992001", "").as_bytes())
        .await
        .unwrap();
    let replies = read_responses(&mut s, 1).await;
    assert_eq!(replies[0].status, 200);
    assert!(!replies[0].head.contains("connection: close"));
    let took = closed(&mut s, started).await;
    assert!(took >= timeout, "{took:?}");

    // HTTP/2 (h2c): answered, then idle, then the server ends the connection.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let started = Instant::now();
    let resp = h2.send_request(h2_post("5511999992002")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await;
    tokio::time::timeout(HANG, conn)
        .await
        .expect("the idle h2 connection was kept open")
        .unwrap()
        .ok();
    assert!(started.elapsed() >= timeout);
}

fn h2_post(phone: &str) -> Request<Full<Bytes>> {
    Request::post(format!(
        "http://localhost/webhooks/zapi/presence?token={TOKEN}"
    ))
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(callback(phone, "AVAILABLE"))))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_after_its_request_cap() {
    // Idle connections are kept ten minutes: only the cap can close this one
    // before HANG.
    let bridge = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__HTTP__MAX_REQUESTS_PER_CONNECTION", "3"),
        ("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "10m"),
    ])
    .await;
    let mut s = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    for i in 0..3 {
        s.write_all(post(&format!("551199999300{i}"), "").as_bytes())
            .await
            .unwrap();
        let replies = read_responses(&mut s, 1).await;
        assert_eq!(replies[0].status, 200);
        assert_eq!(
            replies[0].head.contains("connection: close"),
            i == 2,
            "{:?}",
            replies[0]
        );
    }
    closed(&mut s, Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431() {
    let bridge = Bridge::start().await;
    let addr = bridge.running.webhook_addr;

    // One header line larger than the 64 KiB head limit.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let big = format!("x-big: {}\r\n", "a".repeat(70 * 1024));
    // The server may answer and close before it has read everything.
    let _ = s.write_all(post("5511999994001", &big).as_bytes()).await;
    let replies = read_responses(&mut s, 1).await;
    assert_eq!(replies.len(), 1, "no answer to an oversized head");
    assert_eq!(replies[0].status, 431);

    // More header lines than hyper's limit (100).
    let mut s = TcpStream::connect(addr).await.unwrap();
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let _ = s.write_all(post("5511999994002", &many).as_bytes()).await;
    let replies = read_responses(&mut s, 1).await;
    assert_eq!(replies.len(), 1, "no answer to too many headers");
    assert_eq!(replies[0].status, 431);

    // The listener is fine afterwards.
    assert_eq!(
        bridge
            .post_json(&callback("5511999994003", "AVAILABLE"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_http1_requests_are_all_answered_in_order() {
    let bridge = Bridge::start().await;
    let mut s = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    let batch = [
        post("5511999995001", ""),
        "GET /webhooks/zapi/presence HTTP/1.1\r\nhost: t\r\n\r\n".to_owned(),
        post("5511999995002", ""),
        "GET /nowhere HTTP/1.1\r\nhost: t\r\n\r\n".to_owned(),
        post("5511999995003", ""),
    ]
    .concat();
    s.write_all(batch.as_bytes()).await.unwrap();
    let statuses: Vec<u16> = read_responses(&mut s, 5)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 405, 200, 404, 200]);
    let keys: Vec<String> = bridge.read(3).await.into_iter().map(|r| r.key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["5511999995001", "5511999995002", "5511999995003"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_serves_concurrent_streams() {
    let bridge = Bridge::start().await;
    let tcp = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    let (h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for i in 0..16 {
        let mut h2 = h2.clone();
        streams.push(tokio::spawn(async move {
            let resp = h2
                .send_request(h2_post(&format!("55119999960{i:02}")))
                .await
                .unwrap();
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            resp.status()
        }));
    }
    for s in streams {
        assert_eq!(s.await.unwrap(), StatusCode::OK);
    }
    bridge
        .wait_for_value(
            r#"presence_bridge_http_requests_total{method="POST",route="presence",status="200"}"#,
            16.0,
        )
        .await;
}

#[test]
fn connection_limit_keys_are_validated_and_named() {
    let load = |k: &str, v: &str| {
        presence_bridge::config::load(
            None,
            vec![(format!("PRESENCE_BRIDGE__HTTP__{k}"), v.into())],
        )
    };
    let s = presence_bridge::config::load(None, Vec::new()).unwrap();
    assert_eq!(s.http.max_connections_per_client.get(), 64);
    assert_eq!(s.http.max_requests_per_connection.get(), 1000);
    assert!(s.http.tls.is_none());
    for key in ["MAX_CONNECTIONS_PER_CLIENT", "MAX_REQUESTS_PER_CONNECTION"] {
        let e = load(key, "0").unwrap_err().to_string();
        assert!(
            e.contains(&format!("http.{}", key.to_ascii_lowercase())),
            "{e}"
        );
    }
    assert_eq!(
        load("MAX_CONNECTIONS_PER_CLIENT", "8")
            .unwrap()
            .http
            .max_connections_per_client
            .get(),
        8
    );
}
