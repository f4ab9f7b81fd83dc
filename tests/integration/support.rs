//! Test support: starts the real `isola` binary on 127.0.0.1 and talks to it with real
//! HTTP/1.1, HTTP/2 (h2c) and TLS clients built on hyper and rustls.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Upper bound for any single request a test makes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The admin API token every test node gets (`ISOLA_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The repository root (fixtures and examples are found from here).
pub fn repo() -> PathBuf {
    // This package is runtime/cli.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixture worker under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Resident memory of `pid` in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The most resident memory `pid` has had, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// A `/proc/<pid>/status` field in kB, as MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// The CPU time of the process's threads in seconds (`/proc/PID/task/*/schedstat`, in ns).
pub fn thread_cpu_seconds(pid: u32) -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
    {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// The thread model every node of this test run uses, if not the default (executor threads,
/// one per core): `scripts/test` runs the suite once more with `ISOLA_TEST_EXECUTOR_THREADS=0`
/// (a thread per isolate).
pub fn executor_threads() -> Option<String> {
    std::env::var("ISOLA_TEST_EXECUTOR_THREADS").ok()
}

/// Whether this test run's nodes host their isolates on executor threads (the default).
pub fn on_executors() -> bool {
    executor_threads().is_none_or(|threads| threads.trim() != "0")
}

/// A running `isola` process; killed when dropped.
pub struct Isola {
    child: Child,
    /// The URL it announced (the first listener's).
    pub url: String,
    /// Lines printed on stdout besides the URLs.
    pub stdout: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<String>>,
}

impl Isola {
    /// `isola dev <file> --port 0 <extra…>`, waiting until it listens.
    pub fn dev(file: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "dev".to_owned(),
            file.display().to_string(),
            "--port".into(),
            "0".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        if let Some(threads) = executor_threads() {
            args.extend(["--executor-threads".to_owned(), threads]);
        }
        Self::start(&args)
    }

    /// [`Isola::dev`] with the command's own default log filter (no `ISOLA_LOG`).
    pub fn dev_default_log(file: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "dev".to_owned(),
            file.display().to_string(),
            "--port".into(),
            "0".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        if let Some(threads) = executor_threads() {
            args.extend(["--executor-threads".to_owned(), threads]);
        }
        Self::launch_with(&[], None, &args, None)
    }

    /// `isola serve --config <file>` with `toml` written to a temporary file; `{fixtures}` in
    /// it stands for the fixtures directory.
    pub fn serve(toml: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("isola-test-{}-{n}.toml", std::process::id()));
        let fixtures = repo().join("tests/fixtures");
        let mut toml = toml.replace("{fixtures}", &fixtures.display().to_string());
        if let Some(threads) = executor_threads().filter(|_| !toml.contains("executor_threads")) {
            let setting = format!("executor_threads = {threads}\n");
            toml = match toml.find("[node]\n") {
                Some(at) => format!("{}{setting}{}", &toml[..at + 7], &toml[at + 7..]),
                None => format!("[node]\n{setting}{toml}"),
            };
        }
        std::fs::write(&path, toml).expect("write config");
        let isola = Self::start(&[
            "serve".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ]);
        let _ = std::fs::remove_file(&path);
        isola
    }

    /// `isola <args…>`, waiting until it listens.
    pub fn start(args: &[String]) -> Self {
        Self::start_with_prefix(&[], args)
    }

    /// `<prefix…> isola <args…>` (e.g. `prlimit --nofile=N --`), waiting until it listens.
    pub fn start_with_prefix(prefix: &[&str], args: &[String]) -> Self {
        Self::launch(prefix, None, args)
    }

    /// `isola <args…>` run in directory `dir`, waiting until it listens.
    pub fn start_in(dir: &Path, args: &[String]) -> Self {
        Self::launch(&[], Some(dir), args)
    }

    fn launch(prefix: &[&str], dir: Option<&Path>, args: &[String]) -> Self {
        Self::launch_with(prefix, dir, args, Some("info"))
    }

    fn launch_with(
        prefix: &[&str],
        dir: Option<&Path>,
        args: &[String],
        log: Option<&str>,
    ) -> Self {
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_isola"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_isola")),
        };
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        match log {
            Some(filter) => command.env("ISOLA_LOG", filter),
            None => command.env_remove("ISOLA_LOG").env_remove("RUST_LOG"),
        };
        let mut child = command
            .args(args)
            .env("ISOLA_ADMIN_TOKEN", ADMIN_TOKEN)
            .env(
                "XDG_CACHE_HOME",
                std::env::temp_dir().join("isola-tests-cache"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn isola");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = sink.lock().expect("logs");
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let other = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.strip_prefix("listening on ") {
                    Some(url) => {
                        let _ = tx.send(url.to_owned());
                    }
                    None => other.lock().expect("stdout").push(line),
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "isola did not start listening; logs:\n{}",
                    logs.lock().expect("logs")
                );
            }
        };
        Self {
            child,
            url,
            stdout: printed,
            logs,
        }
    }

    /// Everything logged on stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").clone()
    }

    /// Waits until the logs contain `needle` (bounded), returning the logs.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL after `prefix` on a line the process printed (waiting up to 10 s for it).
    pub async fn printed_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .stdout
                .lock()
                .expect("stdout")
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_owned));
            if let Some(url) = found {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "no `{prefix}URL` line was printed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The metrics the process serves (started with `--metrics-port`), as text.
    pub async fn metrics(&self) -> String {
        let url = self.printed_url("metrics on ").await;
        let authority = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_owned();
        let request = Request::get("/metrics")
            .header("host", &authority)
            .body(Full::new(Bytes::new()))
            .expect("request");
        send(Proto::H1, &authority, request).await.text()
    }

    /// `method path` on the admin API (`[admin] address`) with `token` and a JSON `body`.
    pub async fn admin(&self, token: &str, method: &str, path: &str, body: &str) -> Reply {
        let authority = self
            .printed_url("admin on ")
            .await
            .trim_start_matches("http://")
            .to_owned();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &authority)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        send(Proto::H1, &authority, request).await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `host:port` the first listener is on.
    pub fn authority(&self) -> String {
        self.url.split("://").nth(1).expect("url").to_owned()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "isola did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Isola {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `isola <args>` to completion (bounded), returning status and stderr.
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isola");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
                .expect("read");
            return (status, stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("isola {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a command printed and how it ended.
pub struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `isola <args>` to completion (bounded) with `env` set and `stdin` written to it.
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Ran {
    use std::io::{Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_isola"))
        .args(args)
        .env_remove("ISOLA_ADMIN_TOKEN")
        .env_remove("ISOLA_ADMIN_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isola");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stdout = String::new();
            let mut stderr = String::new();
            child
                .stdout
                .take()
                .expect("stdout")
                .read_to_string(&mut stdout)
                .expect("read");
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("read");
            return Ran {
                success: status.success(),
                stdout,
                stderr,
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("isola {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 over TCP.
    H1,
    /// HTTP/2 over TCP with prior knowledge.
    H2c,
}

/// A full response.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request over a fresh connection and reads the whole response.
pub async fn send(proto: Proto, authority: &str, request: Request<Full<Bytes>>) -> Reply {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let stream = TcpStream::connect(authority).await.expect("connect");
        let response = match proto {
            Proto::H1 => {
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("h1 handshake");
                tokio::spawn(conn);
                sender.send_request(request).await.expect("h1 request")
            }
            Proto::H2c => {
                let (mut sender, conn) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .expect("h2 handshake");
                tokio::spawn(conn);
                sender.send_request(request).await.expect("h2 request")
            }
        };
        collect(response).await
    })
    .await
    .expect("request timed out")
}

/// Reads a whole response.
pub async fn collect(response: Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// GET `path` over `proto`.
pub async fn get(proto: Proto, isola: &Isola, path: &str) -> Reply {
    let request = Request::get(format!("http://{}{path}", isola.authority()))
        .header("host", isola.authority())
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(proto, &isola.authority(), request).await
}

/// GET `path` over HTTP/1.1 with `host` as the Host header (for host routing).
pub async fn get_host(isola: &Isola, host: &str, path: &str) -> Reply {
    let request = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(Proto::H1, &isola.authority(), request).await
}

/// A TLS client config trusting only `ca` (PEM), offering `alpn`.
pub fn tls_client(ca: &Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Writes `bytes` on a new connection to `authority` and reads what comes back until the
/// server closes it or `within` passes; returns the text and whether it was closed.
pub async fn raw_exchange(authority: &str, bytes: &[u8], within: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(authority).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&received).into_owned(), closed)
}
