//! The reference pages stay equal to what the binary prints:
//! `docs/configuration.md` documents exactly the keys `check-config` prints,
//! and `docs/metrics.md` exactly the metric families `/metrics` exposes.
//! Both sides are read from the built binary (`CARGO_BIN_EXE_presence-bridge`),
//! never from a list kept in this file.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "docs-reference-token-0123456789";

/// The binary with an empty environment (but `PATH`), run from `cwd`.
fn bridge(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_presence-bridge"));
    c.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names in backticks in the first column of the tables under the
/// heading `## {section}` of a page, up to the next `## ` heading; a
/// `{labels}` suffix is dropped. A cell may name several (`a`, `b`).
fn first_column_names(text: &str, section: &str) -> BTreeSet<String> {
    let heading = format!("## {section}");
    let mut inside = false;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("## ") {
            inside = line.trim_end() == heading;
            continue;
        }
        let Some(row) = line.strip_prefix('|').filter(|_| inside) else {
            continue;
        };
        let cell = row.split(" |").next().unwrap_or_default();
        for (i, part) in cell.split('`').enumerate() {
            if i % 2 == 1 {
                let name = part.split('{').next().unwrap_or_default();
                names.insert(name.to_owned());
            }
        }
    }
    assert!(!names.is_empty(), "no table rows under `{heading}`");
    names
}

/// Fails with both differences listed, so a drift in either direction names
/// what to add or remove where.
fn assert_same(printed: &BTreeSet<String>, documented: &BTreeSet<String>, what: &str) {
    let undocumented: Vec<_> = printed.difference(documented).collect();
    let gone: Vec<_> = documented.difference(printed).collect();
    assert!(
        undocumented.is_empty() && gone.is_empty(),
        "{what}:\n  printed by the binary but not documented: {undocumented:?}\n  \
         documented but not printed by the binary: {gone:?}"
    );
}

// ---- configuration --------------------------------------------------------

/// Every key path of the printed configuration. A documented key whose value is
/// a table (`kafka.properties`, `auth.instances`) is one key: what is below it
/// is the user's, not the bridge's.
fn config_keys(
    prefix: &str,
    value: &Value,
    documented: &BTreeSet<String>,
    out: &mut BTreeSet<String>,
) {
    match value {
        Value::Object(map) if !map.is_empty() && !documented.contains(prefix) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                config_keys(&path, v, documented, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn success(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn configuration_reference_lists_exactly_what_check_config_prints() {
    let dir = tempfile::tempdir().unwrap();
    // Every optional section set, so that `check-config` prints its keys
    // instead of `null`.
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), pair.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), pair.signing_key.serialize_pem()).unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[http.tls]
cert = "{dir}/tls.crt"
key = "{dir}/tls.key"

[kafka]
brokers = ["127.0.0.1:9092"]

[kafka.topic_by_instance]
"instance.a" = "tenant-a.presence.v1"

[kafka.properties]
"client.id" = "docs-reference"

[auth]
tokens = ["{TOKEN}"]

[auth.instances]
"instance.b" = ["docs-reference-tenant-token-0123"]

[limits.per_instance]
rate = 10
burst = 20

[limits.per_client]
rate = 10
burst = 20

[spool]
dir = "{dir}/spool"
dead_letter_topic = "whatsapp.presence.dead-letter.v1"

[rejected]
topic = "whatsapp.presence.rejected.v1"
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let out = bridge(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .output()
        .unwrap();
    let printed: Value = serde_json::from_str(&success(out, "check-config")).unwrap();

    let documented = first_column_names(&page("configuration.md"), "Keys");
    let mut keys = BTreeSet::new();
    config_keys("", &printed, &documented, &mut keys);
    for key in &keys {
        let value = key
            .split('.')
            .fold(&printed, |v, k| v.get(k).unwrap_or(&Value::Null));
        assert!(!value.is_null(), "{key} printed as null: set it above");
    }
    assert_same(
        &keys,
        &documented,
        "docs/configuration.md, \"## Keys\" table, against `check-config`",
    );
}

// ---- metrics --------------------------------------------------------------

/// Kills the bridge when the test ends, however it ends.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.0 GET: the status code and the body, or the connection error.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_owned()))
}

#[test]
fn metrics_reference_lists_exactly_the_families_metrics_exposes() {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_addr(), free_addr());
    let mut serve = Serve(
        bridge(dir.path())
            .args(["serve", "--dev"])
            .env("PRESENCE_BRIDGE__HTTP__LISTEN", http.to_string())
            .env("PRESENCE_BRIDGE__ADMIN__LISTEN", admin.to_string())
            .env("PRESENCE_BRIDGE__AUTH__TOKENS", TOKEN)
            .env("PRESENCE_BRIDGE__SPOOL__DIR", dir.path().join("spool"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Waits for readiness itself; the deadline only guards against a hang.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !matches!(get(admin, "/readyz"), Ok((200, _))) {
        if let Some(status) = serve.0.try_wait().unwrap() {
            panic!("serve --dev exited before it was ready: {status}");
        }
        assert!(Instant::now() < deadline, "serve --dev never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // `presence_bridge_http_requests_total` has its series from the first
    // answer on, as in production: post one event and wait for it.
    let event = r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"instanceId":"instance.id"}"#;
    let mut s = TcpStream::connect(http).unwrap();
    write!(
        s,
        "POST /webhooks/zapi/presence HTTP/1.0\r\nHost: {http}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{event}",
        event.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get(admin, "/metrics").unwrap();
        assert_eq!(status, 200, "{body}");
        if body.contains("\npresence_bridge_http_requests_total{") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    // Every family has a `# TYPE name kind` line (histograms under their base name).
    let exposed: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    assert!(
        exposed.contains("presence_bridge_events_accepted_total"),
        "not a scrape of the bridge: {body}"
    );
    let documented = first_column_names(&page("metrics.md"), "Series");
    assert_same(
        &exposed,
        &documented,
        "docs/metrics.md, \"## Series\" table, against `/metrics` of `serve --dev`",
    );
}
