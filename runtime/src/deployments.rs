//! The node's deployments and routes. Workers from the config file live in memory; uploaded
//! ones are kept in the [`Store`] (versions, secrets, the active version) and restored at
//! start. Every change starts the new version first, then commits it to the store and swaps
//! in a new routing table, so requests never wait on a deploy and a crash leaves the old or
//! the new state.

mod changes;
mod code_file;
mod configured;
mod error;
pub mod records;
mod rollout;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use edge_config::{Limits, Route, Upload};

use crate::code::files::{self, CodeDir};
pub use code_file::private_deploy_dir;
pub use configured::StartedWorkers;
pub use error::{DeployError, error_chain};
use records::VersionRecord;
use rollout::Rollout;
pub use view::{Description, Listed, VersionInfo};

use crate::cache::ResponseCache;
use crate::isolate::StartError;
use crate::pool::{Pool, Registry};
use crate::router::{Backend, Router, Weighted};
use crate::store::{Batch, Store, StoreError};
use crate::worker::WorkerSource;

/// What a deploy or rollback did.
#[derive(Debug)]
pub struct Deployed {
    /// Whether the name was new (else its previous version was replaced).
    pub created: bool,
    /// The version now active.
    pub version: String,
    /// Its routes now.
    pub routes: Vec<Route>,
}

/// Every deployment of the node and the routing table built from them.
pub struct Deployments {
    state: tokio::sync::Mutex<State>,
    /// One lock per worker name: changes to one worker happen one after another, changes to
    /// different workers side by side.
    names: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    router: Arc<ArcSwap<Router>>,
    registry: Arc<Registry>,
    cache: Option<ResponseCache>,
    defaults: Limits,
    deploy_dir: PathBuf,
    store: Arc<dyn Store>,
    domain: String,
    next_file: AtomicU64,
}

/// Where and how uploads are kept.
#[derive(Debug)]
pub struct Settings {
    /// The limits of uploads that set none (`[limits]`).
    pub defaults: Limits,
    /// Where uploaded code is written for the isolates to load.
    pub deploy_dir: PathBuf,
    /// Where deployments, versions and secrets are kept.
    pub store: Arc<dyn Store>,
    /// Every worker also answers at `NAME.{domain}`.
    pub domain: String,
}

struct State {
    pools: BTreeMap<String, Arc<Pool>>,
    routes: Vec<Route>,
    /// Workers from the config file.
    configured: BTreeSet<String>,
    /// The active version of each uploaded worker.
    active: BTreeMap<String, String>,
    /// Code files of the active versions, by worker.
    files: BTreeMap<String, PathBuf>,
    /// Workers in a gradual rollout: every version's pool with its percent, and the code
    /// files of the versions besides the active one.
    splits: BTreeMap<String, (Weighted, Vec<CodeDir>)>,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployments")
            .field("deploy_dir", &self.deploy_dir)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Deployments {
    /// The deployments started from the config, routed by `routes`; uploads as `settings`
    /// say.
    pub fn new(
        pools: BTreeMap<String, Arc<Pool>>,
        routes: Vec<Route>,
        registry: Arc<Registry>,
        cache: Option<ResponseCache>,
        settings: Settings,
    ) -> Self {
        let Settings {
            defaults,
            deploy_dir,
            store,
            domain,
        } = settings;
        let router = Arc::new(ArcSwap::from_pointee(build(
            &routes,
            &pools,
            &BTreeMap::new(),
            &domain,
        )));
        Self {
            state: tokio::sync::Mutex::new(State {
                configured: pools.keys().cloned().collect(),
                pools,
                routes,
                active: BTreeMap::new(),
                files: BTreeMap::new(),
                splits: BTreeMap::new(),
            }),
            names: std::sync::Mutex::new(BTreeMap::new()),
            router,
            registry,
            cache,
            defaults,
            deploy_dir,
            store,
            domain,
            next_file: AtomicU64::new(1),
        }
    }

    /// Starts the active version of every stored deployment; one that fails to start is
    /// logged and left out (its record stays). Fails only if the store cannot be read.
    pub async fn restore(&self) -> Result<usize, DeployError> {
        let mut started = 0;
        for (name, record) in records::deployments(&*self.store)? {
            if self.state.lock().await.configured.contains(&name) {
                tracing::warn!(
                    worker = %name,
                    "an uploaded deployment has the name of a worker in the config file; the config's serves"
                );
                continue;
            }
            match self.start_stored(&name, &record).await {
                Ok(()) => started += 1,
                Err(error) => tracing::error!(
                    worker = %name,
                    version = %record.active,
                    "cannot start the stored deployment: {}",
                    error_chain(&error)
                ),
            }
        }
        let state = self.state.lock().await;
        self.router.store(Arc::new(build(
            &state.routes,
            &state.pools,
            &state.splits,
            &self.domain,
        )));
        Ok(started)
    }

    async fn start_stored(
        &self,
        name: &str,
        record: &records::DeploymentRecord,
    ) -> Result<(), DeployError> {
        let id = record.active.as_str();
        let version = self.version(name, id)?;
        let secrets = records::secrets(&*self.store, name)?;
        let (source, routes, file) = self.prepare(name, &version, &secrets).await?;
        let pool = Pool::start(source.clone(), self.registry.clone())
            .await
            .map_err(|error| error.naming(&source))?;
        let rollout = self.start_rollout(name, record, &secrets).await?;
        let mut state = self.state.lock().await;
        if let Some(rollout) = rollout {
            let split = rollout.backend(&pool);
            state.splits.insert(name.to_owned(), (split, rollout.files));
        }
        state.pools.insert(name.to_owned(), pool);
        for route in routes {
            // The config file may have taken the route since: its worker keeps it.
            match route_owner(&state.routes, name, std::slice::from_ref(&route)) {
                Ok(()) => state.routes.push(route),
                Err(taken) => tracing::warn!(worker = name, "route left out: {taken}"),
            }
        }
        state.active.insert(name.to_owned(), id.to_owned());
        state.files.insert(name.to_owned(), file.keep());
        tracing::info!(worker = name, version = id, "restored");
        Ok(())
    }

    /// Version `id` of `name`, which must be stored.
    fn version(&self, name: &str, id: &str) -> Result<VersionRecord, DeployError> {
        records::version(&*self.store, name, id)?
            .ok_or_else(|| DeployError::NotFound(format!("version {id} of `{name}` is missing")))
    }

    /// The routing table requests use (swapped on every change).
    pub fn router(&self) -> Arc<ArcSwap<Router>> {
        Arc::clone(&self.router)
    }

    /// A deployment by worker name.
    pub async fn get(&self, name: &str) -> Option<Arc<Pool>> {
        self.state.lock().await.pools.get(name).cloned()
    }

    /// The lock for changes to worker `name`.
    async fn lock_name(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut names = self
                .names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            names.retain(|_, lock| Arc::strong_count(lock) > 1);
            Arc::clone(names.entry(name.to_owned()).or_default())
        };
        lock.lock_owned().await
    }

