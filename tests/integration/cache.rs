//! The response cache over real sockets: what a worker marks cacheable is served without
//! running it again (HTTP/1.1 and HTTP/2), until stale; private, cookie-setting and
//! `no-store` responses never are; `Vary` (up to 16 variants per URL), conditional requests, revalidation with the
//! worker (304), `stale-while-revalidate`, `stale-if-error`, invalidation by POST, streamed
//! bodies, `only-if-cached`, collapsed concurrent misses, `Range` on hits and turning the
//! cache off.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::{Isola, Proto, Reply, get, send};

fn node(cache: &str) -> Isola {
    Isola::serve(&format!(
        r#"
[node]
metrics_address = "127.0.0.1:0"

[cache]
{cache}

[[listeners]]
address = "127.0.0.1:0"

[[routes]]
worker = "cache"

[workers.cache]
file = "{{fixtures}}/cache.js"
cache = true
[workers.cache.limits]
max_isolates = 1
max_requests_per_isolate = 8
"#
    ))
}

/// GET `path` over HTTP/1.1 with extra request headers.
async fn get_with(isola: &Isola, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(isola, "GET", path, headers).await
}

async fn request(isola: &Isola, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", isola.authority()))
        .header("host", isola.authority());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    send(Proto::H1, &isola.authority(), request).await
}

