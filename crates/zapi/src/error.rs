//! Why a callback was rejected: [`PresenceError`] (a field failed validation)
//! and [`ParseError`] (the body as a whole: not JSON, empty, not an object, or
//! a field error).
//!
//! Each error has a stable `code` (the HTTP error body's `code` and the
//! `reason` label of the rejection metrics, a closed set) and names the JSON
//! field it is about. The messages are part of the HTTP API: change them only
//! with the OpenAPI document and the golden tests.

/// Why a callback was rejected. Each variant has a stable [`code`](Self::code)
/// used in HTTP error bodies and in the `reason` label of metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("field `{field}` is required")]
    Missing { field: &'static str },
    /// Present but empty or only whitespace: the same code as [`Self::Missing`].
    #[error("field `{field}` is empty; it is required")]
    Empty { field: &'static str },
    #[error("field `{field}` must be {expected}, got {got}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        /// The JSON type that was sent ([`Field::kind`](crate::Field::kind)).
        got: &'static str,
    },
    #[error("field `type` must be `PresenceChatCallback`")]
    UnsupportedType,
    #[error(
        "field `phone` is not a phone number (8 to 15 digits) nor a WhatsApp group or channel id"
    )]
    InvalidPhone,
    #[error("field `status` must be one of UNAVAILABLE, AVAILABLE, COMPOSING, PAUSED, RECORDING (or up to 32 letters and underscores)")]
    InvalidStatus,
    #[error(
        "field `lastSeen` must be null, an integer of epoch seconds or milliseconds, or an RFC 3339 timestamp"
    )]
    InvalidLastSeen,
    #[error("field `lastSeen` is out of range: accepted are 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, as epoch seconds 0 to 99999999999 or epoch milliseconds 100000000000 to 253402300799999")]
    LastSeenOutOfRange,
    #[error("field `instanceId` must be 1 to 128 characters of A-Z, a-z, 0-9, `.`, `_` or `-`")]
    InvalidInstanceId,
    /// A `type` that is none of the six callbacks (the dispatching parser,
    /// [`crate::Callback::from_json`]); same code as [`Self::UnsupportedType`].
    #[error("field `type` must be one of PresenceChatCallback, ReceivedCallback, DeliveryCallback, MessageStatusCallback, ConnectedCallback, DisconnectedCallback")]
    UnknownType,
    /// `momment` (or `moment`) is not a time.
    #[error("field `{field}` must be an integer of epoch seconds or milliseconds, the same digits in a string, or an RFC 3339 timestamp")]
    InvalidMoment { field: &'static str },
    /// `momment` (or `moment`) is a time outside the accepted range.
    #[error("field `{field}` is out of range: accepted are 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, as epoch seconds 0 to 99999999999 or epoch milliseconds 100000000000 to 253402300799999")]
    MomentOutOfRange { field: &'static str },
}

impl PresenceError {
    /// Stable machine-readable code; also a metric label value (closed set).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } | Self::Empty { .. } => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::UnsupportedType | Self::UnknownType => "unsupported_type",
            Self::InvalidPhone => "invalid_phone",
            Self::InvalidStatus => "invalid_status",
            Self::InvalidLastSeen | Self::LastSeenOutOfRange => "invalid_last_seen",
            Self::InvalidInstanceId => "invalid_instance_id",
            Self::InvalidMoment { .. } | Self::MomentOutOfRange { .. } => "invalid_moment",
        }
    }

    /// The JSON field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Missing { field }
            | Self::Empty { field }
            | Self::WrongType { field, .. }
            | Self::InvalidMoment { field }
            | Self::MomentOutOfRange { field } => field,
            Self::UnsupportedType | Self::UnknownType => "type",
            Self::InvalidPhone => "phone",
            Self::InvalidStatus => "status",
            Self::InvalidLastSeen | Self::LastSeenOutOfRange => "lastSeen",
            Self::InvalidInstanceId => "instanceId",
        }
    }
}

/// Why a body could not be turned into an event.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("body is empty; it must be a JSON object")]
    Empty,
    #[error("body must be a JSON object, got {got}")]
    NotAnObject {
        /// The JSON type that was sent ([`Field::kind`](crate::Field::kind)'s words).
        got: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] PresenceError),
}

impl ParseError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) | Self::Empty | Self::NotAnObject { .. } => "malformed_json",
            Self::Invalid(e) => e.code(),
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Json(_) | Self::Empty | Self::NotAnObject { .. } => None,
            Self::Invalid(e) => Some(e.field()),
        }
    }
}
