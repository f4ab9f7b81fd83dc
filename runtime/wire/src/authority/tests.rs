//! Every rule of the module docs, one test each, plus an exhaustive run over short paths.

use http::{HeaderMap, HeaderValue, Uri, Version};

use super::*;

/// The target of a request with `uri` and these `Host` header values.
fn target(uri: &str, hosts: &[&[u8]], version: Version) -> Result<Target, TargetError> {
    let uri: Uri = match uri.parse() {
        Ok(uri) => uri,
        Err(e) => panic!("the test's URI {uri:?} is invalid: {e}"),
    };
    let mut headers = HeaderMap::new();
    for host in hosts {
        match HeaderValue::from_bytes(host) {
            Ok(value) => headers.append(HOST, value),
            Err(e) => panic!("the test's Host {host:?} is invalid: {e}"),
        };
    }
    request_target(&uri, &headers, version)
}

fn h1(uri: &str, hosts: &[&str]) -> Result<Target, TargetError> {
    let hosts: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).collect();
    target(uri, &hosts, Version::HTTP_11)
}

fn authority(text: &str) -> Result<(String, Option<u16>, String), TargetError> {
    let authority = Authority::parse(text)?;
    Ok((
        authority.host().to_owned(),
        authority.port(),
        authority.as_str().to_owned(),
    ))
}

fn path(text: &str) -> Result<String, TargetError> {
    normalize_path(text)
}

#[test]
fn origin_form_takes_the_host_header() -> Result<(), TargetError> {
    let t = h1("/a/b?x=1&y=/../z", &["Shop.Example.COM.:8443"])?;
    assert_eq!(t.host(), "shop.example.com");
    assert_eq!(t.authority().as_str(), "shop.example.com:8443");
    assert_eq!(t.authority().port(), Some(8443));
    assert_eq!(t.path(), "/a/b");
    assert_eq!(t.query(), Some("x=1&y=/../z"), "the query is kept verbatim");
    assert_eq!(t.path_and_query(), "/a/b?x=1&y=/../z");
    let t = h1("/", &["a.test"])?;
    assert_eq!((t.path(), t.query(), t.path_and_query()), ("/", None, "/"));
    Ok(())
}

#[test]
fn two_host_headers_are_refused() {
    assert_eq!(
        h1("/", &["a.test", "a.test"]),
        Err(TargetError::DuplicateHost)
    );
    assert_eq!(
        target("/", &[b"a.test", b"b.test"], Version::HTTP_2),
        Err(TargetError::DuplicateHost)
    );
}

#[test]
fn http_1_1_needs_host_even_in_absolute_form() {
    assert_eq!(h1("/", &[]), Err(TargetError::MissingHost));
    assert_eq!(h1("http://a.test/", &[]), Err(TargetError::MissingHost));
}

#[test]
fn http_1_0_may_omit_host_in_absolute_form_only() -> Result<(), TargetError> {
    let t = target("http://A.test:8080/p", &[], Version::HTTP_10)?;
    assert_eq!((t.authority().as_str(), t.path()), ("a.test:8080", "/p"));
    assert_eq!(
        target("/p", &[], Version::HTTP_10),
        Err(TargetError::MissingAuthority)
    );
    assert_eq!(
        target("/p", &[b"a.test"], Version::HTTP_10)?.host(),
        "a.test"
    );
    assert_eq!(
        target("http://a.test/", &[b"b.test"], Version::HTTP_10),
        Err(TargetError::AuthorityMismatch)
    );
    Ok(())
}

#[test]
fn http_1_1_absolute_form_must_agree_with_host() -> Result<(), TargetError> {
    assert_eq!(
        h1("http://a.test/page", &["b.test"]),
        Err(TargetError::AuthorityMismatch)
    );
    assert_eq!(
        h1("http://a.test/page", &["a.test:80"]),
        Err(TargetError::AuthorityMismatch),
        "ports are compared as given"
    );
    let t = h1("http://A.TEST./page?q", &["a.test"])?;
    assert_eq!(
        (t.authority().as_str(), t.path_and_query()),
        ("a.test", "/page?q")
    );
    assert_eq!(h1("http://a.test", &["a.test"])?.path(), "/");
    Ok(())
}

