//! `x-forwarded-for` and `x-real-ip` as the worker sees them: set from the socket, and taken
//! from the request only when the peer is a configured trusted proxy.

use std::net::IpAddr;

use edge_config::IpCidr;
use http::{HeaderMap, HeaderName, HeaderValue};

// Names, not `&str`s: a map given a `&str` for a header it does not hold yet copies the name
// into a new allocation on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Rewrites the client address headers for a request that arrived from `peer`.
pub fn set_client_ip(headers: &mut HeaderMap, peer: IpAddr, trusted_proxies: &[IpCidr]) {
    let peer_value = peer_header(peer);
    let trusted = trusted_proxies.iter().any(|cidr| cidr.contains(peer));
    if !trusted {
        headers.insert(X_FORWARDED_FOR, peer_value.clone());
        headers.insert(X_REAL_IP, peer_value);
        return;
    }
    let incoming: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let client = incoming
        .first()
        .and_then(|list| list.split(',').next())
        .map(str::trim)
        .filter(|first| !first.is_empty())
        .map(str::to_owned);
    let chain = if incoming.is_empty() {
        peer.to_string()
    } else {
        format!("{}, {peer}", incoming.join(", "))
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !headers.contains_key(&X_REAL_IP) {
        let real = client
            .and_then(|c| HeaderValue::from_str(&c).ok())
            .unwrap_or(peer_value);
        headers.insert(X_REAL_IP, real);
    }
}

/// `peer` as a header value. The last one rendered on this thread is kept: a connection's
/// requests come from one address, so most requests reuse it (a clone is a reference count)
/// rather than format and allocate it again.
fn peer_header(peer: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((ip, value)) if *ip == peer => value.clone(),
        _ => {
            // An IP address always renders as a valid header value.
            let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(peer.to_string()))
                .unwrap_or(HeaderValue::from_static("unknown"));
            *last = Some((peer, value.clone()));
            value
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_peer_overrides_spoofed_headers() -> Result<(), Box<dyn std::error::Error>> {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        headers.insert(X_REAL_IP, HeaderValue::from_static("1.2.3.4"));
        set_client_ip(&mut headers, "127.0.0.1".parse()?, &[]);
        assert_eq!(headers[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(headers[X_REAL_IP], "127.0.0.1");
        Ok(())
    }

    #[test]
    fn trusted_proxy_appends_to_the_chain() -> Result<(), Box<dyn std::error::Error>> {
        let mut headers = HeaderMap::new();
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_static("203.0.113.9, 198.51.100.2"),
        );
        let trusted: Vec<IpCidr> = vec!["127.0.0.0/8".parse()?];
        set_client_ip(&mut headers, "127.0.0.1".parse()?, &trusted);
        assert_eq!(
            headers[X_FORWARDED_FOR],
            "203.0.113.9, 198.51.100.2, 127.0.0.1"
        );
        assert_eq!(headers[X_REAL_IP], "203.0.113.9");
        Ok(())
    }
}
