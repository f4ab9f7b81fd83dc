//! `Cache-Control` directives of a request or a response (RFC 9111 §5.2), with the
//! `stale-while-revalidate` and `stale-if-error` extensions (RFC 5861).

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// The largest delta-seconds value honoured; larger ones mean this (RFC 9111 §1.2.2).
pub const MAX_DELTA_S: u64 = 2_147_483_648;

/// The directives that matter to a shared cache; unknown ones are ignored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (qualified or not: treated as unqualified, the stricter reading).
    pub no_cache: bool,
    /// `private` (qualified or not): a shared cache must not store the response.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate` or `proxy-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `max-age`.
    pub max_age: Option<u64>,
    /// `s-maxage` (also implies `proxy-revalidate` for a shared cache).
    pub s_maxage: Option<u64>,
    /// Request `max-stale`; without a value, any staleness.
    pub max_stale: Option<u64>,
    /// Request `min-fresh`.
    pub min_fresh: Option<u64>,
    /// Request `only-if-cached`.
    pub only_if_cached: bool,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`.
    pub stale_if_error: Option<u64>,
}

impl Directives {
    /// The directives of every `Cache-Control` field in `headers`.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        for value in headers.get_all(CACHE_CONTROL) {
            match value.to_str() {
                Ok(text) => directives.parse_into(text),
                // Not ASCII: nothing can be trusted, so nothing is stored.
                Err(_) => directives.no_store = true,
            }
        }
        directives
    }

    /// The directives of one `Cache-Control` field value.
    pub fn parse(text: &str) -> Self {
        let mut directives = Self::default();
        directives.parse_into(text);
        directives
    }

    fn parse_into(&mut self, text: &str) {
        for item in split_outside_quotes(text) {
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (item.trim(), None),
            };
            let seconds = || value.map_or(Some(0), delta_seconds);
            match name.to_ascii_lowercase().as_str() {
                "no-store" => self.no_store = true,
                "no-cache" => self.no_cache = true,
                "private" => self.private = true,
                "public" => self.public = true,
                "must-revalidate" | "proxy-revalidate" => self.must_revalidate = true,
                "only-if-cached" => self.only_if_cached = true,
                // An unreadable age makes the response stale (RFC 9111 §4.2.1).
                "max-age" => self.max_age = min(self.max_age, seconds().unwrap_or(0)),
                "s-maxage" => self.s_maxage = min(self.s_maxage, seconds().unwrap_or(0)),
                "min-fresh" => self.min_fresh = seconds().or(self.min_fresh),
                "max-stale" => {
                    self.max_stale = value.map_or(Some(MAX_DELTA_S), delta_seconds);
                }
                "stale-while-revalidate" => self.stale_while_revalidate = seconds(),
                "stale-if-error" => self.stale_if_error = seconds(),
                _ => {}
            }
        }
    }
}

/// The more restrictive of a repeated directive.
fn min(current: Option<u64>, new: u64) -> Option<u64> {
    Some(current.map_or(new, |c| c.min(new)))
}

/// Non-negative integer seconds, capped at [`MAX_DELTA_S`]; `None` if not a number.
fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(MAX_DELTA_S, |s| s.min(MAX_DELTA_S)),
    )
}

/// The comma-separated items of a field value, commas inside quoted strings kept.
fn split_outside_quotes(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let mut quoted = false;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let item = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or("");
            if !item.trim().is_empty() {
                return Some(item);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn cc(value: &str) -> Directives {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(CACHE_CONTROL, value);
        }
        Directives::of(&headers)
    }

    #[test]
    fn directives_parse_case_quotes_and_repeats() {
        let d = cc("Public, MAX-AGE=60, s-maxage=\"30\", no-cache=\"set-cookie, x\", max-age=10");
        assert!(d.public && d.no_cache);
        assert_eq!(d.max_age, Some(10), "the more restrictive repeat wins");
        assert_eq!(d.s_maxage, Some(30));
        assert!(!d.no_store, "a field name inside quotes is not a directive");
        assert_eq!(cc("max-age=abc").max_age, Some(0), "unreadable means stale");
        assert_eq!(
            cc("max-age=99999999999999999999").max_age,
            Some(MAX_DELTA_S)
        );
        assert_eq!(cc("max-stale").max_stale, Some(MAX_DELTA_S));
        assert!(cc("private=\"x\"").private);
        assert!(cc("proxy-revalidate").must_revalidate);
        let d = cc("max-age=1, stale-while-revalidate=30, stale-if-error=60");
        assert_eq!(
            (d.stale_while_revalidate, d.stale_if_error),
            (Some(30), Some(60))
        );
        assert_eq!(Directives::of(&HeaderMap::new()), Directives::default());
    }

    #[test]
    fn several_fields_add_up_and_non_ascii_means_no_store() {
        let mut headers = HeaderMap::new();
        headers.append(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        headers.append(CACHE_CONTROL, HeaderValue::from_static("public"));
        let d = Directives::of(&headers);
        assert!(d.public);
        assert_eq!(d.max_age, Some(60));
        assert_eq!(Directives::parse("public, max-age=60"), d);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(b"max-age=60, \xff") {
            headers.append(CACHE_CONTROL, value);
        }
        assert!(Directives::of(&headers).no_store);
    }

    #[test]
    fn empty_items_unbalanced_quotes_and_bare_values() {
        assert_eq!(Directives::parse(",,, ,"), Directives::default());
        assert!(Directives::parse("no-cache=\"a, public").no_cache);
        assert!(
            !Directives::parse("no-cache=\"a, public").public,
            "the quote runs on"
        );
        assert_eq!(Directives::parse("max-age").max_age, Some(0));
        assert_eq!(Directives::parse("max-age=-1").max_age, Some(0));
        assert_eq!(Directives::parse("min-fresh=x").min_fresh, None);
        assert_eq!(Directives::parse("max-stale=5").max_stale, Some(5));
    }
}
