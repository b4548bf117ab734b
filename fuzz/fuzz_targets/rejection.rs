//! Shared by the `parse` and `callback` targets: what a parser's error must be.

use zapi::ParseError;

/// `err` names one of `fields` (when it names one) and has a documented
/// code: one of the handler's event reasons (the one list,
/// `reply::Reason::ALL`), the same the handler answers, with a 400. The
/// handler's side needs the bridge crate; without it, the code's shape.
pub fn check(err: ParseError, fields: &[&str]) {
    let code = err.code();
    if let Some(field) = err.field() {
        assert!(fields.contains(&field), "undocumented field {field}");
    }
    assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "code {code:?} is not snake_case"
    );
    #[cfg(feature = "bridge")]
    {
        let rejection = presence_bridge::ingress::reply::Rejection::from(err);
        assert_eq!(rejection.code(), code, "the handler answers another code");
        assert!(
            rejection.reason().is_event(),
            "{code} is not an event reason"
        );
        assert_eq!(rejection.status().as_u16(), 400);
    }
}
