//! `Range` values against bodies of any length: parsing never panics, and a part it picks
//! lies inside the body (the response cache and the Cache API slice stored bodies by it).
#![no_main]

use isola_wire::range::{ByteRange, byte_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (len, value) = input;
    let len = u64::from(len);
    let Ok(value) = http::HeaderValue::from_bytes(value) else {
        return;
    };
    match byte_range(Some(&value), len) {
        ByteRange::Part { start, end } => {
            assert!(start <= end, "{value:?}: {start}-{end}");
            assert!(end < len, "{value:?}: {start}-{end} of {len}");
        }
        ByteRange::Unsatisfiable | ByteRange::Whole => {}
    }
});
