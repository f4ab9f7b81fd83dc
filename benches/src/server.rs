//! Servers the harness starts itself (Isola, the baseline, `deno serve`): child processes
//! whose CPU time is read from /proc, killed when dropped or on Ctrl-C.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::children;
use crate::cpu::{self, CpuSnapshot};

/// How long a server may take to announce its URL.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A server child process and the URL it announced.
pub struct ServerProcess {
    child: children::SharedChild,
    registration: u64,
    pid: u32,
    /// Held open: the baseline exits when it closes.
    _stdin: Option<ChildStdin>,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

/// Starting a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The command could not run.
    #[error("cannot start `{command}`: {error}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        error: std::io::Error,
    },
    /// It exited or never printed `listening on URL`.
    #[error(
        "`{command}` did not announce `listening on URL` within {timeout:?}{}",
        if output.is_empty() { String::new() } else { format!("; its output:\n{output}") }
    )]
    NotListening {
        /// The command line.
        command: String,
        /// How long we waited.
        timeout: Duration,
        /// The last lines it printed.
        output: String,
    },
}

impl ServerProcess {
    /// Runs `command` and waits until it prints `listening on URL` (Isola, the baseline) or
    /// `Listening on URL` (`deno serve`) on stdout or stderr. Other stderr lines are passed
    /// through once the server is up.
    pub fn start(command: &[OsString]) -> Result<Self, ServerError> {
        Self::start_with_env(command, &[])
    }

    /// [`Self::start`] with extra environment variables (such as a secret token).
    pub fn start_with_env(command: &[OsString], env: &[(&str, &str)]) -> Result<Self, ServerError> {
        let printable = command
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let (program, args) = command.split_first().ok_or_else(|| ServerError::Spawn {
            command: printable.clone(),
            error: std::io::Error::other("empty command"),
        })?;
        let mut child = Command::new(program)
            .args(args)
            .env("ISOLA_LOG", "warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| ServerError::Spawn {
                command: printable.clone(),
                error,
            })?;
        let stdin = child.stdin.take();
        let (tx, rx) = std::sync::mpsc::channel();
        let early_output = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            watch_for_url(stdout, tx.clone(), early_output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            watch_for_url(stderr, tx, early_output.clone());
        }
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let registration = children::register(child.clone());
        let mut server = Self {
            child,
            registration,
            pid,
            _stdin: stdin,
            url: String::new(),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => {
                server.url = url;
                Ok(server)
            }
            Err(_) => {
                drop(server);
                let output = early_output
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .join("\n");
                Err(ServerError::NotListening {
                    command: printable,
                    timeout: START_TIMEOUT,
                    output,
                })
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU time used so far by every thread of the server.
    pub fn cpu(&self) -> Option<CpuSnapshot> {
        cpu::snapshot(self.pid)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        {
            let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = child.kill();
            let _ = child.wait();
        }
        children::unregister(self.registration);
    }
}

/// Lines kept from a server that fails to start, for the error message.
const KEEP_LINES: usize = 20;

/// Reads `stream` to its end (so the child never blocks on a full pipe) and sends the first
/// announced URL. Until then lines are kept for an error message; after it, stderr-like
/// lines that look like problems are passed through to our stderr.
fn watch_for_url(
    stream: impl std::io::Read + Send + 'static,
    tx: std::sync::mpsc::Sender<String>,
    early_output: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        let mut announced = false;
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(url) = announced_url(&line) {
                announced = true;
                let _ = tx.send(url);
            } else if !announced {
                let mut kept = early_output.lock().unwrap_or_else(PoisonError::into_inner);
                kept.push(line);
                if kept.len() > KEEP_LINES {
                    kept.remove(0);
                }
            } else if line.contains("ERROR") || line.contains("error") || line.contains("panic") {
                eprintln!("server: {line}");
            }
        }
    });
}

/// The URL in a `listening on URL` line, without a trailing slash.
pub fn announced_url(line: &str) -> Option<String> {
    ["listening on ", "Listening on "]
        .iter()
        .find_map(|marker| {
            let (_, rest) = line.split_once(marker)?;
            let url = rest.split_whitespace().next()?.trim_end_matches('/');
            (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_announced_urls() {
        assert_eq!(
            announced_url("listening on http://127.0.0.1:4000"),
            Some("http://127.0.0.1:4000".to_owned())
        );
        assert_eq!(
            announced_url("Listening on https://127.0.0.1:8000/ (deno)"),
            Some("https://127.0.0.1:8000".to_owned())
        );
        assert_eq!(announced_url("listening on a socket"), None);
        assert_eq!(announced_url("ready"), None);
    }
}
