//! Versions over real sockets: every upload is a version named by its content's hash, kept
//! (the last 20) in the data directory across restarts; rollback, delete, concurrent uploads,
//! requests in flight finishing on the old version, 409s for config workers and taken routes,
//! 413 for oversized uploads.

use std::path::{Path, PathBuf};

use crate::support::{ADMIN_TOKEN, Isola, Reply, get_host};

/// A fresh data directory for one test.
pub fn data_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isola-data-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A node keeping its deployments in `dir`, with a config worker `site` on `site.test`.
pub fn node(dir: &Path) -> Isola {
    Isola::serve(&format!(
        r#"
[node]
data_dir = "{}"

[admin]
address = "127.0.0.1:0"
max_upload_bytes = 65536

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
host = "site.test"
worker = "site"

[workers.site]
file = "{{fixtures}}/cache.js"
"#,
        dir.display()
    ))
}

/// An upload answering `text` (and `env.TOKEN` when set) on `host`.
pub fn upload(text: &str, host: &str) -> String {
    let code = format!(
        "export default {{ fetch(request, env) {{ return new Response({text:?} + (env.TOKEN ?? '')); }} }}"
    );
    serde_json::json!({ "code": code, "routes": [{ "host": host }] }).to_string()
}

pub fn body(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null)
}

async fn deploy(isola: &Isola, name: &str, text: &str, host: &str) -> String {
    let reply = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            &format!("/workers/{name}"),
            &upload(text, host),
        )
        .await;
    assert!(
        reply.status == 200 || reply.status == 201,
        "{}",
        reply.text()
    );
    body(&reply)["version"]
        .as_str()
        .expect("version")
        .to_owned()
}

