//! Webhook routes, matched on the path alone (methods are checked after, so a
//! known path with the wrong method is a 405, an unknown one a 404).

/// The `route` label values of the request metrics, one per [`Route`] variant.
pub const ROUTE_LABELS: [&str; 3] = ["presence", "presence_instance", "other"];

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/webhooks/zapi/presence`
    Presence,
    /// `/webhooks/zapi/instances/{instanceId}/presence`, with the raw
    /// (still percent-encoded) instance segment.
    PresenceForInstance(String),
    Unknown,
}

impl Route {
    pub fn parse(path: &str) -> Self {
        if path == "/webhooks/zapi/presence" {
            return Self::Presence;
        }
        let instance = path
            .strip_prefix("/webhooks/zapi/instances/")
            .and_then(|rest| rest.strip_suffix("/presence"))
            .filter(|seg| !seg.is_empty() && !seg.contains('/'));
        match instance {
            Some(seg) => Self::PresenceForInstance(seg.to_owned()),
            None => Self::Unknown,
        }
    }

    /// The route's template for logs (a closed set): never the raw path,
    /// which may carry anything a caller put there.
    pub fn template(&self) -> &'static str {
        match self {
            Self::Presence => "/webhooks/zapi/presence",
            Self::PresenceForInstance(_) => "/webhooks/zapi/instances/{instanceId}/presence",
            Self::Unknown => "other",
        }
    }

    /// Metric label (closed set: [`ROUTE_LABELS`]).
    pub fn label(&self) -> &'static str {
        ROUTE_LABELS[match self {
            Self::Presence => 0,
            Self::PresenceForInstance(_) => 1,
            Self::Unknown => 2,
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
    }
}
