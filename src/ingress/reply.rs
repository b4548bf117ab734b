//! The one place where HTTP statuses are decided. The handler returns an
//! [`Outcome`]; [`respond`] turns it into a response with a small JSON body.
//!
//! Client errors carry the precise reason (`code`, `field`, `message`); server
//! errors are answered generically and logged with detail by the handler.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::presence::{CallbackKind, ParseError};
use crate::sink::SinkError;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Why a webhook request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no such route")]
    NotFound,
    #[error("method not allowed; use POST")]
    MethodNotAllowed,
    #[error("missing or wrong webhook token")]
    Unauthorized,
    #[error("this client address may not call the webhook")]
    ClientForbidden,
    #[error("this instance may not post to the bridge")]
    InstanceForbidden,
    #[error("the token belongs to another instance")]
    TokenNotForInstance,
    #[error("too many requests from this client; retry after {retry_after} s")]
    RateLimitedClient { retry_after: u64 },
    #[error("too many requests for this instance; retry after {retry_after} s")]
    RateLimitedInstance { retry_after: u64 },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("Content-Encoding must be gzip or identity")]
    UnsupportedEncoding,
    #[error("body is not valid gzip: {0}")]
    MalformedEncoding(String),
    #[error("gzip body expands more than {ratio} times its size")]
    DecompressionRatio { ratio: usize },
    #[error("too many request bodies in flight from this client; retry after {retry_after} s")]
    BodyBudgetClient { retry_after: u64 },
    #[error("too many request bodies in flight; retry after {retry_after} s")]
    BodyBudgetExhausted { retry_after: u64 },
    #[error("body not received within the read timeout")]
    BodyTimeout,
    #[error("body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("{0}")]
    Invalid(#[from] ParseError),
    #[error("field `type`: this route takes PresenceChatCallback only; post a {} to /webhooks/zapi or /webhooks/zapi/instances/{{instanceId}}", .0.type_name())]
    NotPresence(CallbackKind),
    #[error("instance id in the path is not valid")]
    InvalidPathInstance,
    #[error("field `instanceId` does not match the instance in the path")]
    InstanceMismatch,
    #[error("event could not be accepted: {0}")]
    Unavailable(#[from] SinkError),
}

/// The stable code of a [`Rejection`]: the error body's `error` and the
/// `reason` label of the rejection metrics. The one list of codes: the
/// metrics create their series from [`Reason::ALL`], the log limiter sizes
/// its table from it, and a test checks it against [`catalogue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotFound,
    MethodNotAllowed,
    Unauthorized,
    ClientForbidden,
    InstanceForbidden,
    TokenNotForInstance,
    RateLimitedClient,
    RateLimitedInstance,
    UnsupportedMediaType,
    PayloadTooLarge,
    UnsupportedEncoding,
    MalformedEncoding,
    BodyBudgetClient,
    BodyBudgetExhausted,
    BodyTimeout,
    BodyUnreadable,
    MalformedJson,
    MissingField,
    WrongType,
    UnsupportedType,
    InvalidPhone,
    InvalidStatus,
    InvalidLastSeen,
    InvalidInstanceId,
    InvalidMoment,
    InstanceMismatch,
    SpoolFull,
    Unavailable,
}

