//! The admin API over real sockets: a bearer token is required; workers are deployed,
//! replaced (their cached responses dropped), refused with a clear error while the previous
//! version keeps serving, listed and deleted; the cache is purged; a node whose token is
//! missing does not start.

use crate::support::{ADMIN_TOKEN, Isola, get_host, run_to_exit};

fn node() -> Isola {
    Isola::serve(
        r#"
[admin]
address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
host = "site.test"
worker = "site"

[workers.site]
file = "{fixtures}/cache.js"
cache = true
"#,
    )
}

/// A deploy body: a worker answering `text`, cacheable for a minute, routed by `host`.
fn worker(text: &str, host: &str) -> String {
    let code = format!(
        "export default {{ fetch() {{ return new Response({text:?}, {{ headers: {{ 'cache-control': 'max-age=60' }} }}); }} }}"
    );
    serde_json::json!({ "code": code, "cache": true, "routes": [{ "host": host }] }).to_string()
}

#[tokio::test]
async fn the_admin_api_needs_the_token() {
    let isola = node();
    let missing = isola.admin("", "GET", "/workers", "").await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    let wrong = isola
        .admin(
            "test-admin-token-0123456780",
            "PUT",
            "/workers/evil",
            &worker("x", "evil.test"),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(get_host(&isola, "evil.test", "/").await.status, 404);
    assert!(
        !isola.logs().contains(ADMIN_TOKEN),
        "the token must never be logged"
    );
}

#[tokio::test]
async fn workers_are_deployed_replaced_refused_listed_and_deleted() {
    let isola = node();
    let created = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/shop",
            &worker("v1", "shop.test"),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.text().contains("startup_ms"));
    let first = get_host(&isola, "shop.test", "/").await;
    assert_eq!(first.text(), "v1");
    assert_eq!(get_host(&isola, "shop.test", "/").await.text(), "v1");

    let replaced = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/shop",
            &worker("v2", "shop.test"),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(
        get_host(&isola, "shop.test", "/").await.text(),
        "v2",
        "the new version serves and the old one's cached response is gone"
    );

    let code_only =
        serde_json::json!({ "code": "export default { fetch() { return new Response('v3'); } }" });
    let replaced = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/shop", &code_only.to_string())
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    assert_eq!(
        get_host(&isola, "shop.test", "/").await.text(),
        "v3",
        "an upload without routes keeps the worker's routes"
    );

    let broken = serde_json::json!({ "code": "export default {\n  fetch( {\n}", "routes": [{ "host": "shop.test" }] });
    let refused = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/shop", &broken.to_string())
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains(":2:"),
        "line of the syntax error: {}",
        refused.text()
    );
    assert_eq!(get_host(&isola, "shop.test", "/").await.text(), "v3");

    let bad_limit = serde_json::json!({ "code": "export default {}", "limits": { "cpu_ms": 0 } });
    let refused = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/other", &bad_limit.to_string())
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("limits.cpu_ms"),
        "{}",
        refused.text()
    );
    let refused = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/a.b", &worker("x", "x.test"))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());

    let list = isola.admin(ADMIN_TOKEN, "GET", "/workers", "").await;
    let list: serde_json::Value = serde_json::from_slice(&list.body).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, ["shop", "site"]);
    assert_eq!(list[0]["routes"][0]["host"], "shop.test");

    let deleted = isola
        .admin(ADMIN_TOKEN, "DELETE", "/workers/shop", "")
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(get_host(&isola, "shop.test", "/").await.status, 404);
    assert_eq!(
        isola
            .admin(ADMIN_TOKEN, "DELETE", "/workers/shop", "")
            .await
            .status,
        404
    );
    assert_eq!(
        get_host(&isola, "site.test", "/plain").await.status,
        200,
        "others untouched"
    );
}

