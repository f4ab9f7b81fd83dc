//! What the admin API shows of the deployments: the list, and one worker in detail.

use std::collections::BTreeMap;

use edge_config::Route;

use super::{DeployError, Deployments, records, routes_of};

/// A worker in the list.
#[derive(Debug)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its routes.
    pub routes: Vec<Route>,
    /// The active version (uploaded workers).
    pub version: Option<String>,
}

/// One worker in detail (`GET /workers/NAME`).
#[derive(Debug)]
pub struct Description {
    /// Whether it comes from the config file (which has no versions).
    pub configured: bool,
    /// The active version (uploaded workers).
    pub active: Option<String>,
    /// Its kept versions, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Its routes.
    pub routes: Vec<Route>,
    /// The names of its secrets.
    pub secrets: Vec<String>,
    /// A gradual rollout: percent by version.
    pub split: Option<BTreeMap<String, u32>>,
    /// The version active before the active one, while it is kept (uploaded workers).
    pub previous: Option<String>,
}

/// One kept version.
#[derive(Debug)]
pub struct VersionInfo {
    /// Its id (hash of its content).
    pub id: String,
    /// When it was uploaded (milliseconds since the Unix epoch).
    pub created_ms: u64,
    /// The names of the secrets the deployment had then.
    pub secrets: Vec<String>,
}

impl Deployments {
    /// Every worker with its routes and active version.
    pub async fn list(&self) -> Vec<Listed> {
        let state = self.state.lock().await;
        state
            .pools
            .keys()
            .map(|name| Listed {
                name: name.clone(),
                routes: routes_of(&state.routes, name),
                version: state.active.get(name).cloned(),
            })
            .collect()
    }

    /// Worker `name` in detail: its versions, the active one, its routes and secrets' names.
    pub async fn describe(&self, name: &str) -> Result<Description, DeployError> {
        let (configured, routes) = {
            let state = self.state.lock().await;
            (
                state.configured.contains(name),
                routes_of(&state.routes, name),
            )
        };
        if configured {
            return Ok(Description {
                configured,
                active: None,
                versions: Vec::new(),
                routes,
                secrets: Vec::new(),
                split: None,
                previous: None,
            });
        }
        let record = records::deployment(&*self.store, name)?
            .ok_or_else(|| DeployError::NotFound(format!("no worker `{name}`")))?;
        let mut versions = Vec::with_capacity(record.versions.len());
        for entry in &record.versions {
            let secrets = records::version(&*self.store, name, &entry.id)?
                .map(|v| v.secrets)
                .unwrap_or_default();
            versions.push(VersionInfo {
                id: entry.id.clone(),
                created_ms: entry.created_ms,
                secrets,
            });
        }
        Ok(Description {
            configured,
            active: Some(record.active),
            versions,
            routes,
            secrets: records::secrets(&*self.store, name)?.into_keys().collect(),
            split: record.split,
            previous: record.previous,
        })
    }
}