#[test]
fn http_2_uses_authority_or_host_and_both_must_agree() -> Result<(), TargetError> {
    let h2 = |uri: &str, hosts: &[&[u8]]| target(uri, hosts, Version::HTTP_2);
    assert_eq!(h2("https://a.test/x", &[])?.authority().as_str(), "a.test");
    assert_eq!(
        h2("/x", &[b"b.test:444"])?.authority().as_str(),
        "b.test:444"
    );
    assert_eq!(h2("https://A.test/x", &[b"a.TEST"])?.host(), "a.test");
    assert_eq!(
        h2("https://a.test/x", &[b"b.test"]),
        Err(TargetError::AuthorityMismatch)
    );
    assert_eq!(h2("/x", &[]), Err(TargetError::MissingAuthority));
    assert_eq!(
        target("/x", &[], Version::HTTP_3),
        Err(TargetError::MissingAuthority)
    );
    Ok(())
}

#[test]
fn userinfo_is_refused_in_host_and_target() {
    assert_eq!(authority("user@a.test"), Err(TargetError::Userinfo));
    assert_eq!(
        h1("http://user:pw@a.test/", &["a.test"]),
        Err(TargetError::Userinfo)
    );
    assert_eq!(h1("/", &["a.test@evil.test"]), Err(TargetError::Userinfo));
}

#[test]
fn delimiters_spaces_controls_and_escapes_are_not_host_characters() {
    for (text, c) in [
        ("a.test/x", '/'),
        ("a.test?x", '?'),
        ("a.test#x", '#'),
        ("a test", ' '),
        ("a.test\t", '\t'),
        ("a\0.test", '\0'),
        ("a\u{7f}", '\u{7f}'),
        ("%61.test", '%'),
        ("a,b.test", ','),
        ("a\\b", '\\'),
        ("bücher.test", 'ü'),
    ] {
        assert_eq!(
            authority(text),
            Err(TargetError::HostCharacter(c)),
            "{text:?}"
        );
    }
    assert_eq!(h1("/", &["a test"]), Err(TargetError::HostCharacter(' ')));
    assert_eq!(
        target("/", &[b"\xffa.test"], Version::HTTP_11),
        Err(TargetError::HostNotAscii)
    );
}

#[test]
fn hosts_are_lower_cased_without_one_trailing_dot() -> Result<(), TargetError> {
    assert_eq!(
        authority("WWW.Example.COM.")?,
        (
            "www.example.com".to_owned(),
            None,
            "www.example.com".to_owned()
        )
    );
    assert_eq!(authority("a_b-c.test:1")?.2, "a_b-c.test:1");
    assert_eq!(authority("127.0.0.1:8080")?.0, "127.0.0.1");
    assert_eq!(authority("localhost")?.2, "localhost");
    Ok(())
}

#[test]
fn empty_hosts_and_labels_and_long_names_are_refused() {
    for text in ["", ":80", ".", ".:80"] {
        assert_eq!(authority(text), Err(TargetError::EmptyHost), "{text:?}");
    }
    for text in ["a..test", ".a.test", "a.test..", "..", "a.test..:80"] {
        assert_eq!(authority(text), Err(TargetError::EmptyLabel), "{text:?}");
    }
    let longest = format!("{}.test", "a".repeat(MAX_HOST_LEN - 5));
    assert!(authority(&longest).is_ok());
    assert!(
        authority(&format!("{longest}.")).is_ok(),
        "the trailing dot is not counted"
    );
    assert_eq!(
        authority(&format!("a{longest}")),
        Err(TargetError::HostTooLong)
    );
}

