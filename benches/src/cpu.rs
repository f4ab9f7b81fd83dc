//! CPU time of a process from /proc: the sum over its threads of the first field of
//! `/proc/<pid>/task/<tid>/schedstat` (nanoseconds on CPU, exact), falling back to
//! `utime + stime` from `/proc/<pid>/stat` (clock ticks) where schedstat is missing.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

/// CPU time used so far by each thread of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSnapshot {
    /// Nanoseconds on CPU by thread id.
    Threads(HashMap<u32, u64>),
    /// User + system time of the whole process (tick resolution).
    Total(Duration),
}

/// Reads the CPU time of process `pid`; `None` if it is gone or /proc is unreadable.
pub fn snapshot(pid: u32) -> Option<CpuSnapshot> {
    threads(pid)
        .map(CpuSnapshot::Threads)
        .or_else(|| stat_total(pid).map(CpuSnapshot::Total))
}

/// CPU time used between two snapshots of the same process. Threads that started in
/// between count in full; threads that ended in between are lost (schedstat only).
pub fn used_between(before: &CpuSnapshot, after: &CpuSnapshot) -> Option<Duration> {
    match (before, after) {
        (CpuSnapshot::Threads(before), CpuSnapshot::Threads(after)) => {
            let nanos: u64 = after
                .iter()
                .map(|(tid, now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
                .sum();
            Some(Duration::from_nanos(nanos))
        }
        (CpuSnapshot::Total(before), CpuSnapshot::Total(after)) => {
            Some(after.saturating_sub(*before))
        }
        _ => None,
    }
}

fn threads(pid: u32) -> Option<HashMap<u32, u64>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may end between listing and reading: skip it.
        if let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat"))
            && let Some(nanos) = parse_schedstat(&text)
        {
            out.insert(tid, nanos);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The first field of a schedstat line: nanoseconds spent on the CPU.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in clock ticks.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may contain spaces and parentheses) start after
    // the last ')': state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn stat_total(pid: u32) -> Option<Duration> {
    let ticks = parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second() as f64,
    ))
}

/// `getconf CLK_TCK`, or 100 (Linux's USER_HZ nearly everywhere) if that cannot run.
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_proc_lines() {
        assert_eq!(parse_schedstat("123456789 2000 17\n"), Some(123_456_789));
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(stat), Some(42));
    }

    #[test]
    fn measures_own_cpu_time() {
        // Spins until 30 ms of CPU are seen (bounded): on a busy machine the wall time it
        // takes varies, the CPU time does not; the measurement can never exceed the wall time
        // the process had on its cores.
        let pid = std::process::id();
        let before = snapshot(pid).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut used = Duration::ZERO;
        while used < Duration::from_millis(30) && start.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(x) ^ 0x9e37);
            }
            used = used_between(&before, &snapshot(pid).unwrap()).unwrap();
        }
        std::hint::black_box(x);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        assert!(used >= Duration::from_millis(30), "{used:?}");
        assert!(
            used <= start.elapsed() * cores + Duration::from_millis(20),
            "{used:?}"
        );
    }
}
