//! `presence-bridge zapi register` and `zapi check`: point an instance's
//! webhooks at the bridge through the provider's API, and read them back to
//! find drift. The provider client is [`crate::zapi_api`]; this file holds
//! the flags, the URLs the bridge expects, and what is printed.
//!
//! Neither command reads the bridge's configuration. Secrets come from flags
//! or the environment and are never printed: URLs are shown with their
//! `token` value as `***`. The one exception is `register --generate-token`,
//! whose new token is printed once on stdout, in the configuration line to add.
//!
//! Exit codes: 0 done (`check`: every webhook as expected); 1 a runtime
//! failure (the provider unreachable, timing out, failing, answering nonsense)
//! and for `check` drift; 2 a usage or configuration error (a flag, a URL, a
//! token the provider refuses).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::zapi_api::{
    self, encode_query_value, mask_url, ApiError, BaseUrl, Client, Kind, RetryPolicy, Secret,
    DEFAULT_BASE_URL, EVERY_WEBHOOKS_ENDPOINT, ME_SENT_BY_ME_FIELD, NOTIFY_SENT_BY_ME_ENDPOINT,
};

#[derive(Debug, Subcommand)]
pub enum ZapiCommand {
    /// Point an instance's webhooks at the bridge (PUT …/update-webhook-… at the provider).
    Register(RegisterArgs),
    /// Read the instance's webhooks (GET …/me) and compare them with the bridge's URLs;
    /// exit 1 on drift.
    Check(CheckArgs),
}

/// The provider's API and the instance's credentials.
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// The Z-API instance id.
    #[arg(long, env = "ZAPI_INSTANCE_ID", value_name = "ID")]
    pub instance: String,
    /// The instance's token (it goes in the provider's URL path; prefer the environment).
    #[arg(
        long,
        env = "ZAPI_INSTANCE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = as_secret
    )]
    pub instance_token: Secret,
    /// The account's security token, sent as the `Client-Token` header.
    #[arg(
        long,
        env = "ZAPI_CLIENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = as_secret
    )]
    pub client_token: Secret,
    /// The provider's API (https://, or http:// to a loopback host for tests).
    #[arg(long, env = "ZAPI_API_URL", default_value = DEFAULT_BASE_URL, value_name = "URL")]
    pub api_url: String,
    /// Longest wait for one answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Tries per call; only connection failures, timeouts and 5xx are tried again.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub attempts: u32,
    /// Wait before the second try, doubled for each further one (at most 10s).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub retry_backoff: Duration,
}

/// Where the webhooks should point.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// The bridge's public https:// address as the provider reaches it (a path prefix is kept).
    #[arg(long, env = "BRIDGE_PUBLIC_URL", value_name = "URL")]
    pub public_url: String,
    /// One URL per kind (presence to …/presence, the others to the any-type route)
    /// instead of the provider's one URL for every webhook.
    #[arg(long)]
    pub per_kind: bool,
    /// Own sent messages also through the received webhook (`notifySentByMe`).
    #[arg(long)]
    pub notify_sent_by_me: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub provider: ProviderArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
    /// The instance's tenant token in the bridge (`auth.instances`), put in the URL.
    #[arg(
        long,
        env = "BRIDGE_TENANT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = as_secret,
        required_unless_present = "generate_token",
        conflicts_with = "generate_token"
    )]
    pub tenant_token: Option<Secret>,
    /// Make a new tenant token (32 random bytes, URL-safe base64) and print the
    /// configuration line to add to the bridge.
    #[arg(long)]
    pub generate_token: bool,
    /// Only these kinds, comma-separated (needs --per-kind).
    #[arg(long, value_enum, value_delimiter = ',', requires = "per_kind")]
    pub kinds: Vec<Kind>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub provider: ProviderArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
    /// The instance's tenant token in the bridge, expected in the URL.
    #[arg(
        long,
        env = "BRIDGE_TENANT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = as_secret
    )]
    pub tenant_token: Secret,
    /// Only these kinds, comma-separated (default: all six).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub kinds: Vec<Kind>,
}

/// A token as clap reads it: kept as a [`Secret`], so the parsed command
/// line's `Debug` never shows it (checked later by [`zapi_api::secret`]).
fn as_secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}

/// Runs a `zapi` command.
pub fn zapi_tool(cmd: ZapiCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("presence-bridge zapi: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match cmd {
        ZapiCommand::Register(args) => rt.block_on(register(args)),
        ZapiCommand::Check(args) => rt.block_on(check(args)),
    };
    ExitCode::from(code)
}

/// A failure: the message on stderr, the exit code.
fn fail(command: &str, e: &ApiError) -> u8 {
    errln!("presence-bridge zapi {command}: {e}");
    if e.is_usage() {
        2
    } else {
        1
    }
}

/// The provider client, the instance id, the expected URLs' base.
struct Setup {
    client: Client,
    instance: String,
    public: String,
}

