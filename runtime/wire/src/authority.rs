//! One validated authority and a normalised path for a request, whatever the HTTP version and
//! request-target form: what routing, caching and the worker's `request.url` are built from.
//!
//! Rules ([`request_target`]):
//! - **Where the authority comes from.** At most one `Host` header. HTTP/1.1 needs it (RFC 9112
//!   §3.2); with an absolute-form target (`GET http://a.test/page`) the target's authority and
//!   `Host` must be the same, or the request is refused (RFC 9112 §3.2.2 says to ignore `Host`
//!   then; two disagreeing names for one request are refused instead, so no later stage can
//!   pick the other one). HTTP/1.0 (and 0.9) may omit `Host`: then the absolute-form target's
//!   authority is used, and an origin-form request names no host and is refused. HTTP/2 and
//!   later: the `:authority` pseudo-header (the URI's authority) or `Host`; if both are present
//!   they must be the same (RFC 9113 §8.3.1). "The same" means equal after the normalisation
//!   below (case-insensitive, trailing dot ignored, ports compared as given: `a.test` and
//!   `a.test:80` differ).
//! - **Authority** ([`Authority::parse`]): `host[:port]`. No user information (`@`); the host
//!   is a DNS-style name of ASCII letters, digits, `-`, `_` and `.` (so no `/ ? #`, spaces,
//!   control characters, percent-encoding or sub-delimiters), with no empty label, at most 253
//!   characters, lower-cased, one trailing dot removed; or an IPv6 literal in brackets (written
//!   back in its canonical form); a port is 1 to 5 digits with a value from 1 to 65535.
//! - **Path** ([`normalize_path`]): origin-form only (starts with `/`; `*` of `OPTIONS *` is
//!   refused); dot segments are removed as in RFC 3986 §5.2.4, also when their dots are
//!   percent-encoded (`%2e`, `%2E`), and `..` never climbs above the root. Everything else is
//!   kept as sent: empty segments (`//`), percent-encoded bytes (`%2F` is not a separator),
//!   and backslashes, which are ordinary characters here (`/a\..\b` has no dot segment; a
//!   backend that treats `\` as `/` must not be handed such a path unchecked). The query is
//!   kept verbatim.
//!
//! Nothing here panics on any input; every refusal is a [`TargetError`] meant for a 400.

use std::fmt::{self, Write as _};
use std::net::Ipv6Addr;
use std::ops::Range;
use std::str::FromStr;

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Uri, Version};

/// The longest host name accepted (a DNS name's limit in text form, RFC 1035 §2.3.4).
pub const MAX_HOST_LEN: usize = 253;

/// Why a request's authority or path was refused; each message suits a 400 response body and
/// never repeats the request's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Two or more `Host` headers.
    #[error("more than one Host header")]
    DuplicateHost,
    /// An HTTP/1.1 request without `Host`.
    #[error("an HTTP/1.1 request needs a Host header")]
    MissingHost,
    /// Neither a `Host` header nor an authority in the request target (HTTP/1.0, HTTP/2).
    #[error("the request names no host: no Host header and no authority in the request target")]
    MissingAuthority,
    /// The request target's authority (`:authority` in HTTP/2) and `Host` name different hosts.
    #[error("the Host header and the authority of the request target differ")]
    AuthorityMismatch,
    /// The `Host` header has bytes outside visible ASCII.
    #[error("the Host header is not ASCII text")]
    HostNotAscii,
    /// `user@host`: credentials in the authority.
    #[error("user information (`user@`) is not allowed in the authority")]
    Userinfo,
    /// Nothing before the port (or nothing at all).
    #[error("the authority has an empty host")]
    EmptyHost,
    /// A character a host name may not contain (`/`, `?`, `#`, space, control, `%`, …).
    #[error("{0:?} is not allowed in a host name")]
    HostCharacter(char),
    /// `a..b` or a leading dot.
    #[error("the host name has an empty label")]
    EmptyLabel,
    /// Longer than [`MAX_HOST_LEN`].
    #[error("the host name is longer than {MAX_HOST_LEN} characters")]
    HostTooLong,
    /// A bracketed literal that is not an IPv6 address (zone identifiers and IPvFuture
    /// included), text after the closing bracket, or an IPv6 address without brackets.
    #[error("an IP literal must be an IPv6 address in brackets, such as [2001:db8::1]:8443")]
    IpLiteral,
    /// The port is empty, not all digits or outside 1..=65535.
    #[error("the port must be a number from 1 to 65535")]
    Port,
    /// `OPTIONS *`.
    #[error("the request target `*` is not supported")]
    Asterisk,
    /// A path that does not start with `/` (authority-form, or no path at all).
    #[error("the request target must be a path starting with `/`")]
    PathNotAbsolute,
}

/// A validated authority: `host[:port]`, normalised, in one string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// `host[:port]`, an IPv6 host in brackets.
    text: String,
    /// Where the host is in `text` (inside the brackets of an IPv6 literal).
    host: Range<usize>,
    port: Option<u16>,
}

