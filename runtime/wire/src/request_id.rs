//! `x-request-id`: a client's (or an upstream proxy's) id for a request is kept when it is
//! short and plain, so logs on both sides join up; anything else is replaced, never echoed.

/// Longest id kept.
pub const MAX_LEN: usize = 128;

/// Whether `value` may be kept as the request's id: 1 to [`MAX_LEN`] characters of
/// `[A-Za-z0-9._-]`.
pub fn is_acceptable(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_ids_only() {
        assert!(is_acceptable(b"req-42_a.B"));
        assert!(is_acceptable(&[b'a'; MAX_LEN]));
        for bad in [
            &b""[..],
            &[b'a'; MAX_LEN + 1],
            b"a b",
            b"a\"b",
            b"id\n",
            b"<script>",
        ] {
            assert!(!is_acceptable(bad), "{bad:?}");
        }
    }
}
