//! The README's quick start, run as a user would: the release-style binary
//! with `serve --dev`, a posted event, `tail` with no flags, and SIGTERM.
//! Also checks the logs never hold a full phone number or a token.

mod common;

use std::process::{Command, Stdio};

use common::process::{self, Proc};
use common::*;

/// Run from `dir` as a user would from a fresh directory: the default
/// `spool.dir` (`data/spool`) lands there, not in the source tree.
fn bridge_cmd(
    dir: &std::path::Path,
    http: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> Command {
    let mut c = process::serving(dir, http, admin);
    c.env("PRESENCE_BRIDGE__LOG__LEVEL", "debug");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dev_then_post_then_tail_then_sigterm() {
    let (http_addr, admin_addr) = (free_addr(), free_addr());
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().to_owned();
    let mut serve = Proc::spawn(
        bridge_cmd(&workdir, http_addr, admin_addr)
            .args(["serve", "--dev"])
            .stderr(Stdio::piped()),
        http_addr,
        admin_addr,
    );
    let ready = serve.wait_ready();
    assert!(ready.contains("DEVELOPMENT MODE"), "{ready}");

    let (status, body) = serve
        .post(&callback("5544999999999", "COMPOSING"))
        .expect("the webhook answers");
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let tail = tokio::task::spawn_blocking(move || {
        bridge_cmd(&workdir, http_addr, admin_addr)
            .args(["tail", "--limit", "1", "--idle-timeout", "20s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
    assert_eq!(line["headers"]["event-id"], id.as_str());
    assert_eq!(line["value"]["data"]["status"], "COMPOSING");

    assert_eq!(serve.terminate().code(), Some(0));
    let log = serve.stderr();
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
