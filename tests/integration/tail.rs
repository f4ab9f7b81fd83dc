//! Live tail over real sockets (`GET /workers/NAME/tail`, server-sent events): events of the
//! requests made after the tail connects (none before), a CPU-limit kill, console lines of
//! the handler and of its `waitUntil` work, `Authorization`, `Cookie` and secret values
//! redacted everywhere, a thrown exception with its stack on its request event, 404 for an
//! unknown worker and 429 for the 11th tail.

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

/// Uploads `upload` as worker `name` (and checks it was created).
async fn deploy(isola: &Isola, name: &str, upload: &serde_json::Value) {
    let reply = isola
        .admin(
            ADMIN_TOKEN,
            "PUT",
            &format!("/workers/{name}"),
            &upload.to_string(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
}

/// A tail of worker `name`, connected (its opening comment read).
async fn tail_of(isola: &Isola, name: &str) -> Tail {
    let tail = Tail::open(isola, name).await;
    assert_eq!(tail.status, 200);
    tail.wait_for(&format!(": tail of {name}")).await;
    tail
}

#[tokio::test]
async fn tail_streams_requests_kills_and_console_lines_with_secrets_redacted() {
    let isola = node();
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/tl/secrets/TOKEN", SECRET)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let upload = serde_json::json!({ "code": WORKER, "limits": { "cpu_ms": 50 } });
    deploy(&isola, "tl", &upload).await;
    assert_eq!(
        get_host(&isola, "tl.localhost", "/before").await.status,
        200
    );

    let tail = tail_of(&isola, "tl").await;
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
    // The request's own event carries its CPU time (its waitUntil work's included).
    assert!(seen["cpu_ms"].as_f64().unwrap() > 0.0, "{seen}");
    assert_eq!(seen["subrequests"], 0, "{seen}");
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
    deploy(&isola, "busy", &upload).await;
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

/// `isola tail <args…>` running against `isola`'s admin API, its stdout collected.
struct TailCommand {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl TailCommand {
    async fn start(isola: &Isola, args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let admin = isola.printed_url("admin on ").await;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_isola"))
            .arg("tail")
            .args(args)
            .args(["--admin", &admin])
            .env("ISOLA_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("isola tail");
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut out = sink.lock().expect("out");
                out.push_str(&line);
                out.push('\n');
            }
        });
        // It says so on stderr once the tail is open.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("isola tail opened");
        assert!(line.starts_with("following"), "{line}");
        Self { child, out }
    }

    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.out.lock().expect("out").clone();
            if out.contains(needle) || Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TailCommand {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn isola_tail_prints_filtered_requests_with_their_console_lines() {
    let isola = node();
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/tl/secrets/TOKEN", SECRET)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let upload = serde_json::json!({ "code": WORKER, "limits": { "cpu_ms": 50 } });
    deploy(&isola, "tl", &upload).await;
    let pretty = TailCommand::start(&isola, &["tl"]).await;
    let errors = TailCommand::start(&isola, &["tl", "--status", "5xx"]).await;
    let json = TailCommand::start(&isola, &["tl", "--format", "json", "--search", "seen"]).await;
    assert_eq!(get_host(&isola, "tl.localhost", "/other").await.status, 200);
    assert_eq!(get_host(&isola, "tl.localhost", "/seen").await.status, 200);
    // Its waitUntil line, before the kill (which could cancel it on a shared isolate).
    let out = pretty.wait_for("later [redacted]").await;
    assert!(out.contains("  (log) later [redacted]"), "{out}");
    let out = pretty.wait_for(", CPU ").await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("200 GET http://tl.localhost/seen ok ")
                && l.contains(" ms, CPU ")),
        "{out}"
    );
    assert_eq!(get_host(&isola, "tl.localhost", "/hog").await.status, 503);

    let out = pretty.wait_for("exceeded_cpu").await;
    assert!(out.contains("200 GET http://tl.localhost/seen ok"), "{out}");
    assert!(out.contains("  (log) hello /seen [redacted]"), "{out}");
    assert!(
        out.contains("503 GET http://tl.localhost/hog exceeded_cpu"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colours off a terminal: {out}");
    let out = errors.wait_for("exceeded_cpu").await;
    assert!(!out.contains("/seen") && !out.contains("/other"), "{out}");
    let out = json.wait_for("later [redacted]").await;
    assert!(out.contains("later [redacted]"), "{out}");
    assert!(!out.contains("/other") && !out.contains("/hog"), "{out}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "request" && e["status"] == 200),
        "{out}"
    );
    for output in [pretty.wait_for("").await, json.wait_for("").await] {
        assert!(!output.contains(SECRET), "{output}");
    }
    // An unknown worker: the command fails, naming the answer.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_isola"))
        .args([
            "tail",
            "nobody",
            "--admin",
            &isola.printed_url("admin on ").await,
        ])
        .env("ISOLA_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("isola tail nobody");
    let (status, stderr) = (output.status, String::from_utf8_lossy(&output.stderr));
    assert!(!status.success());
    assert!(stderr.contains("404"), "{stderr}");
}

#[tokio::test]
async fn a_stuck_tail_never_slows_requests() {
    use tokio::io::AsyncWriteExt as _;
    let isola = node();
    let code = r#"export default { fetch() {
      for (let i = 0; i < 20; i++) console.log('x'.repeat(8000));
      return new Response('ok');
    } }"#;
    let upload = serde_json::json!({ "code": code, "limits": { "cpu_ms": 2000 } });
    deploy(&isola, "loud", &upload).await;
    // A tail that never reads a byte of its stream.
    let authority = isola
        .printed_url("admin on ")
        .await
        .trim_start_matches("http://")
        .to_owned();
    let mut stuck = TcpStream::connect(&authority).await.expect("connect");
    stuck
        .write_all(
            format!(
                "GET /workers/loud/tail HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 300 requests × 20 lines of 8 KB: far more than its queue and socket buffers hold.
    let started = Instant::now();
    for _ in 0..300 {
        let reply = get_host(&isola, "loud.localhost", "/").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "300 requests took {elapsed:?} with a stuck tail"
    );
    // A tail that does read gets events again, telling how many it lost when it fell behind.
    let tail = Tail::open(&isola, "loud").await;
    assert_eq!(tail.status, 200);
    assert_eq!(get_host(&isola, "loud.localhost", "/").await.status, 200);
    tail.wait_for("\"type\":\"request\"").await;
    drop(stuck);
}

/// Throws from a named function on its line 2; `/later` throws from a timer after answering.
const THROWING: &str = r#"function explode(token) {
  throw new Error('boom ' + token);
}
export default { async fetch(request, env) {
  if (new URL(request.url).pathname === '/later') {
    setTimeout(() => { throw new Error('late ' + env.TOKEN); }, 0);
    return new Response('ok');
  }
  explode(env.TOKEN);
} }"#;

#[tokio::test]
async fn a_thrown_exception_rides_on_its_request_event_with_its_stack() {
    let isola = node();
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/te/secrets/TOKEN", SECRET)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let upload = serde_json::json!({ "code": THROWING });
    deploy(&isola, "te", &upload).await;
    let tail = tail_of(&isola, "te").await;
    let pretty = TailCommand::start(&isola, &["te", "--search", "explode"]).await;

    let failed = get_host(&isola, "te.localhost", "/boom").await;
    assert_eq!(failed.status, 500);
    assert!(!failed.text().contains("boom"), "{}", failed.text());
    let text = tail.wait_for("\"outcome\":\"exception\"").await;
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("event JSON"))
        .collect();
    let request = events
        .iter()
        .find(|e| e["type"] == "request" && e["outcome"] == "exception")
        .unwrap_or_else(|| panic!("no exception event: {text}"));
    assert_eq!(request["status"], 500);
    let exception = request["exception"]
        .as_str()
        .unwrap_or_else(|| panic!("no exception text: {request}"));
    assert!(
        exception.starts_with("Error: boom [redacted]"),
        "{exception}"
    );
    let throw_site = exception
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no stack: {exception}"));
    assert!(
        throw_site.contains("at explode (") && throw_site.contains(":2:"),
        "the stack names the function and its line: {exception}"
    );
    // `isola tail` prints it under its request (`--search` finds it in the stack).
    let out = pretty.wait_for("at explode (").await;
    let printed: Vec<&str> = out.lines().collect();
    let at = printed
        .iter()
        .position(|l| l.starts_with("500 GET http://te.localhost/boom exception"))
        .unwrap_or_else(|| panic!("no request line: {out}"));
    assert_eq!(
        printed.get(at + 1).copied(),
        Some("  Error: boom [redacted]"),
        "{out}"
    );
    assert!(
        printed
            .get(at + 2)
            .is_some_and(|l| l.trim_start().starts_with("at explode (")),
        "{out}"
    );

    // An exception in a timer after the response names its request: an exception event of its
    // own, or, when the timer ran in the turn that ended the request's work (which depends on
    // how soon the isolate's thread ran again), the request's own event.
    let later = get_host(&isola, "te.localhost", "/later").await;
    assert_eq!(later.status, 200);
    let text = tail.wait_for("late [redacted]").await;
    let late = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<serde_json::Value>(data).expect("event JSON"))
        .find(|e| {
            let names_late =
                |m: &serde_json::Value| m.as_str().is_some_and(|m| m.contains("late "));
            names_late(&e["exception"])
                || e["exceptions"]
                    .as_array()
                    .is_some_and(|all| all.iter().any(names_late))
        })
        .unwrap_or_else(|| panic!("no event of the timer's exception: {text}"));
    assert!(
        late["type"] == "exception" || late["type"] == "request",
        "{late}"
    );
    assert_eq!(
        late["request_id"].as_str(),
        later
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        "{late}"
    );
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    let out = pretty.wait_for("").await;
    assert!(!out.contains("/later"), "filtered out: {out}");
    assert!(!out.contains(SECRET), "the secret leaked: {out}");
}

#[tokio::test]
async fn a_request_event_carries_the_cpu_time_it_burned() {
    let isola = node();
    let code = r#"export default { fetch(request) {
      const n = Number(new URL(request.url).searchParams.get('n'));
      let x = 0;
      for (let i = 0; i < n; i++) x = (x * 31 + i) % 1000003;
      return new Response(String(x));
    } }"#;
    let upload =
        serde_json::json!({ "code": code, "limits": { "cpu_ms": 10000, "wall_ms": 60000 } });
    deploy(&isola, "burn", &upload).await;
    // A warm isolate, so no start-up is in what the process burns.
    assert_eq!(
        get_host(&isola, "burn.localhost", "/?n=1000").await.status,
        200
    );
    let tail = tail_of(&isola, "burn").await;
    let before = crate::support::thread_cpu_seconds(isola.pid());
    let reply = get_host(&isola, "burn.localhost", "/?n=100000000").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = tail.wait_for("\"cpu_ms\"").await;
    let process = crate::support::thread_cpu_seconds(isola.pid()) - before;
    let event = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str::<serde_json::Value>(data).expect("event JSON"))
        .find(|e| e["type"] == "request")
        .unwrap_or_else(|| panic!("no request event: {text}"));
    let cpu = event["cpu_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no cpu_ms on the request's event: {event}"))
        / 1000.0;
    eprintln!("event CPU {cpu:.3} s, the process's {process:.3} s");
    assert!(
        process > 0.1,
        "the loop must burn measurable CPU ({process:.3} s)"
    );
    assert!(
        (cpu - process).abs() <= 0.3 * process,
        "the event's CPU {cpu:.3} s vs the process's {process:.3} s: {event}"
    );
}

