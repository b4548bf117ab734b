//! Attack reproduction (issue #12, item 1): a tenant with a valid token opens
//! many h2c connections from several loopback addresses, each with many
//! streams that send most of a body and stall. The real binary (`serve
//! --dev`) must keep the bytes reserved for bodies within
//! `limits.body_budget_bytes`, its resident memory within that budget plus
//! the documented overhead, and answer the excess 429 (a client over its
//! share) or 503 (the whole budget in use) instead of buffering it.
//!
//! Loopback only; every loop is bounded in count, and the deadlines only
//! guard a hang.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};

const TOKEN: &str = "attack-body-memory-token-0123456789";
/// The global budget the bridge runs with here (a client's share stays at
/// the default 4 MiB, so two attacking addresses exhaust it).
const BUDGET: u64 = 8 * 1024 * 1024;
/// Attacking addresses (127.0.0.1 to .4), connections from each, streams on each.
const ADDRESSES: u8 = 4;
const CONNECTIONS_PER_ADDRESS: usize = 3;
const STREAMS_PER_CONNECTION: usize = 96;
/// Each body declares 64 KiB (`http.max_body_bytes`) and sends 60 KiB of it.
const DECLARED: u64 = 64 * 1024;
const SENT: usize = 60 * 1024;
/// Resident memory the bridge may grow by past the budget: HTTP/2 windows
/// (64 KiB per connection), per-stream state, allocator slack. Documented in
/// docs/security-and-limits.md "Resource bounds" and SECURITY.md.
const OVERHEAD: u64 = 24 * 1024 * 1024;

/// Resident memory the bridge may keep past its baseline once a burst is over
/// and trimmed (the allocator's and the runtime's caches).
const GIVEN_BACK_SLACK: u64 = 6 * 1024 * 1024;

/// A body that sends one chunk and then never another (nor its end).
struct Stalled(Option<Bytes>);

impl Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(DECLARED)
    }
}

