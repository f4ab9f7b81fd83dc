//! `Cache-Control` directives of a request or a response (RFC 9111 §5.2), with the
//! `stale-while-revalidate` and `stale-if-error` extensions (RFC 5861).

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// The largest delta-seconds value honoured; larger ones mean this (RFC 9111 §1.2.2).
pub(crate) const MAX_DELTA_S: u64 = 2_147_483_648;

/// The directives that matter to a shared cache; unknown ones are ignored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Directives {
    /// `no-store`.
    pub(crate) no_store: bool,
    /// `no-cache` (qualified or not: treated as unqualified, the stricter reading).
    pub(crate) no_cache: bool,
    /// `private` (qualified or not): a shared cache must not store the response.
    pub(crate) private: bool,
    /// `public`.
    pub(crate) public: bool,
    /// `must-revalidate` or `proxy-revalidate`: never served stale.
    pub(crate) must_revalidate: bool,
    /// `max-age`.
    pub(crate) max_age: Option<u64>,
    /// `s-maxage` (also implies `proxy-revalidate` for a shared cache).
    pub(crate) s_maxage: Option<u64>,
    /// Request `max-stale`; without a value, any staleness.
    pub(crate) max_stale: Option<u64>,
    /// Request `min-fresh`.
    pub(crate) min_fresh: Option<u64>,
    /// Request `only-if-cached`.
    pub(crate) only_if_cached: bool,
    /// `stale-while-revalidate`.
    pub(crate) stale_while_revalidate: Option<u64>,
    /// `stale-if-error`.
    pub(crate) stale_if_error: Option<u64>,
}

impl Directives {
    /// The directives of every `Cache-Control` field in `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
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
