//! The `observability` scenario's metrics scraper: GET /metrics once a second while a target
//! is measured, as a Prometheus server would (more often than most do).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Time between scrapes.
const INTERVAL: Duration = Duration::from_secs(1);

/// A running scraper; [`Scraper::stop`] ends it.
pub(super) struct Scraper {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Scraped>,
}

/// What one scraper did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Scraped {
    /// Scrapes answered 200.
    pub ok: u64,
    /// Scrapes that failed or answered otherwise.
    pub failed: u64,
    /// Bytes of the last page.
    pub page_bytes: usize,
}

impl Scraper {
    /// Starts scraping `authority` (`host:port`) from a thread of its own.
    pub(super) fn start(authority: String) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let runtime = super::measure::runtime(1)?;
        let thread = std::thread::Builder::new()
            .name("metrics-scraper".to_owned())
            .spawn(move || {
                let mut scraped = Scraped::default();
                let mut next = Instant::now();
                while !stopped.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        next += INTERVAL;
                        match runtime.block_on(super::node::get(&authority, "/metrics")) {
                            Ok((200, page, _)) => {
                                scraped.ok += 1;
                                scraped.page_bytes = page.len();
                            }
                            _ => scraped.failed += 1,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                scraped
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops scraping; what it did.
    pub(super) fn stop(self) -> Scraped {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
