//! `x-forwarded-for` and `x-real-ip` as the worker sees them: set from the socket, and taken
//! from the request only when the peer is a configured trusted proxy.

use std::net::IpAddr;

use edge_config::IpCidr;
use http::{HeaderMap, HeaderValue};
// Names, not `&str`s: a map given a `&str` for a header it does not hold yet copies the name
// into a new allocation on every request.
use isola_bindings::context::{X_FORWARDED_FOR, X_REAL_IP};

/// Rewrites the client address headers for a request that arrived from `peer`. When `defer`
/// (nothing before the worker reads them) and the peer is no trusted proxy, the headers are
/// left alone and the value is returned instead, for the isolate to set (replacing the
/// client's) when the worker reads its headers (`RequestContext::client_address`).
pub fn set_client_ip(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted_proxies: &[IpCidr],
    defer: bool,
) -> Option<HeaderValue> {
    let peer_value = peer_header(peer);
    let trusted = trusted_proxies.iter().any(|cidr| cidr.contains(peer));
    if !trusted {
        if defer {
            return Some(peer_value);
        }
        headers.insert(X_FORWARDED_FOR, peer_value.clone());
        headers.insert(X_REAL_IP, peer_value);
        return None;
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
    None
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
        let deferred = set_client_ip(&mut headers, "127.0.0.1".parse()?, &[], false);
        assert_eq!(deferred, None);
        assert_eq!(headers[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(headers[X_REAL_IP], "127.0.0.1");
        Ok(())
    }

    #[test]
    fn an_untrusted_peer_is_deferred_and_a_trusted_chain_never_is()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        let deferred = set_client_ip(&mut headers, "127.0.0.2".parse()?, &[], true);
        assert_eq!(deferred, Some(HeaderValue::from_static("127.0.0.2")));
        assert_eq!(
            headers[X_FORWARDED_FOR], "203.0.113.9",
            "left for the isolate"
        );
        let trusted: Vec<IpCidr> = vec!["127.0.0.0/8".parse()?];
        let deferred = set_client_ip(&mut headers, "127.0.0.2".parse()?, &trusted, true);
        assert_eq!(deferred, None);
        assert_eq!(headers[X_FORWARDED_FOR], "203.0.113.9, 127.0.0.2");
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
        set_client_ip(&mut headers, "127.0.0.1".parse()?, &trusted, true);
        assert_eq!(
            headers[X_FORWARDED_FOR],
            "203.0.113.9, 198.51.100.2, 127.0.0.1"
        );
        assert_eq!(headers[X_REAL_IP], "203.0.113.9");
        Ok(())
    }
}
