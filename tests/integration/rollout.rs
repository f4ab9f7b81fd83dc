//! Gradual rollouts and name routing over real sockets: `{"split": {ID: percent}}` serves
//! versions by weight, at random per request or sticky by `isola-version-key`, across a
//! restart, until the next upload; every worker answers at `NAME.localhost`.

use bytes::Bytes;
use http_body_util::Full;

use crate::support::{ADMIN_TOKEN, Isola, Proto, get_host, send};
use crate::versions::{body, data_dir, node, upload};

async fn get_keyed(isola: &Isola, key: &str) -> String {
    let request = http::Request::get("/")
        .header("host", "roll.test")
        .header("isola-version-key", key)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(Proto::H1, &isola.authority(), request).await.text()
}

#[tokio::test]
async fn a_split_serves_versions_by_weight_and_sticks_to_a_key() {
    let dir = data_dir("rollout");
    let isola = node(&dir);
    let mut ids = Vec::new();
    for text in ["a", "b"] {
        let reply = isola
            .admin(
                ADMIN_TOKEN,
                "PUT",
                "/workers/roll",
                &upload(text, "roll.test"),
            )
            .await;
        ids.push(body(&reply)["version"].as_str().unwrap().to_owned());
    }
    let split = serde_json::json!({ "split": { &ids[0]: 50, &ids[1]: 50 } }).to_string();
    let reply = isola
        .admin(ADMIN_TOKEN, "POST", "/workers/roll/split", &split)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(get_host(&isola, "roll.test", "/").await.text());
    }
    assert_eq!(seen.len(), 2, "both versions serve: {seen:?}");
    let sticky = get_keyed(&isola, "user-42").await;
    for _ in 0..20 {
        assert_eq!(get_keyed(&isola, "user-42").await, sticky);
    }
    let described = body(&isola.admin(ADMIN_TOKEN, "GET", "/workers/roll", "").await);
    assert_eq!(described["split"][&ids[0]], 50, "{described}");
    let bad = serde_json::json!({ "split": { &ids[0]: 50, &ids[1]: 40 } }).to_string();
    let refused = isola
        .admin(ADMIN_TOKEN, "POST", "/workers/roll/split", &bad)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());

    drop(isola);
    let isola = node(&dir);
    assert_eq!(
        get_keyed(&isola, "user-42").await,
        sticky,
        "the rollout and the key's version survive a restart"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(get_host(&isola, "roll.test", "/").await.text());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            "/workers/roll",
            &upload("c", "roll.test"),
        )
        .await;
    for _ in 0..10 {
        assert_eq!(get_host(&isola, "roll.test", "/").await.text(), "c");
    }
    assert_eq!(
        get_host(&isola, "roll.localhost", "/any/path").await.text(),
        "c",
        "every worker answers at NAME.localhost"
    );
    assert_eq!(
        get_host(&isola, "site.localhost", "/plain").await.status,
        200,
        "config workers too"
    );
    assert_eq!(get_host(&isola, "nobody.localhost", "/").await.status, 404);
    drop(isola);
    let _ = std::fs::remove_dir_all(&dir);
}
