//! A live progress bar (indicatif) with the current rps, p99 and errors, drawn on stderr by
//! its own thread; hidden when stdout is not a terminal.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::generator::Live;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(500);

/// A running progress bar; [`Progress::finish`] removes it.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Shows progress of a run labelled `label` with `warmup` then `duration` (or until
    /// `requests` measured requests), reading `live`. `None` when stdout is not a terminal.
    pub fn start(
        label: String,
        warmup: Duration,
        duration: Option<Duration>,
        requests: Option<u64>,
        live: Arc<Live>,
    ) -> Option<Self> {
        if !std::io::stdout().is_terminal() {
            return None;
        }
        let by_time = duration.is_some();
        let length = match (duration, requests) {
            (Some(d), _) => (warmup + d).as_millis() as u64,
            (None, Some(n)) => n,
            (None, None) => 0,
        };
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("isola-bench-progress".to_owned())
            .spawn(move || {
                let start = Instant::now();
                let mut last = (start, 0u64);
                let mut ok_at_warmup_end = None;
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    let now = Instant::now();
                    let snapshot = live.snapshot();
                    let rps = (snapshot.ok - last.1) as f64
                        / now.duration_since(last.0).as_secs_f64().max(1e-9);
                    last = (now, snapshot.ok);
                    let elapsed = now.duration_since(start);
                    let warming = elapsed < warmup;
                    if !warming && ok_at_warmup_end.is_none() {
                        ok_at_warmup_end = Some(snapshot.ok);
                    }
                    bar.set_position(if by_time {
                        elapsed.as_millis() as u64
                    } else {
                        snapshot.ok - ok_at_warmup_end.unwrap_or(snapshot.ok)
                    });
                    let p99 = snapshot
                        .recent_p99_ms
                        .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3} ms"));
                    bar.set_message(format!(
                        "{} {:>5.1}s | {:>9.0} rps | p99 {p99} | errors {}",
                        if warming { "warm-up" } else { "measure" },
                        elapsed.as_secs_f64(),
                        rps,
                        snapshot.errors
                    ));
                }
                bar.finish_and_clear();
            })
            .ok()?;
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Removes the bar.
    pub fn finish(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.halt();
    }
}
