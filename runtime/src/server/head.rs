//! The request headers the front end reads, found in one pass over the head that also sums
//! its size for `max_header_bytes`. Looked up one by one, each lookup hashed its name: nine
//! per request, seven of them for headers a plain GET does not send (~1k instructions per
//! hello request); the pass compares the names a client did send, a standard one by a byte.

use http::header::{CONTENT_LENGTH, HOST, SEC_WEBSOCKET_KEY};
use http::{HeaderMap, HeaderName, HeaderValue};
use isola_bindings::context::{TRACEPARENT, X_REQUEST_ID};
use isola_bindings::outbound::guard::CDN_LOOP;
use isola_wire::authority::HostHeader;

/// `isola-version-key`: keeps a client on one version of a deployment during a rollout.
pub(super) const VERSION_KEY: HeaderName = HeaderName::from_static("isola-version-key");

/// What the front end reads of a request's headers: the first value of each (as
/// `HeaderMap::get`), and their size.
#[derive(Debug, Default)]
pub(super) struct Head {
    /// Names and values plus 4 bytes (`: ` and CRLF) per line, as `max_header_bytes` counts.
    pub(super) bytes: usize,
    host: Option<HeaderValue>,
    several_hosts: bool,
    /// `Content-Length`, for a body declared over the limit.
    pub(super) content_length: Option<HeaderValue>,
    /// `CDN-Loop`, the chain of workers the request came through.
    pub(super) cdn_loop: Option<HeaderValue>,
    /// `isola-version-key`.
    pub(super) version_key: Option<HeaderValue>,
    /// `x-request-id`, kept when acceptable.
    pub(super) request_id: Option<HeaderValue>,
    /// `traceparent`, kept when valid.
    pub(super) traceparent: Option<HeaderValue>,
    /// `Sec-WebSocket-Key`, which an HTTP/1.1 WebSocket handshake sends.
    pub(super) websocket_key: Option<HeaderValue>,
}

impl Head {
    /// Reads `headers` once.
    pub(super) fn scan(headers: &HeaderMap) -> Self {
        let mut head = Self::default();
        for (name, value) in headers {
            head.bytes += name.as_str().len() + value.len() + 4;
            let slot = if *name == HOST {
                if head.host.is_some() {
                    head.several_hosts = true;
                }
                &mut head.host
            } else if *name == CONTENT_LENGTH {
                &mut head.content_length
            } else if *name == SEC_WEBSOCKET_KEY {
                &mut head.websocket_key
            } else if *name == CDN_LOOP {
                &mut head.cdn_loop
            } else if *name == X_REQUEST_ID {
                &mut head.request_id
            } else if *name == TRACEPARENT {
                &mut head.traceparent
            } else if *name == VERSION_KEY {
                &mut head.version_key
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        head
    }

    /// The `Host` header as the authority rules read it.
    pub(super) fn host(&self) -> HostHeader<'_> {
        match (&self.host, self.several_hosts) {
            (_, true) => HostHeader::Several,
            (Some(value), false) => HostHeader::One(value),
            (None, false) => HostHeader::Absent,
        }
    }

    /// The first `Host` value.
    pub(super) fn first_host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field agrees with `HeaderMap::get` (the first value) on a map with repeats, mixed
    /// case as sent, and names that share a prefix with the ones read.
    #[test]
    fn the_pass_finds_what_lookups_by_name_find() {
        let mut headers = HeaderMap::new();
        let lines = [
            ("Host", "a.test"),
            ("content-length", "12"),
            ("Content-Length", "13"),
            ("cdn-loop", "isola; w=one"),
            ("x-request-id", "first-id"),
            ("x-request-id", "second-id"),
            ("x-request-idx", "not it"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("isola-version-key", "user-7"),
            ("accept", "*/*"),
        ];
        for (name, value) in lines {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            headers.append(name, HeaderValue::from_static(value));
        }
        let head = Head::scan(&headers);
        assert_eq!(head.first_host(), headers.get(HOST));
        assert_eq!(head.host(), HostHeader::of(&headers));
        assert_eq!(head.content_length.as_ref(), headers.get(CONTENT_LENGTH));
        assert_eq!(head.cdn_loop.as_ref(), headers.get(CDN_LOOP));
        assert_eq!(head.request_id.as_ref(), headers.get(X_REQUEST_ID));
        assert_eq!(head.traceparent.as_ref(), headers.get(TRACEPARENT));
        assert_eq!(head.version_key.as_ref(), headers.get(VERSION_KEY));
        assert_eq!(head.websocket_key.as_ref(), headers.get(SEC_WEBSOCKET_KEY));
        let counted: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        assert_eq!(head.bytes, counted);

        headers.append(HOST, HeaderValue::from_static("b.test"));
        headers.append(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let head = Head::scan(&headers);
        assert_eq!(head.host(), HostHeader::Several);
        assert_eq!(head.first_host(), headers.get(HOST));
        assert_eq!(head.websocket_key.as_ref(), headers.get(SEC_WEBSOCKET_KEY));
        assert!(head.websocket_key.is_some());
        assert_eq!(Head::scan(&HeaderMap::new()).host(), HostHeader::Absent);
    }
}
