//! Reloading the config file while the node serves (`isola serve` on SIGHUP): the config's
//! workers, routes and the listeners' TLS certificates are replaced together, or, when the
//! new config is unusable, not at all (the error names the file, the key and what was
//! expected). Uploaded deployments stay; requests in flight finish where they started.

use std::path::PathBuf;
use std::sync::Arc;

use edge_config::{Config, ConfigError, Location};

use crate::deployments::Deployments;
use crate::server::tls::Certificates;

/// The handle that applies a new config to a running node.
pub struct Reloader {
    file: PathBuf,
    current: tokio::sync::Mutex<Config>,
    deployments: Arc<Deployments>,
    certificates: Vec<Option<Arc<Certificates>>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// What a reload changed.
#[derive(Debug)]
pub struct Reloaded {
    /// The config's workers now.
    pub workers: usize,
    /// How many of them kept their running isolates (config and modules unchanged).
    pub kept: usize,
    /// Sections whose changes wait for a restart (`node`, `http`, …).
    pub need_restart: Vec<&'static str>,
}

impl Reloader {
    pub(super) fn new(
        file: PathBuf,
        current: Config,
        deployments: Arc<Deployments>,
        certificates: Vec<Option<Arc<Certificates>>>,
    ) -> Self {
        Self {
            file,
            current: tokio::sync::Mutex::new(current),
            deployments,
            certificates,
        }
    }

    /// The config file this node reloads.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Applies `config` (read from [`Reloader::file`]): starts its workers, then swaps in
    /// them, its routes and its certificates. Listeners cannot change without a restart.
    pub async fn apply(&self, config: Config) -> Result<Reloaded, ConfigError> {
        let mut current = self.current.lock().await;
        let refuse = |key: String, message: String| ConfigError {
            file: self.file.clone(),
            at: Location::Key(key),
            message,
        };
        if config.listeners.len() != current.listeners.len() {
            return Err(refuse(
                "listeners".into(),
                format!(
                    "expected the {} listener(s) the node has (listeners change only with a restart)",
                    current.listeners.len()
                ),
            ));
        }
        let mut loaded = Vec::with_capacity(config.listeners.len());
        for (i, (new, old)) in config.listeners.iter().zip(&current.listeners).enumerate() {
            if new.address != old.address {
                return Err(refuse(
                    format!("listeners[{i}].address"),
                    format!(
                        "expected {} as before (listeners change only with a restart)",
                        old.address
                    ),
                ));
            }
            match (&new.tls, &self.certificates.get(i).cloned().flatten()) {
                (Some(tls), Some(_)) => loaded
                    .push(Some(Certificates::load(tls).map_err(|e| {
                        refuse(format!("listeners[{i}].tls"), e.to_string())
                    })?)),
                (None, None) => loaded.push(None),
                _ => {
                    return Err(refuse(
                        format!("listeners[{i}].tls"),
                        "expected TLS on or off as before (that changes only with a restart)"
                            .into(),
                    ));
                }
            }
        }
        let started = self
            .deployments
            .start_configured(&config.workers, &self.file)
            .await?;
        let kept = started.kept();
        self.deployments
            .replace_configured(started, config.routes.clone(), &self.file)
            .await?;
        for (switch, loaded) in self.certificates.iter().zip(loaded) {
            if let (Some(switch), Some(loaded)) = (switch, loaded) {
                switch.replace(loaded);
            }
        }
        let mut need_restart = Vec::new();
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        if differs(&config.node, &current.node) {
            need_restart.push("node");
        }
        if differs(&config.http, &current.http) {
            need_restart.push("http");
        }
        if differs(&config.cache, &current.cache) {
            need_restart.push("cache");
        }
        if differs(&config.admin, &current.admin) {
            need_restart.push("admin");
        }
        if config.limits != current.limits {
            need_restart.push("limits (for uploaded workers)");
        }
        let workers = config.workers.len();
        // What waits for a restart is compared against what runs, also on the next reload.
        let mut applied = config;
        applied.node = current.node.clone();
        applied.http = current.http.clone();
        applied.cache = current.cache.clone();
        applied.admin = current.admin.clone();
        applied.limits = current.limits.clone();
        *current = applied;
        Ok(Reloaded {
            workers,
            kept,
            need_restart,
        })
    }
}
