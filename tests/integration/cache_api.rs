//! The Cache API (`caches.default`, `caches.open`) over real sockets, driven through a worker
//! (`fixtures/cache_api.js`): put/match/delete, each storage rule (TypeErrors for a non-GET
//! key, 206 and `Vary: *`; `private`, `no-store` and `Set-Cookie` silently not stored),
//! expiry, `Range`, `Vary` variants, isolation between deployments, purges (a deployment,
//! a redeploy, by `Cache-Tag` tag and by URL prefix, reaching the response cache too).

use std::time::Duration;

use crate::support::{ADMIN_TOKEN, Isola, Reply, get_host};

/// Two deployments of the same worker (`a.test`, `b.test`), the response cache in front.
fn node() -> Isola {
    Isola::serve(
        r#"
[admin]
address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
host = "a.test"
worker = "a"

[[routes]]
host = "b.test"
worker = "b"

[workers.a]
file = "{fixtures}/cache_api.js"
cache = true

[workers.b]
file = "{fixtures}/cache_api.js"
cache = true
"#,
    )
}

async fn on(isola: &Isola, host: &str, path: &str) -> Reply {
    get_host(isola, host, path).await
}

async fn a(isola: &Isola, path: &str) -> Reply {
    on(isola, "a.test", path).await
}

/// `match` of `key` (query string) on `a.test`: the body, or "miss".
async fn matched(isola: &Isola, query: &str) -> String {
    a(isola, &format!("/match?{query}")).await.text()
}

#[tokio::test]
async fn put_match_delete_and_every_storage_rule() {
    let isola = node();
    let put = a(
        &isola,
        "/put?key=https://x.example/1&h-cache-control=max-age=60",
    )
    .await;
    assert_eq!(put.text(), "put ok");
    assert_eq!(
        matched(&isola, "key=https://x.example/1").await,
        "stored body"
    );
    let streamed = a(
        &isola,
        "/put?key=https://x.example/s&stream=1&body=streamed%20body&h-cache-control=max-age=60",
    )
    .await;
    assert_eq!(streamed.text(), "put ok");
    assert_eq!(
        matched(&isola, "key=https://x.example/s").await,
        "streamed body",
        "a streamed body is read to the end and stored"
    );
    assert_eq!(
        matched(&isola, "key=https://x.example/1&method=POST").await,
        "miss",
        "only GET matches"
    );
    assert_eq!(
        matched(&isola, "key=https://x.example/1&method=POST&ignoreMethod=1").await,
        "stored body",
        "unless ignoreMethod"
    );
    assert_eq!(
        a(&isola, "/delete?key=https://x.example/1").await.text(),
        "true"
    );
    assert_eq!(matched(&isola, "key=https://x.example/1").await, "miss");
    assert_eq!(
        a(&isola, "/delete?key=https://x.example/1").await.text(),
        "false",
        "nothing left to delete"
    );

    // Refused with a TypeError, as on Workers.
    for (query, what) in [
        ("status=206&h-cache-control=max-age=60", "206"),
        ("h-vary=*&h-cache-control=max-age=60", "Vary: *"),
        ("method=POST&h-cache-control=max-age=60", "a POST key"),
    ] {
        let key = format!("https://refused.example/{}", what.len());
        let refused = a(&isola, &format!("/put?key={key}&{query}")).await;
        assert_eq!(refused.status, 400, "{what}: {}", refused.text());
        assert!(
            refused.text().starts_with("TypeError"),
            "{what}: {}",
            refused.text()
        );
        assert_eq!(
            matched(&isola, &format!("key={key}")).await,
            "miss",
            "{what}"
        );
    }
    // Silently not stored.
    for (n, query) in [
        "h-cache-control=private,%20max-age=60",
        "h-cache-control=no-store",
        "h-cache-control=max-age=60&h-set-cookie=session=1",
        "h-cache-control=no-cache",
        "status=500",
        "h-expires=Thu,%2001%20Jan%201970%2000:00:00%20GMT",
    ]
    .iter()
    .enumerate()
    {
        let key = format!("https://silent.example/{n}");
        let put = a(&isola, &format!("/put?key={key}&{query}")).await;
        assert_eq!(put.text(), "put ok", "{query}");
        assert_eq!(
            matched(&isola, &format!("key={key}")).await,
            "miss",
            "{query}"
        );
    }
    // No lifetime of its own: Cloudflare's default TTL for a 200.
    a(&isola, "/put?key=https://x.example/default").await;
    assert_eq!(
        matched(&isola, "key=https://x.example/default").await,
        "stored body"
    );
}

