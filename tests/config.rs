//! Configuration: defaults < file < environment, unknown keys rejected, every
//! error naming its key, safety settings protected, secrets redacted.

use std::path::PathBuf;

use presence_bridge::config::{load, ConfigError, LogFormat};

mod common;
mod config_support;
use config_support::{bin, check_config, env, err, file, ok, run};

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
"batch.num.messages" = 7
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
    assert_eq!(s.kafka.properties["batch.num.messages"], "7");
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
    // segments always frees room; the shrinking is not silent.
    assert_eq!(s.spool.segment_bytes, 64 << 20);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("spool.segment_bytes") && w.contains("67108864")),
        "{:?}",
        s.warnings
    );
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

/// Every property librdkafka marks `_RK_SENSITIVE` (rdkafka_conf.c of the
/// vendored librdkafka 2.12.1; CONFIGURATION.md's sensitive ones).
const LIBRDKAFKA_SENSITIVE: &[&str] = &[
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

/// File paths: shown, even where librdkafka marks them sensitive.
const PATHS: &[&str] = &[
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.crl.location",
    "sasl.kerberos.keytab",
    "sasl.oauthbearer.assertion.private.key.file",
];

/// Misspellings of secret properties: unknown to librdkafka, secret to us.
const MISSPELLED_SECRETS: &[&str] = &[
    "sasl.pasword",
    "sasl.passwd",
    "ssl.key.pasword",
    "ssl.keystore.pasword",
    "ssl.key.pwd",
    "sasl.oauthbearer.client.secert",
    "sasl.oauthbearer.clientsecret",
    "sasl.oauthbearer.confg",
    "sasl.jass.config",
    "sasl.oauthbearer.token",
];

#[test]
fn redaction_covers_librdkafkas_sensitive_properties_and_shows_paths() {
    use presence_bridge::config::is_secret_property;
    for key in LIBRDKAFKA_SENSITIVE.iter().chain(MISSPELLED_SECRETS) {
        assert_eq!(is_secret_property(key), !PATHS.contains(key), "{key}");
    }
    for key in PATHS
        .iter()
        .chain(&["security.protocol", "sasl.mechanisms", "batch.num.messages"])
    {
        assert!(!is_secret_property(key), "{key}");
    }

    // What check-config prints: every settable sensitive property redacted,
    // paths in clear.
    let mut toml = String::from("[kafka.properties]\n");
    let keys: std::collections::BTreeSet<&str> =
        LIBRDKAFKA_SENSITIVE.iter().chain(PATHS).copied().collect();
    for (i, key) in keys.iter().enumerate() {
        toml += &format!("\"{key}\" = \"/value/number-{i}-end\"\n");
    }
    let s = ok(Some(&without_unsettable(&toml)), &[]);
    let shown = &s.redacted_json()["kafka"]["properties"];
    let mut redacted = 0;
    for (key, value) in shown.as_object().unwrap() {
        if PATHS.contains(&key.as_str()) {
            assert!(value.as_str().unwrap().starts_with("/value/"), "{key}");
        } else {
            assert_eq!(value, "<redacted>", "{key}");
            redacted += 1;
        }
    }
    // Those this build of librdkafka supports (no OIDC ones here).
    assert!(redacted >= 7, "{shown}");
    assert!(shown["sasl.oauthbearer.config"] == "<redacted>", "{shown}");
    assert!(shown["ssl.keystore.location"] != "<redacted>", "{shown}");
}

/// Drops the lines librdkafka refuses in this build (internal or unsupported
/// properties), so the rest can be loaded.
fn without_unsettable(toml: &str) -> String {
    toml.lines()
        .filter(|l| {
            let Some(key) = l.split('"').nth(1) else {
                return true;
            };
            presence_bridge::publisher::check_property(key, "x").is_ok()
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

const SECRET: &str = "Hunter2-Zq9-not-for-logs";

/// Each way a secret can be misconfigured, run through each command that
/// loads the configuration: exit 2, the key named, the value nowhere.
#[test]
fn misconfigured_secrets_are_never_printed_by_any_command() {
    let dir = tempfile::tempdir().unwrap();
    // (file text, environment, what the error must name)
    type Case = (String, Vec<(String, String)>, String);
    let mut cases: Vec<Case> = Vec::new();
    for key in MISSPELLED_SECRETS {
        cases.push((
            format!("[kafka.properties]\n\"{key}\" = \"{SECRET}\"\n"),
            Vec::new(),
            format!("kafka.properties.{key}"),
        ));
    }
    // Known properties whose value librdkafka refuses, quoting it.
    for key in [
        "security.protocol",
        "enable.ssl.certificate.verification",
        "acks",
        "batch.size",
    ] {
        cases.push((
            format!("[kafka.properties]\n\"{key}\" = \"{SECRET}\"\n"),
            Vec::new(),
            format!("kafka.properties.{key}"),
        ));
    }
    cases.push((
        "[kafka.properties]\n\"sasl.oauthbearer.confg\" = \"principal=a clientSecret=Hunter2-Zq9-not-for-logs\"\n".into(),
        Vec::new(),
        "sasl.oauthbearer.confg".into(),
    ));
    for (var, named) in [
        (
            "PRESENCE_BRIDGE__KAFKA__PROPERTIES__SASL__PASWORD",
            "sasl.pasword",
        ),
        (
            "PRESENCE_BRIDGE__AUTH__PASSWORD",
            "PRESENCE_BRIDGE__AUTH__PASSWORD",
        ),
        ("PRESENCE_BRIDGE__AUTH", "PRESENCE_BRIDGE__AUTH"),
        (
            "PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES",
            "PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES",
        ),
    ] {
        cases.push((
            String::new(),
            vec![(var.to_owned(), SECRET.to_owned())],
            named.to_owned(),
        ));
    }
    let commands: &[&[&str]] = &[
        &["check-config"],
        &["serve"],
        &["serve", "--dev"],
        &["tail", "--limit", "1", "--idle-timeout", "1s"],
        &["dead-letter", "list"],
        &["dead-letter", "replay"],
        &["spool", "inspect"],
    ];
    for (toml, vars, named) in &cases {
        let path = file(&format!(
            "[kafka]\nbrokers = [\"127.0.0.1:1\"]\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{toml}"
        ));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for args in commands {
            let r = run(dir.path(), Some(&path), args, &vars);
            let all = format!("{}\n{}", r.stdout, r.stderr);
            assert!(!all.contains(SECRET), "{args:?} {toml} {vars:?}: {all}");
            assert!(!all.contains("Hunter2"), "{args:?} {toml} {vars:?}: {all}");
            assert_eq!(r.code, Some(2), "{args:?} {toml} {vars:?}: {all}");
            assert!(r.stderr.contains(named.as_str()), "{args:?}: {}", r.stderr);
        }
    }
}

/// Secrets librdkafka accepts but cannot use stop `serve` and `tail` when the
/// client is created; what they print holds no part of the secret.
#[test]
fn client_creation_errors_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&format!(
        "[kafka]\nbrokers = [\"127.0.0.1:1\"]\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[kafka.properties]\n\
         \"security.protocol\" = \"SSL\"\n\
         \"ssl.key.pem\" = \"{SECRET}\"\n\"ssl.key.password\" = \"{SECRET}-pw\"\n"
    ));
    // `serve` calls a producer librdkafka refuses a configuration error (2).
    for (args, code) in [
        (&["serve"][..], 2),
        (&["tail", "--limit", "1", "--idle-timeout", "1s"][..], 1),
    ] {
        let r = run(dir.path(), Some(&path), args, &[]);
        let all = format!("{}\n{}", r.stdout, r.stderr);
        assert_eq!(r.code, Some(code), "{args:?}: {all}");
        assert!(all.contains("ssl.key.pem"), "{args:?}: {all}");
        assert!(!all.contains("Hunter2"), "{args:?}: {all}");
    }
}

#[test]
fn log_level_must_be_a_level_or_directives() {
    for bad in [
        "warning",
        "verbose",
        "debug;",
        "info,",
        "=debug",
        "presence_bridge=loud",
        "",
    ] {
        let e = err(None, &[("PRESENCE_BRIDGE__LOG__LEVEL", bad)]);
        assert!(e.contains("log.level"), "{bad}: {e}");
    }
    for good in [
        "info",
        "WARN",
        "off",
        "warn,presence_bridge=debug",
        "presence_bridge::ingress=trace",
    ] {
        let s = ok(None, &[("PRESENCE_BRIDGE__LOG__LEVEL", good)]);
        assert_eq!(s.log.level, good);
    }
    let dir = tempfile::tempdir().unwrap();
    for args in [&["check-config"][..], &["serve", "--dev"][..]] {
        let r = run(
            dir.path(),
            None,
            args,
            &[
                ("PRESENCE_BRIDGE__LOG__LEVEL", "warning"),
                ("PRESENCE_BRIDGE__HTTP__LISTEN", "127.0.0.1:0"),
                ("PRESENCE_BRIDGE__ADMIN__LISTEN", "127.0.0.1:0"),
            ],
        );
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("log.level"), "{}", r.stderr);
    }
}

#[test]
fn properties_the_bridge_sets_are_refused_with_the_setting_to_use() {
    for (prop, value, instead) in [
        ("linger.ms", "abc", "kafka.linger"),
        ("linger.ms", "7", "kafka.linger"),
        ("queue.buffering.max.ms", "7", "kafka.linger"),
        ("compression.type", "gzip", "kafka.compression"),
        ("compression.codec", "gzip", "kafka.compression"),
        ("bootstrap.servers", "k:9092", "kafka.brokers"),
        ("group.id", "g", "tail"),
    ] {
        let e = err(
            Some(&format!("[kafka.properties]\n\"{prop}\" = \"{value}\"\n")),
            &[],
        );
        assert!(e.contains(&format!("kafka.properties.{prop}")), "{e}");
        assert!(e.contains(instead), "{prop}: {e}");
    }
    // client.id is honoured: the operator's value reaches librdkafka.
    let s = ok(
        Some("[kafka.properties]\n\"client.id\" = \"bridge-eu-1\"\n"),
        &[],
    );
    let cfg = presence_bridge::publisher::producer_config(&s.kafka, "k:9092");
    assert_eq!(cfg.get("client.id"), Some("bridge-eu-1"));
    let s = ok(None, &[]);
    let cfg = presence_bridge::publisher::producer_config(&s.kafka, "k:9092");
    assert!(cfg
        .get("client.id")
        .unwrap()
        .starts_with("presence-bridge/"));
    // kafka.linger becomes linger.ms exactly, or is refused.
    let e = err(None, &[("PRESENCE_BRIDGE__KAFKA__LINGER", "1500us")]);
    assert!(e.contains("kafka.linger"), "{e}");
    let e = err(None, &[("PRESENCE_BRIDGE__KAFKA__LINGER", "1h")]);
    assert!(e.contains("kafka.linger"), "{e}");
}

#[test]
fn a_shrunk_segment_size_is_warned_about_in_check_config_and_at_start() {
    let vars = [
        ("PRESENCE_BRIDGE__SPOOL__MAX_BYTES", "10MiB"),
        ("PRESENCE_BRIDGE__SPOOL__SEGMENT_BYTES", "64MiB"),
    ];
    let s = ok(None, &vars);
    assert_eq!(s.spool.segment_bytes, 1_310_720);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    // The default follows a small spool without a word; a value that fits is kept.
    let s = ok(None, &[("PRESENCE_BRIDGE__SPOOL__MAX_BYTES", "10MiB")]);
    assert_eq!((s.spool.segment_bytes, s.warnings.len()), (1_310_720, 0));
    let s = ok(None, &[("PRESENCE_BRIDGE__SPOOL__SEGMENT_BYTES", "1MiB")]);
    assert_eq!((s.spool.segment_bytes, s.warnings.len()), (1 << 20, 0));
    let e = err(None, &[("PRESENCE_BRIDGE__SPOOL__SEGMENT_BYTES", "1KiB")]);
    assert!(e.contains("spool.segment_bytes"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), None, &["check-config"], &vars);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: spool.segment_bytes"),
        "{}",
        r.stderr
    );
    // serve logs it before anything else can stop it (here: no brokers).
    let r = run(dir.path(), None, &["serve"], &vars);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("level=warn") && r.stderr.contains("spool.segment_bytes"),
        "{}",
        r.stderr
    );
}

