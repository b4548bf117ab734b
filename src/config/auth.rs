//! `[auth]`: global tokens, tenant tokens per instance, and the instances
//! allowed to post. Tokens become [`Secret`]s here and are never printed.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::values::{dotted, OneOrMany};
use super::{invalid, ConfigError, Secret};
use crate::bounds::MAX_TOKEN_BYTES;

#[derive(Debug, Clone, Serialize)]
pub struct AuthSettings {
    /// Global tokens: valid for every (allowed) instance.
    pub tokens: Vec<Secret>,
    /// Tenant tokens by instance id: each valid for its own instance only.
    /// No token appears twice (neither under two instances nor also global).
    pub instances: BTreeMap<String, Vec<Secret>>,
    /// Empty: every instance may post; otherwise only these.
    pub allowed_instances: Vec<String>,
}

raw_section! {
    /// `[auth]` as read.
    pub struct RawAuth {
        tokens: OneOrMany<String> = OneOrMany::default(),
        instances: InstanceTokens = InstanceTokens::Table(HashMap::new()),
        allowed_instances: OneOrMany<String> = OneOrMany::default(),
    }
}

/// Tenant tokens: a table `{ "INSTANCE" = ["token", ...] }`, or one string
/// `INSTANCE=token,token;INSTANCE2=token` (for the environment, whose keys
/// the config crate lowercases and splits at dots).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InstanceTokens {
    Table(HashMap<String, TokenTree>),
    Inline(String),
}

/// An instance's tokens, or a nested table when the id had dots in it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TokenTree {
    Tokens(OneOrMany<String>),
    Nested(HashMap<String, TokenTree>),
}

impl InstanceTokens {
    /// Instance id → tokens; the error says what is wrong with the string form.
    pub fn into_map(self) -> Result<Vec<(String, Vec<String>)>, String> {
        fn walk(
            prefix: &str,
            map: HashMap<String, TokenTree>,
            out: &mut Vec<(String, Vec<String>)>,
        ) {
            for (k, v) in map {
                match v {
                    TokenTree::Tokens(t) => out.push((dotted(prefix, k), t.0)),
                    TokenTree::Nested(m) => walk(&dotted(prefix, k), m, out),
                }
            }
        }
        let mut out = Vec::new();
        match self {
            Self::Table(map) => walk("", map, &mut out),
            Self::Inline(s) => {
                for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
                    let (id, tokens) = entry.split_once('=').ok_or_else(|| {
                        "expected INSTANCE=token[,token...] entries separated by `;`".to_owned()
                    })?;
                    out.push((id.trim().to_owned(), OneOrMany::split(tokens)?.0));
                }
            }
        }
        out.sort();
        if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!("instance `{}` appears twice", w[0].0));
        }
        Ok(out)
    }
}

impl TryFrom<RawAuth> for AuthSettings {
    type Error = ConfigError;

    fn try_from(raw: RawAuth) -> Result<Self, ConfigError> {
        let tokens = raw
            .tokens
            .0
            .into_iter()
            .map(|t| token("auth.tokens", t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen: HashSet<String> = tokens.iter().map(|t| t.expose().to_owned()).collect();
        let mut instances = BTreeMap::new();
        for (id, list) in raw
            .instances
            .into_map()
            .map_err(|r| invalid("auth.instances", r))?
        {
            let key = format!("auth.instances.{id}");
            instance_id(&key, &id)?;
            if list.is_empty() {
                return Err(invalid(&key, "needs at least one token"));
            }
            let mut secrets = Vec::with_capacity(list.len());
            for t in list {
                let secret = token(&key, t)?;
                if !seen.insert(secret.expose().to_owned()) {
                    return Err(invalid(
                        &key,
                        "a token belongs to one instance only and is not also in auth.tokens",
                    ));
                }
                secrets.push(secret);
            }
            instances.insert(id, secrets);
        }
        let allowed_instances = raw.allowed_instances.0;
        for id in &allowed_instances {
            instance_id("auth.allowed_instances", id)?;
        }
        Ok(Self {
            tokens,
            instances,
            allowed_instances,
        })
    }
}

fn token(key: &str, t: String) -> Result<Secret, ConfigError> {
    let max = MAX_TOKEN_BYTES;
    if t.len() < 16 || t.len() > max || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            key,
            format!("each token must be 16 to {max} visible ASCII characters (no spaces)"),
        ));
    }
    Ok(Secret(t))
}

fn instance_id(key: &str, id: &str) -> Result<(), ConfigError> {
    crate::presence::InstanceId::parse(id)
        .map(drop)
        .map_err(|_| {
            invalid(
                key,
                format!("`{id}` is not an instance id (1 to 128 of A-Z a-z 0-9 . _ -)"),
            )
        })
}
