//! `[admin]`: the listener of `/metrics`, `/livez` and `/readyz`, never the
//! webhook's port (checked with `[http]` by the loader).

use std::net::{Ipv4Addr, SocketAddr};

use serde::Serialize;

use super::values::Addr;
use super::ConfigError;

#[derive(Debug, Clone, Serialize)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

raw_section! {
    /// `[admin]` as read.
    pub struct RawAdmin {
        listen: Addr = Addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))),
    }
}

impl TryFrom<RawAdmin> for AdminSettings {
    type Error = ConfigError;

    fn try_from(raw: RawAdmin) -> Result<Self, ConfigError> {
        Ok(Self {
            listen: raw.listen.0,
        })
    }
}
