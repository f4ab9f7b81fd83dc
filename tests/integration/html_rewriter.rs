//! HTMLRewriter over real sockets: streamed bodies rewritten across chunk boundaries, async
//! handlers, every mutation method, refusals (bad selector, stale units), failing handlers
//! (the stream errors, the isolate serves on), and constant memory on a large body.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::support::{Isola, Proto, REQUEST_TIMEOUT, fixture, get, peak_rss_mib, rss_mib};

fn dev() -> Isola {
    Isola::dev(&fixture("html-rewriter.js"), &[])
}

/// A body produced by a ReadableStream in six chunks that split tags, an attribute and a
/// comment is rewritten as if whole; the headers are kept (minus Content-Length).
#[tokio::test]
async fn rewrites_a_streamed_body_across_chunk_boundaries() {
    let isola = dev();
    for proto in [Proto::H1, Proto::H2c] {
        let reply = get(proto, &isola, "/split").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.text(),
            "<html><head><title>T</title></head><body><a href=\"/x\" rel=\"nofollow\">one</a>\
             <p>text <b>BOLD</b></p><!-- note --><a href=\"/y\" rel=\"nofollow\">two</a>\
             </body></html>"
        );
        assert_eq!(reply.headers["x-origin"], "kept");
        assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    }
}

/// Each Element, Text, Comment, Doctype, EndTag and DocumentEnd method does what Workers'
/// does, with `{html: true}` inserting markup and text escaped otherwise.
#[tokio::test]
async fn every_mutation_method() {
    let isola = dev();
    let reply = get(Proto::H1, &isola, "/mutations").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let expected = "<!DOCTYPE html><html><head><title>Old</title></head><body>\n\
        <hr><div id=\"before\">B</div>\n\
        <div id=\"after\">A</div>&lt;b&gt;&amp;&lt;/b&gt;\n\
        <div id=\"prepend\"><u>p</u><i>x</i></div>\n\
        <div id=\"append\"><i>x</i>tail</div>\n\
        <section>new</section>\n\
        <div id=\"inner\">fresh</div>\n\
        \n\
        <em>kept</em>\n\
        <section id=\"rename\" data-was=\"div\">N</section>\n\
        <div id=\"attrs\" b=\"2\" c=\"3\" data-seen=\"id=attrs,a=1,b=2;2;true;null;http://www.w3.org/1999/xhtml\">Z</div>\n\
        <p class=\"text\">hello isola!</p>\n\
        <!-- redacted -->\n\
        <span id=\"end\">E?</span><i>after</i>\n\
        </body></html><!-- doctype=html removed=true end=span -->";
    assert_eq!(reply.text(), expected);
}

/// Handlers returning promises (timers, `scheduler.wait`) pause the rewriting until they
/// settle; their changes land in document order, end tag handlers included.
#[tokio::test]
async fn async_handlers() {
    let isola = dev();
    for proto in [Proto::H1, Proto::H2c] {
        let reply = get(proto, &isola, "/async").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.text(),
            "<html><head><title>T</title></head><body><a href=\"/x\" data-n=\"1\">one</a>[1]\
             <p>text <b>bold</b></p><!-- note --><a href=\"/y\" data-n=\"2\">two</a>[2]\
             </body></html>"
        );
    }
}

/// An unsupported selector throws a TypeError naming it, where `on()` is called.
#[tokio::test]
async fn invalid_selector_throws_a_type_error_naming_it() {
    let isola = dev();
    let reply = get(Proto::H1, &isola, "/invalid-selector").await;
    let text = reply.text();
    assert!(text.starts_with("TypeError: "), "{text}");
    assert!(text.contains("\"a >\""), "{text}");
}

/// A unit kept past its handler is refused with a TypeError.
#[tokio::test]
async fn a_unit_used_after_its_handler_is_refused() {
    let isola = dev();
    let text = get(Proto::H1, &isola, "/stale").await.text();
    assert!(text.starts_with("TypeError: "), "{text}");
    assert!(text.contains("no longer valid"), "{text}");
}

/// A handler that throws (or rejects) errors the transformed stream with its error; the
/// isolate stays healthy and serves the next rewrite.
#[tokio::test]
async fn a_throwing_handler_errors_the_stream_and_the_isolate_serves_on() {
    let isola = dev();
    for (path, message) in [
        ("/throw", "Error: handler exploded"),
        ("/reject", "Error: handler rejected"),
    ] {
        let reply = get(Proto::H1, &isola, path).await;
        assert_eq!(reply.text(), message, "{path}");
        let reply = get(Proto::H1, &isola, "/split").await;
        assert!(reply.text().contains("rel=\"nofollow\""), "after {path}");
    }
    // Returned to the client as is: the head has gone out, so the body is cut short.
    let stream = TcpStream::connect(isola.authority()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/throw-streamed")
        .header("host", isola.authority())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let response = sender.send_request(request).await?;
        response.into_body().collect().await.map(|b| b.to_bytes())
    })
    .await
    .expect("the failed stream ends the response");
    match outcome {
        Err(_) => {}
        Ok(body) => assert!(
            !String::from_utf8_lossy(&body).contains("</html>"),
            "the body stops at the failure: {body:?}"
        ),
    }
    let reply = get(Proto::H1, &isola, "/split").await;
    assert!(reply.text().contains("rel=\"nofollow\""));
    assert_eq!(get(Proto::H1, &isola, "/").await.text(), "alive");
}

/// 100 MiB of HTML streams through the rewriter with every link rewritten, while the
/// process's resident memory grows by far less than the body (chunks are rewritten and sent
/// as they come; lol-html buffers at most 4 MiB).
#[tokio::test]
async fn a_large_body_streams_in_constant_memory() {
    let isola = Isola::dev(&fixture("html-rewriter.js"), &["--cpu-ms", "60000"]);
    assert_eq!(get(Proto::H1, &isola, "/").await.text(), "alive");
    let before = rss_mib(isola.pid());
    let stream = TcpStream::connect(isola.authority()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/large?mb=100")
        .header("host", isola.authority())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (bytes, links) = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let (mut bytes, mut links, mut tail) = (0usize, 0usize, Vec::new());
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            bytes += data.len();
            tail.extend_from_slice(&data);
            let text = String::from_utf8_lossy(&tail).into_owned();
            links += text.matches("rel=\"nofollow\"").count();
            let keep = tail.len().saturating_sub(32);
            tail.drain(..keep);
            // The 32 bytes kept can hold at most one partial match, never a whole one.
            links -= String::from_utf8_lossy(&tail)
                .matches("rel=\"nofollow\"")
                .count();
        }
        links += String::from_utf8_lossy(&tail)
            .matches("rel=\"nofollow\"")
            .count();
        (bytes, links)
    })
    .await
    .expect("the rewrite finishes");
    let peak = peak_rss_mib(isola.pid());
    eprintln!("rewrote {bytes} bytes, {links} links; RSS {before:.1} MiB before, peak {peak:.1}");
    assert!(bytes > 100 * 1024 * 1024, "{bytes}");
    let per_chunk = 65536 / "<li><a href=\"/page\">a link</a></li>\n".len();
    assert_eq!(
        links,
        per_chunk * (100usize * 1024 * 1024).div_ceil(per_chunk * 36)
    );
    assert!(
        peak - before < 60.0,
        "resident memory grew by {:.1} MiB for a 100 MiB body",
        peak - before
    );
}
