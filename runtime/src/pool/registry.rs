//! Node-wide view of every deployment's isolates: the isolate memory budget
//! (`node.isolate_memory_budget_mb`, least recently used idle isolates of any deployment go
//! first) and the sweeper that drops isolates idle past `idle_timeout_ms`, keeps
//! `min_isolates` warm and times out queued requests past `queue_timeout_ms`.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{AcquireError, Pool};

/// How often idle isolates and timed-out queued requests are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Every deployment's pool on this node.
#[derive(Debug)]
pub struct Registry {
    pools: Mutex<Vec<Weak<Pool>>>,
    budget_bytes: u64,
}

impl Registry {
    /// A registry for a node whose isolates may use `budget_mb` together; starts the sweeper.
    pub fn start(budget_mb: u64) -> Arc<Self> {
        let registry = Arc::new(Self {
            pools: Mutex::new(Vec::new()),
            budget_bytes: budget_mb.saturating_mul(1024 * 1024),
        });
        let weak = Arc::downgrade(&registry);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                registry.sweep();
            }
        });
        registry
    }

    pub(super) fn register(&self, pool: &Arc<Pool>) {
        let mut pools = self.lock();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    fn pools(&self) -> Vec<Arc<Pool>> {
        self.lock().iter().filter_map(Weak::upgrade).collect()
    }

    /// Makes room for one more isolate under the budget by evicting the least recently used
    /// idle isolates of any deployment; fails if busy isolates alone use the budget up.
    pub(super) fn make_room(&self) -> Result<(), AcquireError> {
        let pools = self.pools();
        let mut used: u64 = pools.iter().map(|p| p.memory_bytes()).sum();
        if used < self.budget_bytes {
            return Ok(());
        }
        let mut idle: Vec<_> = pools
            .iter()
            .flat_map(|pool| {
                pool.idle_isolates()
                    .into_iter()
                    .map(move |(last_used, isolate)| (last_used, pool, isolate))
            })
            .collect();
        idle.sort_by_key(|(last_used, _, _)| *last_used);
        for (_, pool, isolate) in idle {
            if used < self.budget_bytes {
                break;
            }
            let freed = isolate.memory_bytes();
            if pool.evict(&isolate) {
                used = used.saturating_sub(freed);
                crate::metrics::metrics()
                    .isolates_evicted
                    .with_label_values(&["memory_budget"])
                    .inc();
                tracing::info!(
                    worker = %pool.worker().name,
                    freed_mb = freed / (1024 * 1024),
                    "evicted the least recently used idle isolate: node isolate memory budget reached"
                );
            }
        }
        if used < self.budget_bytes {
            Ok(())
        } else {
            crate::metrics::metrics()
                .requests_refused
                .with_label_values(&["memory_budget"])
                .inc();
            Err(AcquireError::MemoryBudget(
                self.budget_bytes / (1024 * 1024),
            ))
        }
    }

    /// Drops idle isolates and queued requests past their timeout, starts those `min_isolates` asks for, and publishes each
    /// deployment's isolates and queue (and all isolates' memory) as gauges.
    fn sweep(&self) {
        let now = Instant::now();
        let mut memory = 0;
        for pool in self.pools() {
            let evicted = pool.evict_idle(now);
            if evicted > 0 {
                tracing::debug!(worker = %pool.worker().name, evicted, "dropped idle isolates");
            }
            pool.time_out_waiters(now);
            pool.top_up();
            let census = pool.census();
            memory += census.memory_bytes;
            crate::metrics::record_census(&census);
        }
        crate::metrics::metrics().isolate_memory.set(memory as i64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Pool>>> {
        self.pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