struct Serve {
    child: Child,
    http: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn serve_dev() -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_addr(), free_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_presence-bridge"))
        .args(["serve", "--dev"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PRESENCE_BRIDGE__HTTP__LISTEN", http.to_string())
        .env("PRESENCE_BRIDGE__ADMIN__LISTEN", admin.to_string())
        .env("PRESENCE_BRIDGE__AUTH__TOKENS", TOKEN)
        .env("PRESENCE_BRIDGE__SPOOL__DIR", dir.path().join("spool"))
        .env("PRESENCE_BRIDGE__HTTP__BODY_READ_TIMEOUT", "4s")
        .env(
            "PRESENCE_BRIDGE__LIMITS__BODY_BUDGET_BYTES",
            BUDGET.to_string(),
        )
        .env("PRESENCE_BRIDGE__LOG__LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Serve {
        child,
        http,
        admin,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            panic!("serve --dev exited before it was ready: {status}");
        }
        if get(serve.admin, "/readyz").is_some_and(|(s, _)| s == 200) {
            return serve;
        }
        assert!(Instant::now() < deadline, "serve --dev never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 GET; `None` when the connection fails.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((status, out.split("\r\n\r\n").nth(1)?.to_owned()))
}

/// A sample's value in the bridge's /metrics (0 when absent).
fn metric(serve: &Serve, series: &str) -> f64 {
    let (_, body) = get(serve.admin, "/metrics").expect("/metrics answers");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The bridge's resident memory in bytes (`VmRSS`).
fn rss(serve: &Serve) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.child.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// Opens one h2c connection from `source` and its stalled streams; returns
/// the status of each answer (0: no answer before the hang guard).
async fn attack_connection(target: SocketAddr, source: IpAddr) -> Vec<u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(target).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, Stalled>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let mut streams = Vec::new();
    for _ in 0..STREAMS_PER_CONNECTION {
        let mut sender = sender.clone();
        let req = hyper::Request::post(format!("http://{target}/webhooks/zapi/presence"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .header("content-length", DECLARED)
            .body(Stalled(Some(Bytes::from(vec![b' '; SENT]))))
            .unwrap();
        streams.push(tokio::spawn(async move {
            let answer = async {
                sender.ready().await.ok()?;
                sender.send_request(req).await.ok()
            };
            match tokio::time::timeout(Duration::from_secs(90), answer).await {
                Ok(Some(resp)) => resp.status().as_u16(),
                _ => 0,
            }
        }));
    }
    let mut statuses = Vec::new();
    for s in streams {
        statuses.push(s.await.unwrap());
    }
    driver.abort();
    statuses
}

#[test]
fn stalled_h2_bodies_stay_within_the_budget_and_the_excess_is_refused() {
    let serve = serve_dev();
    let baseline = rss(&serve);
    let target = serve.http;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let attack = runtime.spawn(async move {
        let mut conns = Vec::new();
        for a in 1..=ADDRESSES {
            for _ in 0..CONNECTIONS_PER_ADDRESS {
                let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, a));
                conns.push(tokio::spawn(attack_connection(target, source)));
            }
        }
        let mut statuses = Vec::new();
        for c in conns {
            statuses.extend(c.await.unwrap());
        }
        statuses
    });

    // Samples while the attack runs: bounded in count (and so in time).
    let (mut peak_budget, mut peak_rss) = (0f64, 0u64);
    for _ in 0..600 {
        if attack.is_finished() {
            break;
        }
        peak_budget = peak_budget.max(metric(
            &serve,
            "presence_bridge_http_body_budget_bytes_in_use",
        ));
        peak_rss = peak_rss.max(rss(&serve));
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses = runtime.block_on(attack).unwrap();
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count();
    let total = statuses.len();
    eprintln!(
        "streams {total}: 408 {}, 429 {}, 503 {}, unanswered {}, other {}; \
         peak budget in use {peak_budget} B of {BUDGET}; RSS baseline {} KiB, peak {} KiB (+{} KiB)",
        count(408),
        count(429),
        count(503),
        count(0),
        total - count(408) - count(429) - count(503) - count(0),
        baseline / 1024,
        peak_rss / 1024,
        peak_rss.saturating_sub(baseline) / 1024,
    );

    assert!(peak_budget > 0.0, "the gauge saw the attack");
    assert!(
        peak_budget <= BUDGET as f64,
        "bytes reserved {peak_budget} over the budget {BUDGET}"
    );
    assert!(
        peak_rss.saturating_sub(baseline) <= BUDGET + OVERHEAD,
        "resident memory grew by {} KiB, over the budget {} KiB + overhead {} KiB",
        peak_rss.saturating_sub(baseline) / 1024,
        BUDGET / 1024,
        OVERHEAD / 1024
    );
    assert!(count(429) > 0, "a client over its share gets 429");
    assert!(count(503) > 0, "bodies over the global budget get 503");
    assert_eq!(count(0), 0, "every stream is answered");
    let refused_client = metric(
        &serve,
        "presence_bridge_http_body_budget_exhausted_total{scope=\"client\"}",
    );
    let refused_global = metric(
        &serve,
        "presence_bridge_http_body_budget_exhausted_total{scope=\"global\"}",
    );
    assert_eq!(refused_client as usize, count(429));
    assert_eq!(refused_global as usize, count(503));
    // Everything is given back once the attack is over: the budget at once,
    // the memory once the trimmer has seen the burst pass (docs/security-and-limits.md "Resource
    // bounds"). Wait for the trim itself; the loop only guards a hang.
    for _ in 0..300 {
        if metric(&serve, "presence_bridge_memory_trims_total") >= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metric(&serve, "presence_bridge_memory_trims_total") >= 1.0,
        "memory never trimmed after the burst"
    );
    let after = rss(&serve);
    eprintln!(
        "RSS after the attack and the trim: {} KiB (+{} KiB over the baseline, peak +{} KiB)",
        after / 1024,
        after.saturating_sub(baseline) / 1024,
        peak_rss.saturating_sub(baseline) / 1024,
    );
    assert!(
        after.saturating_sub(baseline) <= GIVEN_BACK_SLACK,
        "resident memory stayed {} KiB over the baseline after the burst (bound {} KiB)",
        after.saturating_sub(baseline) / 1024,
        GIVEN_BACK_SLACK / 1024
    );
    assert_eq!(
        metric(&serve, "presence_bridge_http_body_budget_bytes_in_use"),
        0.0
    );
}

/// A sink that takes every event.
struct Accepting;

impl presence_bridge::sink::Sink for Accepting {
    async fn accept(
        &self,
        _record: presence_bridge::envelope::OutboundRecord,
    ) -> Result<(), presence_bridge::sink::SinkError> {
        Ok(())
    }
}

/// Opens an HTTP/1.1 request from `source` declaring `declared` body bytes
/// and sends `sent` of them; the stream is returned to read the answer.
async fn h1_request(
    target: SocketAddr,
    source: Ipv4Addr,
    declared: usize,
    body: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    let head = format!(
        "POST /webhooks/zapi/presence HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// The status line and body of the answer on `stream` (hang guard only).
async fn h1_answer(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
        .await
        .expect("an answer before the hang guard")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn http1_bodies_share_the_budget_and_give_it_back() {
    use presence_bridge::ingress::budget::BodyBudget;
    use presence_bridge::ingress::{auth::Auth, BodyLimits, Webhook};
    const MAX: usize = 64 * 1024;
    let (registry, metrics) = presence_bridge::metrics::Metrics::standalone();
    let settings = presence_bridge::config::load(None, Vec::new()).unwrap();
    // Room for two bodies of `MAX`, one per client.
    let budget = BodyBudget::new(2 * MAX as u64, MAX as u64, Some(&registry)).unwrap();
    let webhook = Webhook::new(
        Accepting,
        Auth::new(Vec::new()),
        BodyLimits {
            max_bytes: MAX,
            read_timeout: Duration::from_secs(60),
        },
        settings.kafka,
        metrics,
    )
    .with_budget(budget.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(presence_bridge::server::serve(
        listener,
        std::sync::Arc::new(webhook),
        presence_bridge::server::Limits {
            header_read_timeout: Duration::from_secs(60),
            ..Default::default()
        },
        stop.clone(),
        None,
    ));
    let wait_for_in_use = |want: u64| {
        let budget = budget.clone();
        async move {
            let guard = Instant::now() + Duration::from_secs(30);
            while budget.in_use() != want {
                assert!(Instant::now() < guard, "budget in use never reached {want}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let event = r#"{"type":"PresenceChatCallback","phone":"5511999999999","status":"AVAILABLE","lastSeen":null,"instanceId":"instance.id"}"#;
    let (a, b, c) = (
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    );

    // Client a holds its whole share with a stalled body.
    let mut stalled_a = h1_request(target, a, MAX, &[b' '; 1000]).await;
    wait_for_in_use(MAX as u64).await;
    // A second body from a: 429 after the bounded wait, unread.
    let mut second_a = h1_request(target, a, event.len(), event.as_bytes()).await;
    let answer = h1_answer(&mut second_a).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("body_budget_client"), "{answer}");

    // Client b takes the rest of the global budget; client c then gets 503.
    let stalled_b = h1_request(target, b, MAX, &[b' '; 1000]).await;
    wait_for_in_use(2 * MAX as u64).await;
    let mut first_c = h1_request(target, c, event.len(), event.as_bytes()).await;
    let answer = h1_answer(&mut first_c).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("body_budget_exhausted"), "{answer}");
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(&format!(
            "presence_bridge_http_body_budget_bytes_in_use {}",
            2 * MAX
        )),
        "{text}"
    );

    // b hangs up: its bytes come back, and c is accepted.
    drop(stalled_b);
    wait_for_in_use(MAX as u64).await;
    let mut second_c = h1_request(target, c, event.len(), event.as_bytes()).await;
    let answer = h1_answer(&mut second_c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // a finishes its body (invalid JSON: 400) and everything is given back.
    {
        use tokio::io::AsyncWriteExt;
        stalled_a.write_all(&vec![b' '; MAX - 1000]).await.unwrap();
    }
    let answer = h1_answer(&mut stalled_a).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    wait_for_in_use(0).await;
    assert_eq!(budget.clients_tracked(), 0);
    stop.cancel();
}
