//! The `isola-bench` binary end to end on 127.0.0.1: a raw hyper baseline started through
//! `serve-baseline`, measured closed loop, open loop, over HTTP/2 and TLS; the JSON report,
//! report.md and the SVG plots; `compare`; the scenario list. Every
//! run is bounded (2 s at most, plus warm-up).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_isola-bench");

/// A `serve-baseline` process, killed when dropped.
struct Baseline {
    child: std::process::Child,
    url: String,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn baseline(extra: &[&str]) -> Baseline {
    let mut child = Command::new(BIN)
        .args(["serve-baseline", "--port", "0", "--threads", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start serve-baseline");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("announced URL, got {line:?}"))
        .to_owned();
    Baseline { child, url }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("isola-bench-test-{}-{name}", std::process::id()))
}

fn bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run isola-bench")
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a load test of `url` with `extra` flags, returns the parsed JSON report.
fn run_json(url: &str, name: &str, extra: &[&str]) -> serde_json::Value {
    let json = temp(&format!("{name}.json"));
    let mut args = vec![
        "--url",
        url,
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--connections",
        "4",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = bench(&args);
    assert_success(&output);
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    report
}

fn target<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name} in {report}"))
}

fn assert_clean(summary: &serde_json::Value) {
    assert!(summary["requests"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["errors"].as_object().unwrap().len(), 0, "{summary}");
    for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
        let ms = summary["latency_ms"][key].as_f64().unwrap();
        assert!(ms > 0.0 && ms < 10_000.0, "{key} = {ms}: {summary}");
    }
    assert!(summary["rps"].as_f64().unwrap() > 0.0);
    assert!(
        !summary["throughput_timeline"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn two_second_hello_with_baseline_json_and_report_dir() {
    let server = baseline(&[]);
    let json = temp("hello.json");
    let dir = temp("report");
    let output = bench(&[
        "--url",
        &format!("{}/", server.url),
        "--duration",
        "2s",
        "--warmup",
        "300ms",
        "--connections",
        "8",
        "--repeat",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--report",
        dir.to_str().unwrap(),
    ]);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("rps vs baseline"), "{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert!(report["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["cpu_model"].is_string());
    assert_eq!(report["settings"]["connections"], 8);
    assert_eq!(report["settings"]["duration_ms"], 2000);
    let names: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baseline", "target"]);
    for name in names {
        let t = target(&report, name);
        assert_eq!(t["repeats"].as_array().unwrap().len(), 1);
        assert_clean(&t["median"]);
        assert_clean(&t["repeats"][0]);
        assert!(t["ratio_vs_baseline"]["rps"].as_f64().unwrap() > 0.0);
        assert!(t["ratio_vs_baseline"]["p99"].as_f64().unwrap() > 0.0);
        assert!(t["repeats"][0]["ratio_vs_baseline"]["rps"].is_number());
    }
    let base = target(&report, "baseline");
    assert!(
        base["median"]["server_cpu_ms_per_request"]
            .as_f64()
            .unwrap()
            > 0.0,
        "the harness started the baseline, so its CPU is measured: {base}"
    );
    assert!(target(&report, "target")["median"]["server_cpu_ms_per_request"].is_null());

    // The baseline the harness started is gone once it exits.
    let started = base["url"].as_str().unwrap().trim_start_matches("http://");
    let authority = started.split('/').next().unwrap();
    assert!(
        std::net::TcpStream::connect(authority).is_err(),
        "{authority} still answers"
    );

    for file in ["report.md", "latency.svg", "throughput.svg"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.len() > 100, "{file} is too short");
    }
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(markdown.contains("| rps |") && markdown.contains("latency.svg"));
    assert!(
        std::fs::read_to_string(dir.join("latency.svg"))
            .unwrap()
            .contains("<svg")
    );

    // Comparing a run with itself finds nothing; a 10 % slower copy is a regression.
    let same = bench(&["compare", json.to_str().unwrap(), json.to_str().unwrap()]);
    assert_success(&same);
    let mut slower = report.clone();
    for t in slower["targets"].as_array_mut().unwrap() {
        let rps = t["median"]["rps"].as_f64().unwrap();
        t["median"]["rps"] = serde_json::json!(rps * 0.9);
    }
    let slower_path = temp("slower.json");
    std::fs::write(&slower_path, serde_json::to_vec(&slower).unwrap()).unwrap();
    let regressed = bench(&[
        "compare",
        json.to_str().unwrap(),
        slower_path.to_str().unwrap(),
    ]);
    assert!(!regressed.status.success());
    assert!(String::from_utf8_lossy(&regressed.stdout).contains("REGRESSION"));
    let mut elsewhere = report;
    elsewhere["machine"]["hostname"] = serde_json::json!("another-host");
    std::fs::write(&slower_path, serde_json::to_vec(&elsewhere).unwrap()).unwrap();
    let refused = bench(&[
        "compare",
        json.to_str().unwrap(),
        slower_path.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("different machines"));
    let forced = bench(&[
        "compare",
        json.to_str().unwrap(),
        slower_path.to_str().unwrap(),
        "--force",
    ]);
    assert_success(&forced);

    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&slower_path);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_loop_holds_the_rate() {
    let server = baseline(&[]);
    let report = run_json(
        &format!("{}/", server.url),
        "open",
        &["--no-baseline", "--rate", "300"],
    );
    let m = &target(&report, "target")["median"];
    assert_clean(m);
    let rps = m["rps"].as_f64().unwrap();
    assert!(
        (270.0..=330.0).contains(&rps),
        "open loop at 300/s measured {rps}: {m}"
    );
    assert!(m["schedule_lag_max_ms"].is_number());
}

#[test]
fn http2_and_the_hyper_http1_client() {
    let server = baseline(&[]);
    let url = format!("{}/", server.url);
    let h2 = run_json(
        &url,
        "h2",
        &["--no-baseline", "--http2", "--h2-streams", "4"],
    );
    assert_clean(&target(&h2, "target")["median"]);
    let hyper = run_json(&url, "hyper", &["--no-baseline", "--h1-client", "hyper"]);
    assert_clean(&target(&hyper, "target")["median"]);
}

#[test]
fn tls_with_insecure_and_a_tls_baseline() {
    let server = baseline(&["--tls"]);
    assert!(server.url.starts_with("https://"));
    let url = format!("{}/", server.url);
    let refused = bench(&["--url", &url, "--no-baseline", "--duration", "1s"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--insecure"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let report = run_json(
        &url,
        "tls",
        &["--insecure", "--new-connection-per-request", "--http2"],
    );
    assert_eq!(report["settings"]["tls"], true);
    let base = target(&report, "baseline");
    assert!(base["url"].as_str().unwrap().starts_with("https://"));
    assert_clean(&base["median"]);
    assert_clean(&target(&report, "target")["median"]);
}

#[test]
fn large_bodies_are_echoed() {
    let server = baseline(&[]);
    let report = run_json(
        &format!("{}/echo", server.url),
        "echo",
        &[
            "--no-baseline",
            "--method",
            "POST",
            "--body-bytes",
            "1048576",
        ],
    );
    let m = &target(&report, "target")["median"];
    assert_clean(m);
    assert!(m["response_mb_per_s"].as_f64().unwrap() > 1.0, "{m}");
    assert_eq!(report["settings"]["body_bytes"], 1_048_576);
}

#[test]
fn scenarios_are_listed_and_unknown_ones_refuse() {
    let list = bench(&["scenarios"]);
    assert_success(&list);
    let text = String::from_utf8_lossy(&list.stdout);
    for name in [
        "hello",
        "json-api",
        "ssr",
        "large-body",
        "slow-clients",
        "tls-handshake",
        "cache-hit",
        "cold-start",
        "many-tenants",
        "noisy-neighbour",
        "cpu-limit-storm",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let help = bench(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("cpu-limit-storm"));

    let refused = bench(&["--scenario", "no-such-scenario", "--no-baseline"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown scenario"));
}

#[test]
fn self_check_compares_rounds_against_wrk() {
    let out = bench(&["self-check", "--duration", "1s", "--repeat", "1"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("round 1 isola-bench (fast"), "{text}");
    assert!(
        text.contains("median of the rounds' ratios") || text.contains("wrk: not installed"),
        "{text}"
    );
}