#[tokio::test]
async fn exceptions_of_timers_and_wait_until_work_name_their_request() {
    let isola = node();
    let code = std::fs::read_to_string(crate::support::fixture("dev-tail.js")).expect("fixture");
    let upload = serde_json::json!({ "code": code });
    let reply = isola
        .admin(ADMIN_TOKEN, "PUT", "/workers/late/secrets/TOKEN", SECRET)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    deploy(&isola, "late", &upload).await;
    let tail = tail_of(&isola, "late").await;
    let pretty = TailCommand::start(&isola, &["late"]).await;
    // Requests before and after, so the exceptions could be mistaken for theirs.
    assert_eq!(get_host(&isola, "late.localhost", "/a").await.status, 200);
    let later = get_host(&isola, "late.localhost", "/later").await;
    assert_eq!(later.status, 200);
    assert_eq!(get_host(&isola, "late.localhost", "/b").await.status, 200);
    let id = later
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_owned();
    let text = tail.wait_for("late from a timer").await;
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("event JSON"))
        .collect();
    // waitUntil work holds the request open: its rejection is on the request's own event.
    let request = events
        .iter()
        .find(|e| e["type"] == "request" && e["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no event of /later: {text}"));
    let exceptions = request["exceptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no exceptions on the event: {request}"));
    assert_eq!(exceptions.len(), 1, "{request}");
    let waited = exceptions[0].as_str().unwrap_or_default();
    assert!(
        waited.starts_with("Uncaught (in waitUntil) Error: late from waitUntil")
            && waited.contains("\n    at "),
        "with its stack: {waited}"
    );
    // The timer throws after the request ended: an event of its own, naming the request.
    let timer = events
        .iter()
        .find(|e| e["type"] == "exception")
        .unwrap_or_else(|| panic!("no exception event: {text}"));
    assert_eq!(timer["request_id"], id.as_str(), "{timer}");
    let thrown = timer["exception"].as_str().unwrap_or_default();
    assert!(
        thrown.starts_with("Error: late from a timer") && thrown.contains("\n    at "),
        "{thrown}"
    );
    for other in events.iter().filter(|e| e["request_id"] != id.as_str()) {
        assert!(other.get("exceptions").is_none(), "{other}");
    }
    // `isola tail` prints both under the request.
    let out = pretty.wait_for("Error: late from a timer").await;
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("200 GET http://late.localhost/later ok "))
        .unwrap_or_else(|| panic!("no line of /later: {out}"));
    assert_eq!(
        lines.get(at + 1).copied(),
        Some("  Uncaught (in waitUntil) Error: late from waitUntil"),
        "{out}"
    );
    assert!(out.contains("\n  Error: late from a timer\n"), "{out}");
}
