//! Webhook routes, matched on the path alone (methods are checked after, so a
//! known path with the wrong method is a 405, an unknown one a 404). The presence
//! routes take `PresenceChatCallback` only; the any-type routes take every
//! Z-API callback and dispatch on its `type`, for the provider's "one URL for
//! every webhook" setting.

/// The `route` label values of the request metrics, one per [`Route`] variant.
pub const ROUTE_LABELS: [&str; 5] = [
    "presence",
    "presence_instance",
    "any",
    "any_instance",
    "other",
];

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/webhooks/zapi/presence`
    Presence,
    /// `/webhooks/zapi/instances/{instanceId}/presence`, with the raw
    /// (still percent-encoded) instance segment.
    PresenceForInstance(String),
    /// `/webhooks/zapi`: every callback type.
    Any,
    /// `/webhooks/zapi/instances/{instanceId}`: every callback type, for
    /// the instance in the path (raw segment).
    AnyForInstance(String),
    Unknown,
}

impl Route {
    pub fn parse(path: &str) -> Self {
        match path {
            "/webhooks/zapi/presence" => return Self::Presence,
            "/webhooks/zapi" => return Self::Any,
            _ => {}
        }
        let Some(rest) = path.strip_prefix("/webhooks/zapi/instances/") else {
            return Self::Unknown;
        };
        let segment = |seg: &str| (!seg.is_empty() && !seg.contains('/')).then(|| seg.to_owned());
        if let Some(seg) = rest.strip_suffix("/presence").and_then(segment) {
            return Self::PresenceForInstance(seg);
        }
        segment(rest).map_or(Self::Unknown, Self::AnyForInstance)
    }

    /// True for the routes that take `PresenceChatCallback` only.
    pub fn presence_only(&self) -> bool {
        matches!(self, Self::Presence | Self::PresenceForInstance(_))
    }

    /// The raw instance segment of the path, for the routes that have one.
    pub fn instance_segment(&self) -> Option<&str> {
        match self {
            Self::PresenceForInstance(seg) | Self::AnyForInstance(seg) => Some(seg),
            _ => None,
        }
    }

    /// The route's template for logs (a closed set): never the raw path,
    /// which may carry anything a caller put there.
    pub fn template(&self) -> &'static str {
        match self {
            Self::Presence => "/webhooks/zapi/presence",
            Self::PresenceForInstance(_) => "/webhooks/zapi/instances/{instanceId}/presence",
            Self::Any => "/webhooks/zapi",
            Self::AnyForInstance(_) => "/webhooks/zapi/instances/{instanceId}",
            Self::Unknown => "other",
        }
    }

    /// Metric label (closed set: [`ROUTE_LABELS`]).
    pub fn label(&self) -> &'static str {
        ROUTE_LABELS[match self {
            Self::Presence => 0,
            Self::PresenceForInstance(_) => 1,
            Self::Any => 2,
            Self::AnyForInstance(_) => 3,
            Self::Unknown => 4,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_table() {
        let cases = [
            ("/webhooks/zapi/presence", Route::Presence),
            (
                "/webhooks/zapi/instances/ABC123/presence",
                Route::PresenceForInstance("ABC123".into()),
            ),
            ("/webhooks/zapi/instances//presence", Route::Unknown),
            ("/webhooks/zapi/instances/a/b/presence", Route::Unknown),
            ("/webhooks/zapi/presence/", Route::Unknown),
            ("/webhooks/zapi", Route::Any),
            ("/webhooks/zapi/", Route::Unknown),
            (
                "/webhooks/zapi/instances/ABC123",
                Route::AnyForInstance("ABC123".into()),
            ),
            ("/webhooks/zapi/instances/", Route::Unknown),
            ("/webhooks/zapi/instances/a/b", Route::Unknown),
            ("/webhooks/zapi/instances/ABC123/", Route::Unknown),
            ("/", Route::Unknown),
            ("/metrics", Route::Unknown),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path), want, "{path}");
        }
        assert_eq!(
            Route::parse("/webhooks/zapi/instances/ABC123/presence").template(),
            "/webhooks/zapi/instances/{instanceId}/presence"
        );
        assert_eq!(Route::parse("/secret/path").template(), "other");
        assert_eq!(
            Route::parse("/webhooks/zapi/instances/ABC123").template(),
            "/webhooks/zapi/instances/{instanceId}"
        );
        // One label per variant, all distinct.
        let labels: std::collections::HashSet<_> = [
            Route::Presence,
            Route::PresenceForInstance("a".into()),
            Route::Any,
            Route::AnyForInstance("a".into()),
            Route::Unknown,
        ]
        .iter()
        .map(Route::label)
        .collect();
        assert_eq!(labels.len(), ROUTE_LABELS.len());
    }
}
