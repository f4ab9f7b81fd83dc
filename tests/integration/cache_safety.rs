//! The response cache's safe defaults: it serves only workers that opted in
//! (`cache = true`); a request with `Cookie` neither gets nor stores a response that is not
//! explicitly shared (`public`, `s-maxage`); `Vary` is matched on the client-address headers
//! as the front end rewrote them.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::support::{Isola, Reply, collect};

fn node(cache: bool) -> Isola {
    Isola::serve(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[[routes]]
worker = "site"
[workers.site]
file = "{{fixtures}}/hardening.js"
cache = {cache}
"#
    ))
}

/// GET `path` from the source address `from` (a loopback address) with `headers`.
async fn get_from(isola: &Isola, from: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket
        .connect(isola.authority().parse().unwrap())
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::get(path).header("host", isola.authority());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    collect(response).await
}

fn cache_status(reply: &Reply) -> String {
    reply
        .headers
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_worker_that_did_not_opt_in_is_never_cached() {
    let isola = node(false);
    let first = get_from(&isola, "127.0.0.1", "/shared", &[("cookie", "user=a")]).await;
    let second = get_from(&isola, "127.0.0.1", "/shared", &[]).await;
    assert_eq!(first.text(), "shared user=a");
    assert_eq!(second.text(), "shared stranger", "not served from a cache");
    assert_eq!(cache_status(&second), "", "no cache in front of it");
}

#[tokio::test]
async fn pages_for_a_cookie_are_not_shared_unless_public() {
    let isola = node(true);
    let mine = get_from(&isola, "127.0.0.1", "/personal", &[("cookie", "user=a")]).await;
    assert_eq!(mine.text(), "hello user=a");
    let theirs = get_from(&isola, "127.0.0.1", "/personal", &[("cookie", "user=b")]).await;
    assert_eq!(
        theirs.text(),
        "hello user=b",
        "another user never gets user a's page"
    );
    let anonymous = get_from(&isola, "127.0.0.1", "/personal", &[]).await;
    assert_eq!(anonymous.text(), "hello stranger");
    let cached = get_from(&isola, "127.0.0.1", "/personal", &[("cookie", "user=c")]).await;
    assert_eq!(
        cached.text(),
        "hello user=c",
        "the anonymous copy (max-age, not public) is not served to a cookie"
    );
    let anonymous_again = get_from(&isola, "127.0.0.1", "/personal", &[]).await;
    assert!(
        cache_status(&anonymous_again).contains("hit"),
        "anonymous requests share it"
    );

    get_from(&isola, "127.0.0.1", "/shared", &[("cookie", "user=a")]).await;
    let shared = get_from(&isola, "127.0.0.1", "/shared", &[("cookie", "user=b")]).await;
    assert_eq!(
        shared.text(),
        "shared user=a",
        "a public response is shared on purpose"
    );
    assert!(cache_status(&shared).contains("hit"));
}

#[tokio::test]
async fn vary_sees_the_client_address_the_front_end_set() {
    let isola = node(true);
    let two = get_from(&isola, "127.0.0.2", "/ip", &[]).await;
    assert_eq!(two.text(), "ip 127.0.0.2");
    let three = get_from(&isola, "127.0.0.3", "/ip", &[]).await;
    assert_eq!(
        three.text(),
        "ip 127.0.0.3",
        "127.0.0.2's page is not served to .3"
    );
    let four = get_from(&isola, "127.0.0.4", "/ip", &[("x-real-ip", "127.0.0.3")]).await;
    assert_eq!(
        four.text(),
        "ip 127.0.0.4",
        "a forged x-real-ip does not select a variant"
    );
}
