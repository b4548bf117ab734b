//! The shapes values are read in: positive durations (`250ms`, `10s`), byte
//! sizes (`1048576`, `512KiB`, `64MiB`), socket addresses, networks (a CIDR or
//! one address), and lists given as a list or as one comma-separated string.
//! Each parses in its `Deserialize`, so a bad value fails where it is read;
//! its reason carries `MARK`, and the loader reports it under the key the
//! `config` crate names (`http.body_read_timeout: ...`).
//!
//! Also the checks shared by several sections (positive counts, topic names)
//! and the human-readable serialization of durations.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::{invalid, ConfigError};

/// Starts the reason of a value's own error, telling it apart from serde's
/// structural ones (unknown key, wrong type), which name a variable instead.
pub(super) const MARK: &str = "\u{1}invalid value\u{1}";

/// A value read from one string; the error is the reason alone, the key is
/// added by the loader.
pub trait Setting: Sized {
    fn parse(v: &str) -> Result<Self, String>;
}

/// `Deserialize` through [`Setting::parse`] for each type given.
macro_rules! deserialize_setting {
    ($($t:ty),* $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::config::values::SettingVisitor::new())
            }
        }
    )*};
}
pub(super) use deserialize_setting;

pub(super) struct SettingVisitor<T>(PhantomData<T>);

impl<T> SettingVisitor<T> {
    pub(super) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: Setting> Visitor<'_> for SettingVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::parse(v).map_err(reject)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

fn reject<E: de::Error>(reason: String) -> E {
    E::custom(format_args!("{MARK}{reason}"))
}

/// A duration greater than zero, in humantime's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub(super) const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub(super) const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
}

impl Setting for Dur {
    fn parse(v: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(v)
            .map_err(|e| format!("`{v}` is not a duration such as 250ms or 10s ({e})"))?;
        if d.is_zero() {
            return Err("must be greater than zero".to_owned());
        }
        Ok(Self(d))
    }
}

/// A positive number of bytes: `1048576`, `512KiB`, `64MiB`, `1GiB` (also
/// KB/MB/GB as powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl Setting for ByteSize {
    fn parse(v: &str) -> Result<Self, String> {
        let v = v.trim();
        let bad = || format!("`{v}` is not a size such as 1073741824, 512MiB or 1GiB");
        let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        let (num, unit) = v.split_at(split);
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            _ => return Err(bad()),
        };
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .filter(|n| *n > 0)
            .map(Self)
            .ok_or_else(bad)
    }
}

/// `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr(pub SocketAddr);

impl Setting for Addr {
    fn parse(v: &str) -> Result<Self, String> {
        v.parse()
            .map(Self)
            .map_err(|_| format!("`{v}` is not a socket address (IP:PORT, e.g. 0.0.0.0:8080)"))
    }
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address; host bits set
/// after the prefix are an error, as they are usually a typo for a narrower net.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub ipnet::IpNet);

impl Setting for Network {
    fn parse(v: &str) -> Result<Self, String> {
        let net = match v.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => v
                .parse::<std::net::IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| format!("`{v}` is not a CIDR such as 10.0.0.0/8 or an IP address"))?,
        };
        if net.trunc() != net {
            return Err(format!(
                "`{v}` has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl Setting for String {
    fn parse(v: &str) -> Result<Self, String> {
        Ok(v.to_owned())
    }
}

deserialize_setting!(Dur, ByteSize, Addr, Network);

/// A list, or one comma-separated string (handy in environment variables).
/// Items are trimmed, empty ones dropped, then each is read as a `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Setting> OneOrMany<T> {
    /// The items of one comma-separated string.
    pub(super) fn split(s: &str) -> Result<Self, String> {
        Self::items(s.split(','))
    }

    fn items<'a>(items: impl Iterator<Item = &'a str>) -> Result<Self, String> {
        items
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(T::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl<'de, T: Setting> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);

        impl<'de, T: Setting> Visitor<'de> for ListVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list or a comma-separated string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                OneOrMany::split(v).map_err(reject)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    all.push(item);
                }
                OneOrMany::items(all.iter().map(String::as_str)).map_err(reject)
            }
        }

        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// A count that must be at least one.
pub(super) fn nonzero(key: &str, v: u64) -> Result<NonZeroUsize, ConfigError> {
    usize::try_from(v)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| invalid(key, "must be a positive integer"))
}

/// `prefix.key`, or `key` at the top: maps arrive nested when their keys
/// contain dots (`security.protocol` through the environment).
pub(super) fn dotted(prefix: &str, key: String) -> String {
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// Kafka's rules for a topic name.
pub(super) fn topic_name(key: &str, t: &str) -> Result<(), ConfigError> {
    let ok = (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{t}` is not a valid Kafka topic name"),
        ))
    }
}

/// Durations as `check-config` prints them (`5s`, `1m 30s`).
pub(super) mod human {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// A duration that may be zero (`0`, `0s`: the feature is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurOrOff(pub Duration);

impl Setting for DurOrOff {
    fn parse(v: &str) -> Result<Self, String> {
        humantime::parse_duration(v.trim())
            .map(Self)
            .map_err(|e| format!("`{v}` is not a duration such as 20s, or 0 for off ({e})"))
    }
}

deserialize_setting!(DurOrOff);
