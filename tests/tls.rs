//! Native HTTPS on the webhook listener: a test CA and leaf certificates made
//! with rcgen, a hyper client over tokio-rustls trusting only that CA. Covers
//! the handshake, ALPN h2, reload on file change, a refused bad certificate,
//! SIGHUP through the real binary, startup errors (exit code 2), and early
//! answers reaching curl and hyper over h2 (see `tests/close.rs`).

mod close_support;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use close_support::*;
use common::process::{self, Proc};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A CA made for one test, issuing `localhost` leaf certificates.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// One leaf: its PEM files' content and its DER (to recognise it on the wire).
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "presence-bridge test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn leaf(&self, serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), format!("leaf-{serial}.test")])
                .unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

/// Writes the pair where the bridge reads it as a Kubernetes secret update
/// does: both files in a new directory, then one rename of the `..data` link
/// they are reached through, so a poll sees the old pair or the new one,
/// never a certificate with the other pair's key.
fn install(dir: &Path, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf) {
    let version = dir.join(format!("..{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir(&version).unwrap();
    std::fs::write(version.join("tls.crt"), cert_pem).unwrap();
    std::fs::write(version.join("tls.key"), key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    for (link, name) in [(&cert, "tls.crt"), (&key, "tls.key")] {
        if std::fs::symlink_metadata(link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), link).unwrap();
        }
    }
    (cert, key)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(ca: &TestCa, addr: SocketAddr, alpn: &[&[u8]]) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    ca.connector(alpn).connect(name, tcp).await
}

fn served_cert(s: &Tls) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn post_request(body: &str) -> Request<Full<Bytes>> {
    Request::post(format!("/webhooks/zapi/presence?token={TOKEN}"))
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// An HTTP/1.1 sender on an established TLS stream.
async fn http1(s: Tls) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn status_of(resp: hyper::Response<hyper::body::Incoming>) -> StatusCode {
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

async fn bridge_with(dir: &Path, extra: &[(&str, &str)]) -> Bridge {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut env = vec![
        ("PRESENCE_BRIDGE__HTTP__TLS__CERT", cert.as_str()),
        ("PRESENCE_BRIDGE__HTTP__TLS__KEY", key.as_str()),
    ];
    env.extend_from_slice(extra);
    Bridge::start_with(&env).await
}

/// A test CA, a bridge serving HTTPS with its leaf 1 (plus `extra`
/// settings), and the directory holding the pair.
async fn tls_bridge(extra: &[(&str, &str)]) -> (TestCa, Leaf, tempfile::TempDir, Bridge) {
    let ca = TestCa::new();
    let leaf = ca.leaf(1);
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &leaf.cert_pem, &leaf.key_pem);
    let bridge = bridge_with(dir.path(), extra).await;
    (ca, leaf, dir, bridge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_post_is_accepted_over_http1_and_over_h2_negotiated_by_alpn() {
    let (ca, leaf, _dir, bridge) = tls_bridge(&[]).await;
    let addr = bridge.running.webhook_addr;

    let s = connect(&ca, addr, &[b"http/1.1"]).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(served_cert(&s), leaf.der);
    let mut h1 = http1(s).await;
    let resp = h1
        .send_request(post_request(&callback("5511999990001", "AVAILABLE")))
        .await
        .unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_11);
    assert_eq!(status_of(resp).await, StatusCode::OK);

    let s = connect(&ca, addr, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = post_request(&callback("5511999990002", "COMPOSING"));
    *req.uri_mut() = format!("https://localhost/webhooks/zapi/presence?token={TOKEN}")
        .parse()
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(status_of(resp).await, StatusCode::OK);

    let records = bridge.read(2).await;
    let mut keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["5511999990001", "5511999990002"]);

    // An oversized body over TLS still gets its 413 (decided on the
    // declared length, before the body is read).
    let mut s = connect(&ca, addr, &[b"http/1.1"]).await.unwrap();
    s.write_all(
        format!(
            "POST /webhooks/zapi/presence?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\n\
             content-type: application/json\r\ncontent-length: 70000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    // Plain HTTP on the TLS port is a failed handshake, counted, not served.
    let failures = r#"presence_bridge_tls_handshake_failures_total{reason="error"}"#;
    assert_eq!(bridge.metric(failures), 0.0);
    let plain = bridge
        .client
        .request(
            Request::get(format!("http://{addr}/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port");
    bridge.wait_for(failures, 1.0).await;
    assert!(bridge.metric("presence_bridge_tls_certificate_expiry_timestamp_seconds") > 1.7e9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_cannot_stall_other_handshakes() {
    // The silent client is cut only after ten minutes: if its handshake held
    // up the next one, the request below would wait that long (the test's
    // timeout, far shorter, only guards that hang).
    let (ca, _, _dir, bridge) =
        tls_bridge(&[("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "10m")]).await;
    let addr = bridge.running.webhook_addr;
    // Connected first, sends nothing: the handshake waits in its own task.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let served = tokio::time::timeout(HANG, async {
        let s = connect(&ca, addr, &[b"http/1.1"]).await.unwrap();
        let resp = http1(s)
            .await
            .send_request(post_request(&callback("5511999990003", "PAUSED")))
            .await
            .unwrap();
        status_of(resp).await
    })
    .await
    .expect("a silent client stalled the next handshake");
    assert_eq!(served, StatusCode::OK);
    assert_eq!(
        bridge.metric(r#"presence_bridge_tls_handshake_failures_total{reason="timeout"}"#),
        0.0,
        "the silent client is still waiting, not cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_cut_at_the_timeout() {
    let (_, _, _dir, bridge) =
        tls_bridge(&[("PRESENCE_BRIDGE__HTTP__HEADER_READ_TIMEOUT", "300ms")]).await;
    let mut silent = TcpStream::connect(bridge.running.webhook_addr)
        .await
        .unwrap();
    // The bridge closes it: the read ends (the timeout only guards a hang).
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(HANG, silent.read(&mut buf))
        .await
        .expect("the silent client was never cut");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    bridge
        .wait_for_value(
            r#"presence_bridge_tls_handshake_failures_total{reason="timeout"}"#,
            1.0,
        )
        .await;
}

/// Early answers (401, 403, 405, 413, 415, 429) over TLS with ALPN h2 reach
/// curl (Debian's 7.88 with nghttp2 lost most 401s here before the bridge
/// read the body in flight) and hyper's client, 50 times in a row each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_early_answer_reaches_h2_clients_over_tls_fifty_times_in_a_row() {
    let (ca, _, dir, bridge) = tls_bridge(EARLY_ANSWER_ENV).await;
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.issuer.pem()).unwrap();
    let addr = bridge.running.webhook_addr;

    // curl first: it primes the 429 case for both clients.
    curl_gets_every_early_answer(CurlMode::H2Tls { ca_pem }, addr.port(), 50, "2").await;

    let base = format!("https://localhost:{}", addr.port());
    for early in EARLY_ANSWERS {
        for i in 0..50 {
            let s = connect(&ca, addr, &[b"h2"]).await.unwrap();
            assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let reply = hyper_h2(s, &base, early).await;
            assert_early(&reply, early, &format!("try {i}"));
        }
    }
}

/// Polls new connections until they are served `want`.
async fn wait_for_cert(ca: &TestCa, addr: SocketAddr, want: &CertificateDer<'_>) {
    eventually("new connections get the new certificate", || async {
        let s = connect(ca, addr, &[b"http/1.1"]).await.unwrap();
        (served_cert(&s) == *want).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_served_to_new_connections_and_a_bad_pair_keeps_the_old_one() {
    let ca = TestCa::new();
    let (a, b) = (ca.leaf(1), ca.leaf(2));
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &a.cert_pem, &a.key_pem);
    let bridge = bridge_with(
        dir.path(),
        &[("PRESENCE_BRIDGE__HTTP__TLS__RELOAD_INTERVAL", "100ms")],
    )
    .await;
    let addr = bridge.running.webhook_addr;
    let ok = r#"presence_bridge_tls_reloads_total{result="ok"}"#;
    let error = r#"presence_bridge_tls_reloads_total{result="error"}"#;

    let old = connect(&ca, addr, &[b"http/1.1"]).await.unwrap();
    assert_eq!(served_cert(&old), a.der);
    let mut old = http1(old).await;

    install(dir.path(), &b.cert_pem, &b.key_pem);
    wait_for_cert(&ca, addr, &b.der).await;
    bridge.wait_for_value(ok, 1.0).await;
    // The connection opened before the reload goes on.
    let resp = old
        .send_request(post_request(&callback("5511999990004", "AVAILABLE")))
        .await
        .unwrap();
    assert_eq!(status_of(resp).await, StatusCode::OK);

    // A key that does not match the certificate: refused, B stays.
    install(dir.path(), &a.cert_pem, &b.key_pem);
    bridge.wait_for_value(error, 1.0).await;
    // And a file that is not PEM at all.
    install(dir.path(), "not a certificate", &b.key_pem);
    bridge.wait_for_value(error, 2.0).await;
    let s = connect(&ca, addr, &[b"http/1.1"]).await.unwrap();
    assert_eq!(served_cert(&s), b.der);
    let resp = http1(s)
        .await
        .send_request(post_request(&callback("5511999990005", "AVAILABLE")))
        .await
        .unwrap();
    assert_eq!(status_of(resp).await, StatusCode::OK);
    // Each install is seen once (that a refused pair is not retried on
    // every poll is stepped explicitly in the test below).
    assert_eq!(bridge.metric(ok), 1.0);

    // Fixed files are picked up again.
    let c = ca.leaf(3);
    install(dir.path(), &c.cert_pem, &c.key_pem);
    wait_for_cert(&ca, addr, &c.der).await;
    bridge.wait_for_value(ok, 2.0).await;
    assert_eq!(bridge.metric(error), 2.0);
}

/// The poll stepped by hand: a pair is read again on every step, but a
/// refused one is refused (and counted) once, until the files change.
#[test]
fn a_refused_pair_is_not_retried_until_the_files_change() {
    use presence_bridge::tls::{Reload, Tls as Server};
    let ca = TestCa::new();
    let (a, b) = (ca.leaf(1), ca.leaf(2));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = install(dir.path(), &a.cert_pem, &a.key_pem);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let settings = presence_bridge::config::load(
        None,
        [
            ("PRESENCE_BRIDGE__HTTP__TLS__CERT".to_owned(), cert),
            ("PRESENCE_BRIDGE__HTTP__TLS__KEY".to_owned(), key),
        ],
    )
    .unwrap();
    let registry = prometheus::Registry::new();
    let metrics = presence_bridge::metrics::Metrics::new(&registry).unwrap();
    let tls = Server::load(settings.http.tls.as_ref().unwrap(), metrics.clone()).unwrap();
    assert_eq!(tls.reload(false), Reload::Unchanged);

    install(dir.path(), &a.cert_pem, &b.key_pem);
    assert_eq!(tls.reload(false), Reload::Failed);
    for _ in 0..3 {
        assert_eq!(
            tls.reload(false),
            Reload::Unchanged,
            "retried a refused pair"
        );
    }
    install(dir.path(), &b.cert_pem, &b.key_pem);
    assert_eq!(tls.reload(false), Reload::Loaded);
    assert_eq!(tls.reload(false), Reload::Unchanged);
    let text = String::from_utf8(presence_bridge::metrics::render(&registry)).unwrap();
    let count = |result: &str| {
        metric_value(
            &text,
            &format!(r#"presence_bridge_tls_reloads_total{{result="{result}"}}"#),
        )
    };
    assert_eq!((count("ok"), count("error")), (1.0, 1.0));
}

fn bridge_cmd(work: &Path, http: SocketAddr, admin: SocketAddr) -> Command {
    let mut c = process::serving(work, http, admin);
    c.env(
        "PRESENCE_BRIDGE__SPOOL__DIR",
        work.join("spool").display().to_string(),
    )
    .env(
        "PRESENCE_BRIDGE__HTTP__TLS__CERT",
        work.join("tls.crt").display().to_string(),
    )
    .env(
        "PRESENCE_BRIDGE__HTTP__TLS__KEY",
        work.join("tls.key").display().to_string(),
    );
    c
}

/// The binary's reload counter, read from its admin listener.
fn binary_reloads(admin: SocketAddr) -> f64 {
    let (status, text) = process::request(admin, "GET", "/metrics", "").expect("admin answers");
    assert_eq!(status, 200);
    metric_value(&text, r#"presence_bridge_tls_reloads_total{result="ok"}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_the_running_binary() {
    let ca = TestCa::new();
    let (a, b) = (ca.leaf(10), ca.leaf(11));
    let work = tempfile::tempdir().unwrap();
    install(work.path(), &a.cert_pem, &a.key_pem);
    let (http, admin) = (free_addr(), free_addr());
    let mut cmd = bridge_cmd(work.path(), http, admin);
    // Polling effectively off: only SIGHUP can bring the new pair in.
    cmd.env("PRESENCE_BRIDGE__HTTP__TLS__RELOAD_INTERVAL", "1h")
        .args(["serve", "--dev"]);
    let mut serve = Proc::spawn(&mut cmd, http, admin);
    serve.wait_ready();
    let first = connect(&ca, http, &[b"http/1.1"]).await.unwrap();
    assert_eq!(served_cert(&first), a.der);

    install(work.path(), &b.cert_pem, &b.key_pem);
    // Not picked up without the signal: still A, and no reload so far.
    let s = connect(&ca, http, &[b"http/1.1"]).await.unwrap();
    assert_eq!(served_cert(&s), a.der);
    assert_eq!(binary_reloads(admin), 0.0);

    serve.signal("HUP");
    wait_for_cert(&ca, http, &b.der).await;
    // Exactly the one reload the signal asked for: had the files been
    // picked up on their own, the forced reload would make it two.
    assert_eq!(binary_reloads(admin), 1.0);
    // SIGHUP did not stop it: still serving.
    let resp = http1(connect(&ca, http, &[b"http/1.1"]).await.unwrap())
        .await
        .send_request(post_request(&callback("5511999990006", "AVAILABLE")))
        .await
        .unwrap();
    assert_eq!(status_of(resp).await, StatusCode::OK);
}

fn exit_of(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_or_bad_pair_at_start_is_a_configuration_error() {
    let work = tempfile::tempdir().unwrap();
    let (http, admin) = (free_addr(), free_addr());

    // Missing files.
    let mut cmd = bridge_cmd(work.path(), http, admin);
    cmd.args(["serve", "--dev"]);
    let (code, stderr) = exit_of(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("http.tls.cert"), "{stderr}");

    // A key that is not PEM: the error names the key, never its content.
    let ca = TestCa::new();
    let leaf = ca.leaf(1);
    install(work.path(), &leaf.cert_pem, "SECRET-KEY-MATERIAL\n");
    let mut cmd = bridge_cmd(work.path(), http, admin);
    cmd.args(["serve", "--dev"]);
    let (code, stderr) = exit_of(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("http.tls.key"), "{stderr}");
    assert!(!stderr.contains("SECRET"), "{stderr}");

    // check-config validates the pair too.
    let mut cmd = bridge_cmd(work.path(), http, admin);
    cmd.arg("check-config");
    let (code, stderr) = exit_of(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("http.tls.key"), "{stderr}");

    // Only one of the two keys.
    let mut cmd = bridge_cmd(work.path(), http, admin);
    cmd.env_remove("PRESENCE_BRIDGE__HTTP__TLS__KEY")
        .arg("check-config");
    let (code, stderr) = exit_of(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("http.tls.key"), "{stderr}");
    assert!(stderr.contains("both or neither"), "{stderr}");

    // A good pair passes check-config.
    install(work.path(), &leaf.cert_pem, &leaf.key_pem);
    let mut cmd = bridge_cmd(work.path(), http, admin);
    cmd.arg("check-config");
    let (code, stderr) = exit_of(cmd);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn tls_keys_are_both_or_neither_and_the_interval_is_a_duration() {
    let load = |pairs: &[(&str, &str)]| {
        presence_bridge::config::load(
            None,
            pairs
                .iter()
                .map(|(k, v)| (format!("PRESENCE_BRIDGE__HTTP__TLS__{k}"), (*v).to_owned())),
        )
    };
    let e = load(&[("CERT", "/c.pem")]).unwrap_err().to_string();
    assert!(e.starts_with("http.tls.key:"), "{e}");
    let e = load(&[("KEY", "/k.pem")]).unwrap_err().to_string();
    assert!(e.starts_with("http.tls.cert:"), "{e}");
    let e = load(&[
        ("CERT", "/c.pem"),
        ("KEY", "/k.pem"),
        ("RELOAD_INTERVAL", "soon"),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("http.tls.reload_interval:"), "{e}");
    let s = load(&[("CERT", "/c.pem"), ("KEY", "/k.pem")]).unwrap();
    let tls = s.http.tls.expect("tls configured");
    assert_eq!(tls.cert, PathBuf::from("/c.pem"));
    assert_eq!(tls.reload_interval, Duration::from_secs(10));
    // Empty values (e.g. an unset variable in a template) mean "not set".
    assert!(load(&[("CERT", ""), ("KEY", "")])
        .unwrap()
        .http
        .tls
        .is_none());
}