    /// Refuses names that cannot be uploaded to: malformed, or from the config file.
    async fn check_uploadable(&self, name: &str) -> Result<(), DeployError> {
        if !edge_config::valid_worker_name(name) {
            return Err(DeployError::BadRequest(format!(
                "expected a worker name of 1-63 letters, digits, '-' or '_', got `{name}`"
            )));
        }
        if self.state.lock().await.configured.contains(name) {
            return Err(DeployError::Configured(name.to_owned()));
        }
        Ok(())
    }

    /// The version's worker, its modules written and loaded (TypeScript stripped, imports
    /// checked), with `secrets` in its `env`.
    async fn prepare(
        &self,
        name: &str,
        version: &VersionRecord,
        secrets: &BTreeMap<String, String>,
    ) -> Result<(Arc<WorkerSource>, Vec<Route>, CodeDir), DeployError> {
        let origin = PathBuf::from(format!("PUT /workers/{name}"));
        let upload = Upload::parse(version.spec.to_string().as_bytes(), &origin)?;
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let dir = self.deploy_dir.join(format!("{name}.{n}"));
        let (mut worker, routes, modules) =
            upload.into_worker(name, &dir, &self.defaults, &origin)?;
        for (key, value) in secrets {
            worker
                .vars
                .insert(key.clone(), serde_json::Value::String(value.clone()));
        }
        // Removed again unless the version goes live (also when the change is cancelled).
        let written = CodeDir::write(&self.deploy_dir, dir.clone(), &modules).map_err(|e| {
            DeployError::Write {
                path: e.path,
                source: e.source,
            }
        })?;
        // Parsing and stripping TypeScript takes a while for large modules.
        let id = version.id();
        let loaded =
            tokio::task::spawn_blocking(move || WorkerSource::load_in(&worker, Some(&dir), &id))
                .await;
        let mut source = loaded.map_err(|e| DeployError::Start(StartError::fault(e)))??;
        source.secrets = secrets.values().cloned().collect();
        source.caches = self.caches_for(&source.name);
        let source = Arc::new(source);
        Ok((source, routes.unwrap_or_default(), written))
    }

