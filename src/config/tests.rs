//! The value types and the loader's reporting of their errors: each bad value
//! is named by its key (never by an index or a marker), whether it came from
//! the file or the environment, in a list or alone.

use std::io::Write;
use std::time::Duration;

use super::values::{Addr, ByteSize, Dur, Network, OneOrMany, Setting};
use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_toml(text: &str) -> Result<Settings, ConfigError> {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    load(Some(f.path()), Vec::new())
}

fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load(None, vars(pairs))
}

#[test]
fn byte_sizes_take_plain_numbers_and_binary_or_decimal_units() {
    for (text, bytes) in [
        ("1048576", 1 << 20),
        ("512KiB", 512 << 10),
        ("64MiB", 64 << 20),
        (" 2 gib ", 2 << 30),
        ("1TiB", 1 << 40),
        ("3kb", 3_000),
        ("5MB", 5_000_000),
        ("1GB", 1_000_000_000),
        ("7B", 7),
    ] {
        assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text}");
    }
    for bad in [
        "0",
        "0MiB",
        "lots",
        "1.5MiB",
        "-1",
        "MiB",
        "99999999999TiB",
        "1 PiB",
    ] {
        let e = ByteSize::parse(bad).unwrap_err();
        assert!(e.contains("is not a size such as"), "{bad}: {e}");
    }
}

#[test]
fn durations_are_positive_and_in_humantime_syntax() {
    assert_eq!(Dur::parse("250ms"), Ok(Dur(Duration::from_millis(250))));
    assert_eq!(Dur::parse("1m 30s"), Ok(Dur(Duration::from_secs(90))));
    assert_eq!(Dur::parse("0s").unwrap_err(), "must be greater than zero");
    let e = Dur::parse("soon").unwrap_err();
    assert!(
        e.starts_with("`soon` is not a duration such as 250ms or 10s ("),
        "{e}"
    );
}

#[test]
fn networks_are_cidrs_or_addresses_without_host_bits() {
    let net = |s: &str| Network::parse(s).map(|n| n.0.to_string());
    assert_eq!(net("10.0.0.0/8").unwrap(), "10.0.0.0/8");
    assert_eq!(net("192.168.1.7").unwrap(), "192.168.1.7/32");
    assert_eq!(net("2001:db8::/32").unwrap(), "2001:db8::/32");
    assert_eq!(
        net("10.0.0.5/8").unwrap_err(),
        "`10.0.0.5/8` has host bits set; did you mean 10.0.0.0/8?"
    );
    assert!(net("10.0.0.0/33").is_err());
    assert!(Addr::parse("localhost:80").is_err());
    assert!(Addr::parse("[::1]:80").is_ok());
}

#[test]
fn a_list_reads_the_same_from_a_table_and_from_a_comma_separated_string() {
    let from_file = load_toml("[access]\nallowed_clients = [\" 10.0.0.0/8\", \"\", \"::1\"]\n")
        .unwrap()
        .access
        .allowed_clients;
    let from_env = load_env(&[(
        "PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS",
        " 10.0.0.0/8,, ::1 ",
    )])
    .unwrap()
    .access
    .allowed_clients;
    assert_eq!(from_file, from_env);
    assert_eq!(from_file.len(), 2);
    assert_eq!(
        OneOrMany::<String>::split("a, ,b").unwrap(),
        OneOrMany(vec!["a".to_owned(), "b".to_owned()])
    );
}

/// The exact texts: `key: reason`, as before the values were typed.
#[test]
fn a_bad_value_is_named_by_its_key_from_the_file_and_from_the_environment() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "[spool]\nmax_bytes = \"lots\"\n",
            "PRESENCE_BRIDGE__SPOOL__MAX_BYTES",
            "lots",
            "spool.max_bytes: `lots` is not a size such as 1073741824, 512MiB or 1GiB",
        ),
        (
            "[http.tls]\nreload_interval = \"0s\"\n",
            "PRESENCE_BRIDGE__HTTP__TLS__RELOAD_INTERVAL",
            "0s",
            "http.tls.reload_interval: must be greater than zero",
        ),
        (
            "[access]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n",
            "PRESENCE_BRIDGE__ACCESS__TRUSTED_PROXIES",
            "10.0.0.0/8,nope",
            "access.trusted_proxies: `nope` is not a CIDR such as 10.0.0.0/8 or an IP address",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "PRESENCE_BRIDGE__LOG__FORMAT",
            "XML",
            "log.format: `xml` is not `text` or `json`",
        ),
        (
            "[spool]\nfsync = \"sometimes\"\n",
            "PRESENCE_BRIDGE__SPOOL__FSYNC",
            "sometimes",
            "spool.fsync: `sometimes` is not `always`, `interval` or `never`",
        ),
        (
            "[kafka]\ncompression = \"brotli\"\n",
            "PRESENCE_BRIDGE__KAFKA__COMPRESSION",
            "brotli",
            "kafka.compression: must be one of none, gzip, snappy, lz4, zstd",
        ),
        (
            "[admin]\nlisten = \"nope\"\n",
            "PRESENCE_BRIDGE__ADMIN__LISTEN",
            "nope",
            "admin.listen: `nope` is not a socket address (IP:PORT, e.g. 0.0.0.0:8080)",
        ),
    ];
    for (toml, var, value, want) in cases {
        let e = load_toml(toml).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{toml}: {e:?}");
        assert_eq!(e.to_string(), *want, "{toml}");
        let e = load_env(&[(var, value)]).unwrap_err();
        assert_eq!(e.to_string(), *want, "{var}={value}");
    }
}

