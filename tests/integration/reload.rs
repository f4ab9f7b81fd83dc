//! Config reload on SIGHUP over real sockets: a good config takes effect (a changed worker
//! answers anew, a removed one is gone, a new one serves, a new certificate is served to new
//! handshakes) while uploaded deployments and requests in flight go on; a bad config is
//! refused with a log line naming file, key and expectation, and the old one keeps serving;
//! unchanged workers keep running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::support::{ADMIN_TOKEN, Isola, collect, get_host, tls_client};

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isola-reload-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A worker answering `text`, and after 800 ms on `/slow`.
fn worker(dir: &Path, name: &str, text: &str) -> PathBuf {
    let file = dir.join(format!("{name}.js"));
    std::fs::write(
        &file,
        format!(
            "export default {{ fetch(request) {{\n  if (new URL(request.url).pathname === '/slow') {{\n    return new Promise((done) => setTimeout(() => done(new Response({text:?} + '-slow')), 800));\n  }}\n  return new Response({text:?});\n}} }};\n"
        ),
    )
    .unwrap();
    file
}

/// A config with an admin API and `workers` (name, file, host).
fn config(workers: &[(&str, &Path, &str)], extra: &str) -> String {
    let mut text = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n{extra}\n"
    );
    for (name, _, host) in workers {
        text.push_str(&format!(
            "[[routes]]\nhost = \"{host}\"\nworker = \"{name}\"\n"
        ));
    }
    for (name, file, _) in workers {
        text.push_str(&format!(
            "[workers.{name}]\nfile = \"{}\"\n",
            file.display()
        ));
    }
    text
}

