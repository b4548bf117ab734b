//! Fuzz target: the whole request path.
//!
//! The input is what a client sends on one connection: arbitrary bytes fed
//! through an in-memory duplex pipe into hyper-util's HTTP/1.1 + h2c server
//! (configured like `server::serve`) running the real `ingress::Webhook` in
//! front of an always-OK sink. Nothing may panic, the connection must end,
//! no answer may be a 5xx (neither the handler's nor hyper's own), and every
//! accepted record must carry a JSON envelope keyed by its phone.
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use presence_bridge::envelope::OutboundRecord;
use presence_bridge::ingress::{auth::Auth, BodyLimits, Webhook};
use presence_bridge::server::{Handler, Peer};
use presence_bridge::sink::{Sink, SinkError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The token the seeds use.
const TOKEN: &str = "fuzz-token-0123456789";

/// A healthy sink: takes everything, after checking what it is given.
struct AlwaysOk;

impl Sink for AlwaysOk {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        let value: serde_json::Value =
            serde_json::from_slice(&record.value).expect("accepted record is JSON");
        assert_eq!(value["data"]["phone"], record.key.as_str());
        assert_eq!(value["id"], record.id.hyphenated().to_string());
        Ok(())
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    webhook: Arc<Webhook<AlwaysOk>>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let env = [("PRESENCE_BRIDGE__AUTH__TOKENS".to_owned(), TOKEN.to_owned())];
        let settings = presence_bridge::config::load(None, env).expect("fuzz settings");
        let (_registry, metrics) = presence_bridge::metrics::Metrics::standalone();
        let webhook = Webhook::new(
            AlwaysOk,
            Auth::new(settings.auth.tokens.clone()),
            BodyLimits {
                max_bytes: 4096,
                read_timeout: Duration::from_millis(500),
            },
            settings.kafka,
            metrics,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        World {
            rt,
            webhook: Arc::new(webhook),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let out = w.rt.block_on(exchange(w.webhook.clone(), data));
    // hyper's own answers (400, 414, 431 on unparsable heads) are on the wire
    // only; none of them may be a 5xx either.
    for (i, window) in out.windows(10).enumerate() {
        let http1 = window.starts_with(b"HTTP/1.1 ") || window.starts_with(b"HTTP/1.0 ");
        if http1 && window[9] == b'5' {
            panic!(
                "5xx on the wire at byte {i}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }
});

/// Sends `data` as one connection's bytes and returns everything answered.
async fn exchange(webhook: Arc<Webhook<AlwaysOk>>, data: &[u8]) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(16 * 1024);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        // Unlike production: the fuzz client half-closes after its bytes, and
        // the requests must still be answered to be checked.
        .half_close(true)
        .header_read_timeout(Duration::from_millis(500))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(256);
    let svc = hyper::service::service_fn(move |mut req| {
        let webhook = webhook.clone();
        req.extensions_mut()
            .insert(Peer(SocketAddr::from(([127, 0, 0, 1], 40000))));
        async move {
            let resp = webhook.handle(req).await;
            let status = resp.status().as_u16();
            assert!(status < 500, "handler answered {status}");
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
    let run = async { tokio::join!(writer, reader) };
    let (_wr, out) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the connection did not end within 10 s");
    conn.await.expect("connection task panicked");
    out
}
