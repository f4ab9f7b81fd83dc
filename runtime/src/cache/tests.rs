//! RFC 9111 rules on parsed headers, without sockets.

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES};
use http::{HeaderMap, HeaderValue};
use isola_wire::cache_control::Directives;

use super::entry::{initial_age, lifetime};

fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            name.clone(),
            HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("")),
        );
    }
    map
}

fn cc(value: &str) -> Directives {
    Directives::of(&headers(&[(CACHE_CONTROL, value)]))
}

#[test]
fn lifetime_prefers_s_maxage_then_max_age_then_expires() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let date = httpdate::fmt_http_date(now);
    let expires = httpdate::fmt_http_date(now + Duration::from_secs(120));
    let h = headers(&[(DATE, &date), (EXPIRES, &expires)]);
    assert_eq!(
        lifetime(&cc("s-maxage=5, max-age=9"), &h, now),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        lifetime(&cc("max-age=9"), &h, now),
        Some(Duration::from_secs(9))
    );
    assert_eq!(
        lifetime(&Directives::default(), &h, now),
        Some(Duration::from_secs(120))
    );
    let broken = headers(&[(EXPIRES, "0")]);
    assert_eq!(
        lifetime(&Directives::default(), &broken, now),
        Some(Duration::ZERO)
    );
    assert_eq!(
        lifetime(&Directives::default(), &HeaderMap::new(), now),
        None,
        "no heuristics"
    );
    assert_eq!(
        lifetime(&cc("max-age=60, no-cache"), &h, now),
        Some(Duration::ZERO)
    );
}

#[test]
fn initial_age_is_the_larger_of_age_and_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let old = httpdate::fmt_http_date(now - Duration::from_secs(30));
    assert_eq!(
        initial_age(&headers(&[(AGE, "7")]), now),
        Duration::from_secs(7)
    );
    assert_eq!(
        initial_age(&headers(&[(AGE, "7"), (DATE, &old)]), now),
        Duration::from_secs(30)
    );
    assert_eq!(initial_age(&headers(&[(AGE, "x")]), now), Duration::ZERO);
}
