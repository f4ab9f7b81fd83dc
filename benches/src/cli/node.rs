//! An Isola node the harness starts itself from a generated config (`isola serve`), with its
//! metrics and admin API on 127.0.0.1, and one-shot HTTP/1.1 exchanges with it: what the
//! multi-tenant measurements (`tenants`) and the soak run on.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::server::ServerProcess;

/// A worker of a generated config, routed by the path prefix `/<name>`.
#[derive(Debug, Clone)]
pub(super) struct NodeWorker {
    /// Its name under `[workers]`.
    pub name: String,
    /// The JavaScript file.
    pub file: PathBuf,
    /// Extra keys of `[workers.NAME]`, as TOML lines (may be empty).
    pub settings: String,
    /// Keys of `[workers.NAME.limits]`, as TOML lines (may be empty).
    pub limits: String,
}

impl NodeWorker {
    /// A worker with these limits and no other settings.
    pub fn new(name: impl Into<String>, file: &Path, limits: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            file: file.to_path_buf(),
            settings: String::new(),
            limits: limits.into(),
        }
    }
}

/// A node started from a generated config; the config lives as long as the node.
pub(super) struct Node {
    /// The `isola serve` process.
    pub process: ServerProcess,
    /// `host:port` of its metrics.
    pub metrics: String,
    /// `host:port` of its admin API.
    pub admin: String,
    /// The admin API's bearer token (random per node).
    pub token: String,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

/// A node's generated config directory, kept while its process runs (see
/// [`Node::into_parts`]).
pub(super) struct NodeFiles(#[allow(dead_code, reason = "removed when dropped")] TempDir);

impl Node {
    /// Its process and its config directory, for a caller that keeps the process on its own.
    pub fn into_parts(self) -> (ServerProcess, NodeFiles) {
        (self.process, NodeFiles(self._dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `isola` binary the harness benchmarks (`--isola-bin`), checked to exist.
pub(super) fn isola_binary(env: &super::BenchEnv) -> anyhow::Result<PathBuf> {
    let isola = env
        .isola_exe
        .clone()
        .context("no isola binary to benchmark: pass --isola-bin")?;
    anyhow::ensure!(
        isola.is_file(),
        "the isola binary {} does not exist",
        isola.display()
    );
    Ok(isola)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The generated config: metrics, admin API, one listener, `node` (extra `[node]` keys) and
/// every worker routed by `/<name>`.
fn config(node: &str, metrics_port: u16, admin_port: u16, workers: &[NodeWorker]) -> String {
    let mut config = format!(
        "[node]\nmetrics_address = \"127.0.0.1:{metrics_port}\"\n{node}\n\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\ndeploy_dir = \"deployed\"\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n"
    );
    for worker in workers {
        let name = &worker.name;
        let _ = write!(
            config,
            "[[routes]]\npath_prefix = \"/{name}\"\nworker = \"{name}\"\n\n[workers.{name}]\nfile = \"{}\"\n{}\n[workers.{name}.limits]\n{}\n\n",
            worker.file.display(),
            worker.settings,
            worker.limits,
        );
    }
    config
}

/// Extra `[node]` keys (TOML lines) for every node started from now on.
static NODE_SETTINGS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Adds `settings` (TOML lines) to the `[node]` table of every node started from now on.
pub(super) fn set_node_settings(settings: String) {
    let _ = NODE_SETTINGS.set(settings);
}

/// Starts `isola serve` with `workers`. The isolate memory budget is lifted so that every
/// deployment keeps its warm isolates.
pub(super) fn start_node(isola: &Path, workers: &[NodeWorker]) -> anyhow::Result<Node> {
    start_node_logging(isola, workers, None)
}

/// [`start_node`], with JSON logs at `info` appended to `json_log` when given (through `sh`,
/// which `exec`s the node, so the process measured is the node itself).
pub(super) fn start_node_logging(
    isola: &Path,
    workers: &[NodeWorker],
    json_log: Option<&Path>,
) -> anyhow::Result<Node> {
    let dir = std::env::temp_dir().join(format!(
        "isola-bench-node-{}-{}",
        std::process::id(),
        free_port()?
    ));
    std::fs::create_dir_all(&dir)?;
    let dir = TempDir(dir);
    let metrics_port = free_port()?;
    let admin_port = free_port()?;
    let node = format!(
        "isolate_memory_budget_mb = 1000000\n{}",
        NODE_SETTINGS.get().map_or("", String::as_str)
    );
    let text = config(&node, metrics_port, admin_port, workers);
    let path = dir.0.join("edge.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let mut command: Vec<OsString> =
        vec![isola.into(), "serve".into(), "--config".into(), path.into()];
    let token = random_token();
    let mut env = vec![("ISOLA_ADMIN_TOKEN", token.clone())];
    if let Some(log) = json_log {
        let mut logged: Vec<OsString> = vec![
            "sh".into(),
            "-c".into(),
            "exec \"$0\" \"$@\" 2>>\"$ISOLA_BENCH_LOG\"".into(),
        ];
        logged.append(&mut command);
        logged.extend(["--log", "info", "--log-format", "json"].map(OsString::from));
        command = logged;
        env.push(("ISOLA_BENCH_LOG", log.to_string_lossy().into_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let process = ServerProcess::start_with_env(&command, &env)?;
    Ok(Node {
        process,
        metrics: format!("127.0.0.1:{metrics_port}"),
        admin: format!("127.0.0.1:{admin_port}"),
        token,
        _dir: dir,
    })
}

/// A token no one else knows: 32 hex digits from the kernel's random source.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut random, &mut bytes);
    }
    let mixed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    bytes
        .iter()
        .zip(mixed.to_le_bytes())
        .map(|(a, b)| format!("{:02x}", a ^ b))
        .collect()
}

impl Node {
    /// `host:port` of its listener.
    pub fn authority(&self) -> String {
        self.process.url.trim_start_matches("http://").to_owned()
    }

    /// Its resident memory now, in MB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        let sample = crate::soak::sampler::sample(self.process.pid(), 0.0)?;
        Ok(sample.rss_mb)
    }

    /// The sum of a counter over its labels.
    pub async fn counter(&self, name: &str) -> anyhow::Result<f64> {
        Ok(self.counters(name).await?.values().sum())
    }

    /// A counter by its label values (the whole label set as written, e.g. `limit="cpu_ms"`).
    pub async fn counters(
        &self,
        name: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
        let (status, body, _) = get(&self.metrics, "/metrics").await?;
        anyhow::ensure!(status == 200, "metrics answered {status}");
        Ok(parse_counter(&body, name))
    }

    /// `PUT path` with a JSON body on the admin API: status, body and time.
    pub async fn admin_put(
        &self,
        path: &str,
        body: String,
    ) -> anyhow::Result<(u16, String, Duration)> {
        let request = http::Request::put(path)
            .header("host", &self.admin)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        exchange(&self.admin, request).await
    }
}

/// The samples of counter `name` in a Prometheus text page, by label set (empty without
/// labels).
fn parse_counter(page: &str, name: &str) -> std::collections::BTreeMap<String, f64> {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            let labels = match labels.trim() {
                "" => "",
                braced => braced.strip_prefix('{')?.strip_suffix('}')?,
            };
            Some((labels.to_owned(), value.trim().parse::<f64>().ok()?))
        })
        .collect()
}

/// One GET on a new connection: status, body and time to the full response.
pub(super) async fn get(authority: &str, path: &str) -> anyhow::Result<(u16, String, Duration)> {
    let request = http::Request::get(path)
        .header("host", authority)
        .body(Full::new(Bytes::new()))?;
    exchange(authority, request).await
}

/// `request` on a new HTTP/1.1 connection to `authority`: status, body and time to the full
/// response (at most 30 s).
async fn exchange(
    authority: &str,
    request: http::Request<Full<Bytes>>,
) -> anyhow::Result<(u16, String, Duration)> {
    let started = Instant::now();
    let exchange = async {
        let stream = TcpStream::connect(authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .context("request timed out")??;
    Ok((status, body, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_label() {
        let page = "# HELP isola_isolate_kills_total kills\nisola_isolate_kills_total{limit=\"cpu_ms\"} 3\nisola_isolate_kills_total{limit=\"memory_mb\"} 2\nisola_isolate_kills_totalx 9\nisola_cold_starts_total 4\n";
        let kills = parse_counter(page, "isola_isolate_kills_total");
        assert_eq!(kills.len(), 2);
        assert_eq!(kills.get("limit=\"cpu_ms\""), Some(&3.0));
        assert_eq!(kills.get("limit=\"memory_mb\""), Some(&2.0));
        assert_eq!(
            parse_counter(page, "isola_cold_starts_total").get(""),
            Some(&4.0)
        );
    }
}
