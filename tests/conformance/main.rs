//! Web-platform conformance: test data nobody here wrote (WPT's URL data from the `url` crate,
//! data: URLs, forgiving base64 and MIME types from `data-url`, URLPattern's from
//! `urlpattern`, all pinned dev-dependencies; the Web IDL of nine specs from npm
//! `@webref/idl` through testharness.js/idlharness.js from npm `wpt-runner`, pinned and cached)
//! run inside an Isola isolate, the real binary over real HTTP, and compared with one
//! expectation file per area (`expectations.rs`).
//!
//! `ISOLA_CONFORMANCE_UPDATE=1` rewrites the expectations; `ISOLA_CONFORMANCE_DENO=1` runs the
//! same batches under `deno serve` too and prints both pass counts, and the cases Deno passes
//! that Isola fails (run with `--nocapture` to see them).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod data;
mod expectations;
mod runner;
#[allow(dead_code)]
#[path = "../integration/support.rs"]
mod support;

use serde_json::{Value, json};

use crate::data::{WEBREF_IDL, WPT_RUNNER};
use crate::expectations::Outcome;
use crate::runner::Runtime;

/// Where an area's cases come from.
enum Cases {
    /// A JSON file of a pinned crate, run by the worker's `area` checks.
    Crate {
        area: &'static str,
        krate: &'static str,
        version: &'static str,
        file: &'static str,
    },
    /// A spec's Web IDL through idlharness.js.
    Idl { spec: &'static str },
}

impl Cases {
    fn source(&self) -> String {
        match self {
            Self::Crate {
                krate,
                version,
                file,
                ..
            } => format!("crate {krate} {version}: {file}"),
            Self::Idl { spec } => format!(
                "npm {} {spec}.idl through npm {} idlharness.js",
                WEBREF_IDL.spec, WPT_RUNNER.spec
            ),
        }
    }

