//! A worker as an isolate needs it: its module graph read from disk (TypeScript stripped,
//! source maps beside JavaScript modules), vars and limits. Loaded once per deploy or reload
//! and shared by all of the worker's isolates.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deno_core::ModuleSpecifier;
use edge_config::Limits;
use isola_bindings::outbound::{OutboundPolicy, StaticResolver};

use crate::code::{CodeError, ModuleGraph};

/// The version a worker from the config file (or `isola dev`) is metered as: it has no
/// uploaded version id.
pub const CONFIG_VERSION: &str = "config";

/// A worker's code and settings.
#[derive(Debug)]
pub struct WorkerSource {
    /// The worker's name (config key, or the file stem in `isola dev`).
    pub name: Arc<str>,
    /// Where the code came from.
    pub path: PathBuf,
    /// The main module's specifier (`file:///…`): what stack traces show.
    pub specifier: ModuleSpecifier,
    /// Every module of the worker, the main one included, with their source maps.
    pub graph: Arc<ModuleGraph>,
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
    /// Its deployment's Cache API storage (`caches`), when the node has a cache; set by
    /// whoever starts the version (see `ResponseCache::caches_for`).
    pub caches: Option<Arc<dyn isola_bindings::cache::CacheBackend>>,
    /// The worker's metric series.
    pub meters: Arc<crate::metrics::WorkerMeters>,
    /// Whether this version runs long JavaScript turns (see [`WorkerSource::runs_long_turns`]).
    long_turns: AtomicBool,
    /// Its secrets' values, redacted from what live tails show.
    pub secrets: Arc<[String]>,
    /// A hash of its config and of every module's content, as loaded: two loads with the
    /// same fingerprint would run the same code the same way (a reload keeps such a worker's
    /// isolates).
    pub fingerprint: u64,
    /// V8's compiled code of its modules, left by its first isolates for the next ones.
    pub code_cache: Arc<crate::isolate::code_cache::CodeCache>,
}

/// What the cache has learnt about one version of a worker, so that requests to it do only the
/// cache work that worker needs.
#[derive(Debug, Default)]
pub struct CacheHints {
    cacheable: AtomicBool,
}

impl CacheHints {
    /// Whether it has sent a cacheable response (its misses are then collapsed).
    pub fn cacheable(&self) -> bool {
        self.cacheable.load(Ordering::Relaxed)
    }

    /// Records that a cacheable response was sent.
    pub(crate) fn note(&self) {
        self.cacheable.store(true, Ordering::Relaxed);
    }
}

/// Reading a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerLoadError {
    /// The worker's modules cannot be read, parsed or resolved.
    #[error("{0}")]
    Code(#[from] CodeError),
    /// The vars cannot be serialised.
    #[error("cannot encode the vars of worker {0}: {1}")]
    Vars(String, #[source] serde_json::Error),
}

impl WorkerSource {
    /// Whether one of this version's JavaScript turns ran long (past a few milliseconds of
    /// CPU). Such a version gets new isolates on threads of their own rather than on the
    /// executor threads, where its long turns would hold up every other tenant's requests
    /// on the same thread; it keeps that placement until it is redeployed.
    pub fn runs_long_turns(&self) -> bool {
        self.long_turns.load(Ordering::Relaxed)
    }

    /// Records that one of its turns ran long: `cpu_ms` for each request it ran for.
    pub(crate) fn note_long_turn(&self, cpu_ms: f64) {
        if !self.long_turns.swap(true, Ordering::Relaxed) {
            tracing::info!(
                worker = %self.name,
                cpu_ms,
                "a JavaScript turn ran long: new isolates of this version get threads of their own"
            );
        }
    }

    /// Reads the worker described by `config` from disk: its file and the modules it imports
    /// from its directory, or from `config.root` (see [`ModuleGraph::load`]).
    /// Its usage is metered as version [`CONFIG_VERSION`].
    pub fn load(config: &edge_config::Worker) -> Result<Self, WorkerLoadError> {
        Self::load_in(config, config.root.as_deref(), CONFIG_VERSION)
    }

    /// Like [`WorkerSource::load`], with the modules' directory `root` (an upload's, whose
    /// main module may sit in a subdirectory) instead of the main module's directory, metered
    /// as version `version`.
    pub fn load_in(
        config: &edge_config::Worker,
        root: Option<&std::path::Path>,
        version: &str,
    ) -> Result<Self, WorkerLoadError> {
        let graph = ModuleGraph::load(&config.file, root)?;
        let fingerprint = fingerprint(config, root, &graph);
        let specifier = graph.main().clone();
        let path = match graph.get(specifier.as_str()) {
            Some(module) => module.path.clone(),
            None => config.file.clone(),
        };
        let outbound = Arc::new(OutboundPolicy::new(&config.outbound));
        let vars_json = serde_json::to_string(&config.vars)
            .map_err(|e| WorkerLoadError::Vars(config.name.clone(), e))?;
        Ok(Self {
            name: config.name.as_str().into(),
            path,
            specifier,
            graph: Arc::new(graph),
            vars_json: vars_json.into(),
            allow_eval: config.allow_eval,
            allow_wasm_compile: config.allow_wasm_compile,
            cache: config.cache,
            limits: config.limits.clone(),
            outbound: outbound.clone(),
            resolver: Arc::new(StaticResolver::new(&config.outbound.resolve, outbound)),
            cache_hints: CacheHints::default(),
            caches: None,
            long_turns: AtomicBool::new(false),
            meters: Arc::new(crate::metrics::WorkerMeters::of(
                config.name.as_str().into(),
                version.into(),
            )),
            secrets: Arc::from([]),
            fingerprint,
            code_cache: Arc::new(crate::isolate::code_cache::CodeCache::new(
                config.name.as_str().into(),
            )),
        })
    }
}

/// The fingerprint of a worker loaded from `config` with modules `graph` (see
/// [`WorkerSource::fingerprint`]): both as their `Debug` forms show them, which hold every
/// field in a fixed order (maps are `BTreeMap`s) and every module's code, source map and data.
fn fingerprint(
    config: &edge_config::Worker,
    root: Option<&std::path::Path>,
    graph: &ModuleGraph,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    format!("{config:?}").hash(&mut hasher);
    root.hash(&mut hasher);
    format!("{graph:?}").hash(&mut hasher);
    hasher.finish()
}
