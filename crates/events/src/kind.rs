//! The kinds of event the bridge writes: one CloudEvents type each, and the
//! number the spool stores with every record so the publisher labels a
//! record by what it is, never by the topic it happens to go to.

use crate::{
    connected, delivery, disconnected, expired, message_status, received, rejected, state, v1,
};
use zapi::CallbackKind;

/// What a record holds. The codes are stored in spool segments: never reuse
/// or renumber one (0 is "not stored", the spool's version-1 records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A presence callback ([`v1::TYPE`]).
    Presence,
    /// A captured rejected request ([`rejected::TYPE`]).
    Rejected,
    /// A received message or notification ([`received::TYPE`]).
    Received,
    /// A sent message handed to WhatsApp ([`delivery::TYPE`]).
    Delivery,
    /// A message status change ([`message_status::TYPE`]).
    MessageStatus,
    /// An instance connected ([`connected::TYPE`]).
    Connected,
    /// An instance disconnected ([`disconnected::TYPE`]).
    Disconnected,
    /// A contact's latest presence, for the compacted topic ([`state::TYPE`]).
    PresenceState,
    /// A typing state that expired ([`expired::TYPE`]).
    PresenceExpired,
}

impl EventKind {
    pub const ALL: [Self; 9] = [
        Self::Presence,
        Self::Rejected,
        Self::Received,
        Self::Delivery,
        Self::MessageStatus,
        Self::Connected,
        Self::Disconnected,
        Self::PresenceState,
        Self::PresenceExpired,
    ];

    /// The number stored with the record.
    pub const fn code(self) -> u16 {
        match self {
            Self::Presence => 1,
            Self::Rejected => 2,
            Self::Received => 3,
            Self::Delivery => 4,
            Self::MessageStatus => 5,
            Self::Connected => 6,
            Self::Disconnected => 7,
            Self::PresenceState => 8,
            Self::PresenceExpired => 9,
        }
    }

    /// The kind a stored number names; `None` for 0 (not stored) and for
    /// numbers of a newer bridge.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The kind of an encoded envelope, from its `type` (for records that
    /// carry no stored kind: version-1 spool records, dead letters).
    pub fn of_value(value: &[u8]) -> Option<Self> {
        let ce_type = crate::ce_type_of(value)?;
        Self::ALL.into_iter().find(|k| k.ce_type() == ce_type)
    }

    /// The CloudEvents `type` of the kind's current version.
    pub const fn ce_type(self) -> &'static str {
        match self {
            Self::Presence => v1::TYPE,
            Self::Rejected => rejected::TYPE,
            Self::Received => received::TYPE,
            Self::Delivery => delivery::TYPE,
            Self::MessageStatus => message_status::TYPE,
            Self::Connected => connected::TYPE,
            Self::Disconnected => disconnected::TYPE,
            Self::PresenceState => state::TYPE,
            Self::PresenceExpired => expired::TYPE,
        }
    }

    /// The kind of a callback's event.
    pub const fn of_callback(kind: CallbackKind) -> Self {
        match kind {
            CallbackKind::Presence => Self::Presence,
            CallbackKind::Received => Self::Received,
            CallbackKind::Delivery => Self::Delivery,
            CallbackKind::MessageStatus => Self::MessageStatus,
            CallbackKind::Connected => Self::Connected,
            CallbackKind::Disconnected => Self::Disconnected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_stable_and_round_trip() {
        // Stored in spool segments: these numbers never change.
        let stored = [
            (EventKind::Presence, 1),
            (EventKind::Rejected, 2),
            (EventKind::Received, 3),
            (EventKind::Delivery, 4),
            (EventKind::MessageStatus, 5),
            (EventKind::Connected, 6),
            (EventKind::Disconnected, 7),
            (EventKind::PresenceState, 8),
            (EventKind::PresenceExpired, 9),
        ];
        for (kind, code) in stored {
            assert_eq!(kind.code(), code, "{kind:?}");
        }
        let types: std::collections::HashSet<_> =
            EventKind::ALL.iter().map(|k| k.ce_type()).collect();
        assert_eq!(
            types.len(),
            EventKind::ALL.len(),
            "a CloudEvents type used twice"
        );
        for c in CallbackKind::ALL {
            let k = EventKind::of_callback(c);
            let value = format!(r#"{{"type":"{}","id":"x"}}"#, k.ce_type());
            assert_eq!(EventKind::of_value(value.as_bytes()), Some(k), "{c:?}");
        }
        for k in EventKind::ALL {
            assert_ne!(k.code(), 0, "0 means not stored");
            assert_eq!(EventKind::from_code(k.code()), Some(k));
        }
        assert_eq!(EventKind::from_code(0), None);
        assert_eq!(EventKind::from_code(999), None);
        assert_ne!(EventKind::Presence.ce_type(), EventKind::Rejected.ce_type());
        let presence = format!(r#"{{"type":"{}","id":"x"}}"#, v1::TYPE);
        assert_eq!(
            EventKind::of_value(presence.as_bytes()),
            Some(EventKind::Presence)
        );
        let rejected = format!(r#"{{"type":"{}"}}"#, rejected::TYPE);
        assert_eq!(
            EventKind::of_value(rejected.as_bytes()),
            Some(EventKind::Rejected)
        );
        assert_eq!(EventKind::of_value(br#"{"type":"com.example"}"#), None);
    }
}
