//! HTTP/1.1, HTTP/2 (h2c and TLS with ALPN), HEAD, vars, both worker syntaxes.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::support::{Isola, Proto, collect, get, repo, send, tls_client};

#[tokio::test]
async fn hello_over_http1_and_h2c() {
    let isola = Isola::dev(&repo().join("examples/hello.js"), &[]);
    for proto in [Proto::H1, Proto::H2c] {
        let reply = get(proto, &isola, "/").await;
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.text(), "Hello from Isola!\n", "{proto:?}");
    }
}

#[tokio::test]
async fn head_is_answered_without_a_body() {
    let isola = Isola::dev(&repo().join("examples/hello.js"), &[]);
    let request = Request::head(format!("http://{}/", isola.authority()))
        .header("host", isola.authority())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(Proto::H1, &isola.authority(), request).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert_eq!(reply.headers["content-length"], "18");
}

#[tokio::test]
async fn tls_negotiates_h2_and_http1_with_alpn() {
    let isola = Isola::dev(&repo().join("examples/hello.js"), &["--tls"]);
    assert!(isola.url.starts_with("https://"), "{}", isola.url);
    let stdout = isola.stdout.lock().unwrap().join("\n");
    let cert = stdout
        .split(" at ")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no certificate path printed: {stdout}"));
    for (alpn, expect_h2) in [(&b"h2"[..], true), (&b"http/1.1"[..], false)] {
        let connector = tls_client(std::path::Path::new(&cert), &[alpn]);
        let tcp = TcpStream::connect(isola.authority()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the self-signed certificate");
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated.as_deref(), Some(alpn));
        let request = Request::get(format!("https://{}/", isola.authority()))
            .header("host", isola.authority())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = if expect_h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            sender.send_request(request).await.unwrap()
        };
        assert_eq!(
            response.version(),
            if expect_h2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
        let reply = collect(response).await;
        assert_eq!(reply.text(), "Hello from Isola!\n");
    }
}

#[tokio::test]
async fn vars_reach_env_in_module_workers() {
    let isola = Isola::dev(
        &repo().join("examples/json-api.js"),
        &["--var", "GREETING=bonjour"],
    );
    let reply = get(Proto::H1, &isola, "/api/items").await;
    assert_eq!(reply.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["greeting"], "bonjour", "{json}");
}

#[tokio::test]
async fn service_worker_syntax_gets_vars_as_globals() {
    let isola = Isola::dev(
        &crate::support::fixture("service-worker.js"),
        &["--var", "GREETING=hallo"],
    );
    let reply = get(Proto::H2c, &isola, "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "service worker says hallo");
}

#[tokio::test]
async fn client_address_headers_come_from_the_socket() {
    let isola = Isola::dev(&crate::support::fixture("echo.js"), &[]);
    let request = Request::get(format!("http://{}/headers", isola.authority()))
        .header("host", isola.authority())
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-real-ip", "203.0.113.7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(Proto::H1, &isola.authority(), request).await;
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["x-forwarded-for"], "127.0.0.1", "{json}");
    assert_eq!(json["x-real-ip"], "127.0.0.1", "{json}");
}

#[tokio::test]
async fn a_trusted_proxy_chain_is_extended_and_its_client_kept() {
    let isola = Isola::serve(
        r#"
[node]
trusted_proxies = ["127.0.0.0/8"]

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
worker = "echo"

[workers.echo]
file = "{fixtures}/echo.js"
"#,
    );
    let request = Request::get(format!("http://{}/headers", isola.authority()))
        .header("host", isola.authority())
        .header("x-forwarded-for", "203.0.113.7, 198.51.100.2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = send(Proto::H1, &isola.authority(), request).await;
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        json["x-forwarded-for"], "203.0.113.7, 198.51.100.2, 127.0.0.1",
        "{json}"
    );
    assert_eq!(json["x-real-ip"], "203.0.113.7", "{json}");
}

fn write_cert(
    dir: &std::path::Path,
    name: &str,
    hosts: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let generated = rcgen::generate_simple_self_signed(
        hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test]
async fn tls_picks_the_certificate_by_sni() {
    let dir = std::env::temp_dir().join(format!("isola-sni-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (default_cert, default_key) = write_cert(&dir, "default", &["default.test"]);
    let (api_cert, api_key) = write_cert(&dir, "api", &["api.test"]);
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n[[listeners.tls.sni]]\nhostnames = [\"api.test\"]\ncert = \"{}\"\nkey = \"{}\"\n\n[[routes]]\nworker = \"hello\"\n\n[workers.hello]\nfile = \"{}\"\n",
            default_cert.display(),
            default_key.display(),
            api_cert.display(),
            api_key.display(),
            repo().join("examples/hello.js").display()
        ),
    )
    .unwrap();
    let isola = Isola::start(&[
        "serve".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ]);
    assert!(isola.url.starts_with("https://"));
    for (server_name, trusted) in [("api.test", &api_cert), ("default.test", &default_cert)] {
        let connector = tls_client(trusted, &[b"http/1.1"]);
        let tcp = TcpStream::connect(isola.authority()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(server_name).unwrap();
        let tls = connector
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("{server_name} must be served its own certificate: {e}"));
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::get("/")
            .header("host", server_name)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = collect(sender.send_request(request).await.unwrap()).await;
        assert_eq!(reply.text(), "Hello from Isola!\n");
    }
}

#[tokio::test]
async fn connections_and_tls_handshakes_are_counted() {
    use tokio::io::AsyncWriteExt;

    let isola = Isola::dev(
        &repo().join("examples/hello.js"),
        &["--tls", "--metrics-port", "0"],
    );
    let stdout = isola.stdout.lock().unwrap().join("\n");
    let cert = stdout
        .split(" at ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no certificate path printed: {stdout}"));
    // Not TLS at all: a failed handshake.
    let mut garbage = TcpStream::connect(isola.authority()).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    drop(garbage);

    let connector = tls_client(std::path::Path::new(&cert), &[b"h2"]);
    let tcp = TcpStream::connect(isola.authority()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(conn);
    let request = Request::get(format!("https://{}/", isola.authority()))
        .header("host", isola.authority())
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let metrics = isola.metrics().await;
    assert!(
        metrics.contains("isola_connections_open{protocol=\"h2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("isola_tls_handshakes_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("isola_tls_handshakes_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    drop(sender);
    connection.abort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let metrics = isola.metrics().await;
        if metrics.contains("isola_connections_open{protocol=\"h2\"} 0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
