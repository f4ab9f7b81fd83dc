//! Redeploys during the soak: a new version of one worker through the admin API every few
//! seconds (as `tenants` deploys), while its route takes traffic.

use std::time::{Duration, Instant};

use super::super::node::Node;
use crate::soak::report::DeployOutcome;
use crate::stats::median;

/// Failures kept in the report.
const KEEP_FAILURES: usize = 5;

/// Uploads `code` as `worker`, routed by `/<worker>` with one isolate kept warm, before the
/// run.
pub async fn first(node: &Node, worker: &str, code: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "code": code,
        "routes": [{ "path_prefix": format!("/{worker}") }],
        "limits": { "min_isolates": 1, "max_isolates": 1 },
    })
    .to_string();
    let (status, text, _) = node.admin_put(&format!("/workers/{worker}"), body).await?;
    anyhow::ensure!(
        status == 201,
        "uploading {worker} answered {status}: {text}"
    );
    Ok(())
}

/// Deploys `code` (made a new version each time by a comment) as `worker` every `every`
/// until `until`.
pub async fn redeploy(
    node: &Node,
    worker: &str,
    code: &str,
    every: Duration,
    until: Instant,
) -> DeployOutcome {
    let mut outcome = DeployOutcome {
        every_s: every.as_secs_f64(),
        ..DeployOutcome::default()
    };
    let mut times_ms = Vec::new();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the first redeploy waits one period.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if Instant::now() >= until {
            break;
        }
        outcome.deploys += 1;
        let version = format!("{code}\n// soak deploy {}\n", outcome.deploys);
        let body = serde_json::json!({ "code": version }).to_string();
        match node.admin_put(&format!("/workers/{worker}"), body).await {
            Ok((200, _, took)) => {
                outcome.ok += 1;
                times_ms.push(took.as_secs_f64() * 1000.0);
            }
            Ok((status, text, _)) => {
                note(&mut outcome, format!("deploy answered {status}: {text}"))
            }
            Err(error) => note(&mut outcome, format!("deploy failed: {error:#}")),
        }
    }
    outcome.p50_ms = median(times_ms.iter().copied());
    outcome.max_ms = times_ms.iter().copied().fold(0.0, f64::max);
    outcome
}

fn note(outcome: &mut DeployOutcome, failure: String) {
    if outcome.failures.len() < KEEP_FAILURES {
        outcome.failures.push(failure);
    }
}
