//! `[access]`: the client networks allowed to call the webhook, and the proxies
//! whose `X-Forwarded-For` is believed. Each entry is a CIDR or one address.

use serde::Serialize;

use super::values::{Network, OneOrMany};
use super::ConfigError;

#[derive(Debug, Clone, Serialize)]
pub struct AccessSettings {
    /// Client networks allowed to call the webhook; empty: everyone.
    pub allowed_clients: Vec<ipnet::IpNet>,
    /// Direct peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

raw_section! {
    /// `[access]` as read.
    pub struct RawAccess {
        allowed_clients: OneOrMany<Network> = OneOrMany::default(),
        trusted_proxies: OneOrMany<Network> = OneOrMany::default(),
    }
}

impl TryFrom<RawAccess> for AccessSettings {
    type Error = ConfigError;

    fn try_from(raw: RawAccess) -> Result<Self, ConfigError> {
        let nets = |list: OneOrMany<Network>| list.0.into_iter().map(|n| n.0).collect();
        Ok(Self {
            allowed_clients: nets(raw.allowed_clients),
            trusted_proxies: nets(raw.trusted_proxies),
        })
    }
}
