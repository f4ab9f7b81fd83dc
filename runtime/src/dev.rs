//! `isola dev`'s reload: watches the worker file and swaps in the new code once it starts;
//! a broken edit is reported (with file:line:column) and the last good version keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    error: notify::Error,
}

/// Reloads `deployment` from `config` whenever its file (or source map) changes, dropping its
/// cached responses. Runs until the returned watcher is dropped.
pub fn watch(
    config: edge_config::Worker,
    deployment: Arc<Pool>,
    cache: Option<ResponseCache>,
) -> Result<notify::RecommendedWatcher, WatchError> {
    let file = std::path::absolute(&config.file).unwrap_or_else(|_| config.file.clone());
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    let watched = file.clone();
    let mut map = file.clone().into_os_string();
    map.push(".map");
    let watched_map = PathBuf::from(map);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.kind.is_modify() | event.kind.is_create()
            && event
                .paths
                .iter()
                .any(|p| *p == watched || *p == watched_map)
        {
            let _ = changed_tx.send(());
        }
    })
    .map_err(|error| WatchError {
        path: file.clone(),
        error,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|error| WatchError { path: dir, error })?;
    tokio::spawn(async move {
        while changed.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while changed.try_recv().is_ok() {}
            reload(&config, &deployment, cache.as_ref()).await;
        }
    });
    Ok(watcher)
}

async fn reload(
    config: &edge_config::Worker,
    deployment: &Arc<Pool>,
    cache: Option<&ResponseCache>,
) {
    let source = match WorkerSource::load(config) {
        Ok(source) => source,
        Err(error) => {
            tracing::error!("reload failed: {error}");
            return;
        }
    };
    match deployment.reload(Arc::new(source)).await {
        Ok(()) => {
            if let Some(cache) = cache {
                cache.purge_worker(&config.name);
            }
            tracing::info!(worker = %config.name, "reloaded {}", config.file.display());
        }
        Err(error) => {
            tracing::error!(worker = %config.name, "reload failed, still serving the previous version: {error}")
        }
    }
}
