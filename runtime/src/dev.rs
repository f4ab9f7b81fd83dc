//! `isola dev`'s reload: watches the worker's modules (the entry file and what it imports
//! relatively, with their source maps) and its project file, if it has one, and swaps in the
//! new code or settings once they start; a broken edit is reported (with file:line:column,
//! or the project file's key) and the last good version keeps serving.

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

/// How to read the worker's settings again when its project file (`isola.toml`) changes.
pub struct Reconfigure {
    /// The project file.
    pub file: PathBuf,
    /// Reads it (with whatever the command line sets over it); the error is shown as is.
    pub load: Box<dyn Fn() -> Result<edge_config::Worker, String> + Send + Sync>,
}

impl std::fmt::Debug for Reconfigure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconfigure")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
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
/// one) changes, dropping its cached responses; with `project`, also when the project file
/// changes, with the settings read from it again. The directories of the modules it imports
/// are watched as imports are added.
pub fn watch(
    mut config: edge_config::Worker,
    deployment: Arc<Pool>,
    cache: Option<ResponseCache>,
    project: Option<Reconfigure>,
) -> Result<DevWatch, WatchError> {
    let project_file = project
        .as_ref()
        .map(|project| std::path::absolute(&project.file).unwrap_or_else(|_| project.file.clone()));
    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    let settings_file = project_file.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.kind.is_modify() | event.kind.is_create() | event.kind.is_remove()
        {
            let settings = event
                .paths
                .iter()
                .any(|p| settings_file.as_deref() == Some(p.as_path()));
            if settings || event.paths.iter().any(|p| is_module_file(p)) {
                let _ = changed_tx.send(settings);
            }
        }
    })
    .map_err(|error| WatchError {
        path: config.file.clone(),
        error,
    })?;
    let watcher = Arc::new(Mutex::new(watcher));
    let mut watched = BTreeSet::new();
    watch_dirs(&watcher, &mut watched, &deployment.worker(), &config.file)?;
    if let Some(dir) = project_file.as_deref().and_then(Path::parent) {
        watch_dir(&watcher, &mut watched, dir)?;
    }
    let task_watcher = Arc::clone(&watcher);
    tokio::spawn(async move {
        while let Some(mut settings) = changed.recv().await {
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(more) = changed.try_recv() {
                settings |= more;
            }
            if settings
                && let Some(project) = &project
                && !reconfigure(&mut config, project)
            {
                continue;
            }
            if let Some(worker) = reload(&config, &deployment, cache.as_ref()).await
                && let Err(error) = watch_dirs(&task_watcher, &mut watched, &worker, &config.file)
            {
                tracing::warn!("{error}");
            }
        }
    });
    Ok(DevWatch { _watcher: watcher })
}

/// Reads the project file again into `config`; false (logged, nothing changes) when it is
/// broken or renames the worker, which only a restart can do.
fn reconfigure(config: &mut edge_config::Worker, project: &Reconfigure) -> bool {
    match (project.load)() {
        Ok(new) if new.name != config.name => {
            tracing::error!(
                worker = %config.name,
                "{}: `name` changed to `{}`; restart isola dev to serve the new name (still serving the previous settings)",
                project.file.display(),
                new.name
            );
            false
        }
        Ok(new) => {
            *config = new;
            true
        }
        Err(error) => {
            tracing::error!(worker = %config.name, "reload failed, still serving the previous version: {error}");
            false
        }
    }
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
    for dir in dirs {
        watch_dir(watcher, watched, &dir)?;
    }
    Ok(())
}

/// Watches `dir` unless it is watched already.
fn watch_dir(
    watcher: &Mutex<notify::RecommendedWatcher>,
    watched: &mut BTreeSet<PathBuf>,
    dir: &Path,
) -> Result<(), WatchError> {
    if watched.contains(dir) {
        return Ok(());
    }
    watcher
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|error| WatchError {
            path: dir.to_owned(),
            error,
        })?;
    watched.insert(dir.to_owned());
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
