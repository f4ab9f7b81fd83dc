//! Fixed-width lowercase hex, written into a stack array: ids and trace fields are formatted
//! on every request, where `format!` costs an allocation and its formatting machinery.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the low `out.len() * 4` bits of `value` into `out` as lowercase hex, zero-padded.
pub fn write(value: u128, out: &mut [u8]) {
    let mut rest = value;
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
    }
}

/// `value` as 16 lowercase hex digits (as `format!("{value:016x}")`).
pub fn u64_digits(value: u64) -> [u8; 16] {
    let mut out = [0; 16];
    write(u128::from(value), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_formatter() {
        for value in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(u64_digits(value), *format!("{value:016x}").as_bytes());
        }
        let mut two = [0; 2];
        write(0x1ff, &mut two);
        assert_eq!(&two, b"ff");
    }
}
