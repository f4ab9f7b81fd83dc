//! The generator against the raw hyper baseline, both as real processes on 127.0.0.1:
//! closed loop, open loop and HTTP/2, each bounded to about a second.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Baseline(std::process::Child, String);

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn baseline() -> Baseline {
    let mut child = Command::new(env!("CARGO_BIN_EXE_isola-bench"))
        .args(["serve-baseline", "--port", "0", "--threads", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("announced URL")
        .to_owned();
    Baseline(child, url)
}

fn run(extra: &[&str]) -> serde_json::Value {
    let server = baseline();
    let json = std::env::temp_dir().join(format!(
        "isola-bench-test-{}-{}.json",
        std::process::id(),
        extra.join("_").replace('-', "")
    ));
    let status = Command::new(env!("CARGO_BIN_EXE_isola-bench"))
        .args([
            "--no-baseline",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--connections",
            "4",
            "--url",
        ])
        .arg(format!("{}/", server.1))
        .arg("--json")
        .arg(&json)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success());
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    report
}

fn median(report: &serde_json::Value) -> &serde_json::Value {
    &report["targets"][0]["median"]
}

#[test]
fn closed_loop_http1() {
    let report = run(&[]);
    assert_eq!(report["schema_version"], 1);
    let m = median(&report);
    assert!(m["requests"].as_u64().unwrap() > 100, "{m}");
    assert_eq!(m["errors"].as_object().unwrap().len(), 0, "{m}");
    assert!(m["rps"].as_f64().unwrap() > 100.0);
}

#[test]
fn open_loop_holds_the_rate() {
    let report = run(&["--rate", "200"]);
    let m = median(&report);
    let rps = m["rps"].as_f64().unwrap();
    assert!(
        (150.0..=250.0).contains(&rps),
        "open loop at 200/s measured {rps}: {m}"
    );
}

#[test]
fn http2_streams() {
    let report = run(&["--http2", "--h2-streams", "4"]);
    let m = median(&report);
    assert!(m["requests"].as_u64().unwrap() > 100, "{m}");
    assert_eq!(m["errors"].as_object().unwrap().len(), 0, "{m}");
}
