//! Hostile connections never hurt: property tests that send what a client
//! could send on one connection, as raw bytes (any bytes, and the `handler`
//! fuzz target's seeds with bytes flipped, inserted, removed and cut), into
//! hyper-util's HTTP/1.1 + h2c server running the real webhook in front of a
//! sink that takes everything.
//!
//! Nothing may panic, the connection must end (under tokio's paused clock,
//! so a read timeout costs no real time and a hang fails the case), no answer
//! may be a 5xx (the handler's or hyper's own), and every accepted record is
//! a JSON envelope keyed by its phone. The same checks as
//! `fuzz/fuzz_targets/handler.rs`, which `.ci/run` does not build (it fuzzes
//! the targets that need no bridge crate); this runs in every `cargo test`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use presence_bridge::envelope::OutboundRecord;
use presence_bridge::ingress::{auth::Auth, BodyLimits, Webhook};
use presence_bridge::server::{Handler, Peer};
use presence_bridge::sink::{Sink, SinkError};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The token the fuzz seeds use.
const TOKEN: &str = "fuzz-token-0123456789";

/// Records the sink took, across the tests of this binary.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

/// Takes everything, after checking what it is given.
struct AlwaysOk;

impl Sink for AlwaysOk {
    async fn accept(&self, record: OutboundRecord) -> Result<(), SinkError> {
        let value: serde_json::Value =
            serde_json::from_slice(&record.value).expect("an accepted record is JSON");
        assert_eq!(value["data"]["phone"], record.key.as_str());
        assert_eq!(value["id"], record.id.hyphenated().to_string());
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn webhook() -> Arc<Webhook<AlwaysOk>> {
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

/// The committed seeds of the `handler` fuzz target: valid requests over
/// HTTP/1.1 and h2c, with and without tokens, chunked, pipelined...
fn seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/handler");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("fuzz/corpus/handler")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seed-"))
            })
            .collect();
        names.sort();
        let seeds: Vec<Vec<u8>> = names
            .iter()
            .map(|p| std::fs::read(p).expect("seed"))
            .collect();
        assert!(seeds.len() >= 10, "the handler seeds are missing");
        seeds
    })
}

/// Sends `data` as one connection's bytes (then half-closes) and returns
/// everything answered. Panics when the connection does not end or the
/// handler answers a 5xx.
async fn exchange(data: &[u8]) -> Vec<u8> {
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
    let svc = hyper::service::service_fn(move |mut req| {
        let webhook = webhook.clone();
        req.extensions_mut()
            .insert(Peer(SocketAddr::from(([127, 0, 0, 1], 40000))));
        async move {
            let resp = webhook.handle(req).await;
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
    // Simulated time: only a connection that never ends reaches this.
    let (_wr, out) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(writer, reader)
    })
    .await
    .expect("the connection did not end within 60 s (simulated)");
    conn.await.expect("the connection task panicked");
    out
}

/// Runs one exchange on a fresh paused-clock runtime and checks the wire.
fn check(data: &[u8]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let out = rt.block_on(exchange(data));
    // hyper's own answers (400, 414, 431 on unparsable heads) are on the wire
    // only; none of them may be a 5xx either.
    for (i, w) in out.windows(10).enumerate() {
        let http1 = w.starts_with(b"HTTP/1.1 ") || w.starts_with(b"HTTP/1.0 ");
        prop_assert!(
            !(http1 && w[9] == b'5'),
            "5xx on the wire at byte {i}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    Ok(())
}

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Cut(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Edit::Flip(at, x)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        2 => (any::<usize>(), 1usize..32).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<usize>().prop_map(Edit::Cut),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match e {
            Edit::Flip(at, x) if len > 0 => bytes[at % len] ^= x,
            Edit::Insert(at, b) => {
                let at = at % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Remove(at, n) if len > 0 => {
                let at = at % len;
                bytes.drain(at..(at + n).min(len));
            }
            Edit::Cut(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    bytes
}

#[test]
fn every_seed_as_sent_is_answered_and_some_are_accepted() {
    let before = ACCEPTED.load(Ordering::Relaxed);
    for seed in seeds() {
        check(seed).unwrap();
    }
    // The seeds hold valid callbacks with the token: were none accepted,
    // the edited seeds below would test only the rejections.
    let accepted = ACCEPTED.load(Ordering::Relaxed) - before;
    assert!(
        accepted >= 5,
        "only {accepted} events accepted from the seeds"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_on_a_connection_end_without_a_5xx(
        data in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        check(&data)?;
    }

    #[test]
    fn edited_seeds_end_without_a_5xx(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let seed = pick.get(seeds()).clone();
        check(&apply(seed, &edits))?;
    }
}
