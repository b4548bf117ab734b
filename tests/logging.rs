//! Logging as an operator meets it: the real binary (`serve --dev`) keeps
//! serving and exits 0 when its stderr is a pipe nobody reads any more, counting
//! the lines it could not write; every text line it writes is valid logfmt, read
//! back by a strict parser (the rules of `go-logfmt`, which Loki uses) that
//! also checks tricky values come back unchanged.

mod common;

use std::process::Stdio;

use common::process::{self, Proc};
use common::{callback, free_addr, metric_value};
use presence_bridge::logging::{Logfmt, LogfmtFields};
use proptest::prelude::*;

// ---------------------------------------------------------------- a parser

/// Parses one logfmt line strictly: `key=value` pairs separated by one space;
/// a key is one or more characters other than space, `=`, `"` and controls;
/// a value is bare (no space, `=`, `"` nor control) or double-quoted with the
/// escapes `\" \\ \/ \n \r \t \b \f \uXXXX`. Anything else is an error.
fn parse_logfmt(line: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            if c == ' ' || c == '"' || c.is_control() {
                return Err(format!("bad character {c:?} in key {key:?}"));
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return Err("empty key".into());
        }
        if chars.next() != Some('=') {
            return Err(format!("key {key:?} without `=`"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted value of {key:?}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('/') => value.push('/'),
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('b') => value.push('\u{8}'),
                        Some('f') => value.push('\u{c}'),
                        Some('u') => {
                            let hex: String = chars.by_ref().take(4).collect();
                            let code = u32::from_str_radix(&hex, 16)
                                .map_err(|_| format!("bad \\u escape {hex:?}"))?;
                            value.push(char::from_u32(code).ok_or("bad code point")?);
                        }
                        other => return Err(format!("bad escape {other:?} in {key:?}")),
                    },
                    Some(c) if c.is_control() => {
                        return Err(format!("raw control {c:?} in quoted value of {key:?}"))
                    }
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c == '=' || c == '"' || c.is_control() {
                    return Err(format!("bad character {c:?} in bare value of {key:?}"));
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
        match chars.next() {
            None => return Ok(pairs),
            Some(' ') => {}
            Some(c) => return Err(format!("expected a space, got {c:?}")),
        }
    }
}

#[test]
fn the_parser_rejects_what_is_not_logfmt() {
    // The shape of today's default `tracing-subscriber` text line.
    let old = r#"2026-12-01T18:00:00.000000Z  INFO request rejected reason=x detail=field `status` is required"#;
    assert!(parse_logfmt(old).is_err());
    for bad in [
        "a=b c",
        "a=\"x",
        "a=b=c",
        "a=x\"y",
        "=b",
        "a=b  c=d",
        "a=\"\\q\"",
    ] {
        assert!(parse_logfmt(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_logfmt(r#"a=1 b="x \"y\"\n" c="#).unwrap(),
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "x \"y\"\n".into()),
            ("c".into(), String::new())
        ]
    );
}

// ------------------------------------------------- the formatter, in process

/// Logs one event with `value` as the message and as a field, returns the text.
fn log_one(value: &str) -> String {
    let out = common::logs::Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .event_format(Logfmt)
        .fmt_fields(LogfmtFields)
        .with_writer(out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", route = "a route");
        let _in = span.enter();
        tracing::warn!(detail = value, debugged = ?value, count = 3, ok = true, "{value}");
    });
    out.text()
}

fn assert_round_trip(value: &str) {
    let text = log_one(value);
    assert!(text.ends_with('\n'), "{text:?}");
    let line = &text[..text.len() - 1];
    assert!(!line.contains('\n'), "one event, one line: {text:?}");
    let pairs = parse_logfmt(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["ts", "level", "msg", "detail", "debugged", "count", "ok", "route"],
        "{line}"
    );
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).unwrap().1.clone();
    assert_eq!(get("level"), "warn");
    assert_eq!(get("msg"), value, "{line}");
    assert_eq!(get("detail"), value, "{line}");
    assert_eq!(get("debugged"), format!("{value:?}"), "{line}");
    assert_eq!(get("count"), "3");
    assert_eq!(get("ok"), "true");
    assert_eq!(get("route"), "a route");
    assert!(
        time::OffsetDateTime::parse(&get("ts"), &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{line}"
    );
}

#[test]
fn tricky_values_survive_a_round_trip() {
    for value in [
        "",
        "plain",
        "two words",
        "key=value",
        r#"say "hi""#,
        r"back\slash",
        "line one\nline two\r\n",
        "tab\there",
        "\u{1b}[31mred\u{1b}[0m",
        "nul\0byte",
        "ünïcödé ✓",
        "nbsp\u{a0}and\u{2028}separator",
        "trailing space ",
        "=",
        "\"",
        "a=\"b c\" d=e",
    ] {
        assert_round_trip(value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn any_value_survives_a_round_trip(value in any::<String>()) {
        assert_round_trip(&value);
    }
}

// --------------------------------------------------------- the real binary

/// `serve --dev` in its own directory, polled until ready; the directory
/// goes when the test ends, after the process.
fn serve_dev(stderr: Stdio) -> (Proc, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_addr(), free_addr());
    let mut cmd = process::serving(dir.path(), http, admin);
    cmd.args(["serve", "--dev"])
        .env("PRESENCE_BRIDGE__SPOOL__DIR", dir.path().join("spool"))
        .env("PRESENCE_BRIDGE__LOG__LEVEL", "debug")
        .env("PRESENCE_BRIDGE__LOG__FORMAT", "text")
        .stderr(stderr);
    let mut serve = Proc::spawn(&mut cmd, http, admin);
    serve.wait_ready();
    (serve, dir)
}

#[test]
fn a_closed_stderr_drops_lines_and_never_stops_the_bridge() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let (mut serve, _dir) = serve_dev(Stdio::from(writer));

    // SIGPIPE is ignored (Rust's default for binaries): a closed pipe is an
    // EPIPE error the writer handles, not a signal that ends the process.
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.child.id())).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    const SIGPIPE: u32 = 13;
    assert_eq!(
        ignored >> (SIGPIPE - 1) & 1,
        1,
        "SIGPIPE is not ignored: {status}"
    );

    // Each of these is logged (rejections at info, the accepted event at debug).
    for _ in 0..3 {
        let (status, body) = serve.post("{not json").unwrap();
        assert_eq!(status, 400, "{body}");
    }
    let (status, body) = serve.post(&callback("5544999999999", "COMPOSING")).unwrap();
    assert_eq!(status, 200, "{body}");

    let (status, metrics) = process::request(serve.admin, "GET", "/metrics", "").unwrap();
    assert_eq!(status, 200);
    let dropped = metric_value(&metrics, "presence_bridge_log_lines_dropped_total");
    assert!(
        dropped >= 4.0,
        "start-up lines and the four requests' lines were dropped, yet the counter reads {dropped}"
    );

    let status = serve.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn every_line_of_a_serve_dev_run_is_logfmt() {
    let (mut serve, _dir) = serve_dev(Stdio::piped());
    let tricky = [
        "{not json".to_owned(),
        String::new(),
        r#"{"type":"PresenceChatCallback","phone":"5544999999999","status":"a \"quoted\" = status","instanceId":"i-1"}"#.to_owned(),
        callback("5544999999999", "COMPOSING"),
    ];
    for body in &tricky {
        serve.post(body);
    }
    let status = serve.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
    let log = serve.stderr();

    let mut messages = Vec::new();
    for line in log.lines() {
        let pairs = parse_logfmt(line).unwrap_or_else(|e| panic!("{e}:\n{line}"));
        let keys: Vec<&str> = pairs.iter().take(3).map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ts", "level", "msg"], "{line}");
        assert!(
            ["trace", "debug", "info", "warn", "error"].contains(&pairs[1].1.as_str()),
            "{line}"
        );
        messages.push(pairs[2].1.clone());
    }
    assert!(
        messages.iter().any(|m| m.contains("DEVELOPMENT MODE")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("reason=malformed_json")),
        "{log}"
    );
    assert!(messages.iter().any(|m| m == "shutdown complete"), "{log}");
    assert!(
        !log.contains("5544999999999"),
        "a full phone in the log:\n{log}"
    );
}

/// Errors printed before logging starts (a configuration error) are lost on
/// a closed stderr, and the exit code stays the one that says why: 2.
#[test]
fn a_closed_stderr_keeps_the_exit_code_of_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["serve"][..], &["check-config"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = process::command(dir.path())
            .args(args)
            .env("PRESENCE_BRIDGE__LOG__LEVEL", "warning")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(writer))
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
