//! Configuration of access control and rate limits: tenant tokens in both
//! forms, allowlists, CIDRs, limits; every error naming its key; tenant
//! secrets redacted in `check-config`.

use presence_bridge::config::{RateSettings, Settings};

mod common;
mod config_support;
use config_support::{check_config, err, ok};

fn tokens_of(s: &Settings, instance: &str) -> Vec<String> {
    s.auth.instances[instance]
        .iter()
        .map(|t| t.expose().to_owned())
        .collect()
}

#[test]
fn defaults_are_open_and_unlimited() {
    let s = ok(None, &[]);
    assert!(s.auth.instances.is_empty());
    assert!(s.auth.allowed_instances.is_empty());
    assert!(s.access.allowed_clients.is_empty());
    assert!(s.access.trusted_proxies.is_empty());
    assert_eq!(s.limits.per_instance, None);
    assert_eq!(s.limits.per_client, None);
    assert_eq!(s.limits.max_tracked.get(), 65_536);
}

#[test]
fn tenant_tokens_from_a_toml_table() {
    let s = ok(
        Some(
            r#"
[auth]
allowed_instances = ["3C4F00AA", "my.instance"]
[auth.instances]
"3C4F00AA" = ["a-old-token-0123456789", "a-new-token-0123456789"]
"my.instance" = "b-token-0123456789"
"#,
        ),
        &[],
    );
    assert_eq!(
        tokens_of(&s, "3C4F00AA"),
        ["a-old-token-0123456789", "a-new-token-0123456789"]
    );
    // A dotted id stays one id, and case is kept.
    assert_eq!(tokens_of(&s, "my.instance"), ["b-token-0123456789"]);
    assert_eq!(s.auth.allowed_instances, ["3C4F00AA", "my.instance"]);
}

#[test]
fn tenant_tokens_from_one_environment_variable() {
    let s = ok(
        None,
        &[
            (
                "PRESENCE_BRIDGE__AUTH__INSTANCES",
                " 3C4F00AA = a-old-token-0123456789, a-new-token-0123456789 ; my.instance=b=token-0123456789;",
            ),
            ("PRESENCE_BRIDGE__AUTH__ALLOWED_INSTANCES", "3C4F00AA,my.instance"),
        ],
    );
    assert_eq!(
        tokens_of(&s, "3C4F00AA"),
        ["a-old-token-0123456789", "a-new-token-0123456789"]
    );
    // Only the first `=` separates: tokens may contain one.
    assert_eq!(tokens_of(&s, "my.instance"), ["b=token-0123456789"]);
    assert_eq!(s.auth.allowed_instances, ["3C4F00AA", "my.instance"]);
    // The environment replaces a file's table as a whole.
    let s = ok(
        Some("[auth.instances]\nFROMFILE = [\"f-token-0123456789\"]\n"),
        &[(
            "PRESENCE_BRIDGE__AUTH__INSTANCES",
            "FROMENV=e-token-0123456789",
        )],
    );
    assert_eq!(s.auth.instances.keys().collect::<Vec<_>>(), vec!["FROMENV"]);
}

#[test]
fn access_networks_and_limits() {
    let s = ok(
        None,
        &[
            (
                "PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS",
                "198.51.100.0/24, 2001:db8::/32, 203.0.113.9",
            ),
            ("PRESENCE_BRIDGE__ACCESS__TRUSTED_PROXIES", "10.0.0.0/8"),
            ("PRESENCE_BRIDGE__LIMITS__PER_CLIENT__RATE", "2.5"),
            ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__RATE", "50"),
            ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__BURST", "200"),
            ("PRESENCE_BRIDGE__LIMITS__MAX_TRACKED", "1000"),
        ],
    );
    let shown: Vec<String> = s
        .access
        .allowed_clients
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        shown,
        ["198.51.100.0/24", "2001:db8::/32", "203.0.113.9/32"]
    );
    assert_eq!(s.access.trusted_proxies[0].to_string(), "10.0.0.0/8");
    // Burst defaults to one second's worth, rounded up.
    assert_eq!(
        s.limits.per_client,
        Some(RateSettings {
            rate: 2.5,
            burst: 3
        })
    );
    assert_eq!(
        s.limits.per_instance,
        Some(RateSettings {
            rate: 50.0,
            burst: 200
        })
    );
    assert_eq!(s.limits.max_tracked.get(), 1000);
}

