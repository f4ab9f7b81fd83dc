//! V8's code cache for workers' JavaScript modules: the first isolate that compiles a module
//! leaves V8's compiled code here, and later isolates start from it instead of parsing and
//! compiling the source again (a cold start of a large bundle is mostly that). V8 checks
//! each cache against the source's hash and its own flags, and compiles afresh (leaving a new
//! cache) when one does not fit.
//!
//! One bounded node-wide store, keyed by worker and source hash (not by module URL: an
//! upload's modules live in a directory per version): a new version whose module did not
//! change (a redeploy that changes vars or secrets, a SIGHUP reload,
//! `isola dev` reloading after another file changed) finds its code already compiled, while
//! tenants never share compiled code, even of identical sources.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use deno_core::SourceCodeCacheInfo;

/// The most bytes of compiled code the node keeps; the least recently used go first.
pub const CODE_CACHE_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// (worker, source hash).
type Key = (Arc<str>, u64);

fn compiled() -> &'static moka::sync::Cache<Key, Arc<[u8]>> {
    static STORE: OnceLock<moka::sync::Cache<Key, Arc<[u8]>>> = OnceLock::new();
    STORE.get_or_init(|| {
        moka::sync::Cache::builder()
            .max_capacity(CODE_CACHE_MAX_BYTES)
            .weigher(|_, data: &Arc<[u8]>| u32::try_from(data.len()).unwrap_or(u32::MAX))
            .build()
    })
}

/// A version's view of the code cache: its worker, and its modules' source hashes (computed
/// once per version).
#[derive(Debug)]
pub struct CodeCache {
    /// The worker: its caches are its own, and `isola_module_loads_total` names it.
    worker: Arc<str>,
    /// Off: every start compiles from source (what `isola bench startup` compares against).
    enabled: bool,
    hashes: Mutex<HashMap<String, u64>>,
}

impl CodeCache {
    /// The code cache of a version of `worker`.
    pub fn new(worker: Arc<str>) -> Self {
        Self {
            worker,
            enabled: true,
            hashes: Mutex::default(),
        }
    }

    /// No code cache: modules are compiled from source every time.
    pub fn off(worker: Arc<str>) -> Self {
        Self {
            enabled: false,
            ..Self::new(worker)
        }
    }

    fn count(&self, outcome: &str) {
        crate::metrics::metrics()
            .module_loads
            .with_label_values(&[&*self.worker, outcome])
            .inc();
    }

    fn hash(&self, url: &str, code: &str) -> u64 {
        let mut hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
        *hashes
            .entry(url.to_owned())
            .or_insert_with(|| source_hash(code))
    }

    /// What V8 gets with module `url` (source `code`): the source's hash, and its compiled
    /// code if an isolate of this worker left it.
    pub(crate) fn info(&self, url: &str, code: &str) -> Option<SourceCodeCacheInfo> {
        if !self.enabled {
            self.count("compiled");
            return None;
        }
        let hash = self.hash(url, code);
        let data = compiled()
            .get(&(self.worker.clone(), hash))
            .map(|data| Cow::Owned(data.to_vec()));
        self.count(if data.is_some() {
            "offered"
        } else {
            "compiled"
        });
        Some(SourceCodeCacheInfo { hash, data })
    }

    /// Keeps `data`, V8's compiled code of a module whose source hashes to `hash`.
    pub(crate) fn store(&self, hash: u64, data: &[u8]) {
        let key = (self.worker.clone(), hash);
        if compiled().contains_key(&key) {
            // V8 made a new cache: it refused the one it was offered (or two isolates
            // compiled the module at once).
            self.count("rejected");
        }
        compiled().insert(key, Arc::from(data));
    }
}

fn source_hash(code: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    code.hash(&mut hasher);
    hasher.finish()
}