impl Authority {
    /// Validates and normalises `host[:port]` (rules in the [module docs](self)).
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        match Self::already_normal(text) {
            Some(authority) => Ok(authority),
            None => Self::normalize(text),
        }
    }

    /// `text` taken as it is when it is in normal form already, as clients send it: a
    /// lower-case name with no empty label or trailing dot and an optional port without
    /// leading zeros. One pass over the bytes instead of the several `normalize` makes (about
    /// 750 instructions for `127.0.0.1:8080`, on every request); `None` sends anything else
    /// there, to be normalised or refused.
    fn already_normal(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let mut colon = None;
        let mut port: u32 = 0;
        // A dot first (or after a dot, or before the colon or the end) is an empty label.
        let mut previous = b'.';
        for (at, &byte) in bytes.iter().enumerate() {
            match colon {
                None => match byte {
                    b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
                    b'.' | b':' if previous == b'.' => return None,
                    b'.' => {}
                    b':' => colon = Some(at),
                    _ => return None,
                },
                Some(colon) => match byte {
                    _ if at - colon > 5 => return None,
                    b'1'..=b'9' => port = port * 10 + u32::from(byte - b'0'),
                    b'0' if at > colon + 1 => port *= 10,
                    _ => return None,
                },
            }
            previous = byte;
        }
        let host_end = colon.unwrap_or(bytes.len());
        if host_end > MAX_HOST_LEN || (colon.is_none() && previous == b'.') {
            return None;
        }
        let port = match colon {
            Some(_) => Some(u16::try_from(port).ok().filter(|port| *port != 0)?),
            None => None,
        };
        Some(Self {
            text: text.to_owned(),
            host: 0..host_end,
            port,
        })
    }

    /// [`Self::parse`] for a `text` not in normal form: normalised, or refused.
    fn normalize(text: &str) -> Result<Self, TargetError> {
        if text.as_bytes().contains(&b'@') {
            return Err(TargetError::Userinfo);
        }
        let mut normalized = String::with_capacity(text.len() + 8);
        let (host, port) = if let Some(literal) = text.strip_prefix('[') {
            let (address, rest) = literal.split_once(']').ok_or(TargetError::IpLiteral)?;
            let address = Ipv6Addr::from_str(address).map_err(|_| TargetError::IpLiteral)?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or(TargetError::IpLiteral)?),
            };
            normalized.push('[');
            write!(normalized, "{address}").map_err(|_| TargetError::IpLiteral)?;
            let host = 1..normalized.len();
            normalized.push(']');
            (host, port)
        } else {
            let colon = text.bytes().position(|b| b == b':');
            let (name, port) =
                match colon.and_then(|at| Some((text.get(..at)?, text.get(at + 1..)?))) {
                    Some((_, port)) if port.as_bytes().contains(&b':') => {
                        return Err(TargetError::IpLiteral);
                    }
                    Some((name, port)) => (name, Some(port)),
                    None => (text, None),
                };
            normalized.push_str(host_name(name)?);
            normalized.make_ascii_lowercase();
            (0..normalized.len(), port)
        };
        let port = port.map(port_number).transpose()?;
        if let Some(port) = port {
            normalized.push(':');
            normalized.push_str(itoa_u16(port, &mut [0; 5]));
        }
        Ok(Self {
            text: normalized,
            host,
            port,
        })
    }

    /// The host: lower-case, without a trailing dot, port or brackets (an IPv6 address in its
    /// canonical form).
    pub fn host(&self) -> &str {
        self.text.get(self.host.clone()).unwrap_or_default()
    }

    /// The port, if the request gave one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]` with an IPv6 host in brackets: what a URL is built with.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Authority {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `port` in decimal, written into `buffer` (no allocation).
fn itoa_u16(port: u16, buffer: &mut [u8; 5]) -> &str {
    let mut start = buffer.len();
    let mut rest = port;
    loop {
        start -= 1;
        buffer[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[start..]).unwrap_or("0")
}

/// A DNS-style host name, validated, one trailing dot removed (the caller lower-cases it).
fn host_name(name: &str) -> Result<&str, TargetError> {
    // Byte by byte (a host name is ASCII); a refused byte is named as the character it starts.
    if let Some(at) = name
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    {
        let refused = name.get(at..).and_then(|rest| rest.chars().next());
        return Err(TargetError::HostCharacter(refused.unwrap_or('?')));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(TargetError::HostTooLong);
    }
    let bytes = name.as_bytes();
    if bytes.first() == Some(&b'.')
        || bytes.last() == Some(&b'.')
        || bytes.windows(2).any(|pair| pair == b"..")
    {
        return Err(TargetError::EmptyLabel);
    }
    Ok(name)
}

/// 1 to 5 digits, 1..=65535.
fn port_number(text: &str) -> Result<u16, TargetError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::Port);
    }
    text.parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or(TargetError::Port)
}

