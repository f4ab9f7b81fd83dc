//! CPU pinning for `self-check`: the server on one core and the client on another, so that a
//! comparison of two clients does not depend on where the scheduler happens to put them (on a
//! 2-core machine, client and server sharing a core halves both).

use rustix::process::{CpuSet, Pid, sched_getaffinity, sched_setaffinity};

/// Whether the machine has the two cores pinning needs.
pub fn available() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// Pins every thread of process `pid` to `cpu`.
pub fn pin_process(pid: u32, cpu: usize) -> std::io::Result<()> {
    let set = only(cpu);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = task?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
            .and_then(Pid::from_raw);
        if let Some(tid) = tid {
            sched_setaffinity(Some(tid), &set)?;
        }
    }
    Ok(())
}

/// The calling thread pinned to one core until this is dropped.
pub struct PinnedThread {
    previous: CpuSet,
}

impl PinnedThread {
    /// Pins the calling thread to `cpu`.
    pub fn to(cpu: usize) -> std::io::Result<Self> {
        let previous = sched_getaffinity(None)?;
        sched_setaffinity(None, &only(cpu))?;
        Ok(Self { previous })
    }
}

impl Drop for PinnedThread {
    fn drop(&mut self) {
        let _ = sched_setaffinity(None, &self.previous);
    }
}

fn only(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu);
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_on_one_core_until_dropped() -> std::io::Result<()> {
        if !available() {
            return Ok(());
        }
        let before = sched_getaffinity(None)?;
        {
            let _pinned = PinnedThread::to(1)?;
            let now = sched_getaffinity(None)?;
            assert!(now.is_set(1) && !now.is_set(0));
            assert_eq!(now.count(), 1);
        }
        assert_eq!(sched_getaffinity(None)?.count(), before.count());
        Ok(())
    }
}
