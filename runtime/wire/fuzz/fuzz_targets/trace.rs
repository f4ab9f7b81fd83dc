//! `traceparent` and `x-request-id` values: parsing never panics, what parses formats back to
//! the same version-00 value, and a child keeps the trace.
#![no_main]

use isola_wire::request_id;
use isola_wire::trace::TraceParent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    if let Some(parsed) = TraceParent::parse(value) {
        let formatted = parsed.to_header_string();
        assert_eq!(TraceParent::parse(formatted.as_bytes()), Some(parsed));
        if value.len() == 55 && value.starts_with(b"00") {
            assert_eq!(formatted.as_bytes(), value);
        }
        assert_eq!(parsed.child().trace_id, parsed.trace_id);
    }
    if request_id::is_acceptable(value) {
        assert!(http::HeaderValue::from_bytes(value).is_ok());
    }
});
