//! What the soak watches in the server process, read from /proc: resident memory
//! (`VmRSS` of `/proc/PID/status`), open file descriptors (entries of `/proc/PID/fd`) and
//! threads (`Threads` of `/proc/PID/status`).

use serde::{Deserialize, Serialize};

/// One reading of a process, `t_s` seconds into the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Resident set size, MB (MiB).
    pub rss_mb: f64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
}

/// Reading /proc failed (the process is gone, or the kernel wrote something unexpected).
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// A file or directory of /proc could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// What was read.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// `/proc/PID/status` lacks a field.
    #[error("no {0} in /proc/<pid>/status")]
    Missing(&'static str),
}

/// Reads process `pid` now and stamps the reading with `t_s`.
pub fn sample(pid: u32, t_s: f64) -> Result<Sample, SampleError> {
    let read_error = |path: String| move |error| SampleError::Read { path, error };
    let status_path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&status_path).map_err(read_error(status_path))?;
    let rss_kib = field(&status, "VmRSS:").ok_or(SampleError::Missing("VmRSS"))?;
    let threads = field(&status, "Threads:").ok_or(SampleError::Missing("Threads"))?;
    let fd_path = format!("/proc/{pid}/fd");
    let fds = std::fs::read_dir(&fd_path)
        .map_err(read_error(fd_path))?
        .count();
    Ok(Sample {
        t_s,
        rss_mb: rss_kib as f64 / 1024.0,
        fds: fds as u64,
        threads,
    })
}

/// The first number after `name` on its line of a /proc status file.
fn field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tisola\nVmRSS:\t   51200 kB\nThreads:\t17\n";
        assert_eq!(field(status, "VmRSS:"), Some(51200));
        assert_eq!(field(status, "Threads:"), Some(17));
        assert_eq!(field(status, "VmSwap:"), None);
    }

    #[test]
    fn samples_this_process() {
        let sample = sample(std::process::id(), 1.5);
        assert!(
            sample
                .as_ref()
                .is_ok_and(|s| s.t_s == 1.5 && s.rss_mb > 0.0 && s.fds >= 3 && s.threads >= 1),
            "{sample:?}"
        );
    }
}
