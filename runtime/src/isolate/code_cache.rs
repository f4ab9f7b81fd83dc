//! V8's code cache for a worker version's JavaScript modules: the first isolate that compiles
//! a module leaves V8's compiled code here, and the version's later isolates start from it
//! instead of parsing and compiling the source again (a cold start of a large bundle is
//! mostly that). V8 checks each cache against the source's hash and its own flags, and
//! compiles afresh (leaving a new cache) when one does not fit. Kept in memory with the
//! version, shared by its isolates on every thread.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use deno_core::SourceCodeCacheInfo;

/// The code caches of one version's modules, by module URL.
#[derive(Debug)]
pub struct CodeCache {
    /// The worker, for `isola_module_loads_total`.
    worker: Arc<str>,
    modules: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// The hash of the module's source, which V8 checks a cache against.
    hash: u64,
    data: Option<Arc<[u8]>>,
}

impl CodeCache {
    /// No caches yet, for a version of `worker`.
    pub fn new(worker: Arc<str>) -> Self {
        Self {
            worker,
            modules: Mutex::default(),
        }
    }

    fn count(&self, outcome: &str) {
        crate::metrics::metrics()
            .module_loads
            .with_label_values(&[&*self.worker, outcome])
            .inc();
    }

    /// What V8 gets with module `url` (source `code`): the source's hash, and its cache if
    /// an isolate made one.
    pub(crate) fn info(&self, url: &str, code: &str) -> SourceCodeCacheInfo {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = modules.entry(url.to_owned()).or_insert_with(|| Entry {
            hash: source_hash(code),
            data: None,
        });
        let data = entry.data.as_deref().map(|data| Cow::Owned(data.to_vec()));
        let hash = entry.hash;
        drop(modules);
        self.count(if data.is_some() {
            "offered"
        } else {
            "compiled"
        });
        SourceCodeCacheInfo { hash, data }
    }

    /// Keeps `data`, V8's cache of module `url` whose source hashes to `hash`.
    pub(crate) fn store(&self, url: &str, hash: u64, data: &[u8]) {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = modules.insert(
            url.to_owned(),
            Entry {
                hash,
                data: Some(Arc::from(data)),
            },
        );
        drop(modules);
        if replaced.is_some_and(|entry| entry.data.is_some()) {
            self.count("rejected");
        }
    }

    /// Bytes of code cache held (for the tests and the log).
    pub fn bytes(&self) -> usize {
        let modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        modules
            .values()
            .filter_map(|entry| entry.data.as_ref().map(|data| data.len()))
            .sum()
    }
}

fn source_hash(code: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    code.hash(&mut hasher);
    hasher.finish()
}
