//! Live tail over real sockets (`GET /workers/NAME/tail`, server-sent events): events of the
//! requests made after the tail connects (none before), a CPU-limit kill, console lines of
//! the handler and of its `waitUntil` work, `Authorization`, `Cookie` and secret values
//! redacted everywhere, 404 for an unknown worker and 429 for the 11th tail.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::support::{ADMIN_TOKEN, Isola, get_host};

const SECRET: &str = "s3cr3t-tail-value";

const WORKER: &str = r#"export default { async fetch(request, env, ctx) {
  const url = new URL(request.url);
  if (url.pathname === '/hog') { for (;;) {} }
  console.log('hello ' + url.pathname + ' ' + env.TOKEN);
  if (url.pathname === '/seen') ctx.waitUntil(new Promise((r) => setTimeout(r, 20)).then(() => console.log('later ' + env.TOKEN)));
  return new Response('ok');
} }"#;

/// A tail's status and the text it has received so far (filled by a background task).
struct Tail {
    status: u16,
    text: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Tail {
    async fn open(isola: &Isola, name: &str) -> Self {
        let authority = isola
            .printed_url("admin on ")
            .await
            .trim_start_matches("http://")
            .to_owned();
        let stream = TcpStream::connect(&authority).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let request = Request::get(format!("/workers/{name}/tail"))
            .header("host", &authority)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender.send_request(request).await.expect("tail");
        let status = response.status().as_u16();
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        let reader = tokio::spawn(async move {
            let _sender = sender;
            let mut body = response.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    sink.lock()
                        .expect("tail")
                        .push_str(&String::from_utf8_lossy(&data));
                }
            }
        });
        Self {
            status,
            text,
            reader,
        }
    }

    fn text(&self) -> String {
        self.text.lock().expect("tail").clone()
    }

    /// Waits (bounded) until the tail has received `needle`.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn node() -> Isola {
    Isola::serve(
        r#"
[admin]
address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"
"#,
    )
}

#[tokio::test]
async fn tail_streams_requests_kills_and_console_lines_with_secrets_redacted() {
    let isola = node();
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/tl/secrets/TOKEN", SECRET)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let upload = serde_json::json!({ "code": WORKER, "limits": { "cpu_ms": 50 } });
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/tl", &upload.to_string())
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        get_host(&isola, "tl.localhost", "/before").await.status,
        200
    );

    let tail = Tail::open(&isola, "tl").await;
    assert_eq!(tail.status, 200);
    tail.wait_for(": tail of tl").await;
    let request = Request::get(format!("/seen?key={SECRET}"))
        .header("host", "tl.localhost")
        .header("cookie", "session=cookie-value")
        .header("authorization", "Bearer client-token")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = crate::support::send(crate::support::Proto::H1, &isola.authority(), request).await;
    assert_eq!(reply.status, 200);
    tail.wait_for("later [redacted]").await;
    assert_eq!(get_host(&isola, "tl.localhost", "/hog").await.status, 503);
    let text = tail.wait_for("exceeded_cpu").await;

    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("event JSON"))
        .collect();
    let seen = events
        .iter()
        .find(|e| e["type"] == "request" && e["url"].as_str().is_some_and(|u| u.contains("/seen")))
        .unwrap_or_else(|| panic!("no event of /seen: {text}"));
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["status"], 200);
    assert_eq!(seen["outcome"], "ok");
    assert!(seen["wall_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(seen["headers"]["cookie"], "[redacted]");
    assert_eq!(seen["headers"]["authorization"], "[redacted]");
    assert_eq!(seen["url"], "http://tl.localhost/seen?key=[redacted]");
    let id = seen["request_id"].as_str().expect("request id");
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "log" && e["request_id"] == id)
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs,
        ["hello /seen [redacted]", "later [redacted]"],
        "{text}"
    );
    let hog = events
        .iter()
        .find(|e| e["type"] == "request" && e["outcome"] == "exceeded_cpu")
        .expect("the kill");
    assert_eq!(hog["status"], 503);
    assert!(
        !text.contains("/before"),
        "only requests after the tail connected: {text}"
    );
    for secret in [SECRET, "cookie-value", "client-token"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn tails_are_bounded_per_worker_and_unknown_workers_are_404() {
    let isola = node();
    let upload = serde_json::json!({ "code": WORKER });
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/busy", &upload.to_string())
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let mut tails = Vec::new();
    for _ in 0..10 {
        let tail = Tail::open(&isola, "busy").await;
        assert_eq!(tail.status, 200);
        tails.push(tail);
    }
    assert_eq!(Tail::open(&isola, "busy").await.status, 429);
    assert_eq!(Tail::open(&isola, "nobody").await.status, 404);
    // A tail that goes frees its place.
    drop(tails.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = Tail::open(&isola, "busy").await.status;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
