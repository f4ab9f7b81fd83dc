//! Request targets: any URI hyper could hand over, any `Host` headers, any version. An accepted
//! target has a path starting with `/` and free of dot segments (also percent-encoded ones),
//! normalising it again changes nothing, the authority re-parses to itself and builds a valid
//! URL, and the query is the one sent. The path normaliser and authority parser are also fed
//! raw text.
#![no_main]

use arbitrary::Arbitrary;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Uri, Version};
use isola_wire::authority::{Authority, MAX_HOST_LEN, Target, normalize_path, request_target};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    target: String,
    hosts: Vec<Vec<u8>>,
    version: u8,
}

/// Whether a segment is `.` or `..`, dots possibly written `%2e`/`%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

fn check_path(input: &str, path: &str) {
    assert!(path.starts_with('/'), "{input:?} → {path:?}");
    assert!(
        !path.split('/').any(is_dot_segment),
        "{input:?} → {path:?} keeps a dot segment"
    );
    assert_eq!(
        normalize_path(path).as_deref(),
        Ok(path),
        "not idempotent: {input:?}"
    );
}

fn check_authority(input: &str, authority: &Authority) {
    let host = authority.host();
    assert!(!host.is_empty(), "{input:?}");
    assert_eq!(host, host.to_ascii_lowercase(), "{input:?}");
    assert!(!host.ends_with('.'), "{input:?} → {host:?}");
    assert!(
        !host.contains(['@', '/', '?', '#', ' ', '%', '[', ']'])
            && !host.contains(char::is_control),
        "{input:?} → {host:?}"
    );
    let bracketed = host.contains(':');
    assert!(bracketed || host.len() <= MAX_HOST_LEN, "{input:?}");
    let expected = match (bracketed, authority.port()) {
        (false, None) => host.to_owned(),
        (false, Some(port)) => format!("{host}:{port}"),
        (true, None) => format!("[{host}]"),
        (true, Some(port)) => format!("[{host}]:{port}"),
    };
    assert_eq!(authority.as_str(), expected, "{input:?}");
    assert_ne!(authority.port(), Some(0), "{input:?}");
    assert_eq!(
        Authority::parse(authority.as_str()).as_ref(),
        Ok(authority),
        "{input:?}"
    );
}

fn check_target(uri: &Uri, target: &Target) {
    let input = uri.to_string();
    check_path(&input, target.path());
    check_authority(&input, target.authority());
    assert_eq!(target.query(), uri.query(), "{input:?}");
    let url = format!("http://{}{}", target.authority(), target.path_and_query());
    match url.parse::<Uri>() {
        Ok(built) => {
            assert_eq!(
                built.authority().map(|a| a.as_str()),
                Some(target.authority().as_str())
            );
            assert_eq!(built.path(), target.path(), "{url}");
            assert_eq!(built.query(), target.query(), "{url}");
        }
        Err(e) => panic!("{input:?} built the invalid URL {url:?}: {e}"),
    }
}

fuzz_target!(|input: Input| {
    if let Ok(path) = normalize_path(&input.target) {
        check_path(&input.target, &path);
    }
    if let Ok(authority) = Authority::parse(&input.target) {
        check_authority(&input.target, &authority);
    }
    let Ok(uri) = input.target.parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for host in input.hosts.iter().take(3) {
        if let Ok(value) = HeaderValue::from_bytes(host) {
            headers.append(HOST, value);
        }
    }
    let version = [
        Version::HTTP_09,
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
        Version::HTTP_3,
    ][usize::from(input.version) % 5];
    if let Ok(target) = request_target(&uri, &headers, version) {
        check_target(&uri, &target);
        let hosts = headers.get_all(HOST).iter().count();
        assert!(hosts <= 1, "{hosts} Host headers accepted");
        assert!(
            hosts == 1 || version != Version::HTTP_11,
            "HTTP/1.1 without Host accepted"
        );
    }
});
