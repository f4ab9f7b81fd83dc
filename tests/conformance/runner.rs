//! Runs batches of cases in a runtime over real HTTP: the real `isola` binary (`isola dev` on
//! 127.0.0.1 with the conformance worker and generous limits), or `deno serve` on the same
//! worker file for the comparison column.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::expectations::Outcome;
use crate::support::{Isola, repo};

/// A batch may take this long (IDL areas run thousands of checks on a loaded machine).
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

fn worker() -> std::path::PathBuf {
    repo().join("tests/conformance/worker.js")
}

/// A runtime serving the conformance worker.
pub enum Runtime {
    /// The real `isola` binary.
    Isola(Isola),
    /// `deno serve` (killed when dropped).
    Deno { child: Child, authority: String },
}

impl Runtime {
    /// `isola dev` with limits the largest batch fits in, `eval` allowed (idlharness evaluates
    /// the objects it checks from strings).
    pub fn isola() -> Self {
        Self::Isola(Isola::dev(
            &worker(),
            &[
                "--no-watch",
                "--quiet",
                "--allow-eval",
                "--cpu-ms",
                "60000",
                "--wall-ms",
                "120000",
                "--memory-mb",
                "1024",
            ],
        ))
    }

    /// `deno serve` on the same worker, when `deno` is on PATH.
    pub fn deno() -> Option<Self> {
        let mut child = Command::new("deno")
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .arg(worker())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let stderr = child.stderr.take()?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://") {
                    let authority = line[at + 7..].trim_end_matches('/').to_owned();
                    let _ = tx.send(authority);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(authority) => Some(Self::Deno { child, authority }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("deno serve did not start listening");
            }
        }
    }

    fn authority(&self) -> String {
        match self {
            Self::Isola(isola) => isola.authority(),
            Self::Deno { authority, .. } => authority.clone(),
        }
    }

    /// The worker's answer to GET / (which IDL files each IDL area reads).
    pub async fn describe(&self) -> Value {
        self.exchange(Request::get("/"), Bytes::new()).await
    }

    /// Posts one batch and returns one outcome per case, names made unique in order.
    pub async fn run(&self, batch: &Value) -> Vec<Outcome> {
        let body = Bytes::from(serde_json::to_vec(batch).expect("batch JSON"));
        let answer = self.exchange(Request::post("/"), body).await;
        let results = answer.get("results").cloned().unwrap_or_else(|| {
            panic!("the worker failed the batch: {answer}");
        });
        let mut outcomes: Vec<Outcome> = serde_json::from_value(results).expect("results");
        let mut seen = std::collections::HashMap::new();
        for outcome in &mut outcomes {
            let count = seen.entry(outcome.name.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                outcome.name = format!("{} #{count}", outcome.name);
            }
        }
        outcomes
    }

    async fn exchange(&self, request: http::request::Builder, body: Bytes) -> Value {
        let authority = self.authority();
        let request = request
            .header("host", &authority)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("request");
        let (status, body) = tokio::time::timeout(BATCH_TIMEOUT, async {
            let stream = TcpStream::connect(&authority).await.expect("connect");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let response = sender.send_request(request).await.expect("request");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, body)
        })
        .await
        .expect("the batch timed out");
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "the worker answered {status}: {}",
                String::from_utf8_lossy(&body)
            )
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Self::Deno { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
