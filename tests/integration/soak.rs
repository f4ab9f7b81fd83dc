//! The soak through `isola bench soak --duration 2m`: a node under the whole mix (hello,
//! streaming, cache hits, CPU and memory kills, slow clients, redeploys) keeps its fds and
//! threads steady, every kind of request gets what it should, and the server's counters show
//! the mix really ran. Bounded: 2 minutes of load.
//!
//! RSS is judged and reported but not required to pass here: on 2 cores it still climbs at
//! 2 minutes (V8 and glibc's per-thread malloc arenas reaching their working set while
//! isolates are killed and replaced three times a second, and the isolates that live through
//! the run not yet through a GC cycle), so a 2-minute run cannot tell that ramp from a leak.
//! The 5- and 30-minute runs in benches/README.md pass the RSS check.

use std::process::Command;

use crate::support::repo;

#[test]
fn bench_soak_two_minutes_holds_fds_threads_and_request_outcomes_steady() {
    let name = format!("isola-soak-smoke-{}", std::process::id());
    let json = std::env::temp_dir().join(format!("{name}.json"));
    let dir = std::env::temp_dir().join(name);
    let output = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args(["bench", "soak", "--duration", "2m"])
        .arg("--examples-dir")
        .arg(repo().join("examples"))
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&dir)
        .output()
        .expect("run isola bench soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let written =
        std::fs::read(&json).unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}"));
    let report: serde_json::Value = serde_json::from_slice(&written).expect("JSON");
    let _ = std::fs::remove_file(&json);
    let svg = std::fs::read_to_string(dir.join("soak.svg")).expect("soak.svg written");
    let markdown = std::fs::read_to_string(dir.join("report.md")).expect("report.md written");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(svg.contains("<svg"), "{svg}");
    assert!(markdown.contains("## Verdict"), "{markdown}");

    let verdict = &report["verdict"];
    let failures: Vec<&str> = verdict["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .filter(|f| !f.starts_with("RSS ranged"))
        .collect();
    assert!(failures.is_empty(), "{failures:?}\n{stdout}\n{stderr}");
    assert_eq!(
        output.status.success(),
        verdict["rss"]["passed"].as_bool().unwrap(),
        "the exit status is the verdict: {stdout}"
    );
    assert!(verdict["fds"]["passed"].as_bool().unwrap(), "{verdict}");
    assert!(verdict["threads"]["passed"].as_bool().unwrap(), "{verdict}");
    assert!(
        verdict["rss"]["level_mb"].as_f64().unwrap() > 0.0,
        "{verdict}"
    );
    let samples = report["samples"].as_array().unwrap();
    assert!(
        samples.len() >= 110,
        "one sample a second: {}",
        samples.len()
    );
    for kind in report["requests"].as_array().unwrap() {
        assert!(kind["requests"].as_u64().unwrap() > 0, "{kind}");
        match kind["expect"].as_str().unwrap() {
            "ok" => assert_eq!(kind["ok"], kind["requests"], "{kind}"),
            _ => assert_eq!(kind["errors"]["status_5xx"], kind["requests"], "{kind}"),
        }
    }
    let counters = &report["server_counters"];
    let kills = &counters["isola_isolate_kills_total"];
    let killed_by = |limit: &str| -> f64 {
        kills
            .as_object()
            .unwrap()
            .iter()
            .filter(|(labels, _)| labels.contains(&format!("limit=\"{limit}\"")))
            .map(|(_, value)| value.as_f64().unwrap())
            .sum()
    };
    assert!(killed_by("cpu_ms") > 0.0, "{kills}");
    assert!(killed_by("memory_mb") > 0.0, "{kills}");
    let hits = &counters["isola_cache_requests_total"]["result=\"hit\""];
    assert!(hits.as_f64().unwrap() > 0.0, "{counters}");
    let deploys = &report["deploys"];
    assert!(deploys["ok"].as_u64().unwrap() >= 20, "{deploys}");
    let slow = &report["slow_clients"];
    assert!(slow["completed"].as_u64().unwrap() > 0, "{slow}");
}
