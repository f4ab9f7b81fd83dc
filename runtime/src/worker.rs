//! A worker as an isolate needs it: code read from disk, its optional source map, vars and
//! limits. Loaded once per deploy or reload and shared by all of the worker's isolates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deno_core::ModuleSpecifier;
use edge_config::Limits;
use isola_bindings::outbound::{OutboundPolicy, StaticResolver};

/// A worker's code and settings.
#[derive(Debug)]
pub struct WorkerSource {
    /// The worker's name (config key, or the file stem in `isola dev`).
    pub name: Arc<str>,
    /// Where the code came from.
    pub path: PathBuf,
    /// The module's specifier (`file:///…`): what stack traces show.
    pub specifier: ModuleSpecifier,
    /// The module's JavaScript.
    pub code: Arc<str>,
    /// The source map (`<file>.map`) when one sits beside the bundle.
    pub source_map: Option<Arc<[u8]>>,
    /// The vars as a JSON object: `env` for modules, globals for service workers.
    pub vars_json: Arc<str>,
    /// Whether `eval`/`new Function` may compile code at run time.
    pub allow_eval: bool,
    /// Whether WebAssembly may be compiled from bytes at run time.
    pub allow_wasm_compile: bool,
    /// Whether the shared response cache sits in front of this worker (`cache = true`).
    pub cache: bool,
    /// The worker's resolved limits.
    pub limits: Limits,
    /// What the worker's outbound fetch may reach.
    pub outbound: Arc<OutboundPolicy>,
    /// How its outbound fetch resolves names.
    pub resolver: Arc<StaticResolver>,
    /// What the response cache learnt about this version's responses.
    pub cache_hints: CacheHints,
    /// The worker's metric series.
    pub meters: Arc<crate::metrics::WorkerMeters>,
}

/// What the cache has learnt about one version of a worker, so that requests to it do only the
/// cache work that worker needs.
#[derive(Debug, Default)]
pub struct CacheHints {
    cacheable: AtomicBool,
    varies: AtomicBool,
}

impl CacheHints {
    /// Whether it has sent a cacheable response (its misses are then collapsed).
    pub fn cacheable(&self) -> bool {
        self.cacheable.load(Ordering::Relaxed)
    }

    /// Whether a cacheable response of it carried `Vary` (request headers are then kept).
    pub fn varies(&self) -> bool {
        self.varies.load(Ordering::Relaxed)
    }

    /// Records that a cacheable response was sent, and whether it carried `Vary`.
    pub(crate) fn note(&self, varies: bool) {
        self.cacheable.store(true, Ordering::Relaxed);
        if varies {
            self.varies.store(true, Ordering::Relaxed);
        }
    }
}

/// Reading a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerLoadError {
    /// The file could not be read.
    #[error("cannot read worker {path}: {error}")]
    Read {
        /// The worker file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The path cannot be made into a module specifier.
    #[error("cannot use {0} as a module path")]
    Specifier(PathBuf),
    /// The vars cannot be serialised.
    #[error("cannot encode the vars of worker {0}: {1}")]
    Vars(String, #[source] serde_json::Error),
}

impl WorkerSource {
    /// Reads the worker described by `config` from disk.
    pub fn load(config: &edge_config::Worker) -> Result<Self, WorkerLoadError> {
        let read_error = |error| WorkerLoadError::Read {
            path: config.file.clone(),
            error,
        };
        // Canonical, so the module specifier has no `..` and stack traces show real paths.
        let path = std::fs::canonicalize(&config.file).map_err(read_error)?;
        let code = std::fs::read_to_string(&path).map_err(read_error)?;
        let source_map = read_source_map(&path);
        let specifier = ModuleSpecifier::from_file_path(&path)
            .map_err(|()| WorkerLoadError::Specifier(path.clone()))?;
        let outbound = Arc::new(OutboundPolicy::new(&config.outbound));
        let vars_json = serde_json::to_string(&config.vars)
            .map_err(|e| WorkerLoadError::Vars(config.name.clone(), e))?;
        Ok(Self {
            name: config.name.as_str().into(),
            path,
            specifier,
            code: code.into(),
            source_map,
            vars_json: vars_json.into(),
            allow_eval: config.allow_eval,
            allow_wasm_compile: config.allow_wasm_compile,
            cache: config.cache,
            limits: config.limits.clone(),
            outbound: outbound.clone(),
            resolver: Arc::new(StaticResolver::new(&config.outbound.resolve, outbound)),
            cache_hints: CacheHints::default(),
            meters: Arc::new(crate::metrics::WorkerMeters::of(
                config.name.as_str().into(),
            )),
        })
    }
}

fn read_source_map(path: &Path) -> Option<Arc<[u8]>> {
    let mut map_path = path.as_os_str().to_owned();
    map_path.push(".map");
    std::fs::read(PathBuf::from(map_path)).ok().map(Arc::from)
}
