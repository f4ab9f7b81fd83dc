//! The ledger over a memory store: counts land in their minute once, survive a flush,
//! stay apart by version, and go when pruned or forgotten.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]
use std::sync::{Arc, Mutex};

use super::{Counts, KEPT_MINUTES, Ledger, UsageMeter};
use crate::store::{MemoryStore, Store};

/// Meters are node-wide: tests that collect them run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn counts_land_once_across_flushes_and_versions() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let ledger = Ledger::new(Arc::clone(&store));
    let v1 = UsageMeter::register("ledger-a".into(), "v1".into());
    let v2 = UsageMeter::register("ledger-a".into(), "v2".into());
    v1.invocation(1024, 2_000_000);
    v1.cpu(5_000_000);
    v1.cache_hit();
    ledger.collect_at(100);
    ledger.flush().expect("flush");
    v1.invocation(1024, 1_000_000);
    v2.invocation(128, 1_000_000);
    ledger.collect_at(101);
    // Pending (not yet flushed) minutes count too.
    let buckets = ledger.query("ledger-a", 100, 102).expect("query");
    assert_eq!(buckets.len(), 3, "{buckets:?}");
    assert_eq!(buckets[0].minute, 100);
    assert_eq!(
        buckets[0].counts,
        Counts {
            invocations: 1,
            cache_hits: 1,
            cpu_ns: 5_000_000,
            mb_us: 2_048_000_000
        }
    );
    assert!((buckets[0].counts.gb_seconds() - 2.0).abs() < 1e-9);
    assert!((buckets[0].counts.cpu_ms() - 5.0).abs() < 1e-9);
    assert_eq!(
        (buckets[1].minute, buckets[1].version.as_str()),
        (101, "v1")
    );
    assert_eq!(
        (buckets[2].minute, buckets[2].version.as_str()),
        (101, "v2")
    );
    ledger.flush().expect("flush");
    // A second ledger over the same store (a restart) sees the same.
    let again = Ledger::new(Arc::clone(&store));
    assert_eq!(again.query("ledger-a", 100, 102).expect("query"), buckets);
    assert!(again.query("ledger-a", 102, 200).expect("query").is_empty());
    assert!(again.query("ledger-b", 0, 200).expect("query").is_empty());
    drop((v1, v2));
}

#[test]
fn old_minutes_are_pruned_and_deleted_workers_forgotten() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let ledger = Ledger::new(Arc::clone(&store));
    let meter = UsageMeter::register("ledger-c".into(), "v".into());
    let now = 10 * KEPT_MINUTES;
    meter.cache_hit();
    ledger.collect_at(now - KEPT_MINUTES - 1);
    meter.cache_hit();
    ledger.collect_at(now - 1);
    ledger.flush().expect("flush");
    assert_eq!(ledger.prune(now).expect("prune"), 1);
    let left = ledger.query("ledger-c", 0, now).expect("query");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].minute, now - 1);
    meter.cache_hit();
    ledger.forget("ledger-c").expect("forget");
    assert!(
        ledger
            .query("ledger-c", 0, u64::MAX)
            .expect("query")
            .is_empty()
    );
    assert!(store.scan(b"usage/").expect("scan").is_empty());
}