impl Reason {
    pub const ALL: [Self; 28] = [
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Unauthorized,
        Self::ClientForbidden,
        Self::InstanceForbidden,
        Self::TokenNotForInstance,
        Self::RateLimitedClient,
        Self::RateLimitedInstance,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::UnsupportedEncoding,
        Self::MalformedEncoding,
        Self::BodyBudgetClient,
        Self::BodyBudgetExhausted,
        Self::BodyTimeout,
        Self::BodyUnreadable,
        Self::MalformedJson,
        Self::MissingField,
        Self::WrongType,
        Self::UnsupportedType,
        Self::InvalidPhone,
        Self::InvalidStatus,
        Self::InvalidLastSeen,
        Self::InvalidInstanceId,
        Self::InvalidMoment,
        Self::InstanceMismatch,
        Self::SpoolFull,
        Self::Unavailable,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::ClientForbidden => "client_forbidden",
            Self::InstanceForbidden => "instance_forbidden",
            Self::TokenNotForInstance => "token_not_for_instance",
            Self::RateLimitedClient => "rate_limited_client",
            Self::RateLimitedInstance => "rate_limited_instance",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::MalformedEncoding => "malformed_encoding",
            Self::BodyBudgetClient => "body_budget_client",
            Self::BodyBudgetExhausted => "body_budget_exhausted",
            Self::BodyTimeout => "body_timeout",
            Self::BodyUnreadable => "body_unreadable",
            Self::MalformedJson => "malformed_json",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::UnsupportedType => "unsupported_type",
            Self::InvalidPhone => "invalid_phone",
            Self::InvalidStatus => "invalid_status",
            Self::InvalidLastSeen => "invalid_last_seen",
            Self::InvalidInstanceId => "invalid_instance_id",
            Self::InvalidMoment => "invalid_moment",
            Self::InstanceMismatch => "instance_mismatch",
            Self::SpoolFull => "spool_full",
            Self::Unavailable => "unavailable",
        }
    }

    /// True for an event we refused for what it carries: a POST to an event
    /// route whose body (Content-Type, size, JSON, fields, the instance it
    /// names) we refused. These count in
    /// `presence_bridge_events_rejected_total`; every other reason (who sent
    /// it, where, how fast, how slowly, or our own state) counts in
    /// `presence_bridge_http_requests_refused_total`.
    pub const fn is_event(self) -> bool {
        match self {
            Self::UnsupportedMediaType
            | Self::PayloadTooLarge
            | Self::UnsupportedEncoding
            | Self::MalformedEncoding
            | Self::MalformedJson
            | Self::MissingField
            | Self::WrongType
            | Self::UnsupportedType
            | Self::InvalidPhone
            | Self::InvalidStatus
            | Self::InvalidLastSeen
            | Self::InvalidInstanceId
            | Self::InvalidMoment
            | Self::InstanceMismatch => true,
            Self::NotFound
            | Self::MethodNotAllowed
            | Self::Unauthorized
            | Self::ClientForbidden
            | Self::InstanceForbidden
            | Self::TokenNotForInstance
            | Self::RateLimitedClient
            | Self::RateLimitedInstance
            | Self::BodyBudgetClient
            | Self::BodyBudgetExhausted
            | Self::BodyTimeout
            | Self::BodyUnreadable
            | Self::SpoolFull
            | Self::Unavailable => false,
        }
    }

    /// The codes of the reasons whose [`Self::is_event`] is `event`, in
    /// [`Self::ALL`]'s order (`N` must be their number: checked at compile time).
    pub const fn codes<const N: usize>(event: bool) -> [&'static str; N] {
        let mut out = [""; N];
        let (mut i, mut n) = (0, 0);
        while i < Self::ALL.len() {
            if Self::ALL[i].is_event() == event {
                out[n] = Self::ALL[i].code();
                n += 1;
            }
            i += 1;
        }
        assert!(n == N, "N is not the number of such reasons");
        out
    }

    /// How many reasons have [`Self::is_event`] equal to `event`.
    pub const fn count(event: bool) -> usize {
        let (mut i, mut n) = (0, 0);
        while i < Self::ALL.len() {
            if Self::ALL[i].is_event() == event {
                n += 1;
            }
            i += 1;
        }
        n
    }

    /// The reason of a body that failed to parse or validate.
    fn of_parse(e: &ParseError) -> Self {
        use crate::presence::PresenceError as P;
        match e {
            ParseError::Json(_) | ParseError::Empty | ParseError::NotAnObject { .. } => {
                Self::MalformedJson
            }
            ParseError::Invalid(p) => match p {
                P::Missing { .. } | P::Empty { .. } => Self::MissingField,
                P::WrongType { .. } => Self::WrongType,
                P::UnsupportedType | P::UnknownType => Self::UnsupportedType,
                P::InvalidPhone => Self::InvalidPhone,
                P::InvalidStatus => Self::InvalidStatus,
                P::InvalidLastSeen | P::LastSeenOutOfRange => Self::InvalidLastSeen,
                P::InvalidInstanceId => Self::InvalidInstanceId,
                P::InvalidMoment { .. } | P::MomentOutOfRange { .. } => Self::InvalidMoment,
            },
        }
    }
}

impl Rejection {
    /// Its [`Reason`].
    pub fn reason(&self) -> Reason {
        match self {
            Self::NotFound => Reason::NotFound,
            Self::MethodNotAllowed => Reason::MethodNotAllowed,
            Self::Unauthorized => Reason::Unauthorized,
            Self::ClientForbidden => Reason::ClientForbidden,
            Self::InstanceForbidden => Reason::InstanceForbidden,
            Self::TokenNotForInstance => Reason::TokenNotForInstance,
            Self::RateLimitedClient { .. } => Reason::RateLimitedClient,
            Self::RateLimitedInstance { .. } => Reason::RateLimitedInstance,
            Self::UnsupportedMediaType => Reason::UnsupportedMediaType,
            Self::PayloadTooLarge { .. } | Self::DecompressionRatio { .. } => {
                Reason::PayloadTooLarge
            }
            Self::UnsupportedEncoding => Reason::UnsupportedEncoding,
            Self::MalformedEncoding(_) => Reason::MalformedEncoding,
            Self::BodyBudgetClient { .. } => Reason::BodyBudgetClient,
            Self::BodyBudgetExhausted { .. } => Reason::BodyBudgetExhausted,
            Self::BodyTimeout => Reason::BodyTimeout,
            Self::BodyUnreadable(_) => Reason::BodyUnreadable,
            Self::Invalid(e) => Reason::of_parse(e),
            // A valid callback of another kind: its `type` is not this route's.
            Self::NotPresence(_) => Reason::UnsupportedType,
            // Shares its code with the body's `instanceId` check.
            Self::InvalidPathInstance => Reason::InvalidInstanceId,
            Self::InstanceMismatch => Reason::InstanceMismatch,
            Self::Unavailable(SinkError::Full) => Reason::SpoolFull,
            Self::Unavailable(_) => Reason::Unavailable,
        }
    }

