//! Z-API's instance API, as `presence-bridge zapi register` and `zapi check`
//! use it: the six webhook [`Kind`]s with their registration endpoints and
//! `GET …/me` fields, the provider's base URL ([`BaseUrl`]: `https://`, or
//! `http://` for a loopback host only), and a [`Client`] that calls
//! `PUT …/update-webhook-…` and `GET …/me` with the `Client-Token` header,
//! a timeout per attempt and bounded retries (connection failures, timeouts
//! and 5xx only; never a 4xx).
//!
//! Secrets (the instance token in the path, the `Client-Token`, the bridge's
//! tenant token) are [`Secret`]s: never in an error, and the provider's own
//! error text is scrubbed of them before it is shown ([`Client::scrub`]).
//! The reference is `shared/zapi/callbacks.md` §0 and §4.

mod http;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use serde_json::{Map, Value};

pub use http::MAX_ANSWER_BYTES;

/// The provider's API when `--api-url` is not given.
pub const DEFAULT_BASE_URL: &str = "https://api.z-api.io";

/// Longest provider error text shown (characters).
const MAX_DETAIL_CHARS: usize = 200;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A webhook kind: one callback `type` of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Kind {
    /// `PresenceChatCallback`.
    Presence,
    /// `ReceivedCallback`.
    Received,
    /// `DeliveryCallback`.
    Delivery,
    /// `MessageStatusCallback`.
    MessageStatus,
    /// `ConnectedCallback`.
    Connected,
    /// `DisconnectedCallback`.
    Disconnected,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Presence,
        Kind::Received,
        Kind::Delivery,
        Kind::MessageStatus,
        Kind::Connected,
        Kind::Disconnected,
    ];

    /// The name on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Presence => "presence",
            Kind::Received => "received",
            Kind::Delivery => "delivery",
            Kind::MessageStatus => "message-status",
            Kind::Connected => "connected",
            Kind::Disconnected => "disconnected",
        }
    }

    /// The endpoint that registers this kind's URL alone (`PUT …/{endpoint}`).
    pub fn update_endpoint(self) -> &'static str {
        match self {
            Kind::Presence => "update-webhook-chat-presence",
            Kind::Received => "update-webhook-received",
            Kind::Delivery => "update-webhook-delivery",
            Kind::MessageStatus => "update-webhook-message-status",
            Kind::Connected => "update-webhook-connected",
            Kind::Disconnected => "update-webhook-disconnected",
        }
    }

    /// The `GET …/me` field holding this kind's registered URL.
    pub fn me_field(self) -> &'static str {
        match self {
            Kind::Presence => "presenceChatCallbackUrl",
            Kind::Received => "receivedCallbackUrl",
            Kind::Delivery => "deliveryCallbackUrl",
            Kind::MessageStatus => "messageStatusCallbackUrl",
            Kind::Connected => "connectedCallbackUrl",
            Kind::Disconnected => "disconnectedCallbackUrl",
        }
    }
}

/// Sets every webhook to one URL; body `value` and optional `notifySentByMe`.
pub const EVERY_WEBHOOKS_ENDPOINT: &str = "update-every-webhooks";
/// Turns own sent messages on or off in the received webhook (`notifySentByMe`).
pub const NOTIFY_SENT_BY_ME_ENDPOINT: &str = "update-notify-sent-by-me";
/// The `GET …/me` field saying whether own sent messages are delivered.
pub const ME_SENT_BY_ME_FIELD: &str = "receiveCallbackSentByMe";

