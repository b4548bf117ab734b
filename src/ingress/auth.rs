//! Webhook token check. Z-API cannot send custom headers, so besides
//! `Authorization: Bearer` and `X-Webhook-Token` the token may ride in the URL
//! as the `token` query parameter. Tokens are never logged.
//!
//! Two kinds of token: global ones (`auth.tokens`) open every instance;
//! tenant ones (`auth.instances`) open their own instance only, so one leaked
//! webhook URL opens one tenant. [`Auth::check`] finds whose token a request
//! presents, comparing it in constant time against every configured token (no
//! early exit; two per instance allow rotation); [`Auth::permits`] then
//! decides whether that grant may post for an instance, once the instance is
//! known (from the path before the body is read, else from the body).
//! `auth.allowed_instances`, when set, closes every other instance to every
//! token.

use std::borrow::Cow;
use std::collections::HashSet;

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use percent_encoding::percent_decode_str;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::reply::Rejection;
pub use crate::bounds::MAX_TOKEN_BYTES;
use crate::config::{AuthSettings, Secret};

pub const TOKEN_HEADER: &str = "x-webhook-token";
pub const TOKEN_QUERY: &str = "token";

/// Owner code of a global token; tenant `i` is `TENANT_BASE + i`, 0 is nobody.
const GLOBAL: u32 = 1;
const TENANT_BASE: u32 = 2;

/// Whose token a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Authentication is off (no token configured at all).
    Open,
    /// A global token.
    Global,
    /// The token of one tenant (index into the tenant list).
    Tenant(usize),
}

/// The accepted tokens and instances.
#[derive(Clone, Default)]
pub struct Auth {
    /// Every token with its owner code.
    tokens: Vec<(Secret, u32)>,
    /// Tenant index → instance id.
    tenants: Vec<String>,
    /// Empty: every instance allowed.
    allowed: HashSet<String>,
}

impl Auth {
    /// Global tokens only, every instance allowed.
    pub fn new(tokens: Vec<Secret>) -> Self {
        Self {
            tokens: tokens.into_iter().map(|t| (t, GLOBAL)).collect(),
            ..Self::default()
        }
    }

