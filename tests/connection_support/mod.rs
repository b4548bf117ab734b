//! One client connection's bytes into hyper-util's HTTP/1.1 + h2c server
//! (configured like `server::serve`) running the real webhook in front of a
//! sink that takes everything. Shared by `tests/hostile_connection.rs` and the
//! `handler` fuzz target (`fuzz/fuzz_targets/handler.rs`, by path).
#![allow(dead_code)]

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use presence_bridge::envelope::OutboundRecord;
use presence_bridge::ingress::{auth::Auth, BodyLimits, Webhook};
use presence_bridge::server::{Handler, RequestMeta};
use presence_bridge::sink::{Sink, SinkError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The token the `handler` fuzz seeds use.
pub const TOKEN: &str = "fuzz-token-0123456789";

thread_local! {
    /// Records the sink took on this thread: an [`exchange`] on a
    /// current-thread runtime runs the handler on the caller's thread, so
    /// tests running side by side do not count each other's.
    static ACCEPTED: Cell<usize> = const { Cell::new(0) };
}

/// Records the sink took on this thread so far.
pub fn accepted_here() -> usize {
    ACCEPTED.with(Cell::get)
}

/// Takes everything, after checking what it is given.
pub struct AlwaysOk;

impl Sink for AlwaysOk {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        let value: serde_json::Value =
            serde_json::from_slice(&record.value).expect("an accepted record is JSON");
        assert_eq!(value["data"]["phone"], record.key.as_str());
        assert_eq!(value["id"], record.id.hyphenated().to_string());
        ACCEPTED.with(|n| n.set(n.get() + 1));
        Ok(())
    }
}

/// The webhook, built once: token [`TOKEN`], bodies up to 4 KiB, 500 ms to
/// read one.
pub fn webhook() -> Arc<Webhook<AlwaysOk>> {
    static W: OnceLock<Arc<Webhook<AlwaysOk>>> = OnceLock::new();
    W.get_or_init(|| {
        let env = [("PRESENCE_BRIDGE__AUTH__TOKENS".to_owned(), TOKEN.to_owned())];
        let settings = presence_bridge::config::load(None, env).expect("settings");
        let (_registry, metrics) = presence_bridge::metrics::Metrics::standalone();
        Arc::new(Webhook::new(
            AlwaysOk,
            Auth::new(settings.auth.tokens.clone()),
            BodyLimits {
                max_bytes: 4096,
                read_timeout: Duration::from_millis(500),
            },
            settings.kafka,
            metrics,
        ))
    })
    .clone()
}

/// Sends `data` as one connection's bytes (then half-closes) and returns
/// everything answered. Panics when the connection does not end within
/// `guard` or the handler answers a 5xx.
pub async fn exchange(data: &[u8], guard: Duration) -> Vec<u8> {
    let webhook = webhook();
    let (client, server) = tokio::io::duplex(16 * 1024);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        // Unlike production: the client half-closes after its bytes, and the
        // requests must still be answered to be checked.
        .half_close(true)
        .header_read_timeout(Duration::from_millis(500))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(256);
    let svc = hyper::service::service_fn(move |req| {
        let webhook = webhook.clone();
        let meta = RequestMeta::detached(SocketAddr::from(([127, 0, 0, 1], 40000)));
        async move {
            let resp = webhook.handle(req, &meta).await;
            let status = resp.status().as_u16();
            assert!(status < 500, "the handler answered {status}");
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = tokio::spawn(async move {
        let _ = builder
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc)
            .await;
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    let input = data.to_vec();
    let writer = async move {
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
        wr
    };
    let reader = async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let (_wr, out) = tokio::time::timeout(guard, async { tokio::join!(writer, reader) })
        .await
        .unwrap_or_else(|_| panic!("the connection did not end within {guard:?}"));
    conn.await.expect("the connection task panicked");
    out
}

/// Where a 5xx status line starts in what was answered, if one does. hyper's
/// own answers (400, 414, 431 on unparsable heads) are on the wire only.
pub fn five_xx_on_the_wire(out: &[u8]) -> Option<usize> {
    out.windows(10)
        .position(|w| (w.starts_with(b"HTTP/1.1 ") || w.starts_with(b"HTTP/1.0 ")) && w[9] == b'5')
}
