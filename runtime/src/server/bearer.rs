//! Bearer tokens of the control listeners (admin API, metrics): read from the environment,
//! compared in constant time, never logged.

/// Shortest accepted token.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The token in environment variable `name`, if it is set and at least
/// [`MIN_TOKEN_CHARS`] long (trimmed).
pub fn from_env(name: &str) -> Option<Vec<u8>> {
    let token = std::env::var(name).unwrap_or_default();
    let token = token.trim();
    (token.chars().count() >= MIN_TOKEN_CHARS).then(|| token.as_bytes().to_vec())
}

/// Whether `headers` carry `Authorization: Bearer <token>` (the scheme case-insensitive, as
/// RFC 9110 §11.1 says), compared in constant time.
pub fn matches(headers: &http::HeaderMap, token: &[u8]) -> bool {
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
    else {
        return false;
    };
    let given = given.trim().as_bytes();
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}