#[test]
fn variables_that_look_like_ours_are_named_in_a_warning() {
    let value = "10.9.8.7:8080";
    for var in [
        "PRESENCE_BRIDGE_HTTP_LISTEN",
        "presence_bridge__http__listen",
        "PRESENSE_BRIDGE__HTTP__LISTEN",
        "PRESENCE_BRIGDE__HTTP__LISTEN",
        "PRESENCEBRIDGE__HTTP__LISTEN",
    ] {
        let s = ok(None, &[(var, value)]);
        assert_eq!(s.http.listen.to_string(), "0.0.0.0:8080", "{var}");
        assert_eq!(s.warnings.len(), 1, "{var}: {:?}", s.warnings);
        assert!(s.warnings[0].contains(var), "{:?}", s.warnings);
        assert!(!s.warnings[0].contains(value), "{:?}", s.warnings);
    }
    let s = ok(None, &[("PRESENCE_BRIDGE_HTTP_LISTEN", value)]);
    assert!(
        s.warnings[0].contains("PRESENCE_BRIDGE__HTTP__LISTEN"),
        "{:?}",
        s.warnings
    );
    for unrelated in [
        "PATH",
        "HOME",
        "PRESENCE_API_URL",
        "PRESENCE_BRIDGE_TEST_BIN",
        "BRIDGE__X",
    ] {
        assert!(
            ok(None, &[(unrelated, value)]).warnings.is_empty(),
            "{unrelated}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let vars = [("PRESENCE_BRIDGE_HTTP_LISTEN", value)];
    let r = run(dir.path(), None, &["check-config"], &vars);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: environment variable PRESENCE_BRIDGE_HTTP_LISTEN"),
        "{}",
        r.stderr
    );
    let r = run(dir.path(), None, &["serve"], &vars);
    assert!(
        r.stderr.contains("level=warn") && r.stderr.contains("PRESENCE_BRIDGE_HTTP_LISTEN"),
        "{}",
        r.stderr
    );
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(value));

    // Under the real prefix an unknown key stays an error, naming the variable.
    let e = err(None, &[("PRESENCE_BRIDGE__HTTP__LISTN", value)]);
    assert!(e.contains("PRESENCE_BRIDGE__HTTP__LISTN"), "{e}");
    assert!(!e.contains(value), "{e}");
    let r = run(
        dir.path(),
        None,
        &["check-config"],
        &[("PRESENCE_BRIDGE__HTTP__LISTN", value)],
    );
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("PRESENCE_BRIDGE__HTTP__LISTN"),
        "{}",
        r.stderr
    );
}