#[tokio::test]
async fn the_cache_is_purged_on_request() {
    let isola = node();
    let path = "/plain?cc=max-age=60";
    assert_eq!(
        get_host(&isola, "site.test", path).await.text(),
        "/plain run 1"
    );
    assert_eq!(
        get_host(&isola, "site.test", path).await.text(),
        "/plain run 1"
    );
    let purged = isola
        .admin(ADMIN_TOKEN, "POST", "/cache/purge", r#"{"worker":"site"}"#)
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(
        get_host(&isola, "site.test", path).await.text(),
        "/plain run 2"
    );
    assert_eq!(
        isola
            .admin(ADMIN_TOKEN, "POST", "/cache/purge", "{}")
            .await
            .status,
        200
    );
    assert_eq!(
        get_host(&isola, "site.test", path).await.text(),
        "/plain run 3"
    );
    let bad = isola
        .admin(ADMIN_TOKEN, "POST", "/cache/purge", r#"{"url":1}"#)
        .await;
    assert_eq!(bad.status, 400);
}

#[test]
fn a_node_without_its_admin_token_does_not_start() {
    let dir = std::env::temp_dir().join(format!("isola-admin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        "[admin]\naddress = \"127.0.0.1:0\"\ntoken_env = \"ISOLA_TEST_UNSET_TOKEN\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    let (status, stderr) = run_to_exit(&["serve", "--config", &config.display().to_string()]);
    assert!(!status.success());
    assert!(stderr.contains("ISOLA_TEST_UNSET_TOKEN"), "{stderr}");
}

/// A node whose deployed code goes to `dir`.
fn node_deploying_to(dir: &std::path::Path) -> Isola {
    Isola::serve(&format!(
        "[admin]\naddress = \"127.0.0.1:0\"\ndeploy_dir = \"{}\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n",
        dir.display()
    ))
}

#[tokio::test]
async fn a_slow_deploy_holds_up_no_other_admin_call() {
    let isola = node();
    let slow = serde_json::json!({
        "code": "await new Promise((r) => setTimeout(r, 60000));\nexport default { fetch() { return new Response('late'); } }",
        "limits": { "startup_wall_ms": 3000 },
    })
    .to_string();
    let started = std::time::Instant::now();
    let (deploy, list) = tokio::join!(
        isola.admin(ADMIN_TOKEN, "PUT", "/workers/slow", &slow),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let at = std::time::Instant::now();
            let reply = isola.admin(ADMIN_TOKEN, "GET", "/workers", "").await;
            (reply.status, at.elapsed())
        }
    );
    assert_eq!(list.0, 200);
    assert!(list.1 < std::time::Duration::from_secs(1), "{:?}", list.1);
    assert_eq!(deploy.status, 400, "{}", deploy.text());
    assert!(
        deploy.text().contains("startup_wall_ms"),
        "{}",
        deploy.text()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}

#[tokio::test]
async fn deployed_code_is_private_and_failed_deploys_leave_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("isola-deploys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let isola = node_deploying_to(&dir);
    let broken = serde_json::json!({ "code": "export default {\n  fetch( {\n}" });
    let refused = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/shop", &broken.to_string())
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("shop.js:3:"), "{}", refused.text());
    assert!(
        !refused.text().contains(&dir.display().to_string()),
        "no server path in the answer: {}",
        refused.text()
    );
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "a refused version leaves no file: {left:?}"
    );

    let created = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/shop",
            &worker("v1", "shop.test"),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one directory per version: {files:?}");
    let version_mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(version_mode, 0o700);
    let file_mode = std::fs::metadata(files[0].join("shop.js"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(file_mode, 0o600);
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    use bytes::Bytes;
    use http_body_util::Full;
    let isola = node();
    let authority = isola
        .printed_url("admin on ")
        .await
        .trim_start_matches("http://")
        .to_owned();
    let request = http::Request::get("/workers")
        .header("host", &authority)
        .header("authorization", format!("bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = crate::support::send(crate::support::Proto::H1, &authority, request).await;
    assert_eq!(reply.status, 200);
}