#[tokio::test]
async fn expiry_range_conditionals_and_vary() {
    let isola = node();
    for (key, query) in [
        ("max-age", "h-cache-control=max-age=1"),
        ("s-maxage", "h-cache-control=s-maxage=1,%20max-age=60"),
    ] {
        a(&isola, &format!("/put?key=https://e.example/{key}&{query}")).await;
        assert_eq!(
            matched(&isola, &format!("key=https://e.example/{key}")).await,
            "stored body"
        );
    }
    a(&isola, "/put?key=https://e.example/expires&expires-in=2").await;
    assert_eq!(
        matched(&isola, "key=https://e.example/expires").await,
        "stored body"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        matched(&isola, "key=https://e.example/max-age").await,
        "miss",
        "max-age"
    );
    assert_eq!(
        matched(&isola, "key=https://e.example/s-maxage").await,
        "miss",
        "s-maxage wins"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        matched(&isola, "key=https://e.example/expires").await,
        "miss",
        "Expires"
    );

    a(
        &isola,
        "/put?key=https://r.example/&body=0123456789&h-cache-control=max-age=60&h-etag=%22v1%22",
    )
    .await;
    let part = a(&isola, "/match?key=https://r.example/&range=bytes=2-5").await;
    assert_eq!(part.headers["x-matched-status"], "206");
    assert_eq!(part.text(), "2345");
    assert_eq!(part.headers["content-range"], "bytes 2-5/10");
    let suffix = a(&isola, "/match?key=https://r.example/&range=bytes=-3").await;
    assert_eq!(suffix.text(), "789");
    let beyond = a(&isola, "/match?key=https://r.example/&range=bytes=20-").await;
    assert_eq!(beyond.headers["x-matched-status"], "416");
    assert_eq!(beyond.headers["content-range"], "bytes */10");
    let whole = a(&isola, "/match?key=https://r.example/").await;
    assert_eq!(whole.headers["x-matched-status"], "200");
    assert_eq!(whole.text(), "0123456789");
    let not_modified = a(&isola, "/match?key=https://r.example/&inm=%22v1%22").await;
    assert_eq!(not_modified.headers["x-matched-status"], "304");

    for lang in ["en", "fr"] {
        let put = a(&isola, &format!("/put?key=https://v.example/&lang={lang}&body={lang}&h-vary=Accept-Language&h-cache-control=max-age=60")).await;
        assert_eq!(put.text(), "put ok");
    }
    assert_eq!(
        matched(&isola, "key=https://v.example/&lang=en").await,
        "en"
    );
    assert_eq!(
        matched(&isola, "key=https://v.example/&lang=fr").await,
        "fr",
        "variants coexist"
    );
    assert_eq!(
        matched(&isola, "key=https://v.example/&lang=de").await,
        "miss"
    );
}