/// librdkafka quotes part of a SASL/OAUTHBEARER config it cannot parse in an
/// error event (`Unrecognized sasl.oauthbearer.config beginning at: ...`);
/// the bridge's log line about it must not carry that part.
#[test]
fn librdkafka_error_events_are_logged_without_the_secret() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
         \"sasl.mechanisms\" = \"OAUTHBEARER\"\n\
         \"enable.sasl.oauthbearer.unsecure.jwt\" = \"true\"\n\
         \"sasl.oauthbearer.config\" = \"principal=svc clientSecret=Zq9-first Zq9-second\"\n",
    );
    let listen = "127.0.0.1:0".parse().unwrap();
    let mut child = common::process::Proc::spawn(
        bin()
            .current_dir(dir.path())
            .arg("--config")
            .arg(&path)
            .args(["serve", "--dev"])
            .env("PRESENCE_BRIDGE__LOG__LEVEL", "debug")
            .stderr(std::process::Stdio::piped()),
        listen,
        listen,
    );
    let stderr = child.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // Waits for the error event itself; the timeout only guards a hang.
    let found = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => {
                let hit = line.contains("Unrecognized sasl.oauthbearer.config");
                seen.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    child.kill();
    seen.extend(rx.try_iter());
    let _ = reader.join();
    seen.extend(rx.try_iter());
    let all = seen.join("\n");
    assert!(found, "no OAUTHBEARER error event was logged:\n{all}");
    assert!(!all.contains("Zq9"), "{all}");
    // Plain values stay readable.
    assert!(all.contains("OAUTHBEARER"), "{all}");
}

