//! A worker's response headers never frame the response: a forged `content-length` with an
//! HTTP response in the body cannot smuggle a second response onto a keep-alive connection,
//! and hop-by-hop headers are dropped. Malformed request framing is the client's fault (400).

use std::time::Duration;

use crate::support::{Isola, Proto, fixture, get, raw_exchange};

#[tokio::test]
async fn worker_headers_cannot_frame_the_response() {
    let isola = Isola::dev(&fixture("hardening.js"), &[]);
    let host = isola.authority();
    let requests = format!(
        "GET /forge HTTP/1.1\r\nhost: {host}\r\n\r\nGET /second HTTP/1.1\r\nhost: {host}\r\n\r\n"
    );
    let (text, _) = raw_exchange(&host, requests.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(
        text.matches("HTTP/1.1 200 OK").count(),
        3,
        "two real responses, one of them carrying the forged text as its body: {text}"
    );
    let (first_head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    let head = first_head.to_ascii_lowercase();
    assert!(
        head.contains("content-length: 59"),
        "framed by its real length: {first_head}"
    );
    let names: Vec<&str> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':').map(|(name, _)| name))
        .collect();
    for dropped in [
        "transfer-encoding",
        "connection",
        "x-hop",
        "keep-alive",
        "upgrade",
        "trailer",
        "te",
        "proxy-authenticate",
        "proxy-connection",
    ] {
        assert!(
            !names.contains(&dropped),
            "{dropped} reached the wire: {first_head}"
        );
    }
    assert!(!head.contains("content-length: 0"), "{first_head}");
    assert!(head.contains("x-kept: yes"), "{first_head}");
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\nx-forged: yes\r\ncontent-length: 6\r\n\r\nforged"),
        "the forged response is only body: {rest}"
    );
    assert!(
        rest.contains("path /second"),
        "the next response is the worker's answer to the second request: {rest}"
    );

    let h2 = get(Proto::H2c, &isola, "/forge").await;
    assert_eq!(h2.status, 200);
    assert!(h2.headers.get("x-hop").is_none() && h2.headers.get("upgrade").is_none());
    assert_eq!(h2.body.len(), 59);
}

#[tokio::test]
async fn a_malformed_chunk_size_is_a_bad_request() {
    let isola = Isola::dev(&fixture("echo.js"), &[]);
    let host = isola.authority();
    let request = format!(
        "POST /count HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    );
    let (text, _) = raw_exchange(&host, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    let logs = isola.logs();
    assert!(
        !logs.contains("ERROR"),
        "the client's mistake is no server error: {logs}"
    );
}

#[tokio::test]
async fn one_authority_and_one_normalised_path_per_request() {
    let isola = Isola::serve(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[[routes]]
host = "a.test"
path_prefix = "/foo"
worker = "foo"
[[routes]]
host = "a.test"
worker = "site"
[workers.foo]
file = "{fixtures}/hardening.js"
[workers.site]
file = "{fixtures}/hardening.js"
vars = { SITE = "1" }
"#,
    );
    let authority = isola.authority();
    let exchange = |request: String| {
        let authority = authority.clone();
        async move {
            let request = request.replacen("\r\n", "\r\nconnection: close\r\n", 1);
            let (text, _) =
                raw_exchange(&authority, request.as_bytes(), Duration::from_secs(5)).await;
            text
        }
    };
    let mismatch =
        exchange("GET http://a.test/page HTTP/1.1\r\nhost: evil.test\r\n\r\n".into()).await;
    assert!(mismatch.starts_with("HTTP/1.1 400"), "{mismatch}");
    let no_host = exchange("GET /page HTTP/1.1\r\n\r\n".into()).await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    let two_hosts =
        exchange("GET /page HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\n\r\n".into()).await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
    let userinfo = exchange("GET /page HTTP/1.1\r\nhost: user@a.test\r\n\r\n".into()).await;
    assert!(userinfo.starts_with("HTTP/1.1 400"), "{userinfo}");

    for path in ["/foo/../admin", "/foo/%2e%2e/admin", "/foo/%2E./admin"] {
        let reply = exchange(format!("GET {path} HTTP/1.1\r\nhost: A.Test.\r\n\r\n")).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            reply.contains("path /admin host a.test url http://a.test/admin"),
            "{path} is /admin, routed past /foo, with one host: {reply}"
        );
    }
    let absolute =
        exchange("GET http://a.test/foo/x?q=1 HTTP/1.1\r\nhost: a.test\r\n\r\n".into()).await;
    assert!(
        absolute.contains("path /foo/x host a.test url http://a.test/foo/x?q=1"),
        "{absolute}"
    );

    // HTTP/2: `:authority` and `host` must agree.
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("http://a.test/page")
        .header("host", "evil.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 400);
}
