//! Webhook token check. Z-API cannot send custom headers, so besides
//! `Authorization: Bearer` and `X-Webhook-Token` the token may ride in the URL
//! as the `token` query parameter. Compared in constant time against every
//! configured token (two at once allow rotation). Tokens are never logged.

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use percent_encoding::percent_decode_str;
use subtle::ConstantTimeEq;

use crate::config::Secret;

pub const TOKEN_HEADER: &str = "x-webhook-token";
pub const TOKEN_QUERY: &str = "token";

/// The accepted tokens; empty means authentication is off.
#[derive(Clone)]
pub struct Auth {
    tokens: Vec<Secret>,
}

impl Auth {
    pub fn new(tokens: Vec<Secret>) -> Self {
        Self { tokens }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// True when auth is off or the request presents an accepted token.
    pub fn allows(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        if !self.enabled() {
            return true;
        }
        match presented(headers, query) {
            Some(candidate) => self.matches(candidate.as_bytes()),
            None => false,
        }
    }

    fn matches(&self, candidate: &[u8]) -> bool {
        // No early exit: every configured token is compared.
        self.tokens.iter().fold(0u8, |acc, t| {
            acc | t.expose().as_bytes().ct_eq(candidate).unwrap_u8()
        }) == 1
    }
}

/// The token the request presents: the Bearer header, else `X-Webhook-Token`,
/// else the `token` query parameter.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if let Some(v) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == TOKEN_QUERY)
        .and_then(|(_, v)| percent_decode_str(v).decode_utf8().ok())
        .map(|v| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn auth() -> Auth {
        let raw = crate::config::raw::Root {
            auth: crate::config::raw::Auth {
                tokens: crate::config::raw::StringOrList::List(vec![
                    "old-token-0123456789".into(),
                    "new-token-0123456789".into(),
                ]),
            },
            ..Default::default()
        };
        Auth::new(crate::config::Settings::from_raw(raw).unwrap().auth.tokens)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn every_carrier_and_both_rotation_tokens() {
        let a = auth();
        assert!(a.allows(
            &headers(&[("authorization", "Bearer old-token-0123456789")]),
            None
        ));
        assert!(a.allows(
            &headers(&[("authorization", "bearer new-token-0123456789")]),
            None
        ));
        assert!(a.allows(
            &headers(&[("x-webhook-token", "new-token-0123456789")]),
            None
        ));
        assert!(a.allows(&HeaderMap::new(), Some("a=1&token=old-token-0123456789")));
        assert!(a.allows(&HeaderMap::new(), Some("token=new%2Dtoken-0123456789")));
    }

    #[test]
    fn wrong_or_missing_tokens_fail() {
        let a = auth();
        assert!(!a.allows(&HeaderMap::new(), None));
        assert!(!a.allows(&HeaderMap::new(), Some("token=")));
        assert!(!a.allows(&HeaderMap::new(), Some("token=old-token-012345678")));
        assert!(!a.allows(
            &headers(&[("authorization", "Basic old-token-0123456789")]),
            None
        ));
        // A wrong header is not rescued by a right query parameter.
        assert!(!a.allows(
            &headers(&[("authorization", "Bearer nope-nope-nope-nope")]),
            Some("token=old-token-0123456789")
        ));
    }

    #[test]
    fn no_tokens_means_open() {
        assert!(Auth::new(Vec::new()).allows(&HeaderMap::new(), None));
    }
}
