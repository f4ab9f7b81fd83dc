//! Smoke run of the benchmark harness through `isola bench`: Isola and the raw hyper baseline
//! measured in the same run, a valid JSON report. Bounded: 2 seconds per target.

use std::process::Command;

use crate::support::repo;

/// The JSON report a successful `isola bench` run wrote to `json` (removed after reading).
fn report_of(output: &std::process::Output, json: &std::path::Path) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report =
        serde_json::from_slice(&std::fs::read(json).expect("report written")).expect("valid JSON");
    let _ = std::fs::remove_file(json);
    report
}

#[test]
fn bench_hello_smoke_run_produces_a_valid_report() {
    let json = std::env::temp_dir().join(format!("isola-bench-smoke-{}.json", std::process::id()));
    let report_dir =
        std::env::temp_dir().join(format!("isola-bench-smoke-report-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args([
            "bench",
            "--no-deno",
            "--scenario",
            "hello",
            "--duration",
            "2s",
            "--warmup",
            "300ms",
            "--connections",
            "8",
        ])
        .arg("--examples-dir")
        .arg(repo().join("examples"))
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&report_dir)
        .output()
        .expect("run isola bench");
    let report = report_of(&output, &json);
    assert_eq!(report["schema_version"], 1);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["baseline", "isola"], "{report}");
    for target in targets {
        let median = &target["median"];
        assert!(median["requests"].as_u64().unwrap() > 0, "{target}");
        assert_eq!(
            median["errors"].as_object().map_or(0, |e| e.len()),
            0,
            "{target}"
        );
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(
                median["latency_ms"][key].as_f64().unwrap() > 0.0,
                "{key}: {target}"
            );
        }
        assert!(
            median["server_cpu_ms_per_request"].as_f64().is_some(),
            "{target}"
        );
        assert!(target["ratio_vs_baseline"]["rps"].as_f64().unwrap() > 0.0);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("vs baseline"),
        "the table is printed: {stdout}"
    );
}

#[test]
fn tls_handshake_scenario_completes_full_handshakes_without_errors() {
    let json = std::env::temp_dir().join(format!("isola-bench-tls-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args([
            "bench",
            "--no-baseline",
            "--scenario",
            "tls-handshake",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--connections",
            "4",
        ])
        .arg("--examples-dir")
        .arg(repo().join("examples"))
        .arg("--json")
        .arg(&json)
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("isola-tests-cache"),
        )
        .output()
        .expect("run isola bench");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    let isola = &report["targets"][0];
    assert!(
        isola["url"].as_str().unwrap().starts_with("https://"),
        "{isola}"
    );
    assert!(isola["median"]["requests"].as_u64().unwrap() > 0, "{isola}");
    assert_eq!(
        isola["median"]["errors"].as_object().map_or(0, |e| e.len()),
        0,
        "{isola}"
    );
}

#[test]
fn multi_tenant_scenarios_run_on_a_generated_node() {
    let json = std::env::temp_dir().join(format!("isola-bench-cold-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args(["bench", "--scenario", "cold-start"])
        .arg("--examples-dir")
        .arg(repo().join("examples"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run isola bench");
    let report = report_of(&output, &json);
    let cold = &report["cold_start"];
    let deployments = cold["deployments"].as_f64().unwrap();
    assert!(
        cold["cold_starts_counted"].as_f64().unwrap() >= deployments,
        "every first request was a cold start, by the node's own counter: {cold}"
    );
    assert!(cold["cold_ms"]["p50"].as_f64().unwrap() > 0.0, "{cold}");
    assert!(cold["warm_ms"]["n"].as_u64().unwrap() > 0, "{cold}");
    assert_eq!(
        cold["deploy_ms"]["n"].as_f64().unwrap(),
        deployments,
        "every worker was also deployed through the admin API: {cold}"
    );
    assert!(
        cold["first_request_after_deploy_ms"]["p50"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bench_websocket_echo_reports_both_rates_and_their_ratio() {
    let json = std::env::temp_dir().join(format!("isola-bench-ws-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args([
            "bench",
            "--scenario",
            "websocket-echo",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--connections",
            "4",
        ])
        .arg("--examples-dir")
        .arg(repo().join("examples"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run isola bench");
    let report = report_of(&output, &json);
    assert_eq!(report["scenario"], "websocket-echo");
    let isola = report["isola_messages_per_second"].as_f64().unwrap();
    let raw = report["raw_messages_per_second"].as_f64().unwrap();
    assert!(isola > 0.0 && raw > 0.0, "{report}");
    let ratio = report["ratio"].as_f64().unwrap();
    assert!((ratio - isola / raw).abs() < 1e-9, "{report}");
}