#[test]
fn tokens_longer_than_the_comparison_window_are_refused() {
    let long = "t".repeat(presence_bridge::ingress::auth::MAX_TOKEN_BYTES + 1);
    let e = err(None, &[("PRESENCE_BRIDGE__AUTH__TOKENS", long.as_str())]);
    assert!(
        e.starts_with("auth.tokens:") && e.contains("16 to 256"),
        "{e}"
    );
    let tenant = format!("INST={long}");
    let e = err(
        None,
        &[("PRESENCE_BRIDGE__AUTH__INSTANCES", tenant.as_str())],
    );
    assert!(e.starts_with("auth.instances.INST:"), "{e}");
    let max = "t".repeat(presence_bridge::ingress::auth::MAX_TOKEN_BYTES);
    let s = ok(None, &[("PRESENCE_BRIDGE__AUTH__TOKENS", max.as_str())]);
    assert_eq!(s.auth.tokens.len(), 1);
}

#[test]
fn every_error_names_its_key() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS", "10.0.0.0/33")],
            "access.allowed_clients",
        ),
        (
            &[("PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS", "not-a-net")],
            "access.allowed_clients",
        ),
        (
            // Host bits after the prefix: usually a typo for a narrower net.
            &[("PRESENCE_BRIDGE__ACCESS__TRUSTED_PROXIES", "10.1.2.3/8")],
            "access.trusted_proxies",
        ),
        (
            &[("PRESENCE_BRIDGE__AUTH__INSTANCES", "INST=short")],
            "auth.instances.INST",
        ),
        (
            &[("PRESENCE_BRIDGE__AUTH__INSTANCES", "INST=")],
            "auth.instances.INST",
        ),
        (
            &[("PRESENCE_BRIDGE__AUTH__INSTANCES", "no-equals-sign")],
            "auth.instances",
        ),
        (
            &[(
                "PRESENCE_BRIDGE__AUTH__INSTANCES",
                "bad/id=a-token-0123456789abc",
            )],
            "auth.instances.bad/id",
        ),
        (
            // One token for two tenants would open both with one URL.
            &[(
                "PRESENCE_BRIDGE__AUTH__INSTANCES",
                "A=same-token-0123456789;B=same-token-0123456789",
            )],
            "auth.instances.B",
        ),
        (
            &[
                ("PRESENCE_BRIDGE__AUTH__TOKENS", "same-token-0123456789"),
                (
                    "PRESENCE_BRIDGE__AUTH__INSTANCES",
                    "A=same-token-0123456789",
                ),
            ],
            "auth.instances.A",
        ),
        (
            &[(
                "PRESENCE_BRIDGE__AUTH__INSTANCES",
                "A=a-token-0123456789;A=b-token-0123456789",
            )],
            "auth.instances",
        ),
        (
            &[("PRESENCE_BRIDGE__AUTH__ALLOWED_INSTANCES", "ok,not ok")],
            "auth.allowed_instances",
        ),
        (
            &[("PRESENCE_BRIDGE__LIMITS__PER_CLIENT__RATE", "-1")],
            "limits.per_client.rate",
        ),
        (
            &[("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__BURST", "10")],
            "limits.per_instance.rate",
        ),
        (
            &[
                ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__RATE", "1"),
                ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__BURST", "2000000"),
            ],
            "limits.per_instance.burst",
        ),
        (
            &[("PRESENCE_BRIDGE__LIMITS__MAX_TRACKED", "0")],
            "limits.max_tracked",
        ),
    ];
    for (vars, key) in cases {
        let e = err(None, vars);
        assert!(e.contains(key), "{vars:?}: `{e}` does not name {key}");
        assert!(!e.contains("0123456789"), "a token leaked into `{e}`");
    }
    // Unknown keys in the new sections are rejected too.
    let e = err(Some("[limits.per_client]\nrate = 1\nburts = 2\n"), &[]);
    assert!(e.contains("burts"), "{e}");
    let e = err(Some("[access]\nallowed_client = []\n"), &[]);
    assert!(e.contains("allowed_client"), "{e}");
}

#[test]
fn check_config_redacts_tenant_tokens() {
    let (v, stdout) = check_config(&[
        ("PRESENCE_BRIDGE__KAFKA__BROKERS", "k1:9092"),
        (
            "PRESENCE_BRIDGE__AUTH__INSTANCES",
            "3C4F00AA=tenant-secret-aaaaaaaa,tenant-secret-bbbbbbbb",
        ),
        ("PRESENCE_BRIDGE__ACCESS__TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    assert_eq!(
        v["auth"]["instances"]["3C4F00AA"],
        serde_json::json!(["<redacted>", "<redacted>"])
    );
    assert_eq!(v["access"]["trusted_proxies"][0], "10.0.0.0/8");
    assert!(!stdout.contains("tenant-secret"), "{stdout}");
}