#[test]
fn ports_are_one_to_five_digits_from_1_to_65535() -> Result<(), TargetError> {
    assert_eq!(authority("a.test:65535")?.1, Some(65535));
    assert_eq!(authority("a.test:1")?.1, Some(1));
    assert_eq!(
        authority("a.test:00080")?,
        ("a.test".to_owned(), Some(80), "a.test:80".to_owned())
    );
    for text in [
        "a.test:",
        "a.test:0",
        "a.test:65536",
        "a.test:99999",
        "a.test:000080",
        "a.test:+80",
        "a.test:-1",
        "a.test:8o",
        "a.test: 80",
        "a.test:80:80",
        "[::1]:",
        "[::1]:0",
    ] {
        assert!(
            matches!(
                authority(text),
                Err(TargetError::Port | TargetError::IpLiteral)
            ),
            "{text:?}: {:?}",
            authority(text)
        );
    }
    assert_eq!(authority("a.test:"), Err(TargetError::Port));
    assert_eq!(authority("a.test:0"), Err(TargetError::Port));
    Ok(())
}

#[test]
fn ipv6_literals_need_brackets_and_are_canonical() -> Result<(), TargetError> {
    assert_eq!(
        authority("[::1]:8080")?,
        ("::1".to_owned(), Some(8080), "[::1]:8080".to_owned())
    );
    assert_eq!(authority("[2001:DB8:0:0::1]")?.2, "[2001:db8::1]");
    assert_eq!(authority("[::FFFF:10.0.0.1]")?.0, "::ffff:10.0.0.1");
    for text in [
        "::1",
        "[::1",
        "[::1]x",
        "[::1]]",
        "[]",
        "[fe80::1%25eth0]",
        "[v1.x]",
        "[1.2.3.4]",
        "2001:db8::1:80",
    ] {
        assert_eq!(authority(text), Err(TargetError::IpLiteral), "{text:?}");
    }
    let t = h1("http://[::1]:8443/x", &["[0::1]:8443"])?;
    assert_eq!((t.host(), t.authority().as_str()), ("::1", "[::1]:8443"));
    Ok(())
}

