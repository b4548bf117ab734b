//! The rejection's log line: reason, route template, client address and,
//! when known, the instance id; 503s once per interval with a count, the
//! rest bounded by [`crate::lograte`]. Never the raw path, the query or a
//! full phone number.

use std::net::IpAddr;

use super::reply::Rejection;
use super::routes::Route;
use super::Webhook;
use crate::presence::InstanceId;
use crate::sink::{Sink, SinkError};

impl<S: Sink> Webhook<S> {
    /// Logs a rejection with its reason, route template, client address and,
    /// when known (a valid instance in the path, or a parsed body), the
    /// instance id; never the raw path or query (tokens).
    pub(super) fn log_rejection(
        &self,
        rejection: &Rejection,
        route: &Route,
        instance: Option<&InstanceId>,
        client: Option<IpAddr>,
    ) {
        let client = client.map(tracing::field::display);
        let route = route.template();
        let instance_id = instance.map(InstanceId::as_str);
        match rejection {
            Rejection::Unavailable(e) => {
                let detail = match e {
                    SinkError::Unavailable(detail) => detail.as_str(),
                    _ => "",
                };
                let key = format!("{}: {detail}", rejection.code());
                let repeats = self
                    .unavailable_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .should_log(&key, std::time::Instant::now());
                if let Some(repeats) = repeats {
                    tracing::warn!(reason = rejection.code(), detail, repeats, "events not accepted: the spool cannot take them (503); the same answer is logged once per interval, `repeats` since the last line");
                }
            }
            // Counted in the metric always; lines go through the limiter
            // (a quota per reason and interval, then one summary line).
            Rejection::NotFound
            | Rejection::MethodNotAllowed
            | Rejection::RateLimitedClient { .. }
            | Rejection::RateLimitedInstance { .. }
            | Rejection::BodyBudgetClient { .. }
            | Rejection::BodyBudgetExhausted { .. } => {
                if tracing::enabled!(tracing::Level::DEBUG)
                    && crate::lograte::admit(caller_of(rejection), rejection.code())
                {
                    tracing::debug!(
                        reason = rejection.code(),
                        route,
                        instance_id,
                        client,
                        "request rejected"
                    );
                }
            }
            other => {
                if tracing::enabled!(tracing::Level::INFO)
                    && crate::lograte::admit(caller_of(other), other.code())
                {
                    tracing::info!(
                        reason = other.code(),
                        route,
                        instance_id,
                        client,
                        detail = %other,
                        "request rejected"
                    )
                }
            }
        }
    }
}

/// Whose request a rejection refused, for the log limiter's budget: the
/// rejections answered before the token was accepted are anyone's.
fn caller_of(rejection: &Rejection) -> crate::lograte::Caller {
    use crate::lograte::Caller;
    match rejection {
        Rejection::ClientForbidden
        | Rejection::RateLimitedClient { .. }
        | Rejection::NotFound
        | Rejection::MethodNotAllowed
        | Rejection::InvalidPathInstance
        | Rejection::Unauthorized => Caller::Anonymous,
        Rejection::InstanceForbidden
        | Rejection::TokenNotForInstance
        | Rejection::RateLimitedInstance { .. }
        | Rejection::UnsupportedMediaType
        | Rejection::PayloadTooLarge { .. }
        | Rejection::UnsupportedEncoding
        | Rejection::MalformedEncoding(_)
        | Rejection::DecompressionRatio { .. }
        | Rejection::BodyTimeout
        | Rejection::BodyUnreadable(_)
        | Rejection::Invalid(_)
        | Rejection::NotPresence(_)
        | Rejection::InstanceMismatch
        | Rejection::Unavailable(_)
        | Rejection::BodyBudgetClient { .. }
        | Rejection::BodyBudgetExhausted { .. } => Caller::Authenticated,
    }
}

/// The valid `instanceId` of a body that failed validation for another
/// reason, for the rejection's log line (only bodies of authenticated
/// requests get here; the rejection path alone pays for the second parse).
pub(super) fn body_instance(body: &[u8]) -> Option<InstanceId> {
    #[derive(serde::Deserialize)]
    struct OnlyInstance<'a> {
        #[serde(rename = "instanceId", borrow)]
        instance_id: Option<std::borrow::Cow<'a, str>>,
    }
    let only: OnlyInstance<'_> = serde_json::from_slice(body).ok()?;
    InstanceId::parse(&only.instance_id?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_body_names_its_instance_only_when_valid() {
        let instance = |body: &str| body_instance(body.as_bytes()).map(|i| i.to_string());
        assert_eq!(
            instance(r#"{"phone":"12","instanceId":"tenant-b"}"#).as_deref(),
            Some("tenant-b")
        );
        assert_eq!(instance(r#"{"phone":"12","instanceId":"a b/c"}"#), None);
        assert_eq!(instance(r#"{"phone":"12","instanceId":7}"#), None);
        assert_eq!(instance(r#"{"phone":"12"}"#), None);
        assert_eq!(instance("not json"), None);
    }
}