fn hangup(isola: &Isola) {
    let status = Command::new("kill")
        .args(["-HUP", &isola.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends SIGHUP and waits for the `n`th outcome line (reloaded or refused).
fn reload(isola: &Isola, n: usize) -> String {
    hangup(isola);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let logs = isola.logs();
        let outcomes = logs.matches("config reloaded from").count()
            + logs.matches("config reload refused").count();
        if outcomes >= n {
            return logs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload outcome logged: {logs}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve(file: &Path) -> Isola {
    Isola::start(&[
        "serve".to_owned(),
        "--config".to_owned(),
        file.display().to_string(),
    ])
}

#[tokio::test]
async fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let dir = scratch("good-bad");
    let one = worker(&dir, "one", "one");
    let gone = worker(&dir, "gone", "gone");
    let file = dir.join("edge.toml");
    std::fs::write(
        &file,
        config(&[("a", &one, "a.test"), ("gone", &gone, "gone.test")], ""),
    )
    .unwrap();
    let isola = serve(&file);
    let upload = serde_json::json!({
        "code": "export default { fetch() { return new Response('uploaded') } }",
        "routes": [{ "host": "up.test" }]
    });
    let deployed = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/up", &upload.to_string())
        .await;
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    assert_eq!(get_host(&isola, "a.test", "/").await.text(), "one");

    // A request in flight on the old worker while the config changes.
    let authority = isola.authority();
    let slow = tokio::spawn(async move {
        let request = Request::get("/slow")
            .header("host", "a.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        crate::support::send(crate::support::Proto::H1, &authority, request).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let two = worker(&dir, "two", "two");
    let added = worker(&dir, "added", "added");
    std::fs::write(
        &file,
        config(
            &[("a", &two, "a.test"), ("added", &added, "added.test")],
            "",
        ),
    )
    .unwrap();
    let logs = reload(&isola, 1);
    assert!(logs.contains("config reloaded from"), "{logs}");
    assert_eq!(
        slow.await.unwrap().text(),
        "one-slow",
        "a request in flight finishes on the worker it started on"
    );
    assert_eq!(get_host(&isola, "a.test", "/").await.text(), "two");
    assert_eq!(get_host(&isola, "added.test", "/").await.text(), "added");
    assert_eq!(
        get_host(&isola, "gone.test", "/").await.status,
        404,
        "a worker removed from the config is gone"
    );
    assert_eq!(
        get_host(&isola, "up.test", "/").await.text(),
        "uploaded",
        "uploaded deployments stay"
    );

    // Bad: a value of the wrong type.
    std::fs::write(
        &file,
        format!(
            "{}[workers.a.limits]\ncpu_ms = \"fast\"\n",
            config(&[("a", &one, "a.test")], "")
        ),
    )
    .unwrap();
    let logs = reload(&isola, 2);
    let line = logs
        .lines()
        .find(|l| l.contains("config reload refused"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains(&file.display().to_string())
            && line.contains("`workers.a.limits.cpu_ms`")
            && line.contains("expected"),
        "the line names file, key and expectation: {line}"
    );
    assert_eq!(get_host(&isola, "a.test", "/").await.text(), "two");

    // Bad: a worker that does not start, and a route an uploaded worker has.
    let broken = dir.join("broken.js");
    std::fs::write(&broken, "export default { fetch( }").unwrap();
    std::fs::write(&file, config(&[("a", &broken, "a.test")], "")).unwrap();
    let logs = reload(&isola, 3);
    assert!(
        logs.lines()
            .any(|l| l.contains("config reload refused") && l.contains("`workers.a`")),
        "{logs}"
    );
    std::fs::write(&file, config(&[("a", &one, "up.test")], "")).unwrap();
    let logs = reload(&isola, 4);
    assert!(
        logs.lines().any(|l| l.contains("config reload refused")
            && l.contains("`routes[0]`")
            && l.contains("`up`")),
        "{logs}"
    );
    assert_eq!(get_host(&isola, "a.test", "/").await.text(), "two");
    assert_eq!(get_host(&isola, "up.test", "/").await.text(), "uploaded");
    assert_eq!(get_host(&isola, "added.test", "/").await.text(), "added");
}

#[tokio::test]
async fn sighup_keeps_unchanged_workers_running_and_restarts_changed_ones() {
    let dir = scratch("unchanged");
    let counting =
        "let n = 0;\nexport default { fetch() { n += 1; return new Response(String(n)) } };\n";
    let kept = dir.join("kept.js");
    let changed = dir.join("changed.js");
    std::fs::write(&kept, counting).unwrap();
    std::fs::write(&changed, counting).unwrap();
    let file = dir.join("edge.toml");
    let workers = [
        ("kept", kept.as_path(), "kept.test"),
        ("changed", changed.as_path(), "changed.test"),
    ];
    std::fs::write(&file, config(&workers, "")).unwrap();
    let isola = serve(&file);
    for expected in ["1", "2"] {
        assert_eq!(get_host(&isola, "kept.test", "/").await.text(), expected);
        assert_eq!(get_host(&isola, "changed.test", "/").await.text(), expected);
    }

    // Same config; only the second worker's module changes (by a comment).
    std::fs::write(&changed, format!("{counting}// changed\n")).unwrap();
    let logs = reload(&isola, 1);
    let line = logs
        .lines()
        .find(|l| l.contains("config reloaded from"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("unchanged_kept_running=1"), "{line}");
    assert_eq!(
        get_host(&isola, "kept.test", "/").await.text(),
        "3",
        "an unchanged worker keeps its warm isolate (and its module state)"
    );
    assert_eq!(
        get_host(&isola, "changed.test", "/").await.text(),
        "1",
        "a worker whose module changed starts anew"
    );

    // A changed var is a change too.
    let with_var = format!("{}[workers.kept.vars]\nX = \"1\"\n", config(&workers, ""));
    std::fs::write(&file, with_var).unwrap();
    reload(&isola, 2);
    assert_eq!(get_host(&isola, "kept.test", "/").await.text(), "1");
    assert_eq!(get_host(&isola, "changed.test", "/").await.text(), "2");
}

fn write_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Whether a client trusting only `ca` completes a handshake and a request.
async fn trusted_by(isola: &Isola, ca: &Path) -> bool {
    let connector = tls_client(ca, &[b"http/1.1"]);
    let tcp = TcpStream::connect(isola.authority()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(tls) = connector.connect(name, tcp).await else {
        return false;
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    collect(sender.send_request(request).await.unwrap())
        .await
        .status
        == 200
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_to_new_handshakes() {
    let dir = scratch("cert");
    let (first, first_key) = write_cert(&dir, "first");
    let (second, second_key) = write_cert(&dir, "second");
    let hello = worker(&dir, "hello", "hello");
    let file = dir.join("edge.toml");
    // The file names stay; their contents change, as with a renewed certificate.
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::copy(&first, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let tls = format!(
        "[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&file, config(&[("hello", &hello, "localhost")], &tls)).unwrap();
    let isola = serve(&file);
    assert!(trusted_by(&isola, &first).await);
    assert!(!trusted_by(&isola, &second).await);

    // A certificate that is not PEM is refused; the first keeps serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    let logs = reload(&isola, 1);
    assert!(
        logs.lines()
            .any(|l| l.contains("config reload refused") && l.contains("`listeners[0].tls`")),
        "{logs}"
    );
    assert!(trusted_by(&isola, &first).await);

    std::fs::copy(&second, &cert).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    let logs = reload(&isola, 2);
    assert!(logs.contains("config reloaded from"), "{logs}");
    assert!(
        trusted_by(&isola, &second).await,
        "new handshakes get the new certificate"
    );
    assert!(!trusted_by(&isola, &first).await);
}
