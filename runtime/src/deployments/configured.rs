//! Replacing the config file's workers and routes on a reload (SIGHUP): the new workers are
//! started first, then swapped in with the routes in one step; uploaded deployments stay as
//! they are. Requests in flight finish on the pools they hold. A worker whose config and
//! modules did not change keeps its pool (warm isolates, cached responses).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use edge_config::{ConfigError, Location, Route, Worker};

use super::{Deployments, route_owner};
use crate::pool::Pool;
use crate::worker::WorkerSource;

/// The config's workers, started and not yet serving, and which of them are kept as they
/// ran (unchanged).
pub struct StartedWorkers {
    pools: BTreeMap<String, Arc<Pool>>,
    kept: BTreeSet<String>,
}

impl StartedWorkers {
    /// How many workers kept their running pool.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }
}

impl std::fmt::Debug for StartedWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedWorkers")
            .field("workers", &self.pools.keys())
            .field("kept", &self.kept)
            .finish()
    }
}

fn refused(file: &Path, key: String, message: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        at: Location::Key(key),
        message,
    }
}

impl Deployments {
    /// Loads and starts every worker of a new config (`file` names it in errors); nothing
    /// serves them yet. A config worker that loads as it runs now (same fingerprint: config
    /// and every module's content) keeps its running pool instead.
    pub async fn start_configured(
        &self,
        workers: &BTreeMap<String, Worker>,
        file: &Path,
    ) -> Result<StartedWorkers, ConfigError> {
        let mut pools = BTreeMap::new();
        let mut kept = BTreeSet::new();
        for (name, worker) in workers {
            let key = format!("workers.{name}");
            let config = worker.clone();
            let loaded = tokio::task::spawn_blocking(move || WorkerSource::load(&config))
                .await
                .map_err(|e| refused(file, key.clone(), format!("cannot load the worker: {e}")))?;
            let mut source = loaded.map_err(|e| {
                refused(
                    file,
                    key.clone(),
                    format!("expected a worker that loads: {e}"),
                )
            })?;
            if let Some(running) = self.running_configured(name, source.fingerprint).await {
                kept.insert(name.clone());
                pools.insert(name.clone(), running);
                continue;
            }
            source.caches = self.caches_for(&source.name);
            let source = Arc::new(source);
            let pool = Pool::start(source.clone(), self.registry.clone())
                .await
                .map_err(|e| {
                    refused(
                        file,
                        key.clone(),
                        format!("expected a worker that starts: {}", e.naming(&source)),
                    )
                })?;
            pools.insert(name.clone(), pool);
        }
        Ok(StartedWorkers { pools, kept })
    }

    /// The running pool of config worker `name`, if it runs code and config with `fingerprint`.
    async fn running_configured(&self, name: &str, fingerprint: u64) -> Option<Arc<Pool>> {
        let state = self.state.lock().await;
        if !state.configured.contains(name) {
            return None;
        }
        state
            .pools
            .get(name)
            .filter(|pool| pool.worker().fingerprint == fingerprint)
            .cloned()
    }

    /// Makes `started` and `routes` the config's workers and routes, in place of the old
    /// ones; refused (nothing changes) when a worker has the name of an uploaded one or a
    /// route is an uploaded worker's.
    pub async fn replace_configured(
        &self,
        started: StartedWorkers,
        routes: Vec<Route>,
        file: &Path,
    ) -> Result<(), ConfigError> {
        let StartedWorkers { pools, kept } = started;
        let mut state = self.state.lock().await;
        if let Some(name) = pools
            .keys()
            .find(|name| !state.configured.contains(*name) && state.pools.contains_key(*name))
        {
            return Err(refused(
                file,
                format!("workers.{name}"),
                format!(
                    "expected a name no uploaded worker has; `{name}` was deployed through the admin API (delete it there first)"
                ),
            ));
        }
        let uploaded: Vec<Route> = state
            .routes
            .iter()
            .filter(|r| !state.configured.contains(&r.worker))
            .cloned()
            .collect();
        for (i, route) in routes.iter().enumerate() {
            if let Err(taken) = route_owner(&uploaded, &route.worker, std::slice::from_ref(route)) {
                return Err(refused(
                    file,
                    format!("routes[{i}]"),
                    format!("expected a route no uploaded worker has: {taken}"),
                ));
            }
        }
        let old: Vec<String> = state.configured.iter().cloned().collect();
        for name in &old {
            if !pools.contains_key(name) {
                state.pools.remove(name);
                crate::metrics::forget_worker(name);
            }
        }
        state.configured = pools.keys().cloned().collect();
        let mut all_routes = routes;
        all_routes.extend(uploaded);
        state.routes = all_routes;
        state.pools.extend(pools);
        let changed: Vec<String> = old
            .into_iter()
            .chain(state.configured.iter().cloned())
            .filter(|name| !kept.contains(name))
            .collect();
        self.publish(state, changed.iter().map(String::as_str));
        Ok(())
    }
}
