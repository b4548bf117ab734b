//! The request body: reserving its bytes from the memory budget, reading it
//! under the size limit and the read timeout, and reading and throwing away
//! the body of a request answered without it ([`Discard`]), so the answer
//! reaches a client still sending (see the [module doc](super)). Also the
//! header checks about the body (Content-Type, Content-Length, `Expect`).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Version};

use super::budget::{self, BodyPermit, Exhausted};
use super::reply::Rejection;
use super::Webhook;
use crate::sink::Sink;

/// Longest the handler spends reading and throwing away the body of a request
/// it answers without needing the body (the body read timeout, if shorter).
/// A client already sending a small body finishes well within it.
pub const DISCARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The most body bytes the handler reads and throws away for a request it
/// answers without needing the body (`http.max_body_bytes` if larger): enough
/// for a body somewhat over the limit to be drained so its 413 arrives.
pub const DISCARD_MAX_BYTES: u64 = 1024 * 1024;

/// The default of `http.pressure_body_read_timeout`.
pub const DEFAULT_PRESSURE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a request's body stands when the handler has decided its answer.
pub(super) enum RequestBody {
    /// Not read to its end: the request was answered from its head alone
    /// (`read` 0), or its body turned out too large after `read` bytes.
    Unread { body: Incoming, read: u64 },
    /// Read to its end.
    Read,
    /// Partly read, then given up (too slow, broken).
    Abandoned,
}

/// What became of the body of a request answered without reading it (the
/// `result` label of `presence_bridge_http_unread_bodies_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Read to its end and thrown away: the answer goes out normally.
    Discarded,
    /// Declared, or found while reading, larger than [`DISCARD_MAX_BYTES`]
    /// (or `http.max_body_bytes` if larger).
    TooLarge,
    /// Not complete within [`DISCARD_TIMEOUT`].
    Timeout,
    /// The client asked for `100 Continue` (HTTP/1.1): it has not sent the
    /// body and will not, once it has the answer.
    NotSent,
    /// The body stream failed (client reset, protocol error).
    Error,
}

impl Discard {
    pub const ALL: [Self; 5] = [
        Self::Discarded,
        Self::TooLarge,
        Self::Timeout,
        Self::NotSent,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discarded => "discarded",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::NotSent => "not_sent",
            Self::Error => "error",
        }
    }
}

impl<S: Sink> Webhook<S> {
    /// Reserves the memory budget for the body about to be read: its exact
    /// size when known (`Content-Length`), else the route's `limit`.
    /// Nothing for a body known to be empty.
    pub(super) async fn reserve(
        &self,
        client: Option<IpAddr>,
        body: &RequestBody,
        limit: usize,
    ) -> Result<Option<BodyPermit>, Rejection> {
        let RequestBody::Unread { body, .. } = body else {
            return Ok(None);
        };
        let limit = limit as u64;
        let bytes = body.size_hint().exact().unwrap_or(limit).min(limit);
        if bytes == 0 {
            return Ok(None);
        }
        match self.budget.reserve(client, bytes).await {
            Ok(permit) => Ok(Some(permit)),
            Err(Exhausted::Client) => Err(Rejection::BodyBudgetClient {
                retry_after: budget::BUDGET_RETRY_AFTER_SECS,
            }),
            Err(Exhausted::Global) => Err(Rejection::BodyBudgetExhausted {
                retry_after: budget::BUDGET_RETRY_AFTER_SECS,
            }),
        }
    }

    /// Reads the whole body under the size `limit` and the read timeout. Leaves
    /// `body` [`RequestBody::Read`] if it was read to its end, still
    /// [`RequestBody::Unread`] if it is too large (the rest may be discarded),
    /// else [`RequestBody::Abandoned`].
    pub(super) async fn read_body(
        &self,
        body: &mut RequestBody,
        limit: usize,
    ) -> Result<Bytes, Rejection> {
        let RequestBody::Unread {
            body: incoming,
            read,
        } = body
        else {
            return Err(Rejection::BodyUnreadable(
                "the body was already read".into(),
            ));
        };
        let timeout = if self.budget.under_pressure() {
            self.pressure_read_timeout.min(self.limits.read_timeout)
        } else {
            self.limits.read_timeout
        };
        let collected =
            tokio::time::timeout(timeout, Limited::new(&mut *incoming, limit).collect()).await;
        match collected {
            Ok(Ok(c)) => {
                *body = RequestBody::Read;
                Ok(c.to_bytes())
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                *read = limit as u64;
                Err(Rejection::PayloadTooLarge { limit })
            }
            Ok(Err(e)) => {
                *body = RequestBody::Abandoned;
                Err(Rejection::BodyUnreadable(e.to_string()))
            }
            Err(_) => {
                *body = RequestBody::Abandoned;
                Err(Rejection::BodyTimeout)
            }
        }
    }

    /// The most body bytes (already read included) [`Self::discard`] takes.
    pub(super) fn discard_limit(&self) -> u64 {
        DISCARD_MAX_BYTES.max(self.limits.max_bytes as u64)
    }

    /// Reads and throws away the body of a request answered without it, so
    /// the answer reaches a client that is still sending (see the module doc).
    /// Bounded by [`Self::discard_limit`] (counting the `read` bytes already
    /// taken) and [`DISCARD_TIMEOUT`]; holds no more than one frame in memory.
    pub(super) async fn discard(&self, req: &Parts, mut body: Incoming, read: u64) -> Discard {
        let limit = self.discard_limit();
        if declared_length(&req.headers).is_some_and(|len| len > limit) {
            return Discard::TooLarge;
        }
        // Over HTTP/1.1 the first read would send `100 Continue`, asking for
        // a body nobody wants; HTTP/2 has no such handshake here.
        if req.version < Version::HTTP_2 && expects_continue(&req.headers) {
            return Discard::NotSent;
        }
        let bound = DISCARD_TIMEOUT.min(self.limits.read_timeout);
        let drain = async {
            let mut seen = read;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            seen += data.len() as u64;
                            if seen > limit {
                                return Discard::TooLarge;
                            }
                        }
                    }
                    Err(_) => return Discard::Error,
                }
            }
            Discard::Discarded
        };
        tokio::time::timeout(bound, drain)
            .await
            .unwrap_or(Discard::Timeout)
    }
}

/// `application/json`, or any `application/*+json`, with optional parameters.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = value.split(';').next().unwrap_or_default().trim();
    // Case-insensitive without a lowercase copy (one allocation per request).
    let has = |prefix: &str, suffix: &str| {
        media.len() >= prefix.len() + suffix.len()
            && media.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            && media.as_bytes()[media.len() - suffix.len()..]
                .eq_ignore_ascii_case(suffix.as_bytes())
    };
    media.eq_ignore_ascii_case("application/json") || has("application/", "+json")
}

/// `Expect: 100-continue` (the only expectation HTTP defines).
pub(super) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn json_media_types() {
        for (ct, want) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/cloudevents+json", true),
            ("APPLICATION/CloudEvents+JSON ; charset=utf-8", true),
            ("  application/json  ", true),
            ("application/jsonx", false),
            ("application/json+", false),
            ("text/+json", false),
            ("application+json", false),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            assert_eq!(is_json(&h), want, "{ct}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn expect_continue_is_recognised_in_any_case() {
        for (value, want) in [
            ("100-continue", true),
            ("100-Continue", true),
            (" 100-continue ", true),
            ("something-else", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(EXPECT, HeaderValue::from_str(value).unwrap());
            assert_eq!(expects_continue(&h), want, "{value}");
        }
        assert!(!expects_continue(&HeaderMap::new()));
    }
}
