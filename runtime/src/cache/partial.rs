//! A hit's answer to a `Range` request (RFC 9110 §14): the part asked for (206), 416 for a
//! range that starts past the end, or the whole stored body — for a request that is not a
//! GET, a stored status other than 200, several ranges, or an `If-Range` the stored response
//! does not match (§13.1.5), as RFC 9110 lets a cache ignore those.

use http::header::{ACCEPT_RANGES, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use isola_wire::range::{ByteRange, byte_range};

use super::entry::Stored;
use crate::body::Body;

/// `response`, the whole of `stored`, narrowed to what the request (a GET when `get`) asked
/// for: the part (206) or 416; else whole, saying that ranges are served where they are.
pub(super) fn narrow(
    mut response: Response<Body>,
    stored: &Stored,
    request: &HeaderMap,
    get: bool,
) -> Response<Body> {
    let ranged = get && stored.status == StatusCode::OK;
    let len = stored.body.len() as u64;
    let asked = request
        .get(http::header::RANGE)
        .filter(|_| ranged && if_range_holds(request, stored));
    let (status, range, body) = match byte_range(asked, len) {
        ByteRange::Whole => {
            if ranged {
                response
                    .headers_mut()
                    .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            }
            return response;
        }
        ByteRange::Part { start, end } => (
            StatusCode::PARTIAL_CONTENT,
            content_range(&format!("bytes {start}-{end}/{len}")),
            stored.body.slice(
                usize::try_from(start).unwrap_or(usize::MAX)
                    ..=usize::try_from(end).unwrap_or(usize::MAX),
            ),
        ),
        ByteRange::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            content_range(&format!("bytes */{len}")),
            bytes::Bytes::new(),
        ),
    };
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_RANGE, range);
    *response.body_mut() = Body::Full(Some(body));
    response
}

fn content_range(value: &str) -> HeaderValue {
    // Digits, spaces, `-`, `/` and `*` only: always a valid header value.
    HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("bytes */0"))
}

/// Whether the request's `If-Range` (if any) names the stored response: a strong entity tag
/// equal to its `ETag`, or exactly its `Last-Modified` date. A weak tag never does.
fn if_range_holds(request: &HeaderMap, stored: &Stored) -> bool {
    let Some(condition) = request.get(IF_RANGE) else {
        return true;
    };
    let Ok(condition) = condition.to_str().map(str::trim) else {
        return false;
    };
    let stored_value = |name| {
        stored
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::trim)
    };
    if condition.starts_with("W/") {
        false
    } else if condition.starts_with('"') {
        stored_value(ETAG).is_some_and(|etag| etag == condition)
    } else {
        stored_value(LAST_MODIFIED).is_some_and(|date| date == condition)
    }
}