    pub fn from_settings(s: &AuthSettings) -> Self {
        let mut auth = Self::new(s.tokens.clone());
        for (i, (instance, secrets)) in s.instances.iter().enumerate() {
            let owner = TENANT_BASE + u32::try_from(i).unwrap_or(u32::MAX - TENANT_BASE);
            auth.tokens
                .extend(secrets.iter().map(|t| (t.clone(), owner)));
            auth.tenants.push(instance.clone());
        }
        auth.allowed = s.allowed_instances.iter().cloned().collect();
        auth
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whose token the request presents; 401 when none or an unknown one.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Grant, Rejection> {
        if !self.enabled() {
            return Ok(Grant::Open);
        }
        let candidate = presented(headers, query).ok_or(Rejection::Unauthorized)?;
        match self.owner(candidate.as_bytes()) {
            0 => Err(Rejection::Unauthorized),
            GLOBAL => Ok(Grant::Global),
            n => Ok(Grant::Tenant((n - TENANT_BASE) as usize)),
        }
    }

    /// True when auth is off or the request presents any accepted token.
    pub fn allows(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        self.check(headers, query).is_ok()
    }

    /// Whether `grant` may post for `instance`: 403 `instance_forbidden` when
    /// the allowlist excludes it, 403 `token_not_for_instance` when the token
    /// is another tenant's.
    pub fn permits(&self, grant: Grant, instance: &str) -> Result<(), Rejection> {
        if !self.allowed.is_empty() && !self.allowed.contains(instance) {
            return Err(Rejection::InstanceForbidden);
        }
        match grant {
            Grant::Open | Grant::Global => Ok(()),
            Grant::Tenant(i) if self.tenants.get(i).is_some_and(|t| t == instance) => Ok(()),
            Grant::Tenant(_) => Err(Rejection::TokenNotForInstance),
        }
    }

    fn owner(&self, candidate: &[u8]) -> u32 {
        // No early exit: every configured token is compared, and the owner is
        // picked without a branch on the comparison.
        let mut owner = 0u32;
        for (token, who) in &self.tokens {
            owner.conditional_assign(who, same_token(token.expose().as_bytes(), candidate));
        }
        owner
    }
}

/// Constant-time equality that hides the lengths too: both sides are padded
/// to [`MAX_TOKEN_BYTES`] and the lengths compared as numbers. A candidate
/// longer than that never matches (no configured token is).
fn same_token(token: &[u8], candidate: &[u8]) -> subtle::Choice {
    let mut a = [0u8; MAX_TOKEN_BYTES];
    let mut b = [0u8; MAX_TOKEN_BYTES];
    let (t, c) = (
        token.len().min(MAX_TOKEN_BYTES),
        candidate.len().min(MAX_TOKEN_BYTES),
    );
    a[..t].copy_from_slice(&token[..t]);
    b[..c].copy_from_slice(&candidate[..c]);
    a.ct_eq(&b) & (token.len() as u64).ct_eq(&(candidate.len() as u64))
}

/// The token the request presents: the Bearer header, else `X-Webhook-Token`,
/// else the `token` query parameter. Borrows unless percent-decoding changed it.
fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Cow::Borrowed(token.trim()));
    }
    if let Some(v) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(Cow::Borrowed(v.trim()));
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == TOKEN_QUERY)
        .and_then(|(_, v)| percent_decode_str(v).decode_utf8().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn tokens_match_only_whole_and_exact() {
        let t = b"0123456789abcdef-token";
        assert!(bool::from(same_token(t, t)));
        assert!(!bool::from(same_token(t, &t[..t.len() - 1])), "a prefix");
        assert!(
            !bool::from(same_token(t, b"0123456789abcdef-token!")),
            "longer"
        );
        assert!(!bool::from(same_token(t, b"0123456789abcdef-tokeN")));
        assert!(!bool::from(same_token(t, b"")));
        let long = [b'x'; MAX_TOKEN_BYTES + 10];
        let max = [b'x'; MAX_TOKEN_BYTES];
        assert!(
            !bool::from(same_token(&max, &long)),
            "over the maximum never matches"
        );
    }

    fn auth() -> Auth {
        let raw = crate::config::RawRoot {
            auth: crate::config::RawAuth {
                tokens: crate::config::values::OneOrMany(vec![
                    "old-token-0123456789".into(),
                    "new-token-0123456789".into(),
                ]),
                ..Default::default()
            },
            ..Default::default()
        };
        Auth::new(crate::config::Settings::try_from(raw).unwrap().auth.tokens)
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

    fn tenants() -> Auth {
        let s = crate::config::load(
            None,
            [
                ("PRESENCE_BRIDGE__AUTH__TOKENS", "global-token-0123456789"),
                (
                    "PRESENCE_BRIDGE__AUTH__INSTANCES",
                    "INST-A=a-old-token-0123456789,a-new-token-0123456789;INST-B=b-token-0123456789",
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .unwrap();
        Auth::from_settings(&s.auth)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn tenant_tokens_open_their_own_instance_only() {
        let a = tenants();
        let global = a.check(&bearer("global-token-0123456789"), None).unwrap();
        assert_eq!(global, Grant::Global);
        assert!(a.permits(global, "INST-A").is_ok());
        assert!(a.permits(global, "ANY-OTHER").is_ok());
        for t in ["a-old-token-0123456789", "a-new-token-0123456789"] {
            let g = a.check(&bearer(t), None).unwrap();
            assert!(matches!(g, Grant::Tenant(_)));
            assert!(a.permits(g, "INST-A").is_ok());
            assert!(matches!(
                a.permits(g, "INST-B"),
                Err(Rejection::TokenNotForInstance)
            ));
            // Instance ids are case-sensitive.
            assert!(a.permits(g, "inst-a").is_err());
        }
        let b = a.check(&bearer("b-token-0123456789"), None).unwrap();
        assert!(a.permits(b, "INST-B").is_ok());
        assert!(a.permits(b, "INST-A").is_err());
        assert!(matches!(
            a.check(&bearer("c-token-0123456789"), None),
            Err(Rejection::Unauthorized)
        ));
        assert!(matches!(
            a.check(&HeaderMap::new(), None),
            Err(Rejection::Unauthorized)
        ));
    }

    #[test]
    fn the_allowlist_closes_other_instances_to_every_token() {
        let mut a = tenants();
        a.allowed = ["INST-A".to_owned()].into_iter().collect();
        let g = a.check(&bearer("global-token-0123456789"), None).unwrap();
        assert!(a.permits(g, "INST-A").is_ok());
        assert!(matches!(
            a.permits(g, "INST-B"),
            Err(Rejection::InstanceForbidden)
        ));
        let b = a.check(&bearer("b-token-0123456789"), None).unwrap();
        assert!(matches!(
            a.permits(b, "INST-B"),
            Err(Rejection::InstanceForbidden)
        ));
        assert!(Auth::default().permits(Grant::Open, "X").is_ok());
    }
}
