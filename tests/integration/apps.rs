//! Real workers: the Web platform checks, the examples and the bundled router app
//! (hono, jose, preact SSR, zod), plus outbound fetch.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::{Isola, Proto, fixture, get, repo, send};

#[tokio::test]
async fn web_platform_apis_are_present() {
    // Its one request runs some 30 checks, each the first use of its API in the isolate: its
    // CPU time (mostly V8 compiling deno_web's and deno_fetch's code lazily) is near the
    // default `cpu_ms` of 50, which this test is not about.
    let isola = Isola::dev(&fixture("web-apis.js"), &["--cpu-ms", "500"]);
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let results: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&reply.body).unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, v)| **v != serde_json::Value::Bool(true))
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}");
    assert!(results.len() >= 30, "{results:?}");
}

async fn json(
    isola: &Isola,
    method: &str,
    path: &str,
    body: &str,
    auth: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", isola.authority()))
        .header("host", isola.authority())
        .header("content-type", "application/json");
    if let Some(token) = auth {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let reply = send(
        Proto::H1,
        &isola.authority(),
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await;
    let value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|_| serde_json::Value::String(reply.text()));
    (reply.status, value)
}

#[tokio::test]
async fn bundled_router_app_runs_unmodified() {
    let bundle = repo().join("examples/router-app/dist/worker.js");
    let isola = Isola::dev(
        &bundle,
        &["--var", "GREETING=Hi", "--var", "JWT_SECRET=test-secret"],
    );
    let page = get(Proto::H1, &isola, "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<h1>Isola router app</h1>"),
        "{}",
        page.text()
    );
    assert_eq!(page.text().matches("<li").count(), 3, "{}", page.text());

    let (status, body) = json(&isola, "GET", "/api/hello/ada", "", None).await;
    assert_eq!((status, body["message"].as_str()), (200, Some("Hi, ada!")));

    let (status, body) = json(
        &isola,
        "POST",
        "/api/users",
        r#"{"name":"Ada","email":"ada@example.com"}"#,
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["email"], "ada@example.com");
    let (status, body) = json(
        &isola,
        "POST",
        "/api/users",
        r#"{"name":"","email":"nope"}"#,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["issues"].as_array().is_some_and(|i| i.len() >= 2),
        "{body}"
    );

    let (status, body) = json(&isola, "POST", "/api/token", r#"{"sub":"user-1"}"#, None).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, body) = json(&isola, "GET", "/api/me", "", Some(&token)).await;
    assert_eq!((status, body["sub"].as_str()), (200, Some("user-1")));
    let (status, _) = json(&isola, "GET", "/api/me", "", Some("not-a-token")).await;
    assert_eq!(status, 401);

    let (status, body) = json(&isola, "GET", "/api/sign-es256", "", None).await;
    assert_eq!(
        (status, body["verified"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (status, _) = json(&isola, "GET", "/nope", "", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn examples_serve() {
    let isola = Isola::dev(&repo().join("examples/json-api.js"), &[]);
    let (status, body) = json(&isola, "POST", "/api/items", r#"{"name":"thing"}"#, None).await;
    assert_eq!(status, 201, "{body}");
    drop(isola);
    let isola = Isola::dev(&repo().join("examples/streaming.js"), &[]);
    let reply = get(Proto::H1, &isola, "/stream").await;
    assert_eq!(reply.text().lines().count(), 5, "{}", reply.text());
}

#[tokio::test]
async fn outbound_fetch_reaches_a_local_server_in_dev() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = upstream.accept().await.unwrap();
        let service =
            hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                let from = request
                    .headers()
                    .get("x-from")
                    .map(|v| v.to_str().unwrap_or("").to_owned())
                    .unwrap_or_default();
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                    format!("hello {from}"),
                ))))
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    let isola = Isola::dev(&fixture("echo.js"), &[]);
    let reply = get(
        Proto::H1,
        &isola,
        &format!("/fetch?url=http://{upstream_addr}/"),
    )
    .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "upstream 200: hello isola")
    );
}

#[tokio::test]
async fn clocks_stand_still_during_synchronous_work() {
    let isola = Isola::dev(&fixture("clock.js"), &["--cpu-ms", "2000"]);
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    for key in [
        "frozen",
        "dateIsDate",
        "parses",
        "utc",
        "callable",
        "constructorLinked",
        "nowIsRecent",
    ] {
        assert_eq!(json[key], true, "{key}: {json}");
    }
    assert!(
        json["advanced"].as_f64().unwrap() >= 15.0,
        "time moves across I/O: {json}"
    );
}

#[tokio::test]
async fn intl_date_formats_read_the_same_coarse_clock() {
    let isola = Isola::dev(&fixture("hardening.js"), &["--cpu-ms", "5000"]);
    let reply = get(Proto::H1, &isola, "/intl").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        json["same"], true,
        "Intl did not read the real clock mid-turn: {json}"
    );
    assert_eq!(
        json["before"], json["parts"],
        "formatToParts likewise: {json}"
    );
}

#[tokio::test]
async fn console_output_cannot_forge_log_lines() {
    let isola = Isola::dev(&fixture("hardening.js"), &[]);
    assert_eq!(get(Proto::H1, &isola, "/log-forge").await.status, 200);
    let logs = isola.wait_for_log("forged line");
    assert!(
        logs.contains("line one\n    2026-01-01T00:00:00Z ERROR isola: forged line"),
        "{logs}"
    );
    assert!(
        !logs
            .lines()
            .any(|line| line.starts_with("2026-01-01T00:00:00Z")),
        "{logs}"
    );
}

/// The last globals, as workerd has them: `scheduler.wait` (a timer: the turn clock moves
/// across it; an AbortSignal rejects it), `origin` ("null"), `performance.timeOrigin` (0, so
/// `performance.now()` is the turn's `Date.now()`), `navigator.userAgent`, and no
/// `navigator.sendBeacon` (refused on purpose, see the README).
#[tokio::test]
async fn the_last_workers_globals() {
    let isola = Isola::dev(&fixture("globals.js"), &[]);
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let waited = v["waited"].as_f64().unwrap();
    assert!((30.0..5000.0).contains(&waited), "{v}");
    assert_eq!(v["abortReason"], "stop", "{v}");
    assert_eq!(v["preAborted"], "pre", "{v}");
    assert_eq!(v["origin"], "null", "{v}");
    assert_eq!(v["timeOrigin"], 0.0, "{v}");
    assert_eq!(v["nowIsDateNow"], true, "{v}");
    assert_eq!(v["userAgent"], "Isola", "{v}");
    assert_eq!(v["sendBeacon"], "undefined", "{v}");
    assert_eq!(v["htmlRewriter"], "function", "{v}");
}

#[tokio::test]
async fn a_subclass_of_response_keeps_its_prototype_and_can_be_returned() {
    let isola = Isola::dev(&fixture("response-subclass.js"), &[]);
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        seen,
        serde_json::json!({
            "status": 418,
            "kind": "teapot",
            "teapotIsResponse": true,
            "teapotIsTeapot": true,
            "plainProto": true,
            "plainConstructor": true,
            "plainIsTeapot": false,
        })
    );
    let reply = get(Proto::H1, &isola, "/teapot").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (418, "short and stout")
    );
}
