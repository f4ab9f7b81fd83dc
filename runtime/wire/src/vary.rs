//! The `Vary` field of a response (RFC 9110 §12.5.5): the request headers a stored response
//! was selected by.

use http::header::VARY;
use http::{HeaderMap, HeaderName};

/// The distinct header names listed by every `Vary` field in `headers`, lower-case, in order
/// of first appearance; empty when there is none. `None` when the response must not be stored
/// by a cache matching on header values: `Vary: *` (it varies on more than headers), a field
/// that is not ASCII or an entry that is not a valid header name.
pub fn names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(VARY) {
        for name in value.to_str().ok()?.split(',').map(str::trim) {
            if name == "*" {
                return None;
            }
            if name.is_empty() {
                continue;
            }
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn vary(values: &[&[u8]]) -> Option<Vec<String>> {
        let mut headers = HeaderMap::new();
        for value in values {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(VARY, value);
            }
        }
        names(&headers).map(|names| names.iter().map(|n| n.as_str().to_owned()).collect())
    }

    #[test]
    fn names_are_lower_case_distinct_and_in_order() {
        assert_eq!(vary(&[]), Some(vec![]));
        assert_eq!(
            vary(&[
                b"Accept-Encoding, ,accept-language",
                b"ACCEPT-ENCODING, X-Theme"
            ]),
            Some(vec![
                "accept-encoding".to_owned(),
                "accept-language".to_owned(),
                "x-theme".to_owned()
            ])
        );
        assert_eq!(vary(&[b" , ,"]), Some(vec![]));
    }

    #[test]
    fn star_non_ascii_and_bad_names_are_not_storable() {
        assert_eq!(vary(&[b"accept, *"]), None);
        assert_eq!(vary(&[b"accept", b"*"]), None);
        assert_eq!(vary(&[b"accept\xff"]), None);
        assert_eq!(vary(&[b"bad name"]), None);
        assert_eq!(vary(&[b"a:b"]), None);
    }
}
