//! [`Connection`]: a `ConnectedCallback` or a `DisconnectedCallback`,
//! validated. Instance-level events: keyed by the instance id, not by a chat.
//! The connected callback's `phone` is the instance's own number (the
//! documented example holds the placeholder `"número"`), so it is not
//! validated: it travels in the payload only.

use std::fmt;

use crate::member::{optional_bool, required_str, Members};
use crate::timestamp::normalize_moment;
use crate::{InstanceId, Millis, Payload, PresenceError};

/// An instance connected to or disconnected from WhatsApp.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    pub instance_id: InstanceId,
    /// The callback's flag: `connected` of a `ConnectedCallback`,
    /// `disconnected` of a `DisconnectedCallback`. None when absent or `null`.
    pub flag: Option<bool>,
    /// `momment` (or `moment`), Unix milliseconds (seconds in the provider's
    /// disconnected example, normalized by magnitude).
    pub moment_ms: Option<i64>,
    pub payload: Payload,
}

impl Connection {
    /// `flag_field`: `connected` or `disconnected`.
    pub(crate) fn build(
        m: &Members<'_>,
        flag_field: &'static str,
        payload: Payload,
    ) -> Result<Self, PresenceError> {
        let instance_id = InstanceId::parse(required_str(m.instance_id.as_ref(), "instanceId")?)?;
        let flag = match flag_field {
            "connected" => m.connected.as_ref(),
            _ => m.disconnected.as_ref(),
        };
        let flag = optional_bool(flag, flag_field)?;
        let moment_ms = normalize_moment(m.momment.as_ref(), m.moment.as_ref())?;
        Ok(Self {
            instance_id,
            flag,
            moment_ms,
            payload,
        })
    }

    /// `moment_ms` as RFC 3339 UTC with milliseconds.
    pub fn moment(&self) -> Option<String> {
        self.moment_ms.map(|ms| Millis(ms).to_string())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("instance_id", &self.instance_id.as_str())
            .field("flag", &self.flag)
            .field("moment_ms", &self.moment_ms)
            .field("payload", &self.payload)
            .finish()
    }
}
