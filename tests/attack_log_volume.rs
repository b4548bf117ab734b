//! Attack: a client without a token (and a tenant with one) sends thousands
//! of refused requests; the log lines they cause stay within the documented
//! bound (`presence_bridge::lograte`), the summary lines carry the count of
//! what was not written, and the metrics count every request.
//!
//! Its own test binary: it installs a global JSON subscriber that writes to a
//! buffer (debug level, so the 404/405 lines count too), and the log limiter
//! is process-wide.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use presence_bridge::lograte;
use serde_json::Value;

/// Requests of each kind sent (five kinds: 5,000 requests).
const EACH: usize = 1_000;
/// Requests in flight at once per kind.
const CONCURRENCY: usize = 4;

/// One kind of refused request: the reason it is refused with, who the
/// limiter sees as its caller, how to send it.
struct Kind {
    reason: &'static str,
    /// Over h2c (HTTP/2 with prior knowledge), as in the issue's reproduction.
    h2: bool,
    authenticated: bool,
    method: Method,
    path: String,
    body: &'static str,
}

fn kinds() -> Vec<Kind> {
    let bad_phone = r#"{"type":"PresenceChatCallback","phone":"12","status":"AVAILABLE","instanceId":"tenant-b"}"#;
    let good = r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"AVAILABLE","instanceId":"tenant-a"}"#;
    vec![
        Kind {
            reason: "unauthorized",
            h2: true,
            authenticated: false,
            method: Method::POST,
            path: "/webhooks/zapi/presence".into(),
            body: good,
        },
        Kind {
            reason: "not_found",
            h2: false,
            authenticated: false,
            method: Method::POST,
            path: "/webhooks/no/such/route".into(),
            body: good,
        },
        Kind {
            reason: "method_not_allowed",
            h2: false,
            authenticated: false,
            method: Method::GET,
            path: "/webhooks/zapi/presence".into(),
            body: "",
        },
        Kind {
            reason: "invalid_instance_id",
            h2: false,
            authenticated: false,
            method: Method::POST,
            path: "/webhooks/zapi/instances/a%20b/presence".into(),
            body: good,
        },
        Kind {
            reason: "invalid_phone",
            h2: false,
            authenticated: true,
            method: Method::POST,
            path: format!("/webhooks/zapi/presence?token={TOKEN}"),
            body: bad_phone,
        },
    ]
}

fn parse(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// One test, two attacks in turn: the limiter and the log capture are
/// process-wide, so they must not run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_and_connections_write_a_bounded_number_of_log_lines() {
    let buf = common::logs::global_json();
    refused_requests(&buf).await;
    refused_connections(&buf).await;
    failed_tls_handshakes(&buf).await;
}

/// Sends `FAILED` connections that speak plain HTTP to the TLS listener:
/// each handshake fails and is counted; its `debug` lines stay in quota.
async fn failed_tls_handshakes(buf: &common::logs::Capture) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const FAILED: usize = 300;
    let certs = tempfile::tempdir().unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__HTTP__TLS__CERT", &cert),
        ("PRESENCE_BRIDGE__HTTP__TLS__KEY", &key),
    ])
    .await;
    let addr = b.running.webhook_addr;
    let mark = buf.len();
    let started = Instant::now();
    for _ in 0..FAILED {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /webhooks/zapi/presence HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // The bridge closes it (an alert at most): wait for that, bounded.
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut sink)).await;
    }
    let sample = r#"presence_bridge_tls_handshake_failures_total{reason="error"}"#;
    b.wait_for_value(sample, FAILED as f64).await;
    let elapsed = started.elapsed();
    let suppressed_metric =
        b.metric(r#"presence_bridge_log_lines_suppressed_total{reason="tls_handshake_error"}"#);
    // The shutdown writes the summaries still pending (no flush by hand).
    let Bridge {
        api,
        spool,
        cluster,
    } = b;
    let running = api.into_running();
    running.shutdown();
    tokio::time::timeout(Duration::from_secs(60), running.wait())
        .await
        .expect("shutdown (hang guard)");
    drop((spool, cluster));
    let all = parse(&buf.since(mark));
    let intervals = elapsed.as_secs() / lograte::INTERVAL.as_secs() + 2;
    let (full, quiet) = tally(&all, "TLS handshake failed", "tls_handshake_error");
    eprintln!("{FAILED} failed TLS handshakes in {elapsed:?}: {full} lines, {quiet} suppressed");
    assert!(
        full <= u64::from(lograte::ANONYMOUS.per_reason) * intervals,
        "{full} handshake lines in {elapsed:?}"
    );
    assert_eq!(
        full + quiet,
        FAILED as u64,
        "written plus counted in summaries"
    );
    assert_eq!(suppressed_metric, quiet as f64);
}

/// Counts, in `lines`, the full lines with `message` and the suppressed
/// lines that summaries count for `reason`.
fn tally(lines: &[Value], message: &str, reason: &str) -> (u64, u64) {
    let (mut full, mut quiet) = (0, 0);
    for line in lines {
        if line["message"] == message && (line["reason"] == reason || line["reason"].is_null()) {
            full += 1;
        }
        if line["message"] == "log lines suppressed" && line["reason"] == reason {
            quiet += line["suppressed"].as_u64().unwrap();
        }
    }
    (full, quiet)
}