    /// Stable code: the error body's `error` and the metric's `reason` label.
    pub fn code(&self) -> &'static str {
        self.reason().code()
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            // A known token or client that is not permitted here: 403, not
            // 401, because other credentials would not help the caller.
            Self::ClientForbidden | Self::InstanceForbidden | Self::TokenNotForInstance => {
                StatusCode::FORBIDDEN
            }
            Self::RateLimitedClient { .. }
            | Self::RateLimitedInstance { .. }
            | Self::BodyBudgetClient { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyBudgetExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnsupportedMediaType | Self::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::PayloadTooLarge { .. } | Self::DecompressionRatio { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyUnreadable(_)
            | Self::MalformedEncoding(_)
            | Self::Invalid(_)
            | Self::NotPresence(_)
            | Self::InvalidPathInstance
            | Self::InstanceMismatch => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// True when the body was read and failed validation: the rejections
    /// whose input is captured for replay when `rejected.topic` is set.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_) | Self::NotPresence(_) | Self::InstanceMismatch
        )
    }

    /// True when the request was an event we refused for what it carries
    /// (see [`Reason::is_event`]): counted in
    /// `presence_bridge_events_rejected_total`, else in
    /// `presence_bridge_http_requests_refused_total`.
    pub fn is_rejected_event(&self) -> bool {
        self.reason().is_event()
    }

    /// The offending field, when there is one (the error body's `field`).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(e) => e.field(),
            Self::NotPresence(_) => Some("type"),
            Self::InvalidPathInstance
            | Self::InstanceMismatch
            | Self::InstanceForbidden
            | Self::TokenNotForInstance => Some("instanceId"),
            _ => None,
        }
    }

    /// The message a client sees: precise for client errors, generic for ours.
    fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => "the event could not be accepted now; retry later".to_owned(),
            other => other.to_string(),
        }
    }
}

/// One rejection of every kind the handler can answer, for the API contract
/// test (`tests/openapi.rs`) that compares them with `deploy/openapi.yaml`.
/// Adding a [`Rejection`] or [`PresenceError`](crate::presence::PresenceError) variant breaks the build here
/// until it is listed.
pub fn catalogue() -> Vec<Rejection> {
    use crate::presence::PresenceError as P;
    let invalid = [
        P::Missing { field: "phone" },
        P::Empty { field: "phone" },
        P::WrongType {
            field: "phone",
            expected: "a string",
            got: "null",
        },
        P::UnsupportedType,
        P::InvalidPhone,
        P::InvalidStatus,
        P::InvalidLastSeen,
        P::LastSeenOutOfRange,
        P::InvalidInstanceId,
        P::UnknownType,
        P::InvalidMoment { field: "momment" },
        P::MomentOutOfRange { field: "momment" },
    ];
    for p in &invalid {
        match p {
            P::Missing { .. }
            | P::Empty { .. }
            | P::WrongType { .. }
            | P::UnsupportedType
            | P::InvalidPhone
            | P::InvalidStatus
            | P::InvalidLastSeen
            | P::LastSeenOutOfRange
            | P::InvalidInstanceId
            | P::UnknownType
            | P::InvalidMoment { .. }
            | P::MomentOutOfRange { .. } => {}
        }
    }
    let json_error = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
    let mut all = vec![
        Rejection::NotFound,
        Rejection::MethodNotAllowed,
        Rejection::Unauthorized,
        Rejection::ClientForbidden,
        Rejection::InstanceForbidden,
        Rejection::TokenNotForInstance,
        Rejection::RateLimitedClient { retry_after: 1 },
        Rejection::RateLimitedInstance { retry_after: 3 },
        Rejection::UnsupportedMediaType,
        Rejection::PayloadTooLarge { limit: 65536 },
        Rejection::UnsupportedEncoding,
        Rejection::MalformedEncoding("invalid gzip header".into()),
        Rejection::DecompressionRatio { ratio: 100 },
        Rejection::BodyBudgetClient { retry_after: 1 },
        Rejection::BodyBudgetExhausted { retry_after: 1 },
        Rejection::BodyTimeout,
        Rejection::BodyUnreadable("connection reset".into()),
        Rejection::Invalid(ParseError::Json(json_error)),
        Rejection::Invalid(ParseError::Empty),
        Rejection::Invalid(ParseError::NotAnObject { got: "an array" }),
        Rejection::NotPresence(CallbackKind::Received),
        Rejection::InvalidPathInstance,
        Rejection::InstanceMismatch,
        Rejection::Unavailable(SinkError::Full),
        Rejection::Unavailable(SinkError::Unavailable("stopping".into())),
    ];
    all.extend(invalid.into_iter().map(|p| Rejection::Invalid(p.into())));
    for r in &all {
        match r {
            Rejection::NotFound
            | Rejection::MethodNotAllowed
            | Rejection::Unauthorized
            | Rejection::ClientForbidden
            | Rejection::InstanceForbidden
            | Rejection::TokenNotForInstance
            | Rejection::RateLimitedClient { .. }
            | Rejection::RateLimitedInstance { .. }
            | Rejection::UnsupportedMediaType
            | Rejection::PayloadTooLarge { .. }
            | Rejection::UnsupportedEncoding
            | Rejection::MalformedEncoding(_)
            | Rejection::DecompressionRatio { .. }
            | Rejection::BodyBudgetClient { .. }
            | Rejection::BodyBudgetExhausted { .. }
            | Rejection::BodyTimeout
            | Rejection::BodyUnreadable(_)
            | Rejection::Invalid(
                ParseError::Json(_)
                | ParseError::Empty
                | ParseError::NotAnObject { .. }
                | ParseError::Invalid(_),
            )
            | Rejection::NotPresence(_)
            | Rejection::InvalidPathInstance
            | Rejection::InstanceMismatch
            | Rejection::Unavailable(SinkError::Full | SinkError::Unavailable(_)) => {}
        }
    }
    all
}

