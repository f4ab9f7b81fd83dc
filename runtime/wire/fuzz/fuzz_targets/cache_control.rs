//! `Cache-Control` and `Vary` field values: parsing never panics, one field parses as the
//! same field in a header map, ages are capped, and `Vary` names are distinct header names.
#![no_main]

use http::header::{CACHE_CONTROL, VARY};
use http::{HeaderMap, HeaderValue};
use isola_wire::cache_control::{Directives, MAX_DELTA_S};
use isola_wire::vary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|values: Vec<Vec<u8>>| {
    let mut headers = HeaderMap::new();
    for value in values.iter().take(8) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(CACHE_CONTROL, value.clone());
            headers.append(VARY, value);
        }
    }
    let directives = Directives::of(&headers);
    for age in [
        directives.max_age,
        directives.s_maxage,
        directives.max_stale,
        directives.min_fresh,
        directives.stale_while_revalidate,
        directives.stale_if_error,
    ]
    .into_iter()
    .flatten()
    {
        assert!(age <= MAX_DELTA_S, "{age} > {MAX_DELTA_S}");
    }
    let ascii: Vec<&str> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let balanced = ascii.iter().all(|v| v.matches('"').count() % 2 == 0);
    if ascii.len() != headers.get_all(CACHE_CONTROL).iter().count() {
        assert!(
            directives.no_store,
            "a field that is not ASCII must mean no-store"
        );
    } else if balanced {
        // Field lines combine into one comma-separated value (RFC 9110 §5.3); an unclosed
        // quote would run on into the next line, so only balanced ones are compared.
        assert_eq!(Directives::parse(&ascii.join(",")), directives, "{ascii:?}");
    }
    if let Some(names) = vary::names(&headers) {
        for (i, name) in names.iter().enumerate() {
            assert_eq!(name.as_str(), name.as_str().to_ascii_lowercase());
            assert!(!names[..i].contains(name), "{name} twice");
        }
    }
});
