//! The node's deployments and routes, changed at run time by the admin API: every change
//! builds a new routing table and swaps it in, so requests never wait on a deploy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use edge_config::{Limits, Route, Upload};

use crate::cache::ResponseCache;
use crate::code::CodeError;
use crate::code::files::{self, CodeDir};
use crate::isolate::StartError;
use crate::pool::{Pool, Registry};
use crate::router::Router;
use crate::worker::{WorkerLoadError, WorkerSource};

/// A deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The upload is malformed or breaks a rule (the message names the key).
    #[error("{0}")]
    Invalid(#[from] edge_config::ConfigError),
    /// The code could not be read back.
    #[error("cannot store the worker's code: {0}")]
    Store(#[source] WorkerLoadError),
    /// The code could not be written to `path`.
    #[error("cannot store the worker's code: {path}: {source}")]
    Write {
        /// The file (or its directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The worker failed to start (syntax error with line and column, top-level throw, no
    /// handler); the previous version, if any, keeps serving.
    #[error("{0}")]
    Start(#[from] StartError),
}

impl From<WorkerLoadError> for DeployError {
    fn from(error: WorkerLoadError) -> Self {
        match error {
            // The upload's modules do not parse or import what is not there: the uploader's
            // to fix, like a syntax error V8 finds.
            WorkerLoadError::Code(
                error @ (CodeError::Syntax(_) | CodeError::Import(_) | CodeError::TooMany(_)),
            ) => Self::Start(StartError::from(error)),
            WorkerLoadError::Code(CodeError::UnknownKind(module)) => Self::Start(
                StartError::Runtime(format!("{module}: unknown kind of module")),
            ),
            other => Self::Store(other),
        }
    }
}

/// What a deploy did.
#[derive(Debug)]
pub struct Deployed {
    /// Whether the name was new (else its previous version was replaced).
    pub created: bool,
    /// Its routes now.
    pub routes: Vec<Route>,
}

/// Every deployment of the node and the routing table built from them.
pub struct Deployments {
    state: tokio::sync::Mutex<State>,
    router: Arc<ArcSwap<Router>>,
    registry: Arc<Registry>,
    cache: Option<ResponseCache>,
    defaults: Limits,
    deploy_dir: PathBuf,
    next_version: AtomicU64,
}

struct State {
    pools: BTreeMap<String, Arc<Pool>>,
    routes: Vec<Route>,
    /// Code directories written for deployed versions, by worker.
    files: BTreeMap<String, PathBuf>,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployments")
            .field("deploy_dir", &self.deploy_dir)
            .finish_non_exhaustive()
    }
}

impl Deployments {
    /// The deployments started from the config, routed by `routes`. Deployed code goes to
    /// `deploy_dir`; uploads get `defaults` as their limits.
    pub fn new(
        pools: BTreeMap<String, Arc<Pool>>,
        routes: Vec<Route>,
        registry: Arc<Registry>,
        cache: Option<ResponseCache>,
        defaults: Limits,
        deploy_dir: PathBuf,
    ) -> Self {
        let router = Arc::new(ArcSwap::from_pointee(build(&routes, &pools)));
        Self {
            state: tokio::sync::Mutex::new(State {
                pools,
                routes,
                files: BTreeMap::new(),
            }),
            router,
            registry,
            cache,
            defaults,
            deploy_dir,
            next_version: AtomicU64::new(1),
        }
    }

    /// The routing table requests use (swapped on every change).
    pub fn router(&self) -> Arc<ArcSwap<Router>> {
        Arc::clone(&self.router)
    }

    /// A deployment by worker name.
    pub async fn get(&self, name: &str) -> Option<Arc<Pool>> {
        self.state.lock().await.pools.get(name).cloned()
    }

    /// Every worker with its routes.
    pub async fn list(&self) -> Vec<(String, Vec<Route>)> {
        let state = self.state.lock().await;
        state
            .pools
            .keys()
            .map(|name| {
                let routes = state
                    .routes
                    .iter()
                    .filter(|r| r.worker == *name)
                    .cloned()
                    .collect();
                (name.clone(), routes)
            })
            .collect()
    }

    /// Starts the uploaded worker `name` (replacing the running version once the new one
    /// starts) and routes it; its cached responses are dropped. The new version starts
    /// outside the deployments' lock (bounded by `startup_wall_ms`), so a slow top level holds
    /// up no other admin call; of concurrent deploys to one name, the last to start wins.
    pub async fn deploy(&self, name: &str, upload: Upload) -> Result<Deployed, DeployError> {
        let origin = PathBuf::from(format!("PUT /workers/{name}"));
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let dir = self.deploy_dir.join(format!("{name}.{version}"));
        let (worker, routes, modules) = upload.into_worker(name, &dir, &self.defaults, &origin)?;
        // Removed again unless the version goes live (also when the deploy is cancelled).
        let written = CodeDir::write(&self.deploy_dir, dir.clone(), &modules).map_err(|e| {
            DeployError::Write {
                path: e.path,
                source: e.source,
            }
        })?;
        // Parsing and stripping TypeScript takes a while for large modules.
        let root = dir.clone();
        let loaded =
            tokio::task::spawn_blocking(move || WorkerSource::load_in(&worker, Some(&root))).await;
        let source = Arc::new(loaded.map_err(|e| DeployError::Start(StartError::fault(e)))??);
        let existing = self.state.lock().await.pools.get(name).cloned();
        let started = match existing {
            Some(pool) => pool.reload(source.clone()).await.map(|()| (pool, false)),
            None => Pool::start(source.clone(), self.registry.clone())
                .await
                .map(|pool| (pool, true)),
        };
        let (pool, created) = started.map_err(|error| error.naming(&source))?;
        let mut state = self.state.lock().await;
        state.pools.insert(name.to_owned(), pool);
        if let Some(routes) = routes {
            state.routes.retain(|r| r.worker != name);
            state.routes.extend(routes);
        }
        let routes = state
            .routes
            .iter()
            .filter(|r| r.worker == name)
            .cloned()
            .collect();
        if let Some(old) = state.files.insert(name.to_owned(), written.keep()) {
            files::remove(&old);
        }
        self.publish(state, name);
        tracing::info!(worker = name, created, "deployed");
        Ok(Deployed { created, routes })
    }

    /// Removes worker `name` and its routes; `false` if there is none. Requests in flight
    /// finish; its isolates stop when they have.
    pub async fn delete(&self, name: &str) -> bool {
        let mut state = self.state.lock().await;
        if state.pools.remove(name).is_none() {
            return false;
        }
        state.routes.retain(|r| r.worker != name);
        if let Some(dir) = state.files.remove(name) {
            files::remove(&dir);
        }
        self.publish(state, name);
        tracing::info!(worker = name, "deleted");
        true
    }

    /// Swaps in the routing table of the changed `state` and drops `changed`'s cached
    /// responses (its code or its existence changed).
    fn publish(&self, state: tokio::sync::MutexGuard<'_, State>, changed: &str) {
        self.router
            .store(Arc::new(build(&state.routes, &state.pools)));
        drop(state);
        if let Some(cache) = &self.cache {
            cache.purge_worker(changed);
        }
    }
}

/// The routing table for `routes` over `pools`.
pub(crate) fn build(routes: &[Route], pools: &BTreeMap<String, Arc<Pool>>) -> Router {
    let mut router = Router::default();
    for route in routes {
        if let Some(pool) = pools.get(&route.worker) {
            router.add(route.host.as_deref(), &route.path_prefix, Arc::clone(pool));
        }
    }
    router
}

/// A new private directory for deployed code when `[admin] deploy_dir` is not set: an
/// unpredictable name (created, never reused, so nobody can plant it beforehand), mode 0700,
/// under `$XDG_RUNTIME_DIR` or else the system's temporary directory.
pub fn private_deploy_dir() -> std::io::Result<PathBuf> {
    use std::hash::BuildHasher;
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut attempt = 0u32;
    loop {
        let token = std::hash::RandomState::new().hash_one((std::process::id(), attempt));
        let dir = base.join(format!("isola-deployments-{token:016x}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
