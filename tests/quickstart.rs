//! The README's quick start, run as a user would: the release-style binary
//! with `serve --dev`, a posted event, `tail` with no flags, and SIGTERM.
//! Also checks the logs never hold a full phone number or a token.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run from `dir` as a user would from a fresh directory: the default
/// `spool.dir` (`data/spool`) lands there, not in the source tree.
fn bridge_cmd(
    dir: &std::path::Path,
    http: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_presence-bridge"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PRESENCE_BRIDGE__HTTP__LISTEN", http.to_string())
        .env("PRESENCE_BRIDGE__ADMIN__LISTEN", admin.to_string())
        .env("PRESENCE_BRIDGE__AUTH__TOKENS", TOKEN)
        .env("PRESENCE_BRIDGE__LOG__LEVEL", "debug");
    c
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dev_then_post_then_tail_then_sigterm() {
    let (http_addr, admin_addr) = (free_addr(), free_addr());
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().to_owned();
    let mut serve = Serve(
        bridge_cmd(&workdir, http_addr, admin_addr)
            .args(["serve", "--dev"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    let started = Instant::now();
    let ready = loop {
        if let Ok(Ok(r)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::spawn(async move { http(admin_addr, "GET", "/readyz", "").await }),
        )
        .await
        {
            if r.0 == 200 {
                break r.1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve --dev never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ready.contains("DEVELOPMENT MODE"), "{ready}");

    let (status, body) = http(
        http_addr,
        "POST",
        &format!("/webhooks/zapi/presence?token={TOKEN}"),
        &callback("5544999999999", "COMPOSING"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let tail = tokio::task::spawn_blocking(move || {
        bridge_cmd(&workdir, http_addr, admin_addr)
            .args(["tail", "--limit", "1", "--idle-timeout", "20s"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        tail.status.success(),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&tail.stdout).unwrap();
    assert_eq!(line["key"], "5544999999999");
    assert_eq!(line["headers"]["ce_id"], id.as_str());
    assert_eq!(line["value"]["data"]["status"], "COMPOSING");

    let pid = serve.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));

    let mut log = String::new();
    serve
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("DEVELOPMENT MODE"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(
        log.contains("55*********99"),
        "the accepted event is logged masked:\n{log}"
    );
    assert!(
        !log.contains("5544999999999"),
        "full phone in the log:\n{log}"
    );
    assert!(!log.contains(TOKEN), "token in the log:\n{log}");
}
