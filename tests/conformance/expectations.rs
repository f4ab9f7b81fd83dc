//! Expectations, one JSON file per area under `tests/conformance/expectations/`, kept as Deno
//! and workerd keep theirs: the number of cases (so none vanish silently) and every expected
//! failure with its reason. A run fails on a new failure, on an expected failure that now
//! passes, on a changed number of cases and on an expected failure without a reason; `ISOLA_CONFORMANCE_UPDATE=1` rewrites the file
//! instead (existing reasons kept, new failures marked `TODO: triage`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::support::repo;

/// The reason a newly recorded failure gets until someone looks at it.
pub const UNTRIAGED: &str = "TODO: triage";

/// One case's outcome, as the worker reports it.
#[derive(Debug, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub pass: bool,
    #[serde(default)]
    pub message: Option<String>,
}

/// An area's expectation file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Expectations {
    /// Where the cases come from (crate or package, version, file).
    pub source: String,
    /// How many cases the data has.
    pub cases: usize,
    /// Case name → why it fails.
    pub expected_failures: BTreeMap<String, String>,
}

fn path(area: &str) -> PathBuf {
    repo()
        .join("tests/conformance/expectations")
        .join(format!("{area}.json"))
}

/// Reads an area's expectations (none yet: empty).
pub fn load(area: &str) -> Expectations {
    match std::fs::read_to_string(path(area)) {
        Ok(text) => {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path(area).display()))
        }
        Err(_) => Expectations::default(),
    }
}

/// Whether this run rewrites the expectations instead of checking them.
pub fn updating() -> bool {
    std::env::var("ISOLA_CONFORMANCE_UPDATE").is_ok_and(|v| v == "1")
}

/// Compares a run with the expectations: the problems, one line each (none: as expected).
pub fn compare(expected: &Expectations, source: &str, outcomes: &[Outcome]) -> Vec<String> {
    let mut problems = Vec::new();
    if expected.source != source {
        problems.push(format!(
            "the data changed: expectations are for {:?}, this run used {source:?}",
            expected.source
        ));
    }
    if expected.cases != outcomes.len() {
        problems.push(format!(
            "{} cases ran, the expectations record {}",
            outcomes.len(),
            expected.cases
        ));
    }
    for outcome in outcomes {
        match (outcome.pass, expected.expected_failures.get(&outcome.name)) {
            (false, None) => problems.push(format!(
                "new failure: {} — {}",
                outcome.name,
                outcome.message.as_deref().unwrap_or("")
            )),
            (true, Some(reason)) => problems.push(format!(
                "expected failure now passes (remove it from the expectations): {} (was: {reason})",
                outcome.name
            )),
            (false, Some(reason)) if reason.is_empty() || reason == UNTRIAGED => {
                problems.push(format!(
                    "expected failure without a reason (give it one): {}",
                    outcome.name
                ))
            }
            _ => {}
        }
    }
    let ran: std::collections::HashSet<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    for name in expected.expected_failures.keys() {
        if !ran.contains(name.as_str()) {
            problems.push(format!("expected failure did not run: {name}"));
        }
    }
    problems
}

/// Rewrites an area's expectations from a run, keeping the reasons already given.
pub fn update(area: &str, old: &Expectations, source: &str, outcomes: &[Outcome]) {
    let expected_failures = outcomes
        .iter()
        .filter(|o| !o.pass)
        .map(|o| {
            let reason = old
                .expected_failures
                .get(&o.name)
                .cloned()
                .unwrap_or_else(|| UNTRIAGED.to_owned());
            (o.name.clone(), reason)
        })
        .collect();
    let new = Expectations {
        source: source.to_owned(),
        cases: outcomes.len(),
        expected_failures,
    };
    let text = serde_json::to_string_pretty(&new).expect("serialise expectations");
    std::fs::create_dir_all(path(area).parent().expect("directory")).expect("create directory");
    std::fs::write(path(area), format!("{text}\n")).expect("write expectations");
}
