//! The `Range` field of a request (RFC 9110 §14.2): which bytes of a stored body to send.

use http::HeaderValue;

/// What a `Range` field asks of a body of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The whole body (no range, one not in bytes, several ranges, or one that cannot be read:
    /// RFC 9110 lets a server ignore those).
    Whole,
    /// The bytes `start..=end` (206).
    Part {
        /// The first byte.
        start: u64,
        /// The last byte (included).
        end: u64,
    },
    /// A range starting past the end of the body (416).
    Unsatisfiable,
}

/// The single byte range `value` asks of a body `len` bytes long.
pub fn byte_range(value: Option<&HeaderValue>, len: u64) -> ByteRange {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.trim().is_empty() {
        // `bytes=-N`: the last N bytes.
        return match number(last) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(suffix) => ByteRange::Part {
                start: len.saturating_sub(suffix),
                end: len - 1,
            },
            None => ByteRange::Whole,
        };
    }
    let Some(start) = number(first) else {
        return ByteRange::Whole;
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    let end = if last.trim().is_empty() {
        len - 1
    } else {
        match number(last) {
            Some(last) if last >= start => last.min(len - 1),
            _ => return ByteRange::Whole,
        }
    };
    ByteRange::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> ByteRange {
        byte_range(HeaderValue::from_str(value).ok().as_ref(), len)
    }

    #[test]
    fn single_ranges_are_read() {
        assert_eq!(range("bytes=0-3", 10), ByteRange::Part { start: 0, end: 3 });
        assert_eq!(range("bytes=4-", 10), ByteRange::Part { start: 4, end: 9 });
        assert_eq!(range("bytes=-3", 10), ByteRange::Part { start: 7, end: 9 });
        assert_eq!(range("bytes=-30", 10), ByteRange::Part { start: 0, end: 9 });
        assert_eq!(
            range("bytes=5-100", 10),
            ByteRange::Part { start: 5, end: 9 }
        );
    }

    #[test]
    fn others_are_whole_or_unsatisfiable() {
        assert_eq!(byte_range(None, 10), ByteRange::Whole);
        assert_eq!(range("bytes=10-", 10), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=0-1,3-4", 10), ByteRange::Whole);
        assert_eq!(range("items=0-1", 10), ByteRange::Whole);
        assert_eq!(range("bytes=5-2", 10), ByteRange::Whole);
        assert_eq!(range("bytes=x-2", 10), ByteRange::Whole);
        assert_eq!(range("bytes=2-x", 10), ByteRange::Whole);
    }
}