#[test]
fn message_bodies_and_topics_of_every_kind_have_defaults_and_checks() {
    let s = load(None, Vec::new()).unwrap();
    assert_eq!(s.http.max_message_body_bytes.get(), 1 << 20);
    assert_eq!(s.http.max_decompression_ratio.get(), 100);
    assert_eq!(s.kafka.received.topic, "whatsapp.messages.v1");
    assert_eq!(s.kafka.message_status.topic, "whatsapp.message-status.v1");
    assert_eq!(s.kafka.delivery.topic, "whatsapp.delivery.v1");
    assert_eq!(s.kafka.connection.topic, "whatsapp.connection.v1");
    let e = err(
        None,
        &[("PRESENCE_BRIDGE__HTTP__MAX_MESSAGE_BODY_BYTES", "1000")],
    );
    assert!(e.contains("http.max_message_body_bytes"), "{e}");
    assert!(e.contains("at least http.max_body_bytes"), "{e}");
    let e = err(None, &[("PRESENCE_BRIDGE__KAFKA__RECEIVED__TOPIC", "a b")]);
    assert!(e.contains("kafka.received.topic"), "{e}");
    let e = err(
        None,
        &[(
            "PRESENCE_BRIDGE__KAFKA__DELIVERY__TOPIC_BY_INSTANCE__X",
            "no/slash",
        )],
    );
    assert!(e.contains("kafka.delivery.topic_by_instance.x"), "{e}");
    // A capture topic must not take a stream's topic.
    let e = err(
        None,
        &[("PRESENCE_BRIDGE__REJECTED__TOPIC", "whatsapp.connection.v1")],
    );
    assert!(e.contains("rejected.topic"), "{e}");
    let s = load(
        None,
        vec![(
            "PRESENCE_BRIDGE__KAFKA__CONNECTION__TOPIC_BY_INSTANCE__TENANT-X".to_owned(),
            "tenant-x.connection".to_owned(),
        )],
    )
    .unwrap();
    use presence_bridge::config::Stream;
    assert_eq!(
        s.kafka.stream_topic(Stream::Connection, "tenant-x"),
        "tenant-x.connection"
    );
    assert_eq!(
        s.kafka.stream_topic(Stream::Connection, "other"),
        "whatsapp.connection.v1"
    );
    assert_eq!(
        s.kafka.stream_topic(Stream::Received, "tenant-x"),
        "whatsapp.messages.v1"
    );
}

#[test]
fn body_budgets_default_and_refuse_sizes_that_could_not_hold_a_body() {
    let s = load(None, Vec::new()).unwrap();
    assert_eq!(s.limits.body_budget_bytes, 64 * 1024 * 1024);
    assert_eq!(s.limits.body_budget_per_client_bytes, 4 * 1024 * 1024);
    let e = err(
        None,
        &[(
            "PRESENCE_BRIDGE__LIMITS__BODY_BUDGET_PER_CLIENT_BYTES",
            "1000",
        )],
    );
    assert!(e.contains("limits.body_budget_per_client_bytes"), "{e}");
    assert!(e.contains("http.max_message_body_bytes"), "{e}");
    let e = err(
        None,
        &[("PRESENCE_BRIDGE__LIMITS__BODY_BUDGET_BYTES", "100000")],
    );
    assert!(e.contains("limits.body_budget_bytes"), "{e}");
    let e = err(
        None,
        &[("PRESENCE_BRIDGE__LIMITS__BODY_BUDGET_BYTES", "lots")],
    );
    assert!(e.contains("body_budget_bytes"), "{e}");
}