#[tokio::test]
async fn versions_roll_back_delete_and_survive_restarts() {
    let dir = data_dir("versions");
    let isola = node(&dir);
    let first = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/shop",
            &upload("v1", "shop.test"),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let v1 = body(&first)["version"].as_str().unwrap().to_owned();
    assert_eq!(v1.len(), 32);
    let v2 = deploy(&isola, "shop", "v2", "shop.test").await;
    assert_ne!(v1, v2);
    assert_eq!(get_host(&isola, "shop.test", "/").await.text(), "v2");
    assert_eq!(
        deploy(&isola, "shop", "v1", "shop.test").await,
        v1,
        "the same content is the same version"
    );
    assert_eq!(get_host(&isola, "shop.test", "/").await.text(), "v1");

    let rolled = isola
        .admin(
            ADMIN_TOKEN,
            "POST",
            "/workers/shop/rollback",
            &format!(r#"{{"version":"{v2}"}}"#),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text());
    assert_eq!(body(&rolled)["version"], v2.as_str());
    assert_eq!(get_host(&isola, "shop.test", "/").await.text(), "v2");
    let unknown = isola
        .admin(
            ADMIN_TOKEN,
            "POST",
            "/workers/shop/rollback",
            r#"{"version":"nope"}"#,
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());

    let described = body(&isola.admin(ADMIN_TOKEN, "GET", "/workers/shop", "").await);
    assert_eq!(described["active"], v2.as_str());
    assert_eq!(described["source"], "upload");
    let versions = described["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{described}");
    assert_eq!(versions[0]["version"], v1.as_str());
    assert_eq!(versions[1]["active"], true);
    assert!(versions[0]["created_ms"].as_u64().unwrap() > 0);
    assert!(versions[0]["created"].as_str().unwrap().ends_with("GMT"));
    let list = body(&isola.admin(ADMIN_TOKEN, "GET", "/workers", "").await);
    assert_eq!(list[0]["name"], "shop");
    assert_eq!(list[0]["version"], v2.as_str());

    drop(isola);
    let isola = node(&dir);
    assert_eq!(
        get_host(&isola, "shop.test", "/").await.text(),
        "v2",
        "a restart serves what was active"
    );
    let after = body(&isola.admin(ADMIN_TOKEN, "GET", "/workers/shop", "").await);
    assert_eq!(after["versions"], described["versions"]);
    let rolled = isola
        .admin(
            ADMIN_TOKEN,
            "POST",
            "/workers/shop/rollback",
            &format!(r#"{{"version":"{v1}"}}"#),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text());
    assert_eq!(get_host(&isola, "shop.test", "/").await.text(), "v1");

    let deleted = isola
        .admin(ADMIN_TOKEN, "DELETE", "/workers/shop", "")
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(get_host(&isola, "shop.test", "/").await.status, 404);
    assert_eq!(
        isola
            .admin(ADMIN_TOKEN, "GET", "/workers/shop", "")
            .await
            .status,
        404
    );
    drop(isola);
    let isola = node(&dir);
    assert_eq!(get_host(&isola, "shop.test", "/").await.status, 404);
    assert_eq!(get_host(&isola, "site.test", "/plain").await.status, 200);
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_last_twenty_versions_are_kept() {
    let dir = data_dir("twenty");
    let isola = node(&dir);
    let mut ids = Vec::new();
    for n in 0..22 {
        ids.push(deploy(&isola, "many", &format!("n{n}"), "many.test").await);
    }
    let described = body(&isola.admin(ADMIN_TOKEN, "GET", "/workers/many", "").await);
    let kept: Vec<&str> = described["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        ids[2..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let gone = isola
        .admin(
            ADMIN_TOKEN,
            "POST",
            "/workers/many/rollback",
            &format!(r#"{{"version":"{}"}}"#, ids[0]),
        )
        .await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    let oldest = isola
        .admin(
            ADMIN_TOKEN,
            "POST",
            "/workers/many/rollback",
            &format!(r#"{{"version":"{}"}}"#, ids[2]),
        )
        .await;
    assert_eq!(oldest.status, 200, "{}", oldest.text());
    assert_eq!(get_host(&isola, "many.test", "/").await.text(), "n2");
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn config_workers_and_taken_routes_answer_409_and_big_uploads_413() {
    let dir = data_dir("conflicts");
    let isola = node(&dir);
    let config = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/site",
            &upload("x", "other.test"),
        )
        .await;
    assert_eq!(config.status, 409, "{}", config.text());
    assert!(config.text().contains("config file"), "{}", config.text());
    let taken = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/thief",
            &upload("x", "site.test"),
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.text());
    assert_eq!(body(&taken)["owner"], "site");
    deploy(&isola, "first", "one", "shared.test").await;
    let taken = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/second",
            &upload("two", "shared.test"),
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.text());
    assert_eq!(body(&taken)["owner"], "first");
    assert_eq!(get_host(&isola, "shared.test", "/").await.text(), "one");
    assert_eq!(
        isola
            .admin(ADMIN_TOKEN, "DELETE", "/workers/site", "")
            .await
            .status,
        409
    );
    assert_eq!(
        get_host(&isola, "site.test", "/plain").await.status,
        200,
        "the config worker still serves"
    );

    let big =
        serde_json::json!({ "code": format!("/*{}*/ export default {{}}", "x".repeat(70_000)) });
    let refused = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/big", &big.to_string())
        .await;
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert!(refused.text().contains("max_upload_bytes"));
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn concurrent_uploads_both_become_versions_and_the_last_commit_serves() {
    let dir = data_dir("concurrent");
    let isola = node(&dir);
    let (upload_a, upload_b) = (upload("a", "race.test"), upload("b", "race.test"));
    let (a, b) = tokio::join!(
        isola.admin(ADMIN_TOKEN, "PUT", "/workers/race", &upload_a),
        isola.admin(ADMIN_TOKEN, "PUT", "/workers/race", &upload_b),
    );
    assert!(a.status == 200 || a.status == 201, "{}", a.text());
    assert!(b.status == 200 || b.status == 201, "{}", b.text());
    let described = body(&isola.admin(ADMIN_TOKEN, "GET", "/workers/race", "").await);
    let versions = described["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{described}");
    let active = described["active"].as_str().unwrap();
    let last = versions[1]["version"].as_str().unwrap();
    assert_eq!(active, last, "the last to commit is active");
    let served = get_host(&isola, "race.test", "/").await.text();
    let expected = if body(&a)["version"] == active {
        "a"
    } else {
        "b"
    };
    assert_eq!(served, expected);
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn requests_running_on_the_old_version_finish_on_it() {
    let dir = data_dir("inflight");
    let isola = node(&dir);
    let slow = serde_json::json!({
        "code": "export default { async fetch() { await new Promise((r) => setTimeout(r, 800)); return new Response('old'); } }",
        "routes": [{ "host": "swap.test" }],
    });
    let created = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/swap", &slow.to_string())
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let (old, new) = tokio::join!(get_host(&isola, "swap.test", "/"), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        deploy(&isola, "swap", "new", "swap.test").await;
        get_host(&isola, "swap.test", "/").await
    });
    assert_eq!(old.text(), "old");
    assert_eq!(new.text(), "new");
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}
