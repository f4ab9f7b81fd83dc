//! Graceful shutdown, reload on change, config errors.

use std::time::Duration;

use crate::support::{Isola, Proto, fixture, get, run_to_exit};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let mut isola = Isola::dev(&fixture("echo.js"), &[]);
    let authority = isola.authority();
    let url = isola.url.clone();
    let in_flight = tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = http::Request::get(format!("{url}/slow?ms=700"))
            .header("host", authority)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        crate::support::collect(sender.send_request(request).await.unwrap()).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = tokio::task::block_in_place(|| isola.terminate());
    assert!(status.success(), "exit status {status:?}");
    let reply = in_flight.await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "slow done"));
    assert!(
        std::net::TcpStream::connect(isola.authority()).is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_reloads_on_change_and_keeps_the_last_good_version() {
    let dir = std::env::temp_dir().join(format!("isola-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("worker.js");
    std::fs::write(&file, "export default { fetch: () => new Response('v1') };").unwrap();
    let isola = Isola::dev(&file, &[]);
    assert_eq!(get(Proto::H1, &isola, "/").await.text(), "v1");

    std::fs::write(&file, "export default { fetch: () => new Response('v2') };").unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = get(Proto::H1, &isola, "/").await.text();
        if text == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(text, "v2");

    std::fs::write(&file, "export default { fetch: () => new Response('v3' };").unwrap();
    let logs = isola.wait_for_log("reload failed");
    assert!(logs.contains("worker.js:1:"), "{logs}");
    assert_eq!(
        get(Proto::H1, &isola, "/").await.text(),
        "v2",
        "a broken edit keeps the last good version"
    );
}

#[test]
fn bad_config_names_file_and_key() {
    let dir = std::env::temp_dir().join(format!("isola-badconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[workers.api]\nfile = \"{}\"\n[workers.api.limits]\ncpu_ms = \"fast\"\n",
            fixture("echo.js").display()
        ),
    )
    .unwrap();
    let (status, stderr) = run_to_exit(&["serve", "--config", &path.display().to_string()]);
    assert!(!status.success());
    assert!(stderr.contains("edge.toml"), "{stderr}");
    assert!(stderr.contains("workers.api.limits.cpu_ms"), "{stderr}");
}

#[tokio::test]
async fn serve_routes_by_path_prefix_across_workers() {
    let example =
        std::fs::read_to_string(crate::support::repo().join("examples/edge.toml")).unwrap();
    let dir = crate::support::repo().join("examples");
    let config = dir.join(format!(".edge-test-{}.toml", std::process::id()));
    std::fs::write(&config, example.replace("127.0.0.1:8788", "127.0.0.1:0")).unwrap();
    let isola = Isola::start(&[
        "serve".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ]);
    let _ = std::fs::remove_file(&config);
    let api = get(Proto::H1, &isola, "/api/items").await;
    assert_eq!(api.status, 200);
    assert!(
        api.text().contains("hello from the config"),
        "{}",
        api.text()
    );
    let site = get(Proto::H2c, &isola, "/").await;
    assert!(
        site.text().contains("<h1>Isola router app</h1>"),
        "{}",
        site.text()
    );
    let site = get(Proto::H1, &isola, "/apix").await;
    assert_eq!(
        site.status, 404,
        "/apix is not under /api: the router app answers its 404"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_reloads_when_its_project_file_changes() {
    let dir = std::env::temp_dir().join(format!("isola-dev-project-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let settings = |greeting: &str| {
        format!(
            "name = \"proj\"\nmain = \"src/index.js\"\nvars = {{ GREETING = \"{greeting}\" }}\n"
        )
    };
    std::fs::write(dir.join("isola.toml"), settings("hello")).unwrap();
    std::fs::write(
        dir.join("src/index.js"),
        "export default { fetch: (request, env) => new Response(env.GREETING) };",
    )
    .unwrap();
    let isola = Isola::start_in(&dir, &["dev".to_owned(), "--port".into(), "0".into()]);
    assert_eq!(get(Proto::H1, &isola, "/").await.text(), "hello");

    std::fs::write(dir.join("isola.toml"), settings("bonjour")).unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = get(Proto::H1, &isola, "/").await.text();
        if text == "bonjour" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        text, "bonjour",
        "a changed var in isola.toml reaches the worker"
    );

    // A broken project file is reported and the last good settings keep serving.
    std::fs::write(
        dir.join("isola.toml"),
        "name = \"proj\"\nmain = \"src/index.js\"\nvars = 3\n",
    )
    .unwrap();
    let logs = isola.wait_for_log("reload failed");
    assert!(logs.contains("isola.toml"), "{logs}");
    assert_eq!(get(Proto::H1, &isola, "/").await.text(), "bonjour");
}
