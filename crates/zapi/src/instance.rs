//! [`InstanceId`]: the Z-API instance that sent a callback (`instanceId`),
//! 1 to [`MAX_INSTANCE_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`. It is safe
//! to log and to put in a URL path, and selects the tenant's token and topic.

use std::fmt;

use crate::PresenceError;

/// Longest accepted `instanceId`.
pub const MAX_INSTANCE_ID_LEN: usize = 128;

/// A Z-API instance id, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn parse(raw: &str) -> Result<Self, PresenceError> {
        let ok = (1..=MAX_INSTANCE_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(PresenceError::InvalidInstanceId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_by_table() {
        let longest = "a".repeat(MAX_INSTANCE_ID_LEN);
        for good in ["3C4F00AA", "instance.id", "a_b-c.D9", "x", longest.as_str()] {
            let id = InstanceId::parse(good).unwrap();
            assert_eq!(id.as_str(), good);
            assert_eq!(id.to_string(), good);
        }
        let too_long = "a".repeat(MAX_INSTANCE_ID_LEN + 1);
        for bad in ["", "a/b", "a b", "é", "a%2F", too_long.as_str()] {
            assert_eq!(
                InstanceId::parse(bad),
                Err(PresenceError::InvalidInstanceId),
                "{bad:?}"
            );
        }
    }
}