/// What became of a request.
pub type Outcome = Result<Uuid, Rejection>;

/// Decides the status, headers and body for an outcome.
pub fn respond(outcome: &Outcome) -> Response<Full<Bytes>> {
    match outcome {
        Ok(id) => {
            // The hot path: one allocation, no JSON tree, no formatting.
            const OPEN: &[u8] = br#"{"id":""#;
            const CLOSE: &[u8] = br#""}"#;
            let mut body =
                Vec::with_capacity(OPEN.len() + uuid::fmt::Hyphenated::LENGTH + CLOSE.len());
            body.extend_from_slice(OPEN);
            let mut hyphenated = [0u8; uuid::fmt::Hyphenated::LENGTH];
            body.extend_from_slice(id.hyphenated().encode_lower(&mut hyphenated).as_bytes());
            body.extend_from_slice(CLOSE);
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(rejection) => {
            let mut body =
                json!({ "error": rejection.code(), "message": rejection.public_message() });
            if let Some(field) = rejection.field() {
                body["field"] = field.into();
            }
            let mut resp = json_response(rejection.status(), body);
            let headers = resp.headers_mut();
            match rejection {
                Rejection::MethodNotAllowed => {
                    headers.insert(ALLOW, HeaderValue::from_static("POST"));
                }
                Rejection::Unauthorized => {
                    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                Rejection::Unavailable(_) => {
                    headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                }
                Rejection::RateLimitedClient { retry_after }
                | Rejection::RateLimitedInstance { retry_after }
                | Rejection::BodyBudgetClient { retry_after }
                | Rejection::BodyBudgetExhausted { retry_after } => {
                    headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after));
                }
                _ => {}
            }
            resp
        }
    }
}

/// A JSON response; also used by the admin listener.
pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[tokio::test]
    async fn an_accepted_event_is_answered_with_its_id() {
        use http_body_util::BodyExt;
        let id = uuid::Uuid::now_v7();
        let resp = respond(&Ok(id));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "id": id.hyphenated().to_string() })
        );
    }

    /// [`Reason::ALL`] and [`catalogue`] name the same codes, each code once;
    /// a parse error's code is the provider layer's own.
    #[test]
    fn reasons_are_the_catalogues_codes() {
        let all: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(all.len(), Reason::ALL.len(), "a code used twice");
        let answered: BTreeSet<&str> = catalogue().iter().map(Rejection::code).collect();
        assert_eq!(
            all, answered,
            "reasons never answered, or answered without a reason"
        );
        for r in catalogue() {
            if let Rejection::Invalid(e) = &r {
                assert_eq!(r.code(), e.code(), "{e:?}");
            }
        }
        assert_eq!(
            Reason::count(true) + Reason::count(false),
            Reason::ALL.len()
        );
    }
}