    /// The batch the worker runs (`runtime` tells which IDL files an IDL area reads).
    async fn batch(&self, runtime: &Runtime) -> Value {
        match self {
            Self::Crate {
                area,
                krate,
                version,
                file,
            } => json!({"area": area, "cases": data::crate_json(krate, version, file)}),
            Self::Idl { spec } => {
                let files = runtime.describe().await["idl"][spec].clone();
                let files = files
                    .as_array()
                    .expect("the worker lists the area's IDL files");
                let idl: serde_json::Map<String, Value> = files
                    .iter()
                    .map(|name| {
                        let name = name.as_str().expect("IDL file name");
                        let text = data::npm_file(&WEBREF_IDL, &format!("{name}.idl"));
                        (name.to_owned(), Value::String(text))
                    })
                    .collect();
                let harness =
                    |file: &str| data::npm_file(&WPT_RUNNER, &format!("testharness/{file}"));
                json!({
                    "area": "idl",
                    "spec": spec,
                    "idl": idl,
                    "harness": {
                        "testharness": harness("testharness.js"),
                        "webidl2": harness("webidl2.js"),
                        "idlharness": harness("idlharness.js"),
                    },
                })
            }
        }
    }
}

fn passed(outcomes: &[Outcome]) -> usize {
    outcomes.iter().filter(|o| o.pass).count()
}

/// Runs an area in Isola and checks (or, in update mode, rewrites) its expectations.
async fn check(area: &str, cases: Cases) {
    let isola = Runtime::isola();
    let batch = cases.batch(&isola).await;
    let outcomes = isola.run(&batch).await;
    drop(isola);
    assert!(!outcomes.is_empty(), "{area}: no case ran");
    let source = cases.source();
    let mut line = format!(
        "conformance {area}: isola {}/{}",
        passed(&outcomes),
        outcomes.len()
    );
    if std::env::var("ISOLA_CONFORMANCE_DENO").is_ok_and(|v| v == "1") {
        let deno = Runtime::deno()
            .expect("ISOLA_CONFORMANCE_DENO=1 but `deno` did not start (is it on PATH?)");
        let theirs = deno.run(&batch).await;
        line.push_str(&format!(", deno {}/{}", passed(&theirs), theirs.len()));
        let deno_passes: std::collections::HashSet<&str> = theirs
            .iter()
            .filter(|o| o.pass)
            .map(|o| o.name.as_str())
            .collect();
        for outcome in outcomes.iter().filter(|o| !o.pass) {
            if deno_passes.contains(outcome.name.as_str()) {
                line.push_str(&format!(
                    "\n  deno passes, isola fails: {} — {}",
                    outcome.name,
                    outcome.message.as_deref().unwrap_or("")
                ));
            }
        }
    }
    println!("{line}");
    let expected = expectations::load(area);
    if expectations::updating() {
        expectations::update(area, &expected, &source, &outcomes);
        return;
    }
    let problems = expectations::compare(&expected, &source, &outcomes);
    assert!(
        problems.is_empty(),
        "{area}: {} differences from tests/conformance/expectations/{area}.json (rerun with \
         ISOLA_CONFORMANCE_UPDATE=1 to rewrite it, then give each new failure a reason):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn krate(
    area: &'static str,
    krate: &'static str,
    version: &'static str,
    file: &'static str,
) -> Cases {
    Cases::Crate {
        area,
        krate,
        version,
        file,
    }
}

#[tokio::test]
async fn url() {
    check(
        "url",
        krate("url", "url", "2.5.8", "tests/urltestdata.json"),
    )
    .await;
}

#[tokio::test]
async fn url_setters() {
    check(
        "url-setters",
        krate("url-setters", "url", "2.5.8", "tests/setters_tests.json"),
    )
    .await;
}

#[tokio::test]
async fn data_urls() {
    check(
        "data-urls",
        krate("data-urls", "data-url", "0.3.1", "tests/data-urls.json"),
    )
    .await;
}

#[tokio::test]
async fn base64() {
    check(
        "base64",
        krate("base64", "data-url", "0.3.1", "tests/base64.json"),
    )
    .await;
}

#[tokio::test]
async fn mime_types() {
    check(
        "mime-types",
        krate("mime-types", "data-url", "0.3.1", "tests/mime-types.json"),
    )
    .await;
}

#[tokio::test]
async fn mime_types_generated() {
    check(
        "mime-types-generated",
        krate(
            "mime-types",
            "data-url",
            "0.3.1",
            "tests/generated-mime-types.json",
        ),
    )
    .await;
}

#[tokio::test]
async fn urlpattern() {
    check(
        "urlpattern",
        krate(
            "urlpattern",
            "urlpattern",
            "0.4.2",
            "src/testdata/urlpatterntestdata.json",
        ),
    )
    .await;
}

#[tokio::test]
async fn idl_url() {
    check("idl-url", Cases::Idl { spec: "url" }).await;
}

#[tokio::test]
async fn idl_encoding() {
    check("idl-encoding", Cases::Idl { spec: "encoding" }).await;
}

#[tokio::test]
async fn idl_streams() {
    check("idl-streams", Cases::Idl { spec: "streams" }).await;
}

#[tokio::test]
async fn idl_fetch() {
    check("idl-fetch", Cases::Idl { spec: "fetch" }).await;
}

#[tokio::test]
async fn idl_file_api() {
    check("idl-FileAPI", Cases::Idl { spec: "FileAPI" }).await;
}

#[tokio::test]
async fn idl_dom() {
    check("idl-dom", Cases::Idl { spec: "dom" }).await;
}

#[tokio::test]
async fn idl_webcrypto() {
    check("idl-webcrypto", Cases::Idl { spec: "webcrypto" }).await;
}

#[tokio::test]
async fn idl_compression() {
    check(
        "idl-compression",
        Cases::Idl {
            spec: "compression",
        },
    )
    .await;
}

#[tokio::test]
async fn idl_urlpattern() {
    check("idl-urlpattern", Cases::Idl { spec: "urlpattern" }).await;
}