    /// Starts `version` (id `id`) of `name` with `secrets`, then commits `batch` and makes
    /// it the one serving (beside the other versions of `rollout`); if the commit fails the
    /// previous version serves again. Returns whether the name was new, and its routes.
    async fn go_live(
        &self,
        name: &str,
        id: &str,
        version: &VersionRecord,
        secrets: &BTreeMap<String, String>,
        batch: Batch,
        rollout: Option<Rollout>,
    ) -> Result<(bool, Vec<Route>), DeployError> {
        let (source, routes, file) = self.prepare(name, version, secrets).await?;
        let existing = {
            let state = self.state.lock().await;
            route_owner(&state.routes, name, &routes)?;
            state.pools.get(name).cloned()
        };
        let previous = existing.as_ref().map(|pool| pool.worker());
        let pool = match &existing {
            Some(pool) => {
                pool.reload(source.clone())
                    .await
                    .map_err(|error| error.naming(&source))?;
                Arc::clone(pool)
            }
            None => Pool::start(source.clone(), self.registry.clone())
                .await
                .map_err(|error| error.naming(&source))?,
        };
        let mut state = self.state.lock().await;
        // A config reload may have taken the name or a route while the version started.
        let committed = if state.configured.contains(name) {
            Err(DeployError::Configured(name.to_owned()))
        } else {
            match route_owner(&state.routes, name, &routes) {
                Ok(()) => self.commit(batch).await,
                Err(error) => Err(error),
            }
        };
        if let Err(error) = committed {
            drop(state);
            if let Some(previous) = previous
                && let Err(e) = pool.reload(previous).await
            {
                tracing::error!(worker = name, "cannot restart the previous version: {e}");
            }
            return Err(error);
        }
        match rollout {
            Some(rollout) => {
                let split = rollout.backend(&pool);
                state.splits.insert(name.to_owned(), (split, rollout.files));
            }
            None => {
                state.splits.remove(name);
            }
        }
        state.pools.insert(name.to_owned(), pool);
        state.active.insert(name.to_owned(), id.to_owned());
        state.routes.retain(|r| r.worker != name);
        state.routes.extend(routes.clone());
        if let Some(old) = state.files.insert(name.to_owned(), file.keep()) {
            files::remove(&old);
        }
        self.publish(state, [name]);
        Ok((existing.is_none(), routes))
    }

    /// Commits `batch` on a blocking thread (it waits for the disk).
    async fn commit(&self, batch: Batch) -> Result<(), DeployError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.commit(&batch))
            .await
            .map_err(StoreError::Task)??;
        Ok(())
    }

    /// The Cache API storage of deployment `name`, when the node has a cache.
    fn caches_for(&self, name: &Arc<str>) -> Option<Arc<dyn isola_bindings::cache::CacheBackend>> {
        self.cache.as_ref().map(|cache| cache.caches_for(name))
    }

    /// Swaps in the routing table of the changed `state` and drops the cached responses of
    /// the workers in `changed` (their code or their existence changed).
    fn publish<'a>(
        &self,
        state: tokio::sync::MutexGuard<'_, State>,
        changed: impl IntoIterator<Item = &'a str>,
    ) {
        self.router.store(Arc::new(build(
            &state.routes,
            &state.pools,
            &state.splits,
            &self.domain,
        )));
        drop(state);
        if let Some(cache) = &self.cache {
            for name in changed {
                cache.purge_worker(name);
            }
        }
    }
}

/// The routes of worker `name`.
fn routes_of(routes: &[Route], name: &str) -> Vec<Route> {
    routes
        .iter()
        .filter(|r| r.worker == name)
        .cloned()
        .collect()
}

/// Refuses `wanted` routes of `name` that another worker already has.
fn route_owner(routes: &[Route], name: &str, wanted: &[Route]) -> Result<(), DeployError> {
    let host = |route: &Route| match route.host.as_deref() {
        None | Some("") | Some("*") => "*".to_owned(),
        Some(host) => host.to_ascii_lowercase(),
    };
    for route in wanted {
        if let Some(owner) = routes.iter().find(|r| {
            r.worker != name && host(r) == host(route) && r.path_prefix == route.path_prefix
        }) {
            return Err(DeployError::RouteTaken {
                route: format!("{}{}", host(route), route.path_prefix),
                owner: owner.worker.clone(),
            });
        }
    }
    Ok(())
}

/// The routing table for `routes` over `pools` (by weight for workers in a rollout), and
/// `NAME.{domain}` for each worker.
fn build(
    routes: &[Route],
    pools: &BTreeMap<String, Arc<Pool>>,
    splits: &BTreeMap<String, (Weighted, Vec<CodeDir>)>,
    domain: &str,
) -> Router {
    let backend = |name: &str| match splits.get(name) {
        Some((split, _)) => Some(Backend::Split(Arc::clone(split))),
        None => pools.get(name).cloned().map(Backend::One),
    };
    let mut router = Router::default();
    // First, so that an explicit route for the same host and prefix (added later) wins.
    for name in pools.keys() {
        if let Some(backend) = backend(name) {
            let host = format!("{}.{domain}", name.to_ascii_lowercase());
            router.add_backend(Some(&host), "/", backend);
        }
    }
    for route in routes {
        if let Some(backend) = backend(&route.worker) {
            router.add_backend(route.host.as_deref(), &route.path_prefix, backend);
        }
    }
    router
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