fn setup(provider: &ProviderArgs, bridge: &BridgeArgs) -> Result<Setup, ApiError> {
    let instance = provider.instance.trim().to_owned();
    if crate::presence::InstanceId::parse(&instance).is_err() {
        return Err(ApiError::BadUrl {
            what: "--instance (ZAPI_INSTANCE_ID)",
            url: instance,
            reason: "an instance id is 1 to 128 of A-Z a-z 0-9 . _ -".to_owned(),
        });
    }
    let public = public_url(&bridge.public_url)?;
    let base = BaseUrl::parse(&provider.api_url)?;
    let instance_token = zapi_api::secret(
        "--instance-token (ZAPI_INSTANCE_TOKEN)",
        provider.instance_token.expose(),
    )?;
    let client_token = zapi_api::secret(
        "--client-token (ZAPI_CLIENT_TOKEN)",
        provider.client_token.expose(),
    )?;
    let client = Client::new(
        base,
        &instance,
        instance_token,
        client_token,
        RetryPolicy {
            timeout: provider.timeout,
            attempts: provider.attempts,
            backoff: provider.retry_backoff,
        },
    )?;
    Ok(Setup {
        client,
        instance,
        public,
    })
}

/// The bridge's public base URL: `https://host[:port][/prefix]`, without a
/// trailing `/`, a query or a fragment.
fn public_url(raw: &str) -> Result<String, ApiError> {
    const WHAT: &str = "--public-url (BRIDGE_PUBLIC_URL)";
    let raw = raw.trim();
    let bad = |reason: &str| ApiError::BadUrl {
        what: WHAT,
        url: mask_url(raw),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = raw.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(ApiError::NotHttps { what: WHAT });
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user information in the URL is not supported"));
    }
    if uri.query().is_some() || raw.contains('#') {
        return Err(bad(
            "give the address without a query or fragment; the token is added by the command",
        ));
    }
    Ok(format!(
        "https://{}{}",
        authority.as_str(),
        uri.path().trim_end_matches('/')
    ))
}

/// A tenant token as the bridge accepts it (`auth.instances`): 16 to 256
/// visible ASCII characters.
fn tenant_token(value: &str) -> Result<Secret, ApiError> {
    let what = "--tenant-token (BRIDGE_TENANT_TOKEN)";
    let s = zapi_api::secret(what, value)?;
    if value.len() < 16 {
        return Err(ApiError::BadSecret { what, min: 16 });
    }
    Ok(s)
}

/// 32 random bytes from the system's generator, URL-safe base64 (43
/// characters). Drawn again when it would start with `-`, which a command
/// line would take for a flag (`--tenant-token -abc…`).
fn generate_token() -> Result<Secret, String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let rng = ring::rand::SystemRandom::new();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes)
            .map_err(|_| "the system's random generator failed".to_owned())?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !token.starts_with('-') {
            return Ok(Secret::new(token));
        }
    }
}

/// A URL the provider should call: the presence route, or the any-type
/// route that takes every kind; the tenant token in its query string.
fn webhook_url(public: &str, instance: &str, presence_route: bool, token: &Secret) -> String {
    let route = if presence_route { "/presence" } else { "" };
    format!(
        "{public}/webhooks/zapi/instances/{instance}{route}?token={}",
        encode_query_value(token.expose())
    )
}

/// The URL `kind` should have: its own route for presence in per-kind mode,
/// the any-type route otherwise.
fn expected_url(s: &Setup, per_kind: bool, kind: Kind, token: &Secret) -> String {
    webhook_url(
        &s.public,
        &s.instance,
        per_kind && kind == Kind::Presence,
        token,
    )
}

