//! `presence-bridge zapi register` and `zapi check`, the real binary against
//! a fake of the provider's API (a hyper server on 127.0.0.1:0 in the test)
//! that records each request (method, path, headers, body) and answers
//! what the test scripted: success, each provider error, 5xx, a hang.
//!
//! Every run asserts that no secret it was given (instance token, client
//! token, tenant token, as is or percent-encoded) appears on stdout or
//! stderr. Waits only guard a hang (`process::Proc::wait_exit`).

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};

use common::process::{command, Proc};

const INSTANCE: &str = "3C4F00AA11";
const INSTANCE_TOKEN: &str = "inst-TOKEN-5f0e9c2d41";
const CLIENT_TOKEN: &str = "client-TOKEN-77aa31c9";
/// Has characters the URL must percent-encode.
const TENANT: &str = "tenant+TOKEN&0123456789/abc";
const TENANT_ENCODED: &str = "tenant%2BTOKEN%260123456789%2Fabc";
const PUBLIC: &str = "https://bridge.example.com/pb";

fn any_url() -> String {
    format!("{PUBLIC}/webhooks/zapi/instances/{INSTANCE}?token={TENANT_ENCODED}")
}

fn presence_url() -> String {
    format!("{PUBLIC}/webhooks/zapi/instances/{INSTANCE}/presence?token={TENANT_ENCODED}")
}

/// One request the fake received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Call {
    fn endpoint(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

#[derive(Debug, Clone)]
enum Answer {
    Reply(u16, String),
    /// Never answers (the connection stays open until the fake goes).
    Hang,
}

#[derive(Default)]
struct Script {
    /// Answers by endpoint (last path segment), used in order; when none is
    /// left: `me` answers `me`, anything else an empty 200.
    queued: HashMap<String, VecDeque<Answer>>,
    me: Value,
}

/// The fake provider.
struct Fake {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Mutex<Script>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Fake {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script::default()));
        let (c, s) = (calls.clone(), script.clone());
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (c, s) = (c.clone(), s.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (c, s) = (c.clone(), s.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(req, c, s).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            calls,
            script,
            rt: Some(rt),
        }
    }

    fn queue(&self, endpoint: &str, answers: impl IntoIterator<Item = Answer>) {
        self.script
            .lock()
            .unwrap()
            .queued
            .entry(endpoint.to_owned())
            .or_default()
            .extend(answers);
    }

    fn set_me(&self, me: Value) {
        self.script.lock().unwrap().me = me;
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Mutex<Script>>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let call = Call {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let endpoint = call.endpoint().to_owned();
    calls.lock().unwrap().push(call);
    let next = {
        let mut s = script.lock().unwrap();
        let queued = s.queued.get_mut(&endpoint).and_then(VecDeque::pop_front);
        queued.unwrap_or_else(|| {
            if endpoint == "me" {
                Answer::Reply(200, s.me.to_string())
            } else {
                Answer::Reply(200, String::new())
            }
        })
    };
    match next {
        Answer::Reply(status, body) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
        Answer::Hang => std::future::pending().await,
    }
}

/// What a run of the binary left.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `presence-bridge zapi …` against `fake` with the instance's
/// credentials and the public URL in the environment (plus `env`), a 1 ms
/// backoff, and asserts no secret shows in its output.
fn run(fake: &Fake, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.arg("zapi")
        .args(args)
        .args(["--retry-backoff", "1ms"])
        .env("ZAPI_INSTANCE_ID", INSTANCE)
        .env("ZAPI_INSTANCE_TOKEN", INSTANCE_TOKEN)
        .env("ZAPI_CLIENT_TOKEN", CLIENT_TOKEN)
        .env("ZAPI_API_URL", fake.url())
        .env("BRIDGE_PUBLIC_URL", PUBLIC)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut proc = Proc::spawn(&mut cmd, unused, unused);
    let status = proc.wait_exit();
    let mut stdout = String::new();
    proc.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let stderr = proc.stderr();
    let out = Outcome {
        code: status.code().expect("exited, not killed"),
        stdout,
        stderr,
    };
    for secret in [INSTANCE_TOKEN, CLIENT_TOKEN, TENANT, TENANT_ENCODED] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "a secret is in the output: {out:#?}"
        );
    }
    out
}

const WITH_TENANT: &[(&str, &str)] = &[("BRIDGE_TENANT_TOKEN", TENANT)];

