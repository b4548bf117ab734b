//! Who is calling: the client address of a request and the client allowlist.
//!
//! The client is the direct TCP peer ([`crate::server::RequestMeta::peer`]), unless that
//! peer is a trusted proxy (`access.trusted_proxies`): then `X-Forwarded-For`
//! is walked from the right, skipping trusted proxies, and the first address
//! that is not one is the client. If every listed address is trusted, the
//! leftmost is the client. A malformed entry stops the walk and the last
//! trusted hop reached (the one that wrote the bad entry) counts as the
//! client, so a broken header can never make a request look as if it came
//! from anywhere but a trusted hop. Headers from an untrusted peer are ignored
//! altogether, and the `Forwarded` header (RFC 7239) is not read.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) count as their IPv4 form.
//! Never allocates: the header is walked in place.

use std::net::{IpAddr, SocketAddr};

use hyper::header::HeaderName;
use hyper::HeaderMap;
use ipnet::IpNet;

use crate::config::AccessSettings;

/// The header a trusted proxy appends the address it saw to.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Addresses walked at most in `X-Forwarded-For`; beyond that the last
/// trusted hop counts as the client.
pub const MAX_HOPS: usize = 32;

/// Client allowlist and trusted proxies. The default allows everyone and
/// trusts no proxy.
#[derive(Debug, Clone, Default)]
pub struct Access {
    allowed_clients: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
}

impl Access {
    pub fn new(s: &AccessSettings) -> Self {
        Self {
            allowed_clients: s.allowed_clients.clone(),
            trusted_proxies: s.trusted_proxies.clone(),
        }
    }

    /// The client address of a request whose direct peer is `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer.to_canonical(), headers, &self.trusted_proxies)
    }

    /// True when the allowlist is empty or holds `client`. An unknown client
    /// is allowed only by an empty list.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        if self.allowed_clients.is_empty() {
            return true;
        }
        client.is_some_and(|ip| within(&self.allowed_clients, ip))
    }
}

fn within(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The right-to-left `X-Forwarded-For` walk described at the top.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !within(trusted, peer) {
        return peer;
    }
    let mut last_trusted = peer;
    let mut hops = 0;
    // Several header lines form one list, in order.
    for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            return last_trusted;
        };
        for entry in line.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                // `a, , b` or a trailing comma: tolerated, nothing to learn.
                continue;
            }
            hops += 1;
            if hops > MAX_HOPS {
                return last_trusted;
            }
            let Some(ip) = parse_entry(entry) else {
                return last_trusted;
            };
            if !within(trusted, ip) {
                return ip;
            }
            last_trusted = ip;
        }
    }
    last_trusted
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, and the
/// forms with a port some add (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(&X_FORWARDED_FOR, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn xff_walk_by_table() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let cases: &[(&str, &[&str], &str)] = &[
            // Untrusted peer: its headers mean nothing.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // Trusted peer, no header: the peer.
            ("10.0.0.1", &[], "10.0.0.1"),
            // One proxy.
            ("10.0.0.1", &["198.51.100.1"], "198.51.100.1"),
            // Client-supplied garbage on the left is skipped: the first
            // untrusted from the right wins.
            (
                "10.0.0.1",
                &["1.2.3.4, 198.51.100.1, 10.0.0.2"],
                "198.51.100.1",
            ),
            // Several header lines are one list.
            (
                "10.0.0.1",
                &["1.2.3.4", "198.51.100.1, 10.0.0.2"],
                "198.51.100.1",
            ),
            // All trusted: the leftmost.
            ("10.0.0.1", &["10.1.1.1, 10.0.0.2"], "10.1.1.1"),
            // Malformed right after the peer: the peer.
            ("10.0.0.1", &["198.51.100.1, not-an-ip"], "10.0.0.1"),
            // Malformed behind a trusted hop: that hop.
            ("10.0.0.1", &["198.51.100.1, bogus, 10.0.0.7"], "10.0.0.7"),
            // Ports and brackets some proxies add; empty entries.
            ("10.0.0.1", &["198.51.100.1:4711"], "198.51.100.1"),
            ("10.0.0.1", &["[2001:db8::1]:443"], "2001:db8::1"),
            ("10.0.0.1", &["198.51.100.1, , "], "198.51.100.1"),
            // IPv6 proxies and IPv4-mapped entries.
            ("2001:db8:ffff::1", &["::ffff:198.51.100.1"], "198.51.100.1"),
            (
                "10.0.0.1",
                &["::ffff:10.0.0.3, 2001:db8:ffff::2"],
                "10.0.0.3",
            ),
        ];
        for (peer, lines, want) in cases {
            let got = client_address(ip(peer), &xff(lines), &trusted);
            assert_eq!(got, ip(want), "peer {peer}, XFF {lines:?}");
        }
    }

    #[test]
    fn the_walk_is_bounded() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut list = vec!["198.51.100.1".to_owned()];
        list.extend((0..MAX_HOPS + 5).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1)));
        let got = client_address(ip("10.9.9.9"), &xff(&[&list.join(",")]), &trusted);
        assert!(trusted[0].contains(&got), "a trusted hop, got {got}");
    }

    #[test]
    fn allowlist() {
        let open = Access::default();
        assert!(open.allows(None));
        assert!(open.allows(Some(ip("198.51.100.1"))));
        let a = Access {
            allowed_clients: nets(&["198.51.100.0/24", "2001:db8::/32"]),
            trusted_proxies: Vec::new(),
        };
        assert!(a.allows(Some(ip("198.51.100.77"))));
        assert!(a.allows(Some(ip("2001:db8::5"))));
        assert!(!a.allows(Some(ip("198.51.101.1"))));
        assert!(!a.allows(None));
        // A mapped peer counts as its IPv4 form.
        assert_eq!(
            a.client(ip("::ffff:198.51.100.77"), &HeaderMap::new()),
            ip("198.51.100.77")
        );
    }
}
