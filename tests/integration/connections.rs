//! Connection limits over real sockets: a socket that sends nothing, one byte, part of the
//! HTTP/2 preface, or nothing after its TLS handshake is closed after
//! `header_read_timeout_ms` (a partial HTTP/1.1 head with a 408); idle keep-alive and HTTP/2
//! connections after `connection_idle_timeout_ms`; a listener at `max_connections` sheds its
//! longest idle connection for a new one; and when clients hold every file descriptor the
//! data plane may use, the admin API and metrics still answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{ADMIN_TOKEN, Isola, Proto, get, raw_exchange, repo};

fn node(extra_listener: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[node]
metrics_address = "127.0.0.1:0"
[http]
header_read_timeout_ms = 1000
connection_idle_timeout_ms = 1500
[admin]
address = "127.0.0.1:0"
[[listeners]]
address = "127.0.0.1:0"
{extra_listener}
[[routes]]
worker = "hello"
[workers.hello]
file = "{}"
"#,
        repo().join("examples/hello.js").display()
    ))
}

/// Sends `bytes` and says how long the server took to close the connection (at most 6 s).
async fn closed_after(authority: &str, bytes: &[u8]) -> (Duration, String) {
    let started = Instant::now();
    let (text, closed) = raw_exchange(authority, bytes, Duration::from_secs(6)).await;
    assert!(closed, "the connection stayed open: {text:?}");
    (started.elapsed(), text)
}

#[tokio::test]
async fn silent_and_partial_connections_are_closed_after_the_head_timeout() {
    let isola = node("");
    let authority = isola.authority();
    let (silent, text) = closed_after(&authority, b"").await;
    assert!(silent >= Duration::from_millis(800), "{silent:?}");
    assert!(
        text.is_empty(),
        "nothing is said to a silent socket: {text}"
    );
    let (one_byte, text) = closed_after(&authority, b"G").await;
    assert!(one_byte >= Duration::from_millis(800), "{one_byte:?}");
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "a partial head gets 408: {text:?}"
    );
    let (partial_head, text) = closed_after(&authority, b"GET / HTTP/1.1\r\nhost: x\r\n").await;
    assert!(
        partial_head >= Duration::from_millis(800),
        "{partial_head:?}"
    );
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    let (preface, _) = closed_after(&authority, b"PRI * HTTP/2.0\r\n").await;
    assert!(preface >= Duration::from_millis(800), "{preface:?}");
}

#[tokio::test]
async fn idle_keep_alive_and_http2_connections_are_closed() {
    let isola = node("");
    let authority = isola.authority();
    let request = format!("GET / HTTP/1.1\r\nhost: {authority}\r\n\r\n");
    let (idle, text) = closed_after(&authority, request.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        idle >= Duration::from_millis(1300),
        "kept until the idle timeout: {idle:?}"
    );

    let stream = TcpStream::connect(&authority).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{authority}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    tokio::time::timeout(Duration::from_secs(6), connection)
        .await
        .expect("the idle HTTP/2 connection is closed by the server")
        .unwrap()
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(1300));
}

#[tokio::test]
async fn a_tls_session_that_sends_nothing_is_closed() {
    let dir = std::env::temp_dir().join(format!("isola-conn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let isola = Isola::serve(&format!(
        "[http]\nheader_read_timeout_ms = 1000\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n[[routes]]\nworker = \"hello\"\n[workers.hello]\nfile = \"{}\"\n",
        cert.display(),
        key.display(),
        repo().join("examples/hello.js").display()
    ));
    let connector = crate::support::tls_client(&cert, &[b"http/1.1"]);
    let stream = TcpStream::connect(isola.authority()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let started = Instant::now();
    let mut tls = connector.connect(name, stream).await.expect("handshake");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        Duration::from_secs(6),
        tokio::io::AsyncReadExt::read(&mut tls, &mut buf),
    )
    .await
    .expect("the silent TLS session is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(800));
    let _ = tls.shutdown().await;
}

#[tokio::test]
async fn a_full_listener_sheds_its_longest_idle_connection() {
    let isola = node("max_connections = 4");
    let authority = isola.authority();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(&authority).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200, "a new client is served at the limit");
    let mut oldest = idle.remove(0);
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::io::AsyncReadExt::read(&mut oldest, &mut buf),
    )
    .await
    .expect("the longest idle connection was closed to make room");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn control_listeners_answer_when_clients_hold_every_data_connection() {
    // Under a 512 file-descriptor limit the data plane keeps at most 192 connections. This
    // test's process holds 600 sockets: lift its own soft limit first.
    let mut own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    own.current = own.maximum;
    rustix::process::setrlimit(rustix::process::Resource::Nofile, own).unwrap();
    let config = std::env::temp_dir().join(format!("isola-fd-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[node]\nmetrics_address = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[routes]]\nworker = \"hello\"\n[workers.hello]\nfile = \"{}\"\n",
            repo().join("examples/hello.js").display()
        ),
    )
    .unwrap();
    let isola = Isola::start_with_prefix(
        &["prlimit", "--nofile=512:512", "--"],
        &[
            "serve".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ],
    );
    let authority = isola.authority();
    let mut held = Vec::new();
    for _ in 0..600 {
        match TcpStream::connect(&authority).await {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    assert!(
        held.len() >= 400,
        "the clients held {} connections",
        held.len()
    );
    let listed = isola.admin(ADMIN_TOKEN, "GET", "/workers", "").await;
    assert_eq!(listed.status, 200, "the admin API answers");
    let metrics = isola.metrics().await;
    assert!(metrics.contains("isola_"), "metrics answer: {metrics}");
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(
        reply.status, 200,
        "a new data-plane client is served (an idle one was shed)"
    );
    let _ = std::fs::remove_file(&config);
}