#[test]
fn dot_segments_are_removed() -> Result<(), TargetError> {
    for (input, expected) in [
        ("/foo/../admin", "/admin"),
        ("/a/./b", "/a/b"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/../", "/a/"),
        ("/.", "/"),
        ("/..", "/"),
        ("/./", "/"),
        ("/", "/"),
        ("/a//../b", "/a/b"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/c.", "/a/..b/c."),
    ] {
        assert_eq!(path(input)?, expected, "{input}");
    }
    Ok(())
}

#[test]
fn dot_dot_stops_at_the_root() -> Result<(), TargetError> {
    assert_eq!(path("/../../etc/passwd")?, "/etc/passwd");
    assert_eq!(path("/a/../../../b")?, "/b");
    assert_eq!(path("/%2e%2e/%2e%2e/b")?, "/b");
    Ok(())
}

#[test]
fn percent_encoded_dots_are_dots() -> Result<(), TargetError> {
    for (input, expected) in [
        ("/foo/%2e%2e/admin", "/admin"),
        ("/foo/%2E%2E/admin", "/admin"),
        ("/foo/.%2e/admin", "/admin"),
        ("/foo/%2E./admin", "/admin"),
        ("/a/%2e/b", "/a/b"),
        ("/a/%2E", "/a/"),
        ("/a/%2e%2e%2e/b", "/a/%2e%2e%2e/b"),
        ("/a/%2eb/c", "/a/%2eb/c"),
        ("/a/%252e%252e/b", "/a/%252e%252e/b"),
    ] {
        assert_eq!(path(input)?, expected, "{input}");
    }
    let t = h1("/static/%2e%2e/admin?x", &["a.test"])?;
    assert_eq!(t.path_and_query(), "/admin?x");
    Ok(())
}

#[test]
fn encoded_slashes_backslashes_and_empty_segments_stay() -> Result<(), TargetError> {
    assert_eq!(path("/a%2F..%2Fb")?, "/a%2F..%2Fb");
    assert_eq!(path("/a/..%2f/b")?, "/a/..%2f/b");
    assert_eq!(path("/a\\..\\b")?, "/a\\..\\b");
    assert_eq!(path("/a/..\\b")?, "/a/..\\b");
    assert_eq!(path("//a//b/")?, "//a//b/");
    Ok(())
}

#[test]
fn only_origin_form_paths_are_accepted() {
    assert_eq!(path("*"), Err(TargetError::Asterisk));
    assert_eq!(h1("*", &["a.test"]), Err(TargetError::Asterisk));
    assert_eq!(path(""), Err(TargetError::PathNotAbsolute));
    assert_eq!(path("a/b"), Err(TargetError::PathNotAbsolute));
    assert_eq!(path("../a"), Err(TargetError::PathNotAbsolute));
    assert_eq!(
        h1("a.test:443", &["a.test:443"]),
        Err(TargetError::PathNotAbsolute),
        "authority-form (CONNECT) has no path"
    );
}

#[test]
fn errors_never_repeat_the_request() {
    let messages = [
        h1("/", &["secret@a.test"]),
        h1("http://a.test/", &["secret.test"]),
        h1("/", &["secret.test:99999"]),
    ];
    for message in messages
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(ToString::to_string)
    {
        assert!(!message.contains("secret"), "{message}");
    }
}

/// Every path of up to 6 characters from an alphabet of separators, dots and escapes.
#[test]
fn short_paths_never_keep_a_dot_segment() {
    const ALPHABET: &[u8] = b"/.%2eEa\\";
    let mut paths = vec![String::from("/")];
    let mut frontier = paths.clone();
    for _ in 0..6 {
        frontier = frontier
            .iter()
            .flat_map(|p| {
                ALPHABET
                    .iter()
                    .map(move |c| format!("{p}{}", char::from(*c)))
            })
            .collect();
        paths.extend(frontier.iter().cloned());
    }
    for input in paths {
        let Ok(output) = path(&input) else {
            panic!("{input:?} was refused");
        };
        assert!(output.starts_with('/'), "{input:?} → {output:?}");
        assert!(
            output.split('/').all(|s| dots(s).is_none_or(|n| n > 2)),
            "{input:?} → {output:?}"
        );
        assert_eq!(
            path(&output).as_deref(),
            Ok(output.as_str()),
            "idempotent: {input:?}"
        );
    }
}

#[test]
fn the_normal_form_shortcut_agrees_with_normalising_on_every_short_authority() {
    const ALPHABET: &[u8] = b"a.:0A9-_[]@1";
    let mut checked = 0;
    let mut taken = 0;
    let mut text = Vec::new();
    for len in 0..=5u32 {
        for mut n in 0..ALPHABET.len().pow(len) {
            text.clear();
            for _ in 0..len {
                text.push(ALPHABET[n % ALPHABET.len()]);
                n /= ALPHABET.len();
            }
            let Ok(text) = std::str::from_utf8(&text) else {
                continue;
            };
            let slow = Authority::normalize(text);
            if let Some(fast) = Authority::already_normal(text) {
                taken += 1;
                assert_eq!(Ok(&fast), slow.as_ref(), "{text:?}");
                assert_eq!(fast.as_str(), text, "{text:?} is taken as it is");
            }
            assert_eq!(Authority::parse(text), slow, "{text:?}");
            checked += 1;
        }
    }
    for text in [
        "example.com",
        "example.com:65535",
        "example.com:65536",
        "example.com:99999",
        "example.com:123456",
        "example.com:00080",
        &"a".repeat(MAX_HOST_LEN),
        &format!("{}:8080", "a".repeat(MAX_HOST_LEN)),
        &"a".repeat(MAX_HOST_LEN + 1),
        &format!("{}.", "a".repeat(MAX_HOST_LEN)),
    ] {
        let slow = Authority::normalize(text);
        if let Some(fast) = Authority::already_normal(text) {
            assert_eq!(Ok(&fast), slow.as_ref(), "{text:?}");
        }
        assert_eq!(Authority::parse(text), slow, "{text:?}");
    }
    assert!(
        checked > 200_000 && taken > 10_000,
        "{checked} checked, {taken} taken"
    );
}
