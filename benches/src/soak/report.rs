//! The soak's JSON report: the run's settings, what every kind of request got, the deploys,
//! the server's own counters, the verdict and every sample.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sampler::Sample;
use super::verdict::Verdict;
use crate::machine::Machine;
use crate::slow_clients::SlowClientStats;
use crate::stats::RunResult;

/// What a kind of request should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// A successful response.
    Ok,
    /// 503: the isolate was killed at a limit.
    Killed,
}

/// What one kind of request of the mix got over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct KindOutcome {
    /// Its name (`hello`, `cpu-kill`, …).
    pub kind: String,
    /// The path requested.
    pub path: String,
    /// Requests per second asked for (open loop).
    pub rate_per_s: f64,
    /// What each request should get.
    pub expect: Expect,
    /// Requests that ended (or were dropped).
    pub requests: u64,
    /// Successful responses (below 400).
    pub ok: u64,
    /// Failures by kind (`status_5xx` is the 503 of a kill).
    pub errors: BTreeMap<String, u64>,
    /// Latency of successful responses, median, ms.
    pub p50_ms: f64,
    /// Latency of successful responses, 99th percentile, ms.
    pub p99_ms: f64,
}

impl KindOutcome {
    /// The outcome of a generator run of this kind.
    pub fn new(kind: &str, path: &str, rate_per_s: f64, expect: Expect, run: &RunResult) -> Self {
        let answered = run.ok > 0;
        Self {
            kind: kind.to_owned(),
            path: path.to_owned(),
            rate_per_s,
            expect,
            requests: run.requests,
            ok: run.ok,
            errors: run.errors_by_kind(),
            p50_ms: if answered {
                run.latency_ms_at(0.5)
            } else {
                0.0
            },
            p99_ms: if answered {
                run.latency_ms_at(0.99)
            } else {
                0.0
            },
        }
    }

    /// Responses that were not what this kind should get, in words (`None`: all were).
    pub fn problem(&self) -> Option<String> {
        let kind = &self.kind;
        if self.requests == 0 {
            return Some(format!("{kind}: no request ended"));
        }
        let unexpected: BTreeMap<&String, &u64> = match self.expect {
            Expect::Ok => self.errors.iter().collect(),
            Expect::Killed => self
                .errors
                .iter()
                .filter(|(name, _)| name.as_str() != "status_5xx")
                .collect(),
        };
        let succeeded_wrongly = self.expect == Expect::Killed && self.ok > 0;
        if unexpected.is_empty() && !succeeded_wrongly {
            return None;
        }
        Some(match self.expect {
            Expect::Ok => format!(
                "{kind}: {} of {} requests failed: {unexpected:?}",
                self.errors.values().sum::<u64>(),
                self.requests
            ),
            Expect::Killed => format!(
                "{kind}: every request should have been killed (503), but {} succeeded and other failures were {unexpected:?}",
                self.ok
            ),
        })
    }
}

/// The redeploys through the admin API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeployOutcome {
    /// Seconds between deploys.
    pub every_s: f64,
    /// Deploys attempted.
    pub deploys: u64,
    /// Answered 200 (replaced).
    pub ok: u64,
    /// Every other answer or failure, in words (the first few).
    pub failures: Vec<String>,
    /// Deploy request time, median, ms.
    pub p50_ms: f64,
    /// Deploy request time, maximum, ms.
    pub max_ms: f64,
}

/// A whole soak run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// [`crate::report::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `soak`.
    pub benchmark: &'static str,
    /// `git rev-parse HEAD`, if any.
    pub git_sha: Option<String>,
    /// Where it ran.
    pub machine: Machine,
    /// Start time, RFC 3339 UTC.
    pub started_at: String,
    /// Every setting the run used.
    pub settings: serde_json::Value,
    /// Per kind of request.
    pub requests: Vec<KindOutcome>,
    /// The redeploys.
    pub deploys: DeployOutcome,
    /// The slow clients.
    pub slow_clients: SlowClientStats,
    /// The server's counters over the run (increase per counter and label set):
    /// `isola_isolate_kills_total`, `isola_cache_requests_total`, `isola_cold_starts_total`.
    pub server_counters: BTreeMap<String, BTreeMap<String, f64>>,
    /// The judgement.
    pub verdict: Verdict,
    /// One sample of the server per second.
    pub samples: Vec<Sample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(expect: Expect, ok: u64, errors: &[(&str, u64)]) -> KindOutcome {
        KindOutcome {
            kind: "k".to_owned(),
            path: "/k".to_owned(),
            rate_per_s: 1.0,
            expect,
            requests: ok + errors.iter().map(|(_, n)| n).sum::<u64>(),
            ok,
            errors: errors.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            p50_ms: 0.0,
            p99_ms: 0.0,
        }
    }

    #[test]
    fn expected_outcomes() {
        assert!(outcome(Expect::Ok, 10, &[]).problem().is_none());
        assert!(
            outcome(Expect::Ok, 10, &[("timeout", 1)])
                .problem()
                .is_some()
        );
        assert!(
            outcome(Expect::Killed, 0, &[("status_5xx", 5)])
                .problem()
                .is_none()
        );
        assert!(
            outcome(Expect::Killed, 1, &[("status_5xx", 5)])
                .problem()
                .is_some()
        );
        assert!(
            outcome(Expect::Killed, 0, &[("io", 1), ("status_5xx", 5)])
                .problem()
                .is_some()
        );
        assert!(outcome(Expect::Ok, 0, &[]).problem().is_some());
    }
}
