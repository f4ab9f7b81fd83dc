#![allow(clippy::unwrap_used)]

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// Runs one exchange against a scripted server that answers `reply` (in `pieces` split
/// points, to exercise partial reads) and returns the outcome and the request it saw.
async fn exchange(
    reply: &'static [u8],
    head: bool,
) -> (Result<(u16, u64, bool), Failure>, Vec<u8>) {
    let (client, mut server) = tokio::io::duplex(64);
    let request = serialize(&Method::GET, "/x", "h:1", &HeaderMap::new(), b"");
    let expected = request.len();
    let server = tokio::spawn(async move {
        let mut seen = vec![0u8; expected];
        server.read_exact(&mut seen).await.unwrap();
        // Dribble the reply in small pieces.
        for piece in reply.chunks(7) {
            server.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        seen
    });
    let mut conn = FastH1::new(Box::new(client));
    let outcome = conn.exchange(&request, head).await;
    (outcome, server.await.unwrap())
}

#[tokio::test]
async fn content_length() {
    let (outcome, seen) = exchange(
        b"HTTP/1.1 200 OK\r\ncontent-length: 18\r\n\r\nHello from Isola!\n",
        false,
    )
    .await;
    assert_eq!(outcome.unwrap(), (200, 18, true));
    assert_eq!(seen, b"GET /x HTTP/1.1\r\nhost: h:1\r\n\r\n");
}

#[tokio::test]
async fn chunked_with_trailers() {
    let (outcome, _) = exchange(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(outcome.unwrap(), (200, 11, true));
}

#[tokio::test]
async fn close_delimited_and_connection_close() {
    let (outcome, _) = exchange(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
        false,
    )
    .await;
    assert_eq!(outcome.unwrap(), (200, 13, false));
}

#[tokio::test]
async fn no_body_statuses_and_interim_responses() {
    let (outcome, _) = exchange(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(outcome.unwrap(), (204, 0, true));
    let (outcome, _) = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n", true).await;
    assert_eq!(outcome.unwrap(), (200, 0, true), "HEAD has no body");
}

#[tokio::test]
async fn truncated_and_malformed_responses_are_io_errors() {
    let (outcome, _) = exchange(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", false).await;
    assert_eq!(outcome.unwrap_err().kind, ErrorKind::Io);
    let (outcome, _) = exchange(b"NOT HTTP\r\n\r\n", false).await;
    assert_eq!(outcome.unwrap_err().kind, ErrorKind::Io);
}

#[test]
fn serializes_bodies_with_their_length() {
    let mut headers = HeaderMap::new();
    headers.insert("x-a", "1".parse().unwrap());
    let bytes = serialize(&Method::POST, "/echo", "h", &headers, b"abc");
    assert_eq!(
        &bytes[..],
        b"POST /echo HTTP/1.1\r\nhost: h\r\nx-a: 1\r\ncontent-length: 3\r\n\r\nabc"
    );
    assert!(ends_with_chunked(b"gzip, chunked"));
    assert!(!ends_with_chunked(b"chunked, gzip"));
}