/// A secret string: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Everything that can go wrong talking to the provider. No variant holds a
/// secret; `detail` is the provider's own error text, scrubbed and cut.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what} `{url}` is not usable: {reason}")]
    BadUrl {
        what: &'static str,
        url: String,
        reason: String,
    },
    #[error(
        "{what} must be https:// (http:// only for a loopback host such as 127.0.0.1, for tests)"
    )]
    NotHttps { what: &'static str },
    #[error("{what} must be {min} to 256 visible ASCII characters (no spaces); value not shown")]
    BadSecret { what: &'static str, min: usize },
    #[error(
        "the provider does not know instance `{instance}` with this instance token \
         (HTTP {status} on {endpoint}{detail}): check --instance (ZAPI_INSTANCE_ID) and \
         that --instance-token (ZAPI_INSTANCE_TOKEN) is this instance's token"
    )]
    BadInstance {
        instance: String,
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error(
        "the provider refused the instance token (HTTP {status} on {endpoint}{detail}): check \
         --instance-token (ZAPI_INSTANCE_TOKEN), the token of instance `{instance}` in the \
         provider's panel"
    )]
    BadInstanceToken {
        instance: String,
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error(
        "the provider refused the Client-Token (HTTP {status} on {endpoint}{detail}): check \
         --client-token (ZAPI_CLIENT_TOKEN), the account's security token (Security → \
         Client-Token in the provider's panel)"
    )]
    BadClientToken {
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error(
        "the provider refused the webhook URL as not HTTPS (HTTP {status} on \
         {endpoint}{detail}): --public-url must be an https:// address the provider can reach"
    )]
    WebhookNotHttps {
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error("the provider refused the request (HTTP {status} on {endpoint}{detail})")]
    Refused {
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error(
        "the provider answered with a redirect (HTTP {status} on {endpoint}), which is not \
         followed: check --api-url (ZAPI_API_URL)"
    )]
    Redirect { endpoint: String, status: u16 },
    #[error(
        "the provider failed (HTTP {status} on {endpoint}) on all {attempts} attempt(s); \
         try again later"
    )]
    Unavailable {
        endpoint: String,
        status: u16,
        attempts: u32,
    },
    #[error(
        "the provider did not answer {endpoint} within {timeout} on any of {attempts} \
         attempt(s) (--timeout, --attempts)"
    )]
    Timeout {
        endpoint: String,
        timeout: String,
        attempts: u32,
    },
    #[error(
        "cannot reach the provider at {base} for {endpoint} on any of {attempts} \
         attempt(s): {reason}"
    )]
    Connect {
        base: String,
        endpoint: String,
        attempts: u32,
        reason: String,
    },
    #[error("TLS with the provider at {base} failed: {reason}")]
    Tls { base: String, reason: String },
    #[error(
        "the provider's answer to {endpoint} (HTTP {status}) is not JSON{what}: is --api-url \
         (ZAPI_API_URL) the provider's API and not a web page or a proxy's error page?"
    )]
    NonJson {
        endpoint: String,
        status: u16,
        what: String,
    },
    #[error("the provider's answer to {endpoint} is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge { endpoint: String },
    #[error(
        "the provider answered {endpoint} with `\"value\": false`: the change was not applied"
    )]
    NotApplied { endpoint: String },
}

impl ApiError {
    /// True when the operator's input is at fault (a flag, a URL, a token):
    /// the command exits 2; otherwise 1 (the provider failed or is unreachable).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ApiError::BadUrl { .. }
                | ApiError::NotHttps { .. }
                | ApiError::BadSecret { .. }
                | ApiError::BadInstance { .. }
                | ApiError::BadInstanceToken { .. }
                | ApiError::BadClientToken { .. }
                | ApiError::WebhookNotHttps { .. }
        )
    }
}

/// A token given on the command line or in the environment, checked: 1 to
/// 256 visible ASCII characters (so it fits a header and a URL path).
pub fn secret(what: &'static str, value: &str) -> Result<Secret, ApiError> {
    let ok = (1..=crate::bounds::MAX_TOKEN_BYTES).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(Secret::new(value))
    } else {
        Err(ApiError::BadSecret { what, min: 1 })
    }
}

