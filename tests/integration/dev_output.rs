//! `isola dev`'s stdout: each finished request printed as `isola tail --format pretty` prints
//! it (status, method, URL, outcome, times, its console lines, an exception with its stack),
//! without colours off a terminal, and not repeated in its log.

use std::time::{Duration, Instant};

use crate::support::{Isola, Proto, fixture, get};

/// Waits (bounded) until `isola` printed a line containing `needle` on stdout; all of it.
pub(crate) async fn wait_for_stdout(isola: &Isola, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = isola.stdout.lock().expect("stdout").join("\n");
        if out.contains(needle) || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dev_prints_each_request_with_its_console_lines_and_exception() {
    let isola = Isola::dev_default_log(&fixture("dev-tail.js"), &[]);
    let base = isola.url.clone();
    assert_eq!(get(Proto::H1, &isola, "/hi").await.status, 200);
    let failed = get(Proto::H1, &isola, "/boom").await;
    assert_eq!(failed.status, 500);
    // The stack and the console line come as separate lines of stdout: wait for the last.
    let out = wait_for_stdout(&isola, "(log) hello /boom").await;
    let lines: Vec<&str> = out.lines().collect();
    let hi = lines
        .iter()
        .position(|l| l.starts_with(&format!("200 GET {base}/hi ok ")))
        .unwrap_or_else(|| panic!("no line of /hi: {out}"));
    assert_eq!(
        lines.get(hi + 1).copied(),
        Some("  (log) hello /hi"),
        "{out}"
    );
    let boom = lines
        .iter()
        .position(|l| l.starts_with(&format!("500 GET {base}/boom exception ")))
        .unwrap_or_else(|| panic!("no line of /boom: {out}"));
    assert_eq!(
        lines.get(boom + 1).copied(),
        Some("  Error: boom here"),
        "{out}"
    );
    assert!(
        lines
            .get(boom + 2)
            .is_some_and(|l| l.trim_start().starts_with("at explode (") && l.contains(":5:")),
        "the stack, source line included: {out}"
    );
    assert!(out.contains("  (log) hello /boom"), "{out}");
    assert!(!out.contains('\x1b'), "no colours off a terminal: {out}");
    // Printed once: the log (stderr) leaves the worker's lines and exceptions to stdout.
    let logs = isola.logs();
    assert!(
        !logs.contains("hello /hi") && !logs.contains("boom here"),
        "{logs}"
    );
}

#[tokio::test]
async fn text_logs_show_stacks_on_lines_of_their_own_and_json_logs_escape_them() {
    let isola = Isola::dev(&fixture("dev-tail.js"), &[]);
    assert_eq!(get(Proto::H1, &isola, "/boom").await.status, 500);
    assert_eq!(get(Proto::H1, &isola, "/later").await.status, 200);
    let logs = isola.wait_for_log("late from a timer");
    for (message, frame) in [
        ("failed: Error: boom here", "    at explode ("),
        (
            "Uncaught (in waitUntil) Error: late from waitUntil",
            "    at file://",
        ),
        ("Error: late from a timer", "    at file://"),
    ] {
        let lines: Vec<&str> = logs.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains(message))
            .unwrap_or_else(|| panic!("no {message}: {logs}"));
        assert!(
            lines.get(at + 1).is_some_and(|l| l.starts_with(frame)),
            "the stack on the next line: {logs}"
        );
    }
    assert!(!logs.contains("\\n    at"), "no escaped newlines: {logs}");

    let json = Isola::dev(&fixture("dev-tail.js"), &["--log-format", "json"]);
    assert_eq!(get(Proto::H1, &json, "/later").await.status, 200);
    let logs = json.wait_for_log("late from a timer");
    let record = logs
        .lines()
        .find(|l| l.contains("late from a timer"))
        .unwrap_or_else(|| panic!("no record: {logs}"));
    let record: serde_json::Value = serde_json::from_str(record).expect("one JSON record a line");
    let message = record["fields"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("Error: late from a timer\n    at "),
        "{message}"
    );
}
