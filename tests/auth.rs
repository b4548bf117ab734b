//! Who may call the webhook and how often, end to end: tenant tokens, the
//! instance allowlist, the client allowlist behind trusted proxies, and rate
//! limits (429 with Retry-After, recovery after refill). The tests connect
//! from 127.0.0.1, which is the direct peer the bridge sees.

mod common;

use std::time::{Duration, Instant};

use common::{Bridge, Reply, TOKEN};
use hyper::{Method, StatusCode};

const TOKEN_A: &str = "tenant-a-token-0123456789";
const TOKEN_A2: &str = "tenant-a-rotated-0123456789";
const TOKEN_B: &str = "tenant-b-token-0123456789";
const TENANTS: &str =
    "INST-A=tenant-a-token-0123456789,tenant-a-rotated-0123456789;INST-B=tenant-b-token-0123456789";

fn body(instance: &str) -> String {
    format!(
        r#"{{"type":"PresenceChatCallback","phone":"5544999999999","status":"COMPOSING","lastSeen":null,"instanceId":"{instance}"}}"#
    )
}

fn path_for(instance: &str, token: &str) -> String {
    format!("/webhooks/zapi/instances/{instance}/presence?token={token}")
}

fn plain(token: &str) -> String {
    format!("/webhooks/zapi/presence?token={token}")
}

async fn post(b: &Bridge, path: &str, extra: &[(&str, &str)], body: &str) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra);
    b.send(Method::POST, path, &headers, body).await
}

fn assert_rejected(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["error"], code, "{:?}", r.body);
}

/// Authentication, access and rate limits refuse requests, not events.
fn rejected(b: &Bridge, reason: &str) -> f64 {
    b.metric(&format!(
        r#"presence_bridge_http_requests_refused_total{{reason="{reason}"}}"#
    ))
}