/// The provider's base URL: scheme, host, port and an optional path prefix
/// (for a proxy). `https://`, or `http://` for a loopback host.
#[derive(Debug, Clone)]
pub struct BaseUrl {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    prefix: String,
}

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        const WHAT: &str = "--api-url (ZAPI_API_URL)";
        let bad = |reason: &str| ApiError::BadUrl {
            what: WHAT,
            url: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = raw.trim().parse().map_err(|_| bad("not a URL"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host (write it as https://host)"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        if uri.query().is_some() || raw.contains('#') {
            return Err(bad("a query or fragment is not allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if is_loopback(host) => false,
            _ => return Err(ApiError::NotHttps { what: WHAT }),
        };
        Ok(Self {
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The URL as given, normalized (no secrets in it).
    pub fn shown(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.prefix)
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Timeout per attempt, number of attempts, first wait between attempts
/// (doubled each time, at most 10 s).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
}

/// The provider's API for one instance.
pub struct Client {
    base: BaseUrl,
    tls: Option<tokio_rustls::TlsConnector>,
    instance: String,
    instance_token: Secret,
    client_token: Secret,
    hidden: Vec<Secret>,
    policy: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.shown())
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Why one attempt is worth another.
enum Retriable {
    Timeout,
    Connect(String),
    Status(StatusCode),
}

impl Client {
    /// `instance` must already be a valid instance id (safe in a path).
    pub fn new(
        base: BaseUrl,
        instance: &str,
        instance_token: Secret,
        client_token: Secret,
        policy: RetryPolicy,
    ) -> Result<Self, ApiError> {
        let tls = if base.https {
            Some(http::tls_connector().map_err(|reason| ApiError::Tls {
                base: base.shown(),
                reason,
            })?)
        } else {
            None
        };
        Ok(Self {
            base,
            tls,
            instance: instance.to_owned(),
            instance_token,
            client_token,
            hidden: Vec::new(),
            policy: RetryPolicy {
                attempts: policy.attempts.max(1),
                ..policy
            },
        })
    }

    /// Also keeps `secret` out of every text this client shows.
    pub fn hide(&mut self, secret: &Secret) {
        self.hidden.push(secret.clone());
    }

    /// `text` with every secret this client knows (as is and percent-encoded)
    /// replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in [&self.instance_token, &self.client_token]
            .into_iter()
            .chain(&self.hidden)
        {
            let plain = s.expose();
            let encoded = encode_query_value(plain);
            for form in [plain, encoded.as_str()] {
                if !form.is_empty() {
                    out = out.replace(form, "***");
                }
            }
        }
        out
    }

    /// `PUT …/{endpoint}` with a JSON body. `Ok` on a 2xx whose body is empty
    /// or JSON without an `error` and without `"value": false`.
    pub async fn put(&self, endpoint: &str, body: &Value) -> Result<(), ApiError> {
        let (status, answer) = self.call(Method::PUT, endpoint, Some(body)).await?;
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let value = self.json(endpoint, status, &answer)?;
        if value.get("value") == Some(&Value::Bool(false)) {
            return Err(ApiError::NotApplied {
                endpoint: endpoint.to_owned(),
            });
        }
        Ok(())
    }

    /// `GET …/me`: the instance's data, a JSON object.
    pub async fn me(&self) -> Result<Map<String, Value>, ApiError> {
        let (status, answer) = self.call(Method::GET, "me", None).await?;
        match self.json("me", status, &answer)? {
            Value::Object(map) => Ok(map),
            _ => Err(ApiError::NonJson {
                endpoint: "me".to_owned(),
                status: status.as_u16(),
                what: " (JSON, but not an object)".to_owned(),
            }),
        }
    }

    fn json(&self, endpoint: &str, status: StatusCode, answer: &[u8]) -> Result<Value, ApiError> {
        serde_json::from_slice(answer).map_err(|_| ApiError::NonJson {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            what: format!(" ({} bytes)", answer.len()),
        })
    }

    /// The request with retries; a 2xx answer without an `error`, or the error.
    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let policy = self.policy;
        let mut wait = policy.backoff;
        let mut attempt = 1;
        loop {
            let request = self.request(method.clone(), endpoint, body)?;
            let outcome = tokio::time::timeout(
                policy.timeout,
                http::exchange(self.tls.as_ref(), &self.base.host, self.base.port, request),
            )
            .await;
            let retriable = match outcome {
                Err(_) => Retriable::Timeout,
                Ok(Err(http::AttemptError::Connect(reason))) => Retriable::Connect(reason),
                Ok(Err(http::AttemptError::Tls(reason))) => {
                    return Err(ApiError::Tls {
                        base: self.base.shown(),
                        reason: self.scrub(&reason),
                    })
                }
                Ok(Err(http::AttemptError::TooLarge)) => {
                    return Err(ApiError::TooLarge {
                        endpoint: endpoint.to_owned(),
                    })
                }
                Ok(Ok((status, _))) if status.is_server_error() => Retriable::Status(status),
                Ok(Ok((status, answer))) => return self.judge(endpoint, status, answer),
            };
            if attempt >= policy.attempts {
                let endpoint = endpoint.to_owned();
                let attempts = policy.attempts;
                return Err(match retriable {
                    Retriable::Timeout => ApiError::Timeout {
                        endpoint,
                        timeout: humantime::format_duration(policy.timeout).to_string(),
                        attempts,
                    },
                    Retriable::Connect(reason) => ApiError::Connect {
                        base: self.base.shown(),
                        endpoint,
                        attempts,
                        reason: self.scrub(&reason),
                    },
                    Retriable::Status(status) => ApiError::Unavailable {
                        endpoint,
                        status: status.as_u16(),
                        attempts,
                    },
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    fn request(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>, ApiError> {
        let path = format!(
            "{}/instances/{}/token/{}/{endpoint}",
            self.base.prefix,
            self.instance,
            // Percent-encoded like a query value (`/` too): one path segment,
            // and `scrub` knows this form.
            encode_query_value(self.instance_token.expose())
        );
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut client_token =
            HeaderValue::from_str(self.client_token.expose()).map_err(|_| ApiError::BadSecret {
                what: "--client-token (ZAPI_CLIENT_TOKEN)",
                min: 1,
            })?;
        client_token.set_sensitive(true);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.base.authority)
            .header("client-token", client_token)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("presence-bridge/", env!("CARGO_PKG_VERSION")),
            )
            .header(CONNECTION, "close");
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        req.body(Full::new(Bytes::from(bytes)))
            .map_err(|_| ApiError::BadSecret {
                what: "--instance-token (ZAPI_INSTANCE_TOKEN)",
                min: 1,
            })
    }

    /// A non-5xx answer: the body when it is a success, else the error it means.
    fn judge(
        &self,
        endpoint: &str,
        status: StatusCode,
        answer: Bytes,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let said = error_text(&answer, !status.is_success());
        if status.is_success() && said.is_none() {
            return Ok((status, answer));
        }
        let endpoint = endpoint.to_owned();
        let code = status.as_u16();
        if status.is_redirection() {
            return Err(ApiError::Redirect {
                endpoint,
                status: code,
            });
        }
        let lower = said.as_deref().unwrap_or_default().to_ascii_lowercase();
        let detail = said
            .map(|t| {
                let cut: String = t.chars().take(MAX_DETAIL_CHARS).collect();
                format!(": the provider says {:?}", self.scrub(&cut))
            })
            .unwrap_or_default();
        let instance = self.instance.clone();
        // The provider documents one error text (`null not allowed` for a
        // missing or wrong Client-Token); the rest is read from the status
        // and the words of its `error`.
        Err(
            if lower.contains("null not allowed")
                || lower.contains("client-token")
                || lower.contains("client token")
                || lower.contains("client_token")
            {
                ApiError::BadClientToken {
                    endpoint,
                    status: code,
                    detail,
                }
            } else if lower.contains("https") {
                ApiError::WebhookNotHttps {
                    endpoint,
                    status: code,
                    detail,
                }
            } else if lower.contains("instance") || status == StatusCode::NOT_FOUND {
                ApiError::BadInstance {
                    instance,
                    endpoint,
                    status: code,
                    detail,
                }
            } else if lower.contains("token") {
                ApiError::BadInstanceToken {
                    instance,
                    endpoint,
                    status: code,
                    detail,
                }
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                ApiError::BadClientToken {
                    endpoint,
                    status: code,
                    detail,
                }
            } else {
                ApiError::Refused {
                    endpoint,
                    status: code,
                    detail,
                }
            },
        )
    }
}

/// The provider's error text: `error` of a JSON object, or on a failure
/// status also `message` (a success may carry a `message` that is no error).
fn error_text(answer: &[u8], failed: bool) -> Option<String> {
    let value: Value = serde_json::from_slice(answer).ok()?;
    let keys: &[&str] = if failed {
        &["error", "message"]
    } else {
        &["error"]
    };
    keys.iter().find_map(|k| match value.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        _ => None,
    })
}

/// `value` percent-encoded for a URL's query string (all but the unreserved
/// characters of RFC 3986).
pub fn encode_query_value(value: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// `url` with the value of every query parameter whose name holds `token`
/// (any case) replaced by `***`: shows what a registered URL points at
/// without its credentials.
pub fn mask_url(url: &str) -> String {
    let (head, fragment) = match url.split_once('#') {
        Some((h, f)) => (h, Some(f)),
        None => (url, None),
    };
    let Some((base, query)) = head.split_once('?') else {
        return url.to_owned();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.to_ascii_lowercase().contains("token") => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{base}?{}", masked.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_https_or_loopback_http() {
        assert!(BaseUrl::parse("https://api.z-api.io").is_ok());
        assert!(BaseUrl::parse("http://127.0.0.1:8080").is_ok());
        assert!(BaseUrl::parse("http://[::1]:8080/p/").is_ok());
        assert!(BaseUrl::parse("http://localhost:1").is_ok());
        assert!(matches!(
            BaseUrl::parse("http://api.z-api.io"),
            Err(ApiError::NotHttps { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("ftp://127.0.0.1"),
            Err(ApiError::NotHttps { .. })
        ));
        assert!(BaseUrl::parse("https://u:p@api.z-api.io").is_err());
        assert!(BaseUrl::parse("https://api.z-api.io/?a=b").is_err());
        let b = BaseUrl::parse("http://127.0.0.1:9/proxy/").unwrap();
        assert_eq!((b.port, b.prefix.as_str()), (9, "/proxy"));
        assert_eq!(b.shown(), "http://127.0.0.1:9/proxy");
    }

    #[test]
    fn masks_token_parameters_only() {
        assert_eq!(
            mask_url("https://h/p?token=abc&x=1&Webhook_Token=z#f"),
            "https://h/p?token=***&x=1&Webhook_Token=***#f"
        );
        assert_eq!(mask_url("https://h/p"), "https://h/p");
    }

    #[test]
    fn query_values_are_encoded_as_the_bridge_decodes_them() {
        assert_eq!(encode_query_value("a+b&c=d e~_.-"), "a%2Bb%26c%3Dd%20e~_.-");
    }
}