/// Holds the per-client connection slots (4), then opens and drops
/// `REFUSED` more connections from the same address: each is refused and
/// counted; the `connection refused` lines stay within the quota.
async fn refused_connections(buf: &common::logs::Capture) {
    const REFUSED: usize = 300;
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__HTTP__MAX_CONNECTIONS_PER_CLIENT", "4")]).await;
    let addr = b.running.webhook_addr;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let sample = r#"presence_bridge_http_connections_refused_total{reason="per_client_limit"}"#;
    let mark = buf.len();
    let started = Instant::now();
    for _ in 0..REFUSED {
        drop(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    b.wait_for_value(sample, REFUSED as f64).await;
    let elapsed = started.elapsed();
    lograte::flush();
    let all = parse(&buf.since(mark));
    let intervals = elapsed.as_secs() / lograte::INTERVAL.as_secs() + 2;
    let (full, quiet) = tally(
        &all,
        "connection refused: per-client connection limit",
        "connection_per_client_limit",
    );
    eprintln!("{REFUSED} refused connections in {elapsed:?}: {full} lines, {quiet} suppressed");
    assert!(
        full <= u64::from(lograte::ANONYMOUS.per_reason) * intervals,
        "{full} connection lines in {elapsed:?}"
    );
    assert_eq!(
        full + quiet,
        REFUSED as u64,
        "written plus counted in summaries"
    );
    assert_eq!(
        b.metric(
            r#"presence_bridge_log_lines_suppressed_total{reason="connection_per_client_limit"}"#
        ),
        quiet as f64
    );
    drop(held);
}

async fn refused_requests(buf: &common::logs::Capture) {
    // One h2c connection carries all the tokenless requests: no GOAWAY at
    // the per-connection cap (1,000) in the middle of the count.
    let b = Bridge::start_with(&[(
        "PRESENCE_BRIDGE__HTTP__MAX_REQUESTS_PER_CONNECTION",
        "100000",
    )])
    .await;
    let kinds = kinds();
    let h2c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();

    let mark = buf.len();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for kind in &kinds {
        for _ in 0..CONCURRENCY {
            let client = if kind.h2 {
                h2c.clone()
            } else {
                b.client.clone()
            };
            let url = b.url(&kind.path);
            let (method, body, reason) = (kind.method.clone(), kind.body, kind.reason);
            tasks.spawn(async move {
                for _ in 0..EACH / CONCURRENCY {
                    let req = Request::builder()
                        .method(method.clone())
                        .uri(&url)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .unwrap();
                    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
                        .await
                        .expect("an answer (hang guard)")
                        .expect("request");
                    let status = resp.status();
                    let text = resp.into_body().collect().await.unwrap().to_bytes();
                    let text = String::from_utf8_lossy(&text);
                    assert!(
                        status.is_client_error() && text.contains(reason),
                        "{reason}: {status} {text}"
                    );
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("sender");
    }
    let elapsed = started.elapsed();
    let during = parse(&buf.since(mark));
    lograte::flush();
    let all = parse(&buf.since(mark));

    // Intervals the attack overlapped (a window lasts at least INTERVAL).
    let intervals = elapsed.as_secs() / lograte::INTERVAL.as_secs() + 2;
    let sent = kinds.len() * EACH;
    let bound = lograte::max_lines_per_interval() * intervals;
    eprintln!(
        "{sent} refused requests in {elapsed:?}: {} log lines written ({} bytes), bound {bound}",
        during.len(),
        buf.len() - mark,
    );
    let mut kinds_of_lines: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for line in &during {
        let key = (
            line["message"].as_str().unwrap_or_default(),
            line["reason"].as_str().unwrap_or_default(),
        );
        *kinds_of_lines.entry(key).or_default() += 1;
    }
    eprintln!("lines by message and reason: {kinds_of_lines:?}");
    assert!(
        (during.len() as u64) <= bound,
        "{} lines for {sent} requests in {elapsed:?}, over the bound {bound}",
        during.len()
    );

    let mut full: BTreeMap<&str, u64> = BTreeMap::new();
    let mut suppressed: BTreeMap<&str, u64> = BTreeMap::new();
    for line in &all {
        let reason = line["reason"].as_str().unwrap_or_default();
        match line["message"].as_str() {
            Some("request rejected") => *full.entry(reason).or_default() += 1,
            Some("log lines suppressed") => {
                *suppressed.entry(reason).or_default() += line["suppressed"].as_u64().unwrap()
            }
            _ => {}
        }
    }
    let text = b.metrics();
    for kind in &kinds {
        let budget = if kind.authenticated {
            lograte::AUTHENTICATED
        } else {
            lograte::ANONYMOUS
        };
        let r = kind.reason;
        let (logged, quiet) = (full.get(r).copied(), suppressed.get(r).copied());
        let (logged, quiet) = (logged.unwrap_or(0), quiet.unwrap_or(0));
        assert!(logged >= 1, "{r}: the first one is logged in full");
        assert!(
            logged <= u64::from(budget.per_reason) * intervals,
            "{r}: {logged} full lines in {elapsed:?}"
        );
        assert_eq!(
            logged + quiet,
            EACH as u64,
            "{r}: lines written plus lines counted in summaries"
        );
        assert_eq!(
            metric_value(
                &text,
                &format!("presence_bridge_log_lines_suppressed_total{{reason=\"{r}\"}}")
            ),
            quiet as f64,
            "{r}"
        );
        let counted = if r == "invalid_instance_id" || r == "invalid_phone" {
            "presence_bridge_events_rejected_total"
        } else {
            "presence_bridge_http_requests_refused_total"
        };
        // invalid_instance_id (the path's) and invalid_phone are both
        // events refused for their content; the others are refusals.
        assert_eq!(
            metric_value(&text, &format!("{counted}{{reason=\"{r}\"}}")),
            EACH as f64,
            "{r}: every request counted"
        );
    }
}
