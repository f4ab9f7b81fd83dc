//! `isola dev`'s reload: watches the worker's modules (the entry file and what it imports
//! relatively, with their source maps) and swaps in the new code once it starts; a broken
//! edit is reported (with file:line:column) and the last good version keeps serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::cache::ResponseCache;
use crate::pool::Pool;
use crate::worker::WorkerSource;

/// Quiet period after a change before reloading (editors write files in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {error}")]
pub struct WatchError {
    path: PathBuf,
    #[source]
    error: notify::Error,
}

/// The running watch; dropping it stops reloading.
pub struct DevWatch {
    _watcher: Arc<Mutex<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for DevWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevWatch").finish_non_exhaustive()
    }
}

/// Reloads `deployment` from `config` whenever one of its modules (or a source map beside
/// one) changes, dropping its cached responses. The directories of the modules it imports are
/// watched as imports are added.
pub fn watch(
    config: edge_config::Worker,
    deployment: Arc<Pool>,
    cache: Option<ResponseCache>,
) -> Result<DevWatch, WatchError> {
    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.kind.is_modify() | event.kind.is_create() | event.kind.is_remove()
            && event.paths.iter().any(|p| is_module_file(p))
        {
            let _ = changed_tx.send(());
        }
    })
    .map_err(|error| WatchError {
        path: config.file.clone(),
        error,
    })?;
    let watcher = Arc::new(Mutex::new(watcher));
    let mut watched = BTreeSet::new();
    watch_dirs(&watcher, &mut watched, &deployment.worker(), &config.file)?;
    let task_watcher = Arc::clone(&watcher);
    tokio::spawn(async move {
        while changed.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while changed.try_recv().is_ok() {}
            if let Some(worker) = reload(&config, &deployment, cache.as_ref()).await
                && let Err(error) = watch_dirs(&task_watcher, &mut watched, &worker, &config.file)
            {
                tracing::warn!("{error}");
            }
        }
    });
    Ok(DevWatch { _watcher: watcher })
}

/// Whether a change to `path` may change a worker: a module's extension, or a source map.
fn is_module_file(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".map") || edge_config::ModuleKind::from_name(&name).is_some()
}

/// Watches the directories of `worker`'s modules that are not watched yet.
fn watch_dirs(
    watcher: &Mutex<notify::RecommendedWatcher>,
    watched: &mut BTreeSet<PathBuf>,
    worker: &WorkerSource,
    entry: &Path,
) -> Result<(), WatchError> {
    let entry = std::path::absolute(entry).unwrap_or_else(|_| entry.to_owned());
    let dirs: BTreeSet<PathBuf> = worker
        .graph
        .files()
        .chain([entry.as_path()])
        .filter_map(|file| file.parent().map(Path::to_path_buf))
        .collect();
    let mut watcher = watcher.lock().unwrap_or_else(PoisonError::into_inner);
    for dir in dirs {
        if watched.contains(&dir) {
            continue;
        }
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|error| WatchError {
                path: dir.clone(),
                error,
            })?;
        watched.insert(dir);
    }
    Ok(())
}

async fn reload(
    config: &edge_config::Worker,
    deployment: &Arc<Pool>,
    cache: Option<&ResponseCache>,
) -> Option<Arc<WorkerSource>> {
    let source = match WorkerSource::load(config) {
        Ok(mut source) => {
            source.caches = cache.map(|cache| cache.caches_for(&source.name));
            Arc::new(source)
        }
        Err(error) => {
            tracing::error!(worker = %config.name, "reload failed, still serving the previous version: {error}");
            return None;
        }
    };
    match deployment.reload(source.clone()).await {
        Ok(()) => {
            if let Some(cache) = cache {
                cache.purge_worker(&config.name);
            }
            tracing::info!(worker = %config.name, "reloaded {}", config.file.display());
            Some(source)
        }
        Err(error) => {
            tracing::error!(worker = %config.name, "reload failed, still serving the previous version: {}", error.naming(&source));
            None
        }
    }
}
