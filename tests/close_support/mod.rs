//! Shared by `tests/close.rs` and `tests/tls.rs`: the early answers (decided
//! before the body is read) and how to provoke each one on one bridge, a body
//! big enough to still be in flight when the answer is decided, and curl.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Settings under which one bridge gives every early answer: the test token
/// is allowed `INST-A` only (403 for another instance), `INST-A` may post once
/// (429 after [`prime_rate_limit`]), bodies over 1 KiB get 413.
pub const EARLY_ANSWER_ENV: &[(&str, &str)] = &[
    ("PRESENCE_BRIDGE__AUTH__ALLOWED_INSTANCES", "INST-A"),
    ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__RATE", "0.0001"),
    ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__BURST", "1"),
    ("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "1024"),
];

/// A body of 16 KiB: over the 1 KiB limit, a whole HTTP/2 frame, and more
/// than one TCP segment, so it is still being sent when the bridge could
/// already answer from the head.
pub fn in_flight_body() -> Vec<u8> {
    let mut body = br#"{"type":"PresenceChatCallback","pad":""#.to_vec();
    body.resize(16 * 1024 - 2, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

/// One early answer and the request that provokes it.
#[derive(Debug, Clone, Copy)]
pub struct Early {
    pub status: u16,
    pub code: &'static str,
    pub method: &'static str,
    /// Path and query.
    pub target: &'static str,
    pub content_type: &'static str,
}

pub const EARLY_ANSWERS: &[Early] = &[
    Early {
        status: 401,
        code: "unauthorized",
        method: "POST",
        target: "/webhooks/zapi/presence",
        content_type: "application/json",
    },
    Early {
        status: 403,
        code: "instance_forbidden",
        method: "POST",
        target: "/webhooks/zapi/instances/INST-B/presence?token=test-token-0123456789",
        content_type: "application/json",
    },
    Early {
        status: 405,
        code: "method_not_allowed",
        method: "PUT",
        target: "/webhooks/zapi/presence?token=test-token-0123456789",
        content_type: "application/json",
    },
    Early {
        status: 413,
        code: "payload_too_large",
        method: "POST",
        target: "/webhooks/zapi/presence?token=test-token-0123456789",
        content_type: "application/json",
    },
    Early {
        status: 415,
        code: "unsupported_media_type",
        method: "POST",
        target: "/webhooks/zapi/presence?token=test-token-0123456789",
        content_type: "text/plain",
    },
    Early {
        status: 429,
        code: "rate_limited_instance",
        method: "POST",
        target: "/webhooks/zapi/instances/INST-A/presence?token=test-token-0123456789",
        content_type: "application/json",
    },
];

/// Uses up `INST-A`'s one request so that the 429 case is answered 429.
pub fn prime_rate_limit() -> Early {
    Early {
        status: 413,
        code: "payload_too_large",
        method: "POST",
        target: "/webhooks/zapi/instances/INST-A/presence?token=test-token-0123456789",
        content_type: "application/json",
    }
}

/// How curl reaches the bridge.
pub enum CurlMode {
    /// `--http2-prior-knowledge` on plain HTTP (h2c).
    H2c,
    /// HTTPS with ALPN `h2`, trusting the CA in this PEM file.
    H2Tls { ca_pem: std::path::PathBuf },
    /// Plain HTTP/1.1.
    Http1,
}

/// What curl got: the exit code, the HTTP version and status it reports,
/// and the response body.
#[derive(Debug)]
pub struct CurlReply {
    pub exit: Option<i32>,
    pub version: String,
    pub status: u16,
    pub body: String,
    pub stderr: String,
}

/// Runs curl once for `early` against `port` with `body_file` as the body.
/// Panics (fails the test) if curl cannot be run: it is required, not optional.
pub fn curl(mode: &CurlMode, port: u16, early: &Early, body_file: &Path) -> CurlReply {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-X", early.method])
        .args(["-H", &format!("content-type: {}", early.content_type)])
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .args(["-w", "\n%{http_version} %{http_code}"]);
    let url = match mode {
        CurlMode::H2c => {
            cmd.arg("--http2-prior-knowledge");
            format!("http://127.0.0.1:{port}{}", early.target)
        }
        CurlMode::H2Tls { ca_pem } => {
            cmd.arg("--http2")
                .arg("--cacert")
                .arg(ca_pem)
                .args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
            format!("https://localhost:{port}{}", early.target)
        }
        CurlMode::Http1 => {
            cmd.arg("--http1.1");
            format!("http://127.0.0.1:{port}{}", early.target)
        }
    };
    cmd.arg(url);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "curl could not be run ({e}): these tests need curl with HTTP/2 (nghttp2); \
             install it (`apt-get install curl`, as .ci/run does)"
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (version, status) = last.split_once(' ').unwrap_or(("", "0"));
    CurlReply {
        exit: out.status.code(),
        version: version.to_owned(),
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Fails unless the local curl speaks HTTP/2.
pub fn require_curl_with_http2() {
    let out = Command::new("curl").arg("-V").output().unwrap_or_else(|e| {
        panic!(
            "curl could not be run ({e}): these tests need curl with HTTP/2 (nghttp2); \
             install it (`apt-get install curl`, as .ci/run does)"
        )
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Features:") && l.contains("HTTP2")),
        "this curl has no HTTP/2 support (needs nghttp2):\n{text}"
    );
}

/// Runs every early answer `tries` times in a row with curl; each must get
/// its status and error code over the expected HTTP version.
pub async fn curl_gets_every_early_answer(
    mode: CurlMode,
    port: u16,
    tries: usize,
    want_version: &'static str,
) {
    require_curl_with_http2();
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, in_flight_body()).unwrap();
    tokio::task::spawn_blocking(move || {
        let primed = curl(&mode, port, &prime_rate_limit(), &body_file);
        assert_eq!(primed.status, 413, "{primed:?}");
        for early in EARLY_ANSWERS {
            for i in 0..tries {
                let r = curl(&mode, port, early, &body_file);
                assert!(
                    r.exit == Some(0)
                        && r.status == early.status
                        && r.version == want_version
                        && r.body.contains(&format!(r#""error":"{}""#, early.code)),
                    "try {i} of {} {}: want {} over HTTP/{want_version}, got {r:?}",
                    early.method,
                    early.target,
                    early.status
                );
            }
        }
        drop(dir);
    })
    .await
    .unwrap();
}

/// What a hyper HTTP/2 client got for one early answer sent with a streamed
/// body: the status, the response body, and whether the whole upload was
/// taken by the connection (false: the stream was cut while sending).
#[derive(Debug)]
pub struct H2Reply {
    pub status: u16,
    pub body: String,
    pub upload_complete: bool,
}

/// Sends `early` on a new HTTP/2 connection over `io` (hyper's client), the
/// body streamed in 4 KiB chunks from another task, and reads the answer.
/// `base` is the scheme and authority, e.g. `http://127.0.0.1:8080`.
pub async fn hyper_h2<I>(io: I, base: &str, early: &Early) -> H2Reply
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let body = in_flight_body();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let stream = Upload(rx);
    let req = hyper::Request::builder()
        .method(early.method)
        .uri(format!("{base}{}", early.target))
        .header("content-type", early.content_type)
        .header("content-length", body.len())
        .body(stream)
        .unwrap();
    let upload = tokio::spawn(async move {
        for chunk in body.chunks(4096) {
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return false;
            }
            tokio::task::yield_now().await;
        }
        true
    });
    let resp = h2
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{} {}: no answer: {e}", early.method, early.target));
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{} {}: answer cut: {e}", early.method, early.target))
        .to_bytes();
    let upload_complete = upload.await.unwrap();
    drop(h2);
    let _ = conn.await;
    H2Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        upload_complete,
    }
}

/// Checks one [`hyper_h2`] reply against what `early` must get.
pub fn assert_early(reply: &H2Reply, early: &Early, what: &str) {
    assert!(
        reply.status == early.status
            && reply.body.contains(&format!(r#""error":"{}""#, early.code))
            && reply.upload_complete,
        "{what} {} {}: want {} after the whole upload, got {reply:?}",
        early.method,
        early.target,
        early.status
    );
}

/// A request body fed chunk by chunk through a channel; its end is the
/// sender's drop. The sender sees an error once hyper drops the body (the
/// stream was cut).
struct Upload(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for Upload {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(hyper::body::Frame::data(data))))
    }
}