/// `path` (origin-form, starting with `/`) with its dot segments removed (RFC 3986 §5.2.4),
/// percent-encoded dots counting as dots; `..` stops at the root. A final `.` or `..` segment
/// leaves a trailing slash (`/a/b/..` → `/a/`), as in the RFC. Nothing else changes.
pub fn normalize_path(path: &str) -> Result<String, TargetError> {
    let mut normalized = String::with_capacity(path.len());
    push_normalized_path(path, &mut normalized)?;
    Ok(normalized)
}

/// [`normalize_path`], appended to `out` (which must not end inside a path).
fn push_normalized_path(path: &str, out: &mut String) -> Result<(), TargetError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(if path == "*" {
            TargetError::Asterisk
        } else {
            TargetError::PathNotAbsolute
        });
    };
    // Each kept segment is written as `/segment` as it comes; `..` cuts the last one off.
    let root = out.len();
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dots(segment) {
            Some(1) => {}
            Some(2) => {
                let start = out.get(root..).and_then(|kept| kept.rfind('/'));
                out.truncate(root + start.unwrap_or(0));
            }
            _ => {
                out.push('/');
                out.push_str(segment);
                continue;
            }
        }
        if last {
            out.push('/');
        }
    }
    if out.len() == root {
        out.push('/');
    }
    Ok(())
}

/// How many dots `segment` is made of (`.`, `%2e` or `%2E` each), if that is all it is.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut count = 0;
    while !rest.is_empty() && count < 3 {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return None,
        };
        count += 1;
    }
    (rest.is_empty() && count > 0).then_some(count)
}

/// A request's validated authority and normalised path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    authority: Authority,
    /// The normalised path, then `?` and the query if there is one (one allocation).
    path_and_query: String,
    /// Where the path ends in `path_and_query` (at its `?`, if any).
    path_len: usize,
}

impl Target {
    /// The validated authority.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The host: lower-case, no port, no brackets, no trailing dot.
    pub fn host(&self) -> &str {
        self.authority.host()
    }

    /// The normalised path, starting with `/` and free of dot segments.
    pub fn path(&self) -> &str {
        self.path_and_query.get(..self.path_len).unwrap_or_default()
    }

    /// The query as sent, without its `?`.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.get(self.path_len + 1..)
    }

    /// The path, then `?` and the query if there is one.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }
}

/// The one authority and the normalised path and query of a request whose target is `uri`,
/// headers `headers` (only `Host` is read) and version `version`, following the rules in the
/// [module docs](self). `uri` is the request's URI as hyper parsed it: origin-form (`/p?q`),
/// absolute-form (`http://a.test/p`), or for HTTP/2 built from `:authority` and `:path`.
pub fn request_target(
    uri: &Uri,
    headers: &HeaderMap,
    version: Version,
) -> Result<Target, TargetError> {
    request_target_for(uri, HostHeader::of(headers), version)
}

/// A request's `Host` header: absent, one value, or more than one (refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostHeader<'a> {
    /// No `Host` header.
    Absent,
    /// Exactly one `Host` header.
    One(&'a HeaderValue),
    /// Several `Host` headers.
    Several,
}

impl<'a> HostHeader<'a> {
    /// The `Host` header of `headers`.
    pub fn of(headers: &'a HeaderMap) -> Self {
        let mut hosts = headers.get_all(HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => Self::Several,
            (Some(value), None) => Self::One(value),
            (None, _) => Self::Absent,
        }
    }
}

/// [`request_target`] for a caller that already found the request's `Host` header (the front
/// end reads all the headers it needs in one pass).
pub fn request_target_for(
    uri: &Uri,
    host: HostHeader<'_>,
    version: Version,
) -> Result<Target, TargetError> {
    let host = match host {
        HostHeader::Several => return Err(TargetError::DuplicateHost),
        HostHeader::One(value) => Some(Authority::parse(
            value.to_str().map_err(|_| TargetError::HostNotAscii)?,
        )?),
        HostHeader::Absent => None,
    };
    let in_target = uri
        .authority()
        .map(|authority| Authority::parse(authority.as_str()))
        .transpose()?;
    let http_1_1 = version == Version::HTTP_11;
    let authority = match (in_target, host) {
        (Some(in_target), Some(host)) if in_target == host => host,
        (Some(_), Some(_)) => return Err(TargetError::AuthorityMismatch),
        (_, None) if http_1_1 => return Err(TargetError::MissingHost),
        (Some(in_target), None) => in_target,
        (None, Some(host)) => host,
        (None, None) => return Err(TargetError::MissingAuthority),
    };
    let query = uri.query();
    let mut path_and_query =
        String::with_capacity(uri.path().len() + query.map_or(0, |query| query.len() + 1));
    push_normalized_path(uri.path(), &mut path_and_query)?;
    let path_len = path_and_query.len();
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    Ok(Target {
        authority,
        path_and_query,
        path_len,
    })
}

#[cfg(test)]
mod tests;
