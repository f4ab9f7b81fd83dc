//! The outbound fetch policy over real sockets, with loopback targets only: literal
//! addresses, `localhost`, a name the worker's resolve table maps to 127.0.0.1 and a redirect
//! into loopback are refused in `isola serve` before any connection is made; an allowlisted
//! address is reached; subrequests are capped; a fetch back into the same deployment is
//! stopped. (Private and metadata ranges are tested on the policy function itself.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

use crate::support::{Isola, Proto, fixture, get};

/// A loopback HTTP server counting the connections it accepted: `/ok` answers, and
/// `/redirect?to=URL` redirects.
async fn upstream(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        // Bounded: a test makes only a handful of connections.
        for _ in 0..64 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let service =
                hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let query = request.uri().query().unwrap_or("").to_owned();
                    let response = match request.uri().path() {
                        "/redirect" => Response::builder()
                            .status(302)
                            .header("location", query.trim_start_matches("to="))
                            .body(Full::new(Bytes::new())),
                        _ => Response::builder().body(Full::new(Bytes::from("ok"))),
                    };
                    Ok::<_, Infallible>(response.unwrap())
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (address, accepted)
}

fn serve(allowed: SocketAddr) -> Isola {
    Isola::serve(&format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"

[[routes]]
worker = "w"

[workers.w]
file = "{{fixtures}}/outbound.js"
[workers.w.outbound]
allow = ["{ip}"]
resolve = {{ "rebind.test" = "127.0.0.1", "upstream.test" = "{ip}" }}
[workers.w.limits]
max_subrequests = 3
"#,
        ip = allowed.ip()
    ))
}

async fn fetch_via(isola: &Isola, target: &str) -> (u16, String) {
    let reply = get(Proto::H1, isola, &format!("/fetch?url={target}")).await;
    (reply.status, reply.text())
}

#[tokio::test]
async fn serve_refuses_loopback_by_address_name_resolve_table_and_redirect() {
    let (secret, secret_hits) = upstream("127.0.0.1").await;
    let (allowed, _) = upstream("127.0.0.2").await;
    let isola = serve(allowed);
    let port = secret.port();
    for target in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://rebind.test:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://{allowed}/redirect?to=http://127.0.0.1:{port}/secret"),
    ] {
        let (status, text) = fetch_via(&isola, &target).await;
        assert_eq!(status, 502, "{target}: {text}");
        assert!(text.contains("fetch refused"), "{target}: {text}");
    }
    assert_eq!(
        secret_hits.load(Ordering::SeqCst),
        0,
        "no connection reached the refused server"
    );
    let (status, text) = fetch_via(
        &isola,
        &format!("http://upstream.test:{}/ok", allowed.port()),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (200, "reached 200: ok"),
        "the allowlist opens 127.0.0.2"
    );
}

#[tokio::test]
async fn subrequests_are_capped_per_request() {
    let (allowed, _) = upstream("127.0.0.2").await;
    let isola = serve(allowed);
    let path = format!("/many?n=5&url=http://{allowed}/ok");
    let reply = get(Proto::H1, &isola, &path).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        reply
            .text()
            .starts_with("made 3 then: too many subrequests"),
        "{}",
        reply.text()
    );
    let reply = get(Proto::H1, &isola, &path).await;
    assert!(
        reply.text().starts_with("made 3 then"),
        "the next request gets its own budget: {}",
        reply.text()
    );
}

#[tokio::test]
async fn a_fetch_back_into_the_same_deployment_is_stopped() {
    // `isola dev` allows loopback, so the worker can reach itself; the hop is recognised.
    let isola = Isola::dev(&fixture("outbound.js"), &[]);
    let reply = get(Proto::H1, &isola, "/self").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .text()
            .starts_with("self 508: the request looped back to worker outbound"),
        "{}",
        reply.text()
    );
}
