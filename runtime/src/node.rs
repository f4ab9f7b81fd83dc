//! A node: everything one `isola` process serves, built from a validated config.

mod reload;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_config::Config;

use crate::admin::Admin;
use crate::cache::ResponseCache;
use crate::deployments::Deployments;
use crate::isolate::StartError;
use crate::pool::{Pool, Registry};
use crate::server::{self, BoundListener, Shared};
use crate::store::{MemoryStore, RedbStore, Store};
use crate::usage::Ledger;
use crate::worker::{WorkerLoadError, WorkerSource};
pub use reload::{Reloaded, Reloader};

/// Starting the node failed; the message names what and where.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A worker's file could not be read.
    #[error("worker `{name}`: {error}")]
    Load {
        /// The worker.
        name: String,
        /// Why.
        error: WorkerLoadError,
    },
    /// A worker failed to start (syntax error, top-level throw, no handler).
    #[error("worker `{name}`: {error}")]
    Start {
        /// The worker.
        name: String,
        /// Why.
        error: StartError,
    },
    /// A listener's TLS settings are unusable.
    #[error("listener {address}: {error}")]
    Tls {
        /// The listener.
        address: SocketAddr,
        /// Why.
        error: server::tls::TlsError,
    },
    /// The private directory for deployed code cannot be made.
    #[error("cannot create a directory for deployed code: {0}")]
    DeployDir(#[source] std::io::Error),
    /// The store of uploaded deployments cannot be opened or read.
    #[error("the data directory: {}", crate::deployments::error_chain(.0))]
    Store(#[source] crate::deployments::DeployError),
    /// The executor threads (`[node] executor_threads`) cannot start.
    #[error(transparent)]
    Executors(#[from] crate::executor::ExecutorError),
    /// The admin API cannot start.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// `[node] metrics_token_env` names a variable without a usable token.
    #[error(
        "[node] metrics_token_env: the environment variable {0} must hold a token of at least {min} characters",
        min = crate::server::bearer::MIN_TOKEN_CHARS
    )]
    MetricsToken(String),
    /// A listener could not bind.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The listener.
        address: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// The `memory_mb` most workers use: spares are made for it.
fn common_memory_mb(config: &Config) -> u64 {
    let mut counts = BTreeMap::new();
    for worker in config.workers.values() {
        *counts.entry(worker.limits.memory_mb).or_insert(0usize) += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map_or(edge_config::Limits::default().memory_mb, |(mb, _)| mb)
}

/// The store of uploaded deployments: a redb file under `[node] data_dir`, else memory.
fn open_store(config: &Config) -> Result<Arc<dyn Store>, NodeError> {
    match &config.node.data_dir {
        Some(dir) => {
            let store = RedbStore::open(dir).map_err(|e| NodeError::Store(e.into()))?;
            tracing::info!(path = %store.path().display(), "deployments are kept in the data directory");
            Ok(Arc::new(store))
        }
        None => Ok(Arc::new(MemoryStore::default())),
    }
}

/// A started node: workers running, sockets bound, not yet accepting.
pub struct Node {
    listeners: Vec<BoundListener>,
    metrics: Option<tokio::net::TcpListener>,
    metrics_token: Option<Arc<[u8]>>,
    admin: Option<(Arc<Admin>, tokio::net::TcpListener)>,
    shared: Arc<Shared>,
    deployments: Arc<Deployments>,
    ledger: Arc<Ledger>,
    grace: Duration,
    /// Each listener's certificates (TLS listeners), which a reload replaces.
    certificates: Vec<Option<Arc<server::tls::Certificates>>>,
    /// The config the node started from.
    config: Config,
}

impl Node {
    /// Starts every worker, builds the routes and binds the listeners.
    pub async fn start(config: &Config) -> Result<Self, NodeError> {
        let registry = Registry::start(config.node.isolate_memory_budget_mb);
        crate::executor::start(config.node.executor_threads)?;
        crate::isolate::spare::configure(config.node.spare_isolates, common_memory_mb(config));
        let cache = ResponseCache::new(&config.cache);
        let mut deployments = BTreeMap::new();
        for (name, worker) in &config.workers {
            let mut source = WorkerSource::load(worker).map_err(|error| NodeError::Load {
                name: name.clone(),
                error,
            })?;
            source.caches = cache.as_ref().map(|cache| cache.caches_for(&source.name));
            let deployment = Pool::start(Arc::new(source), registry.clone())
                .await
                .map_err(|error| NodeError::Start {
                    name: name.clone(),
                    error,
                })?;
            deployments.insert(name.clone(), deployment);
        }
        let deploy_dir = match &config.admin.deploy_dir {
            Some(dir) => dir.clone(),
            None if config.admin.address.is_some() => {
                crate::deployments::private_deploy_dir().map_err(NodeError::DeployDir)?
            }
            None => std::env::temp_dir(),
        };
        let store = open_store(config)?;
        let ledger = Ledger::new(Arc::clone(&store));
        let deployments = Arc::new(Deployments::new(
            deployments,
            config.routes.clone(),
            registry,
            cache.clone(),
            crate::deployments::Settings {
                defaults: config.limits.clone(),
                deploy_dir,
                store,
                domain: config.node.domain.clone(),
            },
        ));
        deployments.restore().await.map_err(NodeError::Store)?;
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut certificates = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let acceptor = match &listener.tls {
                Some(tls) => {
                    let (acceptor, switch) =
                        server::tls::reloadable_acceptor(tls).map_err(|error| NodeError::Tls {
                            address: listener.address,
                            error,
                        })?;
                    certificates.push(Some(switch));
                    Some(acceptor)
                }
                None => {
                    certificates.push(None);
                    None
                }
            };
            let bound = BoundListener::bind(listener.address, acceptor, listener.max_connections)
                .await
                .map_err(|error| NodeError::Bind {
                    address: listener.address,
                    error,
                })?;
            listeners.push(bound);
        }
        let admin = match config.admin.address {
            Some(address) => {
                let api = Admin::new(
                    &config.admin.token_env,
                    Arc::clone(&deployments),
                    cache.clone(),
                    Arc::clone(&ledger),
                    config.admin.max_upload_bytes,
                )?;
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|error| NodeError::Bind { address, error })?;
                Some((Arc::new(api), listener))
            }
            None => None,
        };
        let metrics = match config.node.metrics_address {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|error| NodeError::Bind { address, error })?,
            ),
            None => None,
        };
        let metrics_token = match &config.node.metrics_token_env {
            Some(name) => Some(Arc::from(
                crate::server::bearer::from_env(name)
                    .ok_or_else(|| NodeError::MetricsToken(name.clone()))?,
            )),
            None => None,
        };
        Ok(Self {
            listeners,
            metrics,
            metrics_token,
            admin,
            shared: Arc::new(Shared {
                router: deployments.router(),
                http: config.http.clone(),
                trusted_proxies: config.node.trusted_proxies.clone(),
                cache,
                connections: crate::server::ConnectionBudget::from_process_limit(),
                sockets: crate::server::websocket::Sockets::default(),
            }),
            deployments,
            ledger,
            grace: Duration::from_millis(config.node.shutdown_grace_ms),
            certificates,
            config: config.clone(),
        })
    }

    /// The handle that applies a new version of the config `file` (SIGHUP) to this node.
    pub fn reloader(&self, file: std::path::PathBuf) -> Reloader {
        Reloader::new(
            file,
            self.config.clone(),
            Arc::clone(&self.deployments),
            self.certificates.clone(),
        )
    }

    /// The URLs the node listens on.
    pub fn urls(&self) -> Vec<String> {
        self.listeners.iter().map(BoundListener::url).collect()
    }

    /// Where metrics are served, if they are.
    pub fn metrics_url(&self) -> Option<String> {
        let address = self.metrics.as_ref()?.local_addr().ok()?;
        Some(format!("http://{address}/metrics"))
    }

    /// The response cache, unless turned off.
    pub fn cache(&self) -> Option<ResponseCache> {
        self.shared.cache.clone()
    }

    /// Where the admin API is served, if it is.
    pub fn admin_url(&self) -> Option<String> {
        let address = self.admin.as_ref()?.1.local_addr().ok()?;
        Some(format!("http://{address}"))
    }

    /// A deployment's isolates by worker name.
    pub async fn deployment(&self, name: &str) -> Option<Arc<Pool>> {
        self.deployments.get(name).await
    }

    /// Serves until `shutdown` resolves, then drains within the grace period and writes the
    /// last usage to the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let ledger = tokio::spawn(Arc::clone(&self.ledger).run());
        if let Some(metrics) = self.metrics {
            let http = self.shared.http.clone();
            let token = self.metrics_token.clone();
            tokio::spawn(async move { server::serve_metrics(metrics, &http, token).await });
        }
        if let Some((admin, listener)) = self.admin {
            let http = self.shared.http.clone();
            tokio::spawn(async move { admin.serve_api(listener, &http).await });
        }
        server::run(self.listeners, self.shared, shutdown, self.grace).await;
        ledger.abort();
        self.ledger.flush_async().await;
    }
}
