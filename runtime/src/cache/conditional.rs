//! Conditional requests against a stored response (RFC 9110 §13): a client that already holds
//! the cached version gets `304 Not Modified` from the cache.

use http::HeaderMap;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};

use super::entry::{Stored, http_date};

/// Whether the request carries any precondition of its own.
pub(crate) fn has_preconditions(request: &HeaderMap) -> bool {
    [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ]
    .iter()
    .any(|name| request.contains_key(name))
}

/// Whether `If-None-Match` (or, without it, `If-Modified-Since`) says the client already has
/// `stored` (RFC 9110 §13.1.2, §13.1.3; weak comparison for `If-None-Match`).
pub(crate) fn not_modified(request: &HeaderMap, stored: &Stored) -> bool {
    if request.contains_key(IF_NONE_MATCH) {
        let Some(etag) = stored.etag().and_then(|e| e.to_str().ok()) else {
            return false;
        };
        return request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || weak_eq(tag, etag));
    }
    let since = request.get(IF_MODIFIED_SINCE).and_then(http_date);
    let modified = stored.last_modified().and_then(http_date);
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

/// Weak entity-tag comparison: equal opaque tags, `W/` ignored.
fn weak_eq(a: &str, b: &str) -> bool {
    fn opaque(tag: &str) -> &str {
        tag.strip_prefix("W/").unwrap_or(tag)
    }
    opaque(a) == opaque(b)
}
