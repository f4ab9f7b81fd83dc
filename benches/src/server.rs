//! Servers the harness starts itself (Isola, the baseline): spawned as child processes so
//! their CPU time can be read from /proc, and killed when dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server child process and the URL it announced.
pub struct ServerProcess {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

/// Starting a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The command could not run.
    #[error("cannot start {command}: {error}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        error: std::io::Error,
    },
    /// It never printed `listening on URL`.
    #[error("{command} did not announce a listening URL within {timeout:?}")]
    NotListening {
        /// The command line.
        command: String,
        /// How long we waited.
        timeout: Duration,
    },
}

impl ServerProcess {
    /// Runs `command` and waits for it to print `listening on URL` (Isola, the baseline) or
    /// `Listening on URL` (`deno serve`) on stdout or stderr.
    pub fn start(command: &[OsString]) -> Result<Self, ServerError> {
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
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| ServerError::Spawn {
                command: printable.clone(),
                error,
            })?;
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            watch_for_url(stdout, tx.clone(), false);
        }
        if let Some(stderr) = child.stderr.take() {
            watch_for_url(stderr, tx, true);
        }
        let timeout = Duration::from_secs(60);
        match rx.recv_timeout(timeout) {
            Ok(url) => Ok(Self { child, url }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(ServerError::NotListening {
                    command: printable,
                    timeout,
                })
            }
        }
    }

    /// CPU time (user + system) the process has used so far, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` to its end (so the child never blocks on a full pipe), sending the first
/// announced URL; with `echo`, other lines are passed through to our stderr.
fn watch_for_url(
    stream: impl std::io::Read + Send + 'static,
    tx: std::sync::mpsc::Sender<String>,
    echo: bool,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let url = ["listening on ", "Listening on "]
                .iter()
                .find_map(|marker| {
                    line.split_once(marker)
                        .map(|(_, url)| url.trim().trim_end_matches('/').to_owned())
                });
            match url {
                Some(url) => {
                    let _ = tx.send(url);
                }
                None if echo => eprintln!("{line}"),
                None => {}
            }
        }
    });
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time of process `pid` (all threads).
pub fn cpu_time_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks_per_second();
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_time_of(std::process::id()).is_some());
    }
}