#[tokio::test]
async fn deployments_never_see_each_others_caches() {
    let isola = node();
    let key = "key=https://shared.example/item";
    a(
        &isola,
        &format!("/put?{key}&body=from%20a&h-cache-control=max-age=60"),
    )
    .await;
    assert_eq!(
        on(&isola, "b.test", &format!("/match?{key}")).await.text(),
        "miss"
    );
    assert_eq!(
        on(&isola, "b.test", &format!("/delete?{key}")).await.text(),
        "false"
    );
    assert_eq!(
        matched(&isola, key).await,
        "from a",
        "b's delete did not reach a's entry"
    );
    on(
        &isola,
        "b.test",
        &format!("/put?{key}&body=from%20b&h-cache-control=max-age=60"),
    )
    .await;
    assert_eq!(matched(&isola, key).await, "from a");
    assert_eq!(
        on(&isola, "b.test", &format!("/match?{key}")).await.text(),
        "from b"
    );

    // Named caches: apart from the default one and from each other.
    a(
        &isola,
        &format!("/put?{key}&name=x&body=in%20x&h-cache-control=max-age=60"),
    )
    .await;
    assert_eq!(matched(&isola, &format!("{key}&name=x")).await, "in x");
    assert_eq!(matched(&isola, &format!("{key}&name=y")).await, "miss");
    assert_eq!(matched(&isola, key).await, "from a");
    assert_eq!(a(&isola, "/storage?op=has&name=x").await.text(), "true");
    assert_eq!(a(&isola, "/storage?op=keys").await.text(), "x,y");
    assert_eq!(
        on(&isola, "b.test", "/storage?op=has&name=x").await.text(),
        "false"
    );
    assert_eq!(
        on(&isola, "b.test", "/storage?op=delete&name=x")
            .await
            .text(),
        "false"
    );
    assert_eq!(matched(&isola, &format!("{key}&name=x")).await, "in x");
    assert_eq!(a(&isola, "/storage?op=delete&name=x").await.text(), "true");
    assert_eq!(a(&isola, "/storage?op=has&name=x").await.text(), "false");
    assert_eq!(
        matched(&isola, &format!("{key}&name=x")).await,
        "miss",
        "opened again, empty"
    );

    // Purging one deployment clears its Cache API entries, not the other's.
    let purged = isola
        .admin(ADMIN_TOKEN, "POST", "/cache/purge", r#"{"worker":"a"}"#)
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(matched(&isola, key).await, "miss");
    assert_eq!(
        on(&isola, "b.test", &format!("/match?{key}")).await.text(),
        "from b"
    );
}

#[tokio::test]
async fn purge_by_tag_and_prefix_reaches_both_caches() {
    let isola = node();
    let put = |key: &str, tag: &str| {
        format!("/put?key=https://p.example{key}&h-cache-tag={tag}&h-cache-control=max-age=60")
    };
    a(&isola, &put("/img/1", "Red,%20blue")).await;
    a(&isola, &put("/img/2", "green")).await;
    a(&isola, &put("/css/1", "green")).await;
    for path in ["/cached?tag=red", "/cached?tag=green"] {
        assert_eq!(a(&isola, path).await.text(), "cached run 1");
        assert_eq!(
            a(&isola, path).await.text(),
            "cached run 1",
            "{path} is a hit"
        );
    }

    let purged = isola
        .admin(ADMIN_TOKEN, "POST", "/cache/purge", r#"{"tags":["RED"]}"#)
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(
        matched(&isola, "key=https://p.example/img/1").await,
        "miss",
        "tagged Red"
    );
    assert_eq!(
        a(&isola, "/cached?tag=red").await.text(),
        "cached run 2",
        "the response cache too"
    );
    assert_eq!(
        matched(&isola, "key=https://p.example/img/2").await,
        "stored body"
    );
    assert_eq!(a(&isola, "/cached?tag=green").await.text(), "cached run 1");

    let purged = isola
        .admin(
            ADMIN_TOKEN,
            "POST",
            "/cache/purge",
            r#"{"prefixes":["p.example/img/","http://a.test/cached?tag=g"]}"#,
        )
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(matched(&isola, "key=https://p.example/img/2").await, "miss");
    assert_eq!(
        matched(&isola, "key=https://p.example/css/1").await,
        "stored body",
        "outside the prefix"
    );
    assert_eq!(a(&isola, "/cached?tag=green").await.text(), "cached run 2");
    assert_eq!(
        a(&isola, "/cached?tag=red").await.text(),
        "cached run 2",
        "outside the prefix"
    );

    // Scoped to another deployment: a's entries stay.
    let scoped = isola
        .admin(
            ADMIN_TOKEN,
            "POST",
            "/cache/purge",
            r#"{"worker":"b","tags":["green"]}"#,
        )
        .await;
    assert_eq!(scoped.status, 200, "{}", scoped.text());
    assert_eq!(
        matched(&isola, "key=https://p.example/css/1").await,
        "stored body"
    );
    for bad in [
        r#"{"tags":[]}"#,
        r#"{"prefixes":[""]}"#,
        r#"{"tags":"x"}"#,
        r#"{"tags":["x"],"urls":[]}"#,
    ] {
        let refused = isola.admin(ADMIN_TOKEN, "POST", "/cache/purge", bad).await;
        assert_eq!(refused.status, 400, "{bad}");
    }
    assert_eq!(
        matched(&isola, "key=https://p.example/css/1").await,
        "stored body"
    );
}

#[tokio::test]
async fn a_redeploy_clears_the_cache_api() {
    let isola = Isola::serve(
        "[admin]\naddress = \"127.0.0.1:0\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n",
    );
    let code = r#"export default { async fetch(request) {
        const key = "https://k.example/x";
        if (new URL(request.url).pathname === "/put") {
            await caches.default.put(key, new Response("kept", { headers: { "cache-control": "max-age=60" } }));
            return new Response("ok");
        }
        const found = await caches.default.match(key);
        return new Response(found ? await found.text() : "miss");
    } }"#;
    let body = serde_json::json!({ "code": code, "routes": [{ "host": "up.test" }] }).to_string();
    let deployed = isola.admin(ADMIN_TOKEN, "PUT", "/workers/up", &body).await;
    assert_eq!(deployed.status, 201, "{}", deployed.text());
    assert_eq!(on(&isola, "up.test", "/put").await.text(), "ok");
    assert_eq!(on(&isola, "up.test", "/get").await.text(), "kept");
    let again = isola.admin(ADMIN_TOKEN, "PUT", "/workers/up", &body).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(on(&isola, "up.test", "/get").await.text(), "miss");
}