fn accepted(b: &Bridge) -> f64 {
    b.metric(r#"presence_bridge_events_accepted_total{status="COMPOSING"}"#)
}

/// Tenant tokens only (no global token).
async fn tenant_bridge(extra: &[(&str, &str)]) -> Bridge {
    let mut env = vec![
        ("PRESENCE_BRIDGE__AUTH__TOKENS", ""),
        ("PRESENCE_BRIDGE__AUTH__INSTANCES", TENANTS),
    ];
    env.extend_from_slice(extra);
    Bridge::start_with(&env).await
}

#[tokio::test]
async fn a_tenant_token_opens_its_own_instance_by_path_and_by_body_with_both_rotation_tokens() {
    let b = tenant_bridge(&[]).await;
    for token in [TOKEN_A, TOKEN_A2] {
        let r = post(&b, &path_for("INST-A", token), &[], &body("INST-A")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = post(&b, &plain(token), &[], &body("INST-A")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let bearer = format!("Bearer {token}");
        let r = post(
            &b,
            "/webhooks/zapi/presence",
            &[("authorization", &bearer)],
            &body("INST-A"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let r = post(&b, &path_for("INST-B", TOKEN_B), &[], &body("INST-B")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(accepted(&b), 7.0);
}

#[tokio::test]
async fn another_tenants_token_is_403_and_an_unknown_one_401_and_nothing_is_spooled() {
    let b = tenant_bridge(&[]).await;
    // Path route: refused before the body is read (the body is not even JSON).
    let r = post(&b, &path_for("INST-B", TOKEN_A), &[], "not json").await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "token_not_for_instance");
    assert_eq!(r.body["field"], "instanceId");
    // Body route: the body's instance must own the token.
    let r = post(&b, &plain(TOKEN_A), &[], &body("INST-B")).await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "token_not_for_instance");
    // An instance nobody holds a token for is closed to tenant tokens.
    let r = post(&b, &plain(TOKEN_A), &[], &body("INST-C")).await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "token_not_for_instance");
    // Unknown and missing tokens are 401 before anything else.
    let r = post(&b, &plain("nobody-token-0123456789"), &[], &body("INST-A")).await;
    assert_rejected(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = post(&b, "/webhooks/zapi/instances/INST-A/presence", &[], "x").await;
    assert_rejected(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    // With tenant tokens only, the old global token of the harness is gone.
    let r = post(&b, &plain(TOKEN), &[], &body("INST-A")).await;
    assert_rejected(&r, StatusCode::UNAUTHORIZED, "unauthorized");

    assert_eq!(rejected(&b, "token_not_for_instance"), 3.0);
    assert_eq!(rejected(&b, "unauthorized"), 3.0);
    assert_eq!(accepted(&b), 0.0);
}

#[tokio::test]
async fn a_global_token_still_opens_every_instance() {
    let b = Bridge::start_with(&[("PRESENCE_BRIDGE__AUTH__INSTANCES", TENANTS)]).await;
    for instance in ["INST-A", "INST-B", "INST-C"] {
        let r = post(&b, &path_for(instance, TOKEN), &[], &body(instance)).await;
        assert_eq!(r.status, StatusCode::OK, "{instance}: {:?}", r.body);
    }
}

#[tokio::test]
async fn the_instance_allowlist_refuses_others_before_and_after_parsing() {
    let b = tenant_bridge(&[
        ("PRESENCE_BRIDGE__AUTH__TOKENS", TOKEN),
        ("PRESENCE_BRIDGE__AUTH__ALLOWED_INSTANCES", "INST-A"),
    ])
    .await;
    let r = post(&b, &path_for("INST-A", TOKEN), &[], &body("INST-A")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // In the path: 403 before the body is read (a bad body would be a 400).
    let r = post(&b, &path_for("INST-X", TOKEN), &[], "not json").await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "instance_forbidden");
    // Even for the instance's own tenant token.
    let r = post(&b, &path_for("INST-B", TOKEN_B), &[], "not json").await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "instance_forbidden");
    // In the body: 403 after parsing.
    let r = post(&b, &plain(TOKEN), &[], &body("INST-X")).await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "instance_forbidden");
    // Without a token the allowlist is not revealed: 401.
    let r = post(&b, "/webhooks/zapi/instances/INST-X/presence", &[], "x").await;
    assert_rejected(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(rejected(&b, "instance_forbidden"), 3.0);
    assert_eq!(accepted(&b), 1.0);
}

#[tokio::test]
async fn the_client_allowlist_refuses_other_addresses_first() {
    let b = Bridge::start_with(&[(
        "PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS",
        "10.0.0.0/8, 2001:db8::/32",
    )])
    .await;
    // Before the path, the method and the token.
    for (method, path) in [
        (Method::POST, plain(TOKEN)),
        (Method::POST, "/webhooks/zapi/presence".to_owned()),
        (Method::GET, "/nowhere".to_owned()),
    ] {
        let r = b
            .send(
                method,
                &path,
                &[("content-type", "application/json")],
                &body("INST-A"),
            )
            .await;
        assert_rejected(&r, StatusCode::FORBIDDEN, "client_forbidden");
    }
    assert_eq!(rejected(&b, "client_forbidden"), 3.0);

    let b = Bridge::start_with(&[(
        "PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS",
        "10.0.0.0/8,127.0.0.1",
    )])
    .await;
    let r = post(&b, &plain(TOKEN), &[], &body("INST-A")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    // 127.0.0.1 is not a trusted proxy here, so its X-Forwarded-For is a lie.
    let b = Bridge::start_with(&[
        (
            "PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS",
            "198.51.100.0/24",
        ),
        ("PRESENCE_BRIDGE__ACCESS__TRUSTED_PROXIES", "10.0.0.0/8"),
    ])
    .await;
    let r = post(
        &b,
        &plain(TOKEN),
        &[("x-forwarded-for", "198.51.100.7")],
        &body("INST-A"),
    )
    .await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "client_forbidden");
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_name_the_client() {
    let b = Bridge::start_with(&[
        (
            "PRESENCE_BRIDGE__ACCESS__ALLOWED_CLIENTS",
            "198.51.100.0/24",
        ),
        (
            "PRESENCE_BRIDGE__ACCESS__TRUSTED_PROXIES",
            "127.0.0.1/32,10.0.0.0/8",
        ),
    ])
    .await;
    let send = |xff: &'static str| {
        let b = &b;
        async move {
            post(
                b,
                &plain(TOKEN),
                &[("x-forwarded-for", xff)],
                &body("INST-A"),
            )
            .await
        }
    };
    // The client as the proxy saw it, through one more trusted hop.
    let r = send("198.51.100.7").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = send("198.51.100.7, 10.1.2.3").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A client that writes an allowed address itself is still seen as what
    // the proxy appended: the rightmost untrusted address.
    let r = send("198.51.100.7, 203.0.113.5").await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "client_forbidden");
    // Malformed: the last trusted hop (here the peer) is the client.
    let r = send("198.51.100.7, garbage").await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "client_forbidden");
    // No header: the proxy itself, which is not an allowed client.
    let r = post(&b, &plain(TOKEN), &[], &body("INST-A")).await;
    assert_rejected(&r, StatusCode::FORBIDDEN, "client_forbidden");
}

/// Posts until a 200 arrives (the bucket refills); the time from `since`.
/// The bound only guards a hang.
async fn until_accepted(
    b: &Bridge,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
    since: Instant,
) -> Duration {
    loop {
        let r = post(b, path, extra, body).await;
        if r.status == StatusCode::OK {
            return since.elapsed();
        }
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
        assert!(since.elapsed() < Duration::from_secs(120), "never refilled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rate limits use the real clock (`std::time::Instant`), so these tests
/// do not assume how fast requests go out: they send until the first 429 and
/// check the count against the burst plus what can have refilled meanwhile.
#[tokio::test]
async fn the_per_client_limit_answers_429_with_retry_after_and_recovers() {
    const RATE: f64 = 1.0;
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__ACCESS__TRUSTED_PROXIES", "127.0.0.1"),
        ("PRESENCE_BRIDGE__LIMITS__PER_CLIENT__RATE", "1"),
        ("PRESENCE_BRIDGE__LIMITS__PER_CLIENT__BURST", "2"),
    ])
    .await;
    let one = [("x-forwarded-for", "198.51.100.1")];
    let two = [("x-forwarded-for", "198.51.100.2")];
    // Without a token: each request takes a token and is then refused 401,
    // until the bucket is empty and the limit answers first.
    let start = Instant::now();
    let mut unauthorized = 0;
    let r = loop {
        let r = post(&b, "/webhooks/zapi/presence", &one, &body("INST-A")).await;
        if r.status != StatusCode::UNAUTHORIZED {
            break r;
        }
        unauthorized += 1;
        assert!(unauthorized < 100, "client one was never limited");
    };
    let elapsed = start.elapsed().as_secs_f64();
    assert_rejected(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited_client");
    assert_eq!(r.headers["retry-after"], "1");
    assert!(
        (2.0..=2.0 + elapsed * RATE).contains(&f64::from(unauthorized)),
        "{unauthorized} requests passed the limit in {elapsed} s"
    );
    assert_eq!(rejected(&b, "rate_limited_client"), 1.0);
    assert_eq!(rejected(&b, "unauthorized"), f64::from(unauthorized));
    // Another client has its own bucket.
    let r = post(&b, &plain(TOKEN), &two, &body("INST-A")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A token comes back.
    until_accepted(&b, &plain(TOKEN), &one, &body("INST-A"), start).await;
    assert_eq!(accepted(&b), 2.0);
}

#[tokio::test]
async fn the_per_instance_limit_applies_by_path_before_the_body_and_by_body_after_parsing() {
    let b = Bridge::start_with(&[
        ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__RATE", "0.5"),
        ("PRESENCE_BRIDGE__LIMITS__PER_INSTANCE__BURST", "1"),
    ])
    .await;
    // Requests without a valid token do not drain the tenant's bucket.
    for _ in 0..3 {
        let r = post(&b, &path_for("INST-A", "wrong-token-0123456789"), &[], "x").await;
        assert_rejected(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let mut taken = Instant::now();
    let r = post(&b, &path_for("INST-A", TOKEN), &[], &body("INST-A")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let mut accepted_a = 1.0;
    // Path route: 429 before the body is read. Should the token have come
    // back meanwhile, the request takes it and its bad body is a 400.
    let r = loop {
        let sent = Instant::now();
        let r = post(&b, &path_for("INST-A", TOKEN), &[], "not json").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        assert_rejected(&r, StatusCode::BAD_REQUEST, "malformed_json");
        taken = sent;
    };
    assert_rejected(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited_instance");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Body route: the same instance's bucket, checked after parsing.
    let r = loop {
        let sent = Instant::now();
        let r = post(&b, &plain(TOKEN), &[], &body("INST-A")).await;
        if r.status != StatusCode::OK {
            break r;
        }
        accepted_a += 1.0;
        taken = sent;
    };
    assert_rejected(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited_instance");
    // Another instance is not affected.
    let r = post(&b, &plain(TOKEN), &[], &body("INST-B")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(rejected(&b, "rate_limited_instance"), 2.0);
    assert_eq!(accepted(&b), accepted_a + 1.0);
    // Nothing refused was spooled; INST-A is accepted again only once its
    // one token has come back, 2 s after it was last taken.
    let waited = until_accepted(&b, &plain(TOKEN), &[], &body("INST-A"), taken).await;
    assert!(
        waited >= Duration::from_millis(1900),
        "refilled too early: {waited:?}"
    );
    assert_eq!(accepted(&b), accepted_a + 2.0);
}