fn cache_status(reply: &Reply) -> String {
    reply
        .headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Asserts that the response's `Cache-Status` contains `part`.
fn assert_cache_status(reply: &Reply, part: &str) {
    let status = cache_status(reply);
    assert!(
        status.contains(part),
        "Cache-Status `{status}` lacks `{part}`"
    );
}

/// Asserts that the response came from the cache.
fn assert_hit(reply: &Reply) {
    let status = cache_status(reply);
    assert!(status.starts_with("isola; hit"), "not a hit: `{status}`");
}

/// How often the worker ran for `path`.
async fn runs(isola: &Isola, path: &str) -> String {
    get(Proto::H1, isola, &format!("/runs?path={path}"))
        .await
        .text()
}

#[tokio::test]
async fn fresh_responses_are_served_from_the_cache_until_stale() {
    let isola = node("");
    let path = "/plain?cc=public,%20max-age=1";
    let first = get(Proto::H1, &isola, path).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "/plain run 1");
    assert_cache_status(&first, "fwd=uri-miss; stored");

    let again = get(Proto::H1, &isola, path).await;
    assert_eq!(
        again.text(),
        "/plain run 1",
        "served without running the worker"
    );
    assert_hit(&again);
    assert!(again.headers.contains_key("age"));
    assert!(again.headers.contains_key("date"));
    let h2 = get(Proto::H2c, &isola, path).await;
    assert_eq!(h2.text(), "/plain run 1", "HTTP/2 shares the cache");
    let head = request(&isola, "HEAD", path, &[]).await;
    assert_eq!(head.status, 200);
    assert!(
        cache_status(&head).starts_with("isola; hit"),
        "HEAD is answered from the GET"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = get(Proto::H1, &isola, path).await;
    assert_eq!(
        stale.text(),
        "/plain run 2",
        "a stale response goes back to the worker"
    );
    // Without a validator there is nothing to revalidate: the stale copy is gone.
    assert_cache_status(&stale, "stored");

    let metrics = isola.metrics().await;
    assert!(
        metrics.contains("isola_cache_requests_total{result=\"hit\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("isola_cache_size_bytes"), "{metrics}");
}

#[tokio::test]
async fn private_cookie_no_store_and_unmarked_responses_are_never_cached() {
    let isola = node("");
    for path in [
        "/plain",
        "/plain?cc=private,%20max-age=60",
        "/plain?cc=no-store",
        "/plain?cc=max-age=60&cookie=1",
    ] {
        let first = get(Proto::H1, &isola, path).await.text();
        let second = get(Proto::H1, &isola, path).await.text();
        assert_ne!(first, second, "{path} must reach the worker each time");
    }
    // The client can refuse the cache; a request with credentials is not shared.
    let path = "/plain?cc=max-age=60";
    let stored = get(Proto::H1, &isola, path).await.text();
    let bypass = get_with(&isola, path, &[("cache-control", "no-store")]).await;
    assert_ne!(bypass.text(), stored);
    assert_eq!(cache_status(&bypass), "isola; fwd=bypass");
    let fresher = get_with(&isola, path, &[("cache-control", "no-cache")]).await;
    assert_ne!(fresher.text(), stored, "no-cache forwards");
    let auth_path = "/plain?cc=max-age=60&auth";
    let a = get_with(&isola, auth_path, &[("authorization", "Bearer x")])
        .await
        .text();
    let b = get_with(&isola, auth_path, &[("authorization", "Bearer y")])
        .await
        .text();
    assert_ne!(
        a, b,
        "a response to an authorized request is not shared without `public`"
    );
}

#[tokio::test]
async fn vary_variants_coexist_up_to_sixteen() {
    let isola = node("");
    let languages: Vec<String> = (0..17).map(|n| format!("l{n}")).collect();
    for (n, lang) in languages.iter().take(16).enumerate() {
        let first = get_with(&isola, "/vary", &[("accept-language", lang)]).await;
        assert_eq!(first.text(), format!("{lang} run {}", n + 1));
    }
    for (n, lang) in languages.iter().take(16).enumerate() {
        let again = get_with(&isola, "/vary", &[("accept-language", lang)]).await;
        assert_eq!(
            again.text(),
            format!("{lang} run {}", n + 1),
            "variant {lang} was not evicted by the others"
        );
        assert_hit(&again);
    }
    let seventeenth = get_with(&isola, "/vary", &[("accept-language", &languages[16])]).await;
    assert_eq!(seventeenth.text(), "l16 run 17");
    let oldest = get_with(&isola, "/vary", &[("accept-language", "l0")]).await;
    assert_eq!(
        oldest.text(),
        "l0 run 18",
        "past 16 variants the oldest one goes"
    );
    let newest = get_with(&isola, "/vary", &[("accept-language", "l16")]).await;
    assert_eq!(newest.text(), "l16 run 17");
}

#[tokio::test]
async fn vary_conditional_requests_and_only_if_cached() {
    let isola = node("");
    // The worker's first response with Vary is stored too.
    let en = get_with(&isola, "/vary", &[("accept-language", "en")]).await;
    assert_eq!(en.text(), "en run 1");
    assert_cache_status(&en, "fwd=uri-miss; stored");
    let en = get_with(&isola, "/vary", &[("accept-language", "en")]).await;
    assert_eq!(en.text(), "en run 1");
    assert_hit(&en);
    let fr = get_with(&isola, "/vary", &[("accept-language", "fr")]).await;
    assert_eq!(
        fr.text(),
        "fr run 2",
        "another Accept-Language is another variant"
    );
    assert_cache_status(&fr, "fwd=vary-miss");
    let fr_again = get_with(&isola, "/vary", &[("accept-language", "fr")]).await;
    assert_eq!(fr_again.text(), "fr run 2");

    let etag = get(Proto::H1, &isola, "/etag").await;
    assert_eq!(etag.text(), "etag run 1");
    let not_modified = get_with(&isola, "/etag", &[("if-none-match", "W/\"v1\"")]).await;
    assert_eq!(
        not_modified.status, 304,
        "the cache answers the client's precondition"
    );
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.headers["etag"], "\"v1\"");
    assert_eq!(runs(&isola, "/etag").await, "1");

    let miss = get_with(
        &isola,
        "/plain?never",
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(miss.status, 504);
    assert_eq!(runs(&isola, "/plain?never").await, "0");
}

#[tokio::test]
async fn stale_responses_are_revalidated_with_the_worker() {
    let isola = node("");
    assert_eq!(get(Proto::H1, &isola, "/etag").await.text(), "etag run 1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The worker gets If-None-Match, answers 304, and the stored body is sent.
    let revalidated = get(Proto::H1, &isola, "/etag").await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.text(), "etag run 1");
    assert_eq!(
        revalidated.headers["x-validated"], "2",
        "the 304's headers are merged"
    );
    assert_cache_status(&revalidated, "fwd-status=304");
    let fresh = get(Proto::H1, &isola, "/etag").await;
    assert!(
        cache_status(&fresh).starts_with("isola; hit"),
        "fresh again after the 304"
    );
    assert_eq!(runs(&isola, "/etag").await, "2");
    assert!(
        isola
            .metrics()
            .await
            .contains("isola_cache_requests_total{result=\"revalidated\"} 1")
    );

    // stale-while-revalidate: the stale copy now, a fresh one from the background.
    let path = "/stale-while-revalidate";
    assert_eq!(get(Proto::H1, &isola, path).await.text(), "swr run 1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = get(Proto::H1, &isola, path).await;
    assert_eq!(stale.text(), "swr run 1", "served stale at once");
    assert_cache_status(&stale, "ttl=-");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runs(&isola, path).await != "2" {
        assert!(
            std::time::Instant::now() < deadline,
            "no background revalidation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(Proto::H1, &isola, path).await.text(), "swr run 2");

    // stale-if-error: the worker throws, the stale copy is served instead of a 500.
    let path = "/stale-if-error";
    assert_eq!(get(Proto::H1, &isola, path).await.text(), "sie run 1");
    get(Proto::H1, &isola, "/fail-on").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fallback = get(Proto::H1, &isola, path).await;
    assert_eq!(
        (fallback.status, fallback.text()),
        (200, "sie run 1".to_owned())
    );
    assert_cache_status(&fallback, "fwd-status=500; detail=stale-if-error");
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_streams_are_stored() {
    let isola = node("");
    let path = "/plain?cc=max-age=60";
    assert_eq!(get(Proto::H1, &isola, path).await.text(), "/plain run 1");
    assert_eq!(get(Proto::H1, &isola, path).await.text(), "/plain run 1");
    let posted = request(&isola, "POST", path, &[]).await;
    assert_eq!(posted.text(), "posted 1");
    assert!(posted.headers.get("cache-status").is_none());
    assert_eq!(
        get(Proto::H1, &isola, path).await.text(),
        "/plain run 2",
        "a successful POST drops the stored response"
    );

    let streamed = get(Proto::H1, &isola, "/stream").await;
    assert_eq!(streamed.text(), "stream run 1 part two part three");
    let hit = get(Proto::H2c, &isola, "/stream").await;
    assert_eq!(hit.text(), "stream run 1 part two part three");
    assert_hit(&hit);
}

#[tokio::test]
async fn bodies_over_the_object_limit_and_a_disabled_cache_pass_through() {
    let small = node("max_object_bytes = 5");
    let path = "/plain?cc=max-age=60";
    assert_eq!(get(Proto::H1, &small, path).await.text(), "/plain run 1");
    assert_eq!(get(Proto::H1, &small, path).await.text(), "/plain run 2");
    assert_eq!(get(Proto::H1, &small, "/stream").await.text().len(), 32);
    assert_eq!(
        get(Proto::H1, &small, "/stream").await.text(),
        "stream run 2 part two part three"
    );

    let off = node("max_size_mb = 0");
    let first = get(Proto::H1, &off, path).await;
    assert!(first.headers.get("cache-status").is_none());
    assert_eq!(get(Proto::H1, &off, path).await.text(), "/plain run 2");
}

#[tokio::test]
async fn concurrent_misses_for_one_url_reach_the_worker_once() {
    let isola = node("");
    // The worker has sent a cacheable response: its misses are collapsed from now on.
    get(Proto::H1, &isola, "/plain?cc=max-age=60").await;
    let replies = futures::future::join_all((0..8).map(|_| get(Proto::H1, &isola, "/slow"))).await;
    for reply in &replies {
        assert_eq!(reply.text(), "slow run 1", "{}", cache_status(reply));
    }
    assert_eq!(runs(&isola, "/slow").await, "1");

    // A URL whose response cannot be stored is collapsed once, then not: its concurrent
    // requests are not made to wait for each other.
    get(Proto::H1, &isola, "/slow-private").await;
    let started = std::time::Instant::now();
    let replies =
        futures::future::join_all((0..4).map(|_| get(Proto::H1, &isola, "/slow-private"))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(runs(&isola, "/slow-private").await, "5");
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "4 concurrent requests of 300 ms took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn range_requests_are_answered_from_a_stored_body() {
    let isola = node("");
    let first = get(Proto::H1, &isola, "/ranged").await;
    assert_eq!(first.text(), "0123456789 run 1");
    assert_cache_status(&first, "stored");
    let content_range = |reply: &Reply| {
        reply
            .headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };

    let whole = get(Proto::H1, &isola, "/ranged").await;
    assert_hit(&whole);
    assert_eq!(
        whole.headers.get("accept-ranges").map(|v| v.as_bytes()),
        Some(&b"bytes"[..])
    );
    let part = get_with(&isola, "/ranged", &[("range", "bytes=2-5")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), "2345");
    assert_eq!(content_range(&part), "bytes 2-5/16");
    assert_eq!(
        part.headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"4"[..])
    );
    assert_hit(&part);
    let suffix = get_with(&isola, "/ranged", &[("range", "bytes=-5")]).await;
    assert_eq!((suffix.status, suffix.text()), (206, "run 1".to_owned()));
    let open_ended = get_with(&isola, "/ranged", &[("range", "bytes=10-")]).await;
    assert_eq!(open_ended.text(), " run 1");
    let past_the_end = get_with(&isola, "/ranged", &[("range", "bytes=100-")]).await;
    assert_eq!(past_the_end.status, 416);
    assert_eq!(content_range(&past_the_end), "bytes */16");
    assert_eq!(past_the_end.text(), "");
    // Several ranges or another unit: the whole body, as RFC 9110 allows.
    let several = get_with(&isola, "/ranged", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(
        (several.status, several.text()),
        (200, "0123456789 run 1".to_owned())
    );

    // If-Range: the part only while the stored response is the one the client has.
    for (if_range, status) in [
        ("\"r1\"", 206),
        ("Tue, 01 Dec 2026 00:00:00 GMT", 206),
        ("\"r0\"", 200),
        ("W/\"r1\"", 200),
        ("Mon, 30 Nov 2026 00:00:00 GMT", 200),
    ] {
        let reply = get_with(
            &isola,
            "/ranged",
            &[("range", "bytes=0-3"), ("if-range", if_range)],
        )
        .await;
        assert_eq!(reply.status, status, "If-Range: {if_range}");
        assert_hit(&reply);
    }

    let head = request(&isola, "HEAD", "/ranged", &[("range", "bytes=2-5")]).await;
    assert_eq!(head.status, 200, "Range is for GET");
    let mut h2 = Request::get(format!("http://{}/ranged", isola.authority()))
        .header("range", "bytes=0-0")
        .body(Full::new(Bytes::new()))
        .expect("request");
    h2.headers_mut().insert(
        "host",
        isola.authority().parse().expect("authority as a header"),
    );
    let h2 = send(Proto::H2c, &isola.authority(), h2).await;
    assert_eq!((h2.status, h2.text()), (206, "0".to_owned()));
    assert_eq!(
        runs(&isola, "/ranged").await,
        "1",
        "every answer came from the cache"
    );
}