async fn register(args: RegisterArgs) -> u8 {
    const CMD: &str = "register";
    let mut s = match setup(&args.provider, &args.bridge) {
        Ok(s) => s,
        Err(e) => return fail(CMD, &e),
    };
    let token = if args.generate_token {
        match generate_token() {
            Ok(t) => {
                print_config_line(&s.instance, &t);
                t
            }
            Err(e) => {
                errln!("presence-bridge zapi {CMD}: {e}");
                return 1;
            }
        }
    } else {
        match tenant_token(args.tenant_token.as_ref().map_or("", Secret::expose)) {
            Ok(t) => t,
            Err(e) => return fail(CMD, &e),
        }
    };
    s.client.hide(&token);
    let notify = args.bridge.notify_sent_by_me;
    let generated = args.generate_token;
    // A failure after a generated token was printed: say how to go on with it.
    let failed = |e: &ApiError| {
        if generated {
            errln!(
                "presence-bridge zapi {CMD}: once this is fixed, run the command again with \
                 that printed token as BRIDGE_TENANT_TOKEN instead of --generate-token"
            );
        }
        fail(CMD, e)
    };
    let mut kinds_flag = String::new();
    if !args.bridge.per_kind {
        let url = webhook_url(&s.public, &s.instance, false, &token);
        let mut body = json!({ "value": url });
        if notify {
            body["notifySentByMe"] = Value::Bool(true);
        }
        if let Err(e) = s.client.put(EVERY_WEBHOOKS_ENDPOINT, &body).await {
            return failed(&e);
        }
        outln!(
            "ok  every webhook  {EVERY_WEBHOOKS_ENDPOINT}  {}{}",
            mask_url(&url),
            if notify { "  notifySentByMe=true" } else { "" }
        );
    } else {
        let kinds = if args.kinds.is_empty() {
            Kind::ALL.to_vec()
        } else {
            let mut k = args.kinds.clone();
            k.sort();
            k.dedup();
            let names: Vec<&str> = k.iter().map(|k| k.name()).collect();
            kinds_flag = format!(" --kinds {}", names.join(","));
            k
        };
        for (done, kind) in kinds.into_iter().enumerate() {
            let url = expected_url(&s, true, kind, &token);
            let endpoint = kind.update_endpoint();
            if let Err(e) = s.client.put(endpoint, &json!({ "value": url })).await {
                if done > 0 {
                    errln!(
                        "presence-bridge zapi {CMD}: {done} webhook(s) were registered before \
                         this failure (listed above); run the command again once it is fixed"
                    );
                }
                return failed(&e);
            }
            outln!("ok  {:<14}  {endpoint}  {}", kind.name(), mask_url(&url));
        }
        if notify {
            // The published endpoint for the flag alone; it needs the received
            // webhook configured (done above when `received` was chosen).
            let body = json!({ "notifySentByMe": true });
            if let Err(e) = s.client.put(NOTIFY_SENT_BY_ME_ENDPOINT, &body).await {
                return failed(&e);
            }
            outln!("ok  notifySentByMe  {NOTIFY_SENT_BY_ME_ENDPOINT}  true");
        }
    }
    outln!(
        "registered instance {}: verify with `presence-bridge zapi check --instance {} \
         --public-url {}{}{kinds_flag}{}` (same credentials and tenant token)",
        s.instance,
        s.instance,
        s.public,
        if args.bridge.per_kind {
            " --per-kind"
        } else {
            ""
        },
        if notify { " --notify-sent-by-me" } else { "" }
    );
    0
}

/// The configuration to add for a generated token (stdout only).
fn print_config_line(instance: &str, token: &Secret) {
    let t = token.expose();
    outln!(
        "new tenant token for instance {instance}; add it to the bridge's configuration \
         (until the bridge has it, it answers 401 to this instance's webhooks):"
    );
    outln!("  in the TOML file (a token already listed for the instance may stay beside it):");
    outln!("    [auth.instances]");
    outln!("    \"{instance}\" = [\"{t}\"]");
    outln!(
        "  or in the environment (entries of other instances separated by `;`):\n    \
         PRESENCE_BRIDGE__AUTH__INSTANCES=\"{instance}={t}\""
    );
}

async fn check(args: CheckArgs) -> u8 {
    const CMD: &str = "check";
    let mut s = match setup(&args.provider, &args.bridge) {
        Ok(s) => s,
        Err(e) => return fail(CMD, &e),
    };
    let token = match tenant_token(args.tenant_token.expose()) {
        Ok(t) => t,
        Err(e) => return fail(CMD, &e),
    };
    s.client.hide(&token);
    let me = match s.client.me().await {
        Ok(me) => me,
        Err(e) => return fail(CMD, &e),
    };
    let kinds = if args.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        let mut k = args.kinds.clone();
        k.sort();
        k.dedup();
        k
    };
    let mut drift = 0usize;
    let mut checked = 0usize;
    for kind in kinds {
        let want = expected_url(&s, args.bridge.per_kind, kind, &token);
        let have = match me.get(kind.me_field()) {
            Some(Value::String(u)) if !u.trim().is_empty() => Some(u.trim().to_owned()),
            _ => None,
        };
        checked += 1;
        match have {
            Some(h) if h == want => {
                outln!("ok     {:<17}  {}", kind.name(), mask_url(&want));
            }
            other => {
                drift += 1;
                let shown = other
                    .as_deref()
                    .map(|h| s.client.scrub(&mask_url(h)))
                    .unwrap_or_else(|| "(not set)".to_owned());
                let note = if other
                    .as_deref()
                    .is_some_and(|h| s.client.scrub(&mask_url(h)) == mask_url(&want))
                {
                    "  (only the token differs)"
                } else {
                    ""
                };
                outln!(
                    "DRIFT  {:<17}  registered {shown}  expected {}{note}",
                    kind.name(),
                    mask_url(&want)
                );
            }
        }
    }
    if args.bridge.notify_sent_by_me {
        checked += 1;
        match me.get(ME_SENT_BY_ME_FIELD) {
            Some(Value::Bool(true)) => outln!("ok     {:<17}  true", "notify-sent-by-me"),
            other => {
                drift += 1;
                let shown = match other {
                    Some(Value::Bool(false)) => "false",
                    _ => "(not reported)",
                };
                outln!(
                    "DRIFT  {:<17}  registered {shown}  expected true",
                    "notify-sent-by-me"
                );
            }
        }
    }
    if drift == 0 {
        outln!("instance {}: all {checked} as expected", s.instance);
        0
    } else {
        outln!(
            "instance {}: {drift} of {checked} differ; fix with `presence-bridge zapi register`",
            s.instance
        );
        1
    }
}