/// Structural errors stay serde's: an unknown key names the variable and
/// never repeats its value; no marker reaches any text.
#[test]
fn a_value_of_the_wrong_shape_names_the_variable_without_its_value() {
    let e = load_env(&[("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES", "hunter2hunter2")]).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConfigError::Env { .. }), "{e:?}");
    assert!(
        text.contains("PRESENCE_BRIDGE__HTTP__MAX_BODY_BYTES"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    let e = load_toml("[http]\nheader_read_timeout = [1]\n").unwrap_err();
    assert!(e.to_string().contains("http.header_read_timeout"), "{e}");
    for e in [
        e,
        load_toml("[spool]\nsegment_bytes = \"x\"\n").unwrap_err(),
    ] {
        assert!(!format!("{e}{e:?}").contains(values::MARK), "{e:?}");
    }
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let s = Settings::try_from(RawRoot::default()).unwrap();
    assert_eq!(s.http.header_read_timeout, Duration::from_secs(5));
    assert_eq!(s.http.pressure_body_read_timeout, Duration::from_secs(2));
    assert!(s.http.tls.is_none());
    assert_eq!(s.kafka.compression, "lz4");
    assert_eq!(s.kafka.linger, Duration::from_millis(5));
    assert_eq!(s.spool.fsync, FsyncPolicy::Always);
    assert_eq!(
        (s.spool.max_bytes, s.spool.segment_bytes),
        (1 << 30, 64 << 20)
    );
    assert_eq!(s.rejected.max_bytes, 16 << 10);
    assert_eq!(s.shutdown.deadline, Duration::from_secs(20));
    assert_eq!(
        s.limits.body_budget_bytes,
        crate::bounds::DEFAULT_BUDGET_BYTES
    );
    assert_eq!(
        s.redacted_json(),
        load(None, Vec::new()).unwrap().redacted_json()
    );
}

#[test]
fn sizes_in_the_file_may_be_integers() {
    let s = load_toml(
        "[spool]\nmax_bytes = 8388608\nsegment_bytes = 1048576\n[rejected]\nmax_bytes = 100\n",
    )
    .unwrap();
    assert_eq!(
        (
            s.spool.max_bytes,
            s.spool.segment_bytes,
            s.rejected.max_bytes
        ),
        (8 << 20, 1 << 20, 100)
    );
}

#[test]
fn content_modes_default_to_structured_and_are_set_per_topic() {
    let s = load(None, Vec::new()).unwrap();
    assert_eq!(s.kafka.content_mode, ContentMode::Structured);
    for t in s.kafka.event_topics() {
        assert_eq!(s.kafka.content_mode_of(t), ContentMode::Structured, "{t}");
    }
    let s = load_toml(
        r#"
        [kafka]
        content_mode = "binary"
        [kafka.received]
        content_mode = "structured"
        [kafka.delivery.topic_by_instance]
        tenant-a = "tenant-a.deliveries"
        [rejected]
        topic = "rejected.v1"
        "#,
    )
    .unwrap();
    let k = &s.kafka;
    assert_eq!(
        k.content_mode_of("whatsapp.presence.v1"),
        ContentMode::Binary
    );
    assert_eq!(
        k.content_mode_of("whatsapp.messages.v1"),
        ContentMode::Structured
    );
    assert_eq!(
        k.content_mode_of("tenant-a.deliveries"),
        ContentMode::Binary
    );
    assert_eq!(k.content_mode_of("rejected.v1"), ContentMode::Binary);
    // A topic no section names (left in the spool): kafka.content_mode.
    assert_eq!(k.content_mode_of("gone.v1"), ContentMode::Binary);
    assert_eq!(s.rejected.content_mode, Some(ContentMode::Binary));
    // check-config shows every section's effective mode.
    let json = s.redacted_json();
    assert_eq!(json["kafka"]["content_mode"], "binary");
    assert_eq!(json["kafka"]["received"]["content_mode"], "structured");
    assert_eq!(json["kafka"]["connection"]["content_mode"], "binary");
    assert_eq!(json["rejected"]["content_mode"], "binary");

    let s = load_env(&[
        ("PRESENCE_BRIDGE__KAFKA__CONNECTION__CONTENT_MODE", "binary"),
        ("PRESENCE_BRIDGE__REJECTED__TOPIC", "rejected.v1"),
        ("PRESENCE_BRIDGE__REJECTED__CONTENT_MODE", "binary"),
    ])
    .unwrap();
    assert_eq!(
        s.kafka.content_mode_of("whatsapp.connection.v1"),
        ContentMode::Binary
    );
    assert_eq!(
        s.kafka.content_mode_of("whatsapp.presence.v1"),
        ContentMode::Structured
    );
    assert_eq!(s.kafka.content_mode_of("rejected.v1"), ContentMode::Binary);
}

#[test]
fn a_bad_content_mode_names_its_key() {
    for (key, toml) in [
        ("kafka.content_mode", "[kafka]\ncontent_mode = \"Binary\""),
        (
            "kafka.delivery.content_mode",
            "[kafka.delivery]\ncontent_mode = \"json\"",
        ),
        ("rejected.content_mode", "[rejected]\ncontent_mode = \"\""),
    ] {
        let e = load_toml(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{key}: {e}");
        assert!(e.contains("must be `structured` or `binary`"), "{key}: {e}");
    }
    let e = load_env(&[("PRESENCE_BRIDGE__KAFKA__RECEIVED__CONTENT_MODE", "avro")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("kafka.received.content_mode"), "{e}");
    // One topic, two modes: refused, naming the second key.
    let e = load_toml(
        r#"
        [kafka.received]
        topic = "shared.v1"
        content_mode = "binary"
        [kafka.delivery]
        topic = "shared.v1"
        "#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("kafka.delivery.content_mode") && e.contains("shared.v1"),
        "{e}"
    );
}
