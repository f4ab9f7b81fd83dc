//! Bad worker code gets a clear error, and the server keeps serving through it.

use crate::support::{Isola, Proto, fixture, get, run_to_exit};

#[test]
fn syntax_error_exits_with_file_line_and_column() {
    let file = fixture("syntax-error.js");
    let (status, stderr) = run_to_exit(&["dev", &file.display().to_string(), "--port", "0"]);
    assert!(!status.success());
    assert!(stderr.contains("syntax-error.js:3:"), "{stderr}");
    assert!(stderr.contains("SyntaxError"), "{stderr}");
}

#[test]
fn missing_handler_is_named() {
    let file = fixture("no-handler.js");
    let (status, stderr) = run_to_exit(&["dev", &file.display().to_string(), "--port", "0"]);
    assert!(!status.success());
    assert!(
        stderr.contains("no default export with a fetch"),
        "{stderr}"
    );
    assert!(stderr.contains("no fetch event listener"), "{stderr}");
}

#[test]
fn top_level_throw_is_reported() {
    let file = fixture("top-level-throw.js");
    let (status, stderr) = run_to_exit(&["dev", &file.display().to_string(), "--port", "0"]);
    assert!(!status.success());
    assert!(
        stderr.contains("thrown while the module starts"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_named() {
    let (status, stderr) = run_to_exit(&["dev", "/nonexistent/worker.js", "--port", "0"]);
    assert!(!status.success());
    assert!(stderr.contains("/nonexistent/worker.js"), "{stderr}");
}

#[tokio::test]
async fn failing_handlers_get_a_generic_500_and_a_logged_stack() {
    let isola = Isola::dev(&fixture("throws.js"), &[]);
    for (path, logged) in [
        ("/throw", "boom from the handler"),
        ("/reject", "rejected on purpose"),
        ("/not-a-response", "which is not a Response"),
    ] {
        let reply = get(Proto::H1, &isola, path).await;
        assert_eq!(reply.status, 500, "{path}");
        let body = reply.text();
        assert!(
            body.starts_with("Internal Server Error (request id "),
            "{path}: {body}"
        );
        assert!(
            !body.contains(logged),
            "no detail may leak to the client: {body}"
        );
        let request_id = body
            .trim_end()
            .trim_end_matches(')')
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned();
        let logs = isola.wait_for_log(logged);
        let line = logs
            .lines()
            .find(|l| l.contains(logged))
            .unwrap_or_else(|| panic!("{path}: {logs}"));
        assert!(
            line.contains(&request_id),
            "the log line names the request id {request_id}: {line}"
        );
    }
    let logs = isola.logs();
    assert!(
        logs.contains("throws.js:7"),
        "the stack points into the worker: {logs}"
    );
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
}

#[tokio::test]
async fn unhandled_rejection_is_an_event_and_a_log_not_a_crash() {
    let isola = Isola::dev(&fixture("throws.js"), &[]);
    let reply = get(Proto::H1, &isola, "/unhandled").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "still fine"));
    let logs = isola.wait_for_log("unhandledrejection event: nobody handles this");
    assert!(
        logs.contains("unhandledrejection event: nobody handles this"),
        "{logs}"
    );
    let logs = isola.wait_for_log("Uncaught (in promise) Error: nobody handles this");
    assert!(
        logs.contains("Uncaught (in promise) Error: nobody handles this"),
        "{logs}"
    );
    let reply = get(Proto::H1, &isola, "/timer-throw").await;
    assert_eq!(reply.status, 200);
    let logs = isola.wait_for_log("thrown from a timer");
    assert!(logs.contains("thrown from a timer"), "{logs}");
    for _ in 0..3 {
        let reply = get(Proto::H2c, &isola, "/").await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "ok"),
            "the isolate survived"
        );
    }
}

#[tokio::test]
async fn wait_until_runs_after_the_response_and_its_failure_is_logged() {
    let isola = Isola::dev(&fixture("wait-until.js"), &[]);
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "sent"));
    let logs = isola.wait_for_log("waitUntil work finished after the response");
    assert!(
        logs.contains("waitUntil work finished after the response"),
        "{logs}"
    );
    assert!(logs.contains("waitUntil failure"), "{logs}");
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn wait_until_work_past_wait_until_ms_gets_the_isolate_discarded() {
    let isola = Isola::serve(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[[routes]]\nworker = \"w\"\n\n\
         [workers.w]\nfile = \"{fixtures}/wait-until.js\"\n\n[workers.w.limits]\nwait_until_ms = 300\n",
    );
    let reply = get(Proto::H1, &isola, "/forever").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "sent; waiting forever"),
        "the response does not wait for waitUntil work"
    );
    let logs = isola.wait_for_log("did not finish within wait_until_ms (300 ms)");
    assert!(
        logs.contains("waitUntil work did not finish within wait_until_ms (300 ms)"),
        "{logs}"
    );
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "sent"),
        "a fresh isolate serves next"
    );
}

#[tokio::test]
async fn eval_and_wasm_compilation_are_refused_by_default() {
    let isola = Isola::dev(&fixture("throws.js"), &[]);
    let reply = get(Proto::H1, &isola, "/eval").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().starts_with("EvalError"), "{}", reply.text());
    let reply = get(Proto::H1, &isola, "/wasm").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("CompileError"), "{}", reply.text());
    drop(isola);
    let allowed = Isola::dev(&fixture("throws.js"), &["--allow-eval"]);
    let reply = get(Proto::H1, &allowed, "/eval").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "2"));
}

#[tokio::test]
async fn stack_traces_follow_the_source_map() {
    let isola = Isola::dev(&fixture("mapped/worker.js"), &[]);
    let reply = get(Proto::H1, &isola, "/").await;
    assert_eq!(reply.status, 500);
    let logs = isola.wait_for_log("mapped failure");
    assert!(
        logs.contains("original.ts:42"),
        "the stack points at the original source: {logs}"
    );
}
