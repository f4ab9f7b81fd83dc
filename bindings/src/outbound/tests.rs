//! The policy function itself, for every private, link-local and metadata range: these
//! addresses are only ever checked here, never sent a packet.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use edge_config::Outbound;

use super::resolver::police;
use super::{OutboundPolicy, guard};

const REFUSED: &[&str] = &[
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "192.168.255.255",
    "169.254.169.254",
    "169.254.0.1",
    "100.64.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "fe80::1",
    "fe80::1ff:fe23:4567:890a",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:192.168.1.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::1",
    // Teredo: a tunnel to the (obfuscated) IPv4 address it carries.
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
];

const ALLOWED: &[&str] = &[
    "1.1.1.1",
    "8.8.8.8",
    "11.0.0.1",
    "172.15.255.255",
    "172.32.0.1",
    "192.169.0.1",
    "169.255.0.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
];

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// What deno_fetch will do with an IP literal in the URL: run the request hook.
fn hook_allows(policy: &OutboundPolicy, address: IpAddr) -> bool {
    let host = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    guard::install(
        Arc::new(policy.clone()),
        "test",
        u32::MAX,
        crate::context::ContextTable::shared(),
    );
    let mut request = http::Request::get(format!("https://{host}/"))
        .body(())
        .expect("request");
    guard::request_hook(&mut request).is_ok()
}

/// What deno_fetch will do with a name: take the policed resolver's answers.
fn resolver_allows(policy: &OutboundPolicy, address: IpAddr) -> bool {
    police(
        policy,
        "name.test",
        vec![SocketAddr::new(address, 0)],
        "fetch",
    )
    .is_ok()
}

fn deno_allows(policy: &OutboundPolicy, address: IpAddr) -> bool {
    let by_literal = hook_allows(policy, address);
    let by_name = resolver_allows(policy, address);
    assert_eq!(
        by_literal, by_name,
        "{address}: literal and name checks agree"
    );
    by_literal
}

#[test]
fn private_link_local_metadata_and_mapped_addresses_are_refused() {
    let policy = OutboundPolicy::new(&Outbound::default());
    for address in REFUSED.iter().map(|a| ip(a)) {
        assert!(!policy.allows(address), "{address} must be refused");
        assert!(
            !deno_allows(&policy, address),
            "fetch must refuse {address} as a literal and as an answer"
        );
    }
}

#[test]
fn public_addresses_are_allowed() {
    let policy = OutboundPolicy::new(&Outbound::default());
    for address in ALLOWED.iter().map(|a| ip(a)) {
        assert!(policy.allows(address), "{address} must be allowed");
        assert!(deno_allows(&policy, address), "fetch allows {address}");
    }
}

#[test]
fn allow_loopback_opens_loopback_only() {
    let policy = OutboundPolicy::new(&Outbound {
        allow_loopback: true,
        ..Outbound::default()
    });
    for address in ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"].map(ip) {
        assert!(policy.allows(address), "{address}");
        assert!(deno_allows(&policy, address), "{address}");
    }
    for address in ["10.0.0.1", "169.254.169.254", "::", "fe80::1"].map(ip) {
        assert!(!policy.allows(address), "{address}");
        assert!(!deno_allows(&policy, address), "{address}");
    }
}

#[test]
fn an_allowlist_opens_exactly_what_it_names() {
    let policy = OutboundPolicy::new(&Outbound {
        allow: vec![
            "10.1.2.3".parse().expect("cidr"),
            "fd00:1::/64".parse().expect("cidr"),
        ],
        ..Outbound::default()
    });
    for address in ["10.1.2.3", "fd00:1::5"].map(ip) {
        assert!(policy.allows(address), "{address}");
        assert!(deno_allows(&policy, address), "{address}");
    }
    for address in ["10.1.2.2", "10.1.2.4", "10.0.0.1", "fd00:2::1", "127.0.0.1"].map(ip) {
        assert!(!policy.allows(address), "{address}");
        assert!(!deno_allows(&policy, address), "{address}");
    }
}

#[test]
fn a_name_with_any_refused_answer_is_refused() {
    let policy = OutboundPolicy::new(&Outbound::default());
    let answers = vec![
        SocketAddr::new(ip("93.184.216.34"), 0),
        SocketAddr::new(ip("127.0.0.1"), 0),
    ];
    let error = police(&policy, "rebind.test", answers, "fetch").expect_err("refused");
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
}

#[test]
fn subrequests_are_capped_per_request_and_hops_are_marked() {
    let policy = Arc::new(OutboundPolicy::new(&Outbound::default()));
    let contexts = crate::context::ContextTable::shared();
    guard::install(policy, "shop", 2, contexts.clone());
    let context = |id, chain| crate::context::RequestContext {
        id,
        request_id: "r".into(),
        trace: isola_wire::trace::TraceParent::root(),
        trace_from_client: false,
        deadline: std::time::Instant::now(),
        max_body_bytes: 0,
        loop_chain: chain,
        tail: None,
        client_address: None,
    };
    contexts.borrow_mut().open(&context(
        7,
        Some(http::HeaderValue::from_static("isola; id=00ff")),
    ));
    contexts.borrow_mut().open(&context(8, None));
    let request_of = |id: &str| {
        http::Request::get("https://example.com/")
            .header(guard::CONTEXT_HEADER, id)
            .body(())
            .expect("request")
    };
    let mut request = request_of("7");
    assert!(guard::request_hook(&mut request).is_ok());
    assert!(
        !request.headers().contains_key(guard::CONTEXT_HEADER),
        "the context header is never sent"
    );
    let chain = request.headers()[guard::CDN_LOOP].to_str().expect("ascii");
    assert_eq!(
        chain,
        format!("isola; id=00ff, isola; id={}", guard::loop_id("shop"))
    );
    assert!(
        !chain.contains("shop"),
        "no deployment name leaves the node"
    );
    assert!(guard::request_hook(&mut request_of("7")).is_ok());
    let third = guard::request_hook(&mut request_of("7")).expect_err("capped");
    assert!(third.to_string().contains("max_subrequests"), "{third}");
    let mut other = request_of("8");
    assert!(
        guard::request_hook(&mut other).is_ok(),
        "another request in the same isolate counts from zero"
    );
    assert_eq!(
        other.headers()[guard::CDN_LOOP].to_str().expect("ascii"),
        format!("isola; id={}", guard::loop_id("shop")),
        "and carries its own chain"
    );
}

#[test]
fn loops_are_recognised_in_cdn_loop() {
    let (a, b) = (guard::loop_id("a"), guard::loop_id("b"));
    assert_ne!(a, b);
    assert_eq!(
        guard::hops(&format!("isola; id={a}, isola; id={b}"), "a"),
        (2, true)
    );
    assert_eq!(
        guard::hops(&format!("cloudflare, isola; id={b}"), "a"),
        (1, false)
    );
    assert_eq!(guard::hops("", "a"), (0, false));
}