#[test]
fn every_webhooks_mode_is_one_put_with_the_tenant_url_and_the_client_token() {
    let fake = Fake::start();
    let out = run(&fake, &["register"], WITH_TENANT);
    assert_eq!(out.code, 0, "{out:#?}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let c = &calls[0];
    assert_eq!(c.method, "PUT");
    assert_eq!(
        c.path,
        format!("/instances/{INSTANCE}/token/{INSTANCE_TOKEN}/update-every-webhooks")
    );
    assert_eq!(c.headers["client-token"], CLIENT_TOKEN);
    assert_eq!(c.headers["content-type"], "application/json");
    assert_eq!(c.json(), json!({ "value": any_url() }));
    assert!(
        out.stdout.contains(&format!(
            "{PUBLIC}/webhooks/zapi/instances/{INSTANCE}?token=***"
        )),
        "{out:#?}"
    );
}

#[test]
fn per_kind_mode_registers_the_chosen_kinds_each_at_its_route() {
    let fake = Fake::start();
    let out = run(
        &fake,
        &[
            "register",
            "--per-kind",
            "--kinds",
            "message-status,presence",
            "--kinds",
            "delivery",
        ],
        WITH_TENANT,
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let got: Vec<(String, String, Value)> = fake
        .calls()
        .iter()
        .map(|c| (c.method.clone(), c.endpoint().to_owned(), c.json()))
        .collect();
    let put = |e: &str, url: String| ("PUT".to_owned(), e.to_owned(), json!({ "value": url }));
    assert_eq!(
        got,
        vec![
            put("update-webhook-chat-presence", presence_url()),
            put("update-webhook-delivery", any_url()),
            put("update-webhook-message-status", any_url()),
        ]
    );
    assert!(
        out.stdout.contains(&format!(
            "presence-bridge zapi check --instance {INSTANCE} --public-url {PUBLIC} --per-kind \
             --kinds presence,delivery,message-status`"
        )),
        "the check to run next: {out:#?}"
    );

    let fake = Fake::start();
    let out = run(&fake, &["register", "--per-kind"], WITH_TENANT);
    assert_eq!(out.code, 0, "{out:#?}");
    let endpoints: Vec<String> = fake
        .calls()
        .iter()
        .map(|c| c.endpoint().to_owned())
        .collect();
    assert_eq!(
        endpoints,
        [
            "update-webhook-chat-presence",
            "update-webhook-received",
            "update-webhook-delivery",
            "update-webhook-message-status",
            "update-webhook-connected",
            "update-webhook-disconnected",
        ]
    );
}

#[test]
fn notify_sent_by_me_in_both_modes() {
    let fake = Fake::start();
    let out = run(&fake, &["register", "--notify-sent-by-me"], WITH_TENANT);
    assert_eq!(out.code, 0, "{out:#?}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].json(),
        json!({ "value": any_url(), "notifySentByMe": true })
    );

    let fake = Fake::start();
    let out = run(
        &fake,
        &[
            "register",
            "--per-kind",
            "--kinds",
            "received",
            "--notify-sent-by-me",
        ],
        WITH_TENANT,
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let got: Vec<(String, Value)> = fake
        .calls()
        .iter()
        .map(|c| (c.endpoint().to_owned(), c.json()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "update-webhook-received".to_owned(),
                json!({ "value": any_url() })
            ),
            (
                "update-notify-sent-by-me".to_owned(),
                json!({ "notifySentByMe": true })
            ),
        ]
    );
}

/// The token in the printed `"INSTANCE" = ["…"]` line.
fn generated(stdout: &str) -> String {
    let marker = format!("\"{INSTANCE}\" = [\"");
    let start = stdout.find(&marker).expect("a configuration line") + marker.len();
    stdout[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn a_generated_token_is_strong_printed_once_as_configuration_and_registered() {
    let fake = Fake::start();
    let out = run(&fake, &["register", "--generate-token"], &[]);
    assert_eq!(out.code, 0, "{out:#?}");
    let token = generated(&out.stdout);
    assert_eq!(token.len(), 43, "32 bytes, URL-safe base64: {token}");
    assert!(
        !token.starts_with('-'),
        "a command line would take it for a flag"
    );
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(
        out.stdout.contains(&format!(
            "PRESENCE_BRIDGE__AUTH__INSTANCES=\"{INSTANCE}={token}\""
        )),
        "{out:#?}"
    );
    assert_eq!(out.stdout.matches(&token).count(), 2, "{out:#?}");
    assert!(!out.stderr.contains(&token));
    let calls = fake.calls();
    assert_eq!(
        calls[0].json(),
        json!({ "value": format!("{PUBLIC}/webhooks/zapi/instances/{INSTANCE}?token={token}") })
    );

    let again = run(&fake, &["register", "--generate-token"], &[]);
    assert_ne!(generated(&again.stdout), token);

    // Printed but not registered: the message says how to go on with it.
    fake.queue(
        "update-every-webhooks",
        [Answer::Reply(
            400,
            r#"{"error":"null not allowed"}"#.to_owned(),
        )],
    );
    let failed = run(&fake, &["register", "--generate-token"], &[]);
    assert_eq!(failed.code, 2, "{failed:#?}");
    assert_eq!(generated(&failed.stdout).len(), 43);
    assert!(
        failed
            .stderr
            .contains("with that printed token as BRIDGE_TENANT_TOKEN instead of --generate-token"),
        "{failed:#?}"
    );
}

fn me_all(url: impl Fn(&str) -> String) -> Value {
    json!({
        "id": INSTANCE,
        "token": INSTANCE_TOKEN,
        "connected": true,
        "presenceChatCallbackUrl": url("presenceChatCallbackUrl"),
        "receivedCallbackUrl": url("receivedCallbackUrl"),
        "receiveCallbackSentByMe": true,
        "deliveryCallbackUrl": url("deliveryCallbackUrl"),
        "messageStatusCallbackUrl": url("messageStatusCallbackUrl"),
        "connectedCallbackUrl": url("connectedCallbackUrl"),
        "disconnectedCallbackUrl": url("disconnectedCallbackUrl"),
    })
}

#[test]
fn check_without_drift_exits_0() {
    let fake = Fake::start();
    fake.set_me(me_all(|_| any_url()));
    let out = run(&fake, &["check", "--notify-sent-by-me"], WITH_TENANT);
    assert_eq!(out.code, 0, "{out:#?}");
    let ok = out.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(ok, 7, "six kinds and notify-sent-by-me: {out:#?}");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(
        calls[0].path,
        format!("/instances/{INSTANCE}/token/{INSTANCE_TOKEN}/me")
    );
    assert_eq!(calls[0].headers["client-token"], CLIENT_TOKEN);

    // Per kind: presence at its own route, the rest at the any-type route.
    fake.set_me(me_all(|f| {
        if f == "presenceChatCallbackUrl" {
            presence_url()
        } else {
            any_url()
        }
    }));
    let out = run(&fake, &["check", "--per-kind"], WITH_TENANT);
    assert_eq!(out.code, 0, "{out:#?}");
    let out = run(&fake, &["check"], WITH_TENANT);
    assert_eq!(
        out.code, 1,
        "every-webhook mode expects no /presence: {out:#?}"
    );
}

#[test]
fn check_reports_each_drifted_kind_masked_and_exits_1() {
    let fake = Fake::start();
    let other_token = "someone-elses-token-9876543210";
    let mut me = me_all(|_| any_url());
    me["receivedCallbackUrl"] = json!(format!(
        "{PUBLIC}/webhooks/zapi/instances/{INSTANCE}?token={other_token}"
    ));
    me["deliveryCallbackUrl"] = json!("");
    me["connectedCallbackUrl"] = Value::Null;
    me["presenceChatCallbackUrl"] = json!(format!(
        "https://old.example.com/hook?token={TENANT_ENCODED}"
    ));
    me["receiveCallbackSentByMe"] = json!(false);
    fake.set_me(me);
    let out = run(&fake, &["check", "--notify-sent-by-me"], WITH_TENANT);
    assert_eq!(out.code, 1, "{out:#?}");
    let line = |kind: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(kind))
            .unwrap_or_else(|| panic!("no line for {kind}: {out:#?}"))
            .to_owned()
    };
    assert!(line("received").starts_with("DRIFT"));
    assert!(line("received").contains("only the token differs"));
    assert!(line("delivery").contains("registered (not set)"));
    assert!(line("connected").contains("registered (not set)"));
    assert!(line("presence").contains("registered https://old.example.com/hook?token=***"));
    assert!(line("notify-sent-by-me").contains("registered false"));
    assert!(line("message-status").starts_with("ok"));
    assert!(line("disconnected").starts_with("ok"));
    assert!(out.stdout.contains("5 of 7 differ"), "{out:#?}");
    assert!(!out.stdout.contains(other_token));

    let out = run(&fake, &["check", "--kinds", "disconnected"], WITH_TENANT);
    assert_eq!(out.code, 0, "only the chosen kind is checked: {out:#?}");
}

#[test]
fn each_provider_error_has_its_own_message_and_exit_code() {
    let reply = |s: u16, b: &str| Answer::Reply(s, b.to_owned());
    let cases = [
        (
            reply(400, r#"{"error":"null not allowed"}"#),
            "refused the Client-Token",
            2,
        ),
        (reply(401, ""), "refused the Client-Token", 2),
        (
            // An error in a 200 is still an error.
            reply(200, r#"{"error":"null not allowed"}"#),
            "refused the Client-Token",
            2,
        ),
        (reply(403, "{}"), "refused the Client-Token", 2),
        (
            reply(404, r#"{"error":"Instance not found"}"#),
            "does not know instance `3C4F00AA11`",
            2,
        ),
        (
            // The provider echoing the token back: it is scrubbed.
            reply(400, &format!(r#"{{"error":"invalid token {INSTANCE_TOKEN}"}}"#)),
            "refused the instance token (HTTP 400 on update-every-webhooks: the provider says \"invalid token ***\")",
            2,
        ),
        (
            reply(400, r#"{"error":"the URL must use HTTPS"}"#),
            "refused the webhook URL as not HTTPS",
            2,
        ),
        (reply(200, "<html>hello</html>"), "is not JSON", 1),
        (reply(200, r#"{"value":false}"#), "not applied", 1),
        (
            reply(302, ""),
            "redirect (HTTP 302 on update-every-webhooks)",
            1,
        ),
    ];
    for (answer, message, code) in cases {
        let fake = Fake::start();
        fake.queue("update-every-webhooks", [answer.clone()]);
        let out = run(&fake, &["register"], WITH_TENANT);
        assert_eq!(out.code, code, "{answer:?}: {out:#?}");
        assert!(out.stderr.contains(message), "{answer:?}: {out:#?}");
        assert_eq!(fake.calls().len(), 1, "{answer:?}: a 4xx is never retried");
    }

    // A success may carry a `message`: not an error.
    let fake = Fake::start();
    fake.queue(
        "update-every-webhooks",
        [reply(200, r#"{"value":true,"message":"updated"}"#)],
    );
    let out = run(&fake, &["register"], WITH_TENANT);
    assert_eq!(out.code, 0, "{out:#?}");

    // /me that is not JSON.
    let fake = Fake::start();
    fake.queue("me", [reply(200, "not json")]);
    let out = run(&fake, &["check"], WITH_TENANT);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("answer to me (HTTP 200) is not JSON"));
}

#[test]
fn a_provider_that_does_not_answer_times_out_on_each_attempt() {
    let fake = Fake::start();
    fake.queue("me", [Answer::Hang, Answer::Hang]);
    let out = run(
        &fake,
        &["check", "--timeout", "200ms", "--attempts", "2"],
        WITH_TENANT,
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("did not answer me within 200ms on any of 2 attempt(s)"),
        "{out:#?}"
    );
    assert_eq!(fake.calls().len(), 2);
}

#[test]
fn unusable_urls_are_refused_before_any_call() {
    let fake = Fake::start();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("ZAPI_API_URL", "http://api.z-api.io")],
            "--api-url (ZAPI_API_URL) must be https://",
        ),
        (
            &[("BRIDGE_PUBLIC_URL", "http://bridge.example.com")],
            "--public-url (BRIDGE_PUBLIC_URL) must be https://",
        ),
        (
            &[("BRIDGE_PUBLIC_URL", "https://bridge.example.com/?token=x")],
            "without a query",
        ),
        (
            &[("BRIDGE_TENANT_TOKEN", "short")],
            "--tenant-token (BRIDGE_TENANT_TOKEN) must be 16 to 256 visible ASCII characters",
        ),
    ];
    for (env, message) in cases {
        let mut all = WITH_TENANT.to_vec();
        all.extend_from_slice(env);
        let out = run(&fake, &["register"], &all);
        assert_eq!(out.code, 2, "{env:?}: {out:#?}");
        assert!(out.stderr.contains(message), "{env:?}: {out:#?}");
    }
    assert!(fake.calls().is_empty());

    // Nothing listens: a connection error after the attempts.
    let closed = common::free_addr();
    let out = run(
        &fake,
        &["register"],
        &[
            ("BRIDGE_TENANT_TOKEN", TENANT),
            ("ZAPI_API_URL", &format!("http://{closed}")),
        ],
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("cannot reach the provider at http://127.0.0.1:"),
        "{out:#?}"
    );
}

#[test]
fn retries_5xx_a_bounded_number_of_times_and_never_4xx() {
    let reply = |s: u16| Answer::Reply(s, r#"{"error":"oops"}"#.to_owned());

    let fake = Fake::start();
    fake.queue("update-every-webhooks", [reply(503), reply(502)]);
    let out = run(&fake, &["register"], WITH_TENANT);
    assert_eq!(out.code, 0, "the third attempt succeeds: {out:#?}");
    assert_eq!(fake.calls().len(), 3);

    let fake = Fake::start();
    fake.queue("update-every-webhooks", (0..6).map(|_| reply(500)));
    let out = run(&fake, &["register"], WITH_TENANT);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("failed (HTTP 500 on update-every-webhooks) on all 3 attempt(s)"),
        "{out:#?}"
    );
    assert_eq!(fake.calls().len(), 3, "bounded at --attempts (3)");

    let fake = Fake::start();
    fake.queue("update-every-webhooks", [reply(429), reply(500)]);
    let out = run(&fake, &["register", "--attempts", "5"], WITH_TENANT);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("refused the request (HTTP 429"));
    assert_eq!(fake.calls().len(), 1, "a 4xx is never retried");

    // A failure halfway through per-kind registration says what was done.
    let fake = Fake::start();
    fake.queue("update-webhook-delivery", (0..3).map(|_| reply(503)));
    let out = run(&fake, &["register", "--per-kind"], WITH_TENANT);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("2 webhook(s) were registered before"));
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with("ok")).count(),
        2
    );
}

#[test]
fn tokens_given_as_flags_work_and_stay_out_of_the_parsed_command_line() {
    use clap::Parser as _;
    let fake = Fake::start();
    let out = run(
        &fake,
        &[
            "register",
            "--instance-token",
            INSTANCE_TOKEN,
            "--client-token",
            CLIENT_TOKEN,
            "--tenant-token",
            TENANT,
        ],
        &[("ZAPI_INSTANCE_TOKEN", "x"), ("ZAPI_CLIENT_TOKEN", "y")],
    );
    assert_eq!(out.code, 0, "flags win over the environment: {out:#?}");
    let calls = fake.calls();
    assert!(calls[0].path.contains(INSTANCE_TOKEN));
    assert_eq!(calls[0].headers["client-token"], CLIENT_TOKEN);

    let cli = presence_bridge::cli::Cli::try_parse_from([
        "presence-bridge",
        "zapi",
        "check",
        "--instance",
        INSTANCE,
        "--instance-token",
        INSTANCE_TOKEN,
        "--client-token",
        CLIENT_TOKEN,
        "--public-url",
        PUBLIC,
        "--tenant-token",
        TENANT,
    ])
    .expect("parses");
    let debug = format!("{cli:?}");
    assert!(debug.contains(INSTANCE), "{debug}");
    for secret in [INSTANCE_TOKEN, CLIENT_TOKEN, TENANT] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[test]
fn kinds_need_per_kind_when_registering() {
    let fake = Fake::start();
    let out = run(&fake, &["register", "--kinds", "presence"], WITH_TENANT);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("--per-kind"), "{out:#?}");
    assert!(fake.calls().is_empty());
}

#[test]
fn an_https_provider_url_speaks_tls() {
    // The fake speaks plain HTTP: the TLS handshake fails, and says so.
    let fake = Fake::start();
    let url = format!("https://{}", fake.addr);
    let out = run(
        &fake,
        &["register"],
        &[("BRIDGE_TENANT_TOKEN", TENANT), ("ZAPI_API_URL", &url)],
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("TLS with the provider at {url} failed")),
        "{out:#?}"
    );
    assert!(fake.calls().is_empty(), "no request in plain text");
}

#[test]
fn an_instance_token_with_url_characters_stays_one_path_segment() {
    let fake = Fake::start();
    let token = "odd/token?x#y%z-0123456789";
    let encoded = "odd%2Ftoken%3Fx%23y%25z-0123456789";
    fake.queue(
        "update-every-webhooks",
        [Answer::Reply(
            400,
            format!(r#"{{"error":"bad token {token} / {encoded}"}}"#),
        )],
    );
    let out = run(
        &fake,
        &["register"],
        &[
            ("BRIDGE_TENANT_TOKEN", TENANT),
            ("ZAPI_INSTANCE_TOKEN", token),
        ],
    );
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(
        fake.calls()[0].path,
        format!("/instances/{INSTANCE}/token/{encoded}/update-every-webhooks")
    );
    assert!(
        out.stderr
            .contains("the provider says \"bad token *** / ***\""),
        "{out:#?}"
    );
    for form in [token, encoded] {
        assert!(
            !out.stdout.contains(form) && !out.stderr.contains(form),
            "{out:#?}"
        );
    }
}
