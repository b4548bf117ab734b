//! Configuration: defaults < file < environment, unknown keys rejected, every
//! error naming its key, safety settings protected, secrets redacted.

use std::path::PathBuf;

use presence_bridge::config::{load, ConfigError, LogFormat};

mod config_support;
use config_support::{bin, check_config, env, err, file};

#[test]
fn defaults_are_the_documented_ones() {
    let s = load(None, Vec::new()).unwrap();
    assert_eq!(s.http.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(s.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(s.http.max_body_bytes.get(), 65536);
    assert_eq!(s.kafka.topic, "whatsapp.presence.v1");
    assert!(s.kafka.brokers.is_empty());
    assert!(s.auth.tokens.is_empty());
    assert_eq!(s.spool.dir, PathBuf::from("data/spool"));
    assert_eq!(s.log.format, LogFormat::Text);
}

#[test]
fn environment_overrides_the_file_which_overrides_defaults() {
    let path = file(
        r#"
[http]
listen = "127.0.0.1:8081"
max_body_bytes = 2048

[kafka]
brokers = ["k1:9092", "k2:9092"]
topic = "from-file"

[kafka.topic_by_instance]
"tenant.a" = "tenant-a-topic"

[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.password" = "hunter2-secret"
"linger.ms" = 7
"#,
    );
    let s = load(
        Some(&path),
        env(&[
            ("PRESENCE_BRIDGE__KAFKA__TOPIC", "from-env"),
            (
                "PRESENCE_BRIDGE__AUTH__TOKENS",
                "token-one-0123456789,token-two-0123456789",
            ),
            ("PRESENCE_BRIDGE__LOG__FORMAT", "json"),
            ("OTHER_APP__KAFKA__TOPIC", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(s.http.listen.to_string(), "127.0.0.1:8081");
    assert_eq!(s.http.max_body_bytes.get(), 2048);
    assert_eq!(s.kafka.brokers, ["k1:9092", "k2:9092"]);
    assert_eq!(s.kafka.topic, "from-env");
    assert_eq!(s.kafka.topic_for("tenant.a"), "tenant-a-topic");
    assert_eq!(s.kafka.topic_for("tenant.b"), "from-env");
    assert_eq!(s.kafka.properties["security.protocol"], "SASL_SSL");
    assert_eq!(s.kafka.properties["linger.ms"], "7");
    assert_eq!(s.auth.tokens.len(), 2);
    assert_eq!(s.log.format, LogFormat::Json);

    let shown = s.redacted_json().to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("token-one"), "{shown}");
    assert!(shown.contains("SASL_SSL"));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let e = err(Some("[http]\nlisten_addr = \"0.0.0.0:1\"\n"), &[]);
    assert!(e.contains("listen_addr"), "{e}");
    let e = err(None, &[("PRESENCE_BRIDGE__KAFKA__TOPICS", "x")]);
    assert!(e.contains("topics"), "{e}");
    let e = err(Some("[metrics]\nport = 1\n"), &[]);
    assert!(e.contains("metrics"), "{e}");
}

#[test]
fn invalid_values_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("PRESENCE_BRIDGE__HTTP__LISTEN", "localhost", "http.listen"),
        ("PRESENCE_BRIDGE__ADMIN__LISTEN", "nope", "admin.listen"),
        (
            "PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES",
            "0",
            "http.max_body_bytes",
        ),
        (
            "PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES",
            "lots",
            "max_body_bytes",
        ),
        (
            "PRESENCE_BRIDGE__HTTP__BODY_READ_TIMEOUT",
            "soon",
            "http.body_read_timeout",
        ),
        ("PRESENCE_BRIDGE__KAFKA__TOPIC", "bad topic!", "kafka.topic"),
        (
            "PRESENCE_BRIDGE__KAFKA__BROKERS",
            "no-port",
            "kafka.brokers",
        ),
        (
            "PRESENCE_BRIDGE__KAFKA__COMPRESSION",
            "brotli",
            "kafka.compression",
        ),
        ("PRESENCE_BRIDGE__AUTH__TOKENS", "short", "auth.tokens"),
        ("PRESENCE_BRIDGE__LOG__FORMAT", "xml", "log.format"),
        (
            "PRESENCE_BRIDGE__SHUTDOWN__DEADLINE",
            "0s",
            "shutdown.deadline",
        ),
    ];
    for (key, value, named) in cases {
        let e = err(None, &[(key, value)]);
        assert!(e.contains(named), "{key}={value}: {e}");
    }
    let e = err(None, &[("PRESENCE_BRIDGE__HTTP__LISTEN", "127.0.0.1:9090")]);
    assert!(e.contains("admin.listen"), "{e}");
}

#[test]
fn safety_settings_cannot_be_overridden() {
    for (prop, value) in [
        ("enable.idempotence", "false"),
        ("acks", "1"),
        ("bootstrap.servers", "elsewhere:9092"),
        ("message.timeout.ms", "1000"),
    ] {
        let e = err(
            Some(&format!("[kafka.properties]\n\"{prop}\" = \"{value}\"\n")),
            &[],
        );
        assert!(e.contains(&format!("kafka.properties.{prop}")), "{e}");
    }
    // Restating our own value is not a conflict.
    let path = file("[kafka.properties]\n\"enable.idempotence\" = \"true\"\n");
    assert!(load(Some(&path), Vec::new()).is_ok());
}

#[test]
fn a_missing_file_is_an_error() {
    let e = load(
        Some(std::path::Path::new("/nonexistent/bridge.toml")),
        Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Invalid { .. }));
    assert!(e.to_string().contains("/nonexistent/bridge.toml"));
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let (v, stdout) = check_config(&[
        ("PRESENCE_BRIDGE__AUTH__TOKENS", "super-secret-token-0123"),
        ("PRESENCE_BRIDGE__KAFKA__BROKERS", "k1:9092"),
    ]);
    assert_eq!(v["kafka"]["brokers"][0], "k1:9092");
    assert_eq!(v["auth"]["tokens"][0], "<redacted>");
    assert!(!stdout.contains("super-secret"));
}

#[test]
fn check_config_fails_with_the_key_and_exit_code_2() {
    let out = bin()
        .arg("check-config")
        .env("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "-5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("max_body_bytes"), "{stderr}");

    // librdkafka itself rejects unknown properties.
    let path = file("[kafka.properties]\n\"no.such.property\" = \"1\"\n");
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("no.such.property"), "{stderr}");
}

#[test]
fn serve_without_brokers_refuses_and_says_how_to_configure_them() {
    let out = bin()
        .arg("serve")
        .env("PRESENCE_BRIDGE__HTTP__LISTEN", "127.0.0.1:0")
        .env("PRESENCE_BRIDGE__ADMIN__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("PRESENCE_BRIDGE__KAFKA__BROKERS"),
        "{stderr}"
    );
    assert!(stderr.contains("--dev"), "{stderr}");
}

#[test]
fn spool_settings_parse_sizes_and_policies() {
    let s = load(
        None,
        env(&[
            ("PRESENCE_BRIDGE__SPOOL__MAX_BYTES", "512MiB"),
            ("PRESENCE_BRIDGE__SPOOL__SEGMENT_BYTES", "1GiB"),
            ("PRESENCE_BRIDGE__SPOOL__FSYNC", "interval"),
            ("PRESENCE_BRIDGE__SPOOL__FSYNC_INTERVAL", "50ms"),
        ]),
    )
    .unwrap();
    assert_eq!(s.spool.max_bytes, 512 << 20);
    // A segment is at most an eighth of the spool, so deleting delivered
    // segments always frees room.
    assert_eq!(s.spool.segment_bytes, 64 << 20);
    assert_eq!(s.spool.fsync, presence_bridge::spool::FsyncPolicy::Interval);
    assert_eq!(s.spool.fsync_interval, std::time::Duration::from_millis(50));
    assert_eq!(load(None, Vec::new()).unwrap().spool.max_bytes, 1 << 30);
    for (key, value) in [
        ("PRESENCE_BRIDGE__SPOOL__MAX_BYTES", "lots"),
        ("PRESENCE_BRIDGE__SPOOL__MAX_BYTES", "100KiB"),
        ("PRESENCE_BRIDGE__SPOOL__MAX_BYTES", "0"),
        ("PRESENCE_BRIDGE__SPOOL__FSYNC", "sometimes"),
        ("PRESENCE_BRIDGE__SPOOL__DEAD_LETTER_TOPIC", "bad topic"),
    ] {
        let e = err(None, &[(key, value)]);
        let named = key
            .trim_start_matches("PRESENCE_BRIDGE__")
            .replace("__", ".")
            .to_lowercase();
        assert!(e.contains(&named), "{key}={value}: {e}");
    }
}
