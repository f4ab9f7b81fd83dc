//! The changes the admin API makes: deploy a version, roll back, delete, set and remove
//! secrets. Each starts what will serve, then commits one batch to the store, then serves.

use std::collections::BTreeMap;

use super::records::{self, VersionRecord};
use super::{DeployError, Deployed, Deployments, now_ms, routes_of};
use crate::store::Batch;

impl Deployments {
    /// Makes the upload `body` (JSON, the keys of a `[workers.NAME]` entry) a version of
    /// `name` and activates it. An upload without `routes` keeps the worker's routes. Of
    /// concurrent uploads to one name, each becomes a version and the last to commit serves.
    pub async fn deploy(&self, name: &str, body: &[u8]) -> Result<Deployed, DeployError> {
        self.check_uploadable(name).await?;
        let origin = std::path::PathBuf::from(format!("PUT /workers/{name}"));
        // Parsed for its errors (which name the key); the JSON itself is what is kept.
        edge_config::Upload::parse(body, &origin)?;
        let mut spec: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| DeployError::BadRequest(format!("expected a JSON object: {e}")))?;
        let _guard = self.lock_name(name).await;
        if let Some(object) = spec.as_object_mut()
            && !object.contains_key("routes")
        {
            let current = routes_of(&self.state.lock().await.routes, name);
            object.insert("routes".into(), routes_json(&current));
        }
        let secrets = records::secrets(&*self.store, name)?;
        let version = VersionRecord {
            spec,
            secrets: secrets.keys().cloned().collect(),
        };
        let id = version.id();
        let mut record = records::deployment(&*self.store, name)?.unwrap_or_default();
        let mut batch = Batch::default();
        if !record.has(&id) {
            batch.put(records::version_key(name, &id), records::encode(&version));
        }
        for dropped in record.activate_new(&id, now_ms()) {
            batch.delete(records::version_key(name, &dropped));
        }
        batch.put(records::deployment_key(name), records::encode(&record));
        let (created, routes) = self
            .go_live(name, &id, &version, &secrets, batch, None)
            .await?;
        tracing::info!(worker = name, version = %id, created, "deployed");
        Ok(Deployed {
            created,
            version: id,
            routes,
        })
    }

    /// Makes the kept version `id` of `name` serve again (it starts, no re-upload).
    pub async fn rollback(&self, name: &str, id: &str) -> Result<Deployed, DeployError> {
        self.check_uploadable(name).await?;
        let _guard = self.lock_name(name).await;
        let mut record = records::deployment(&*self.store, name)?
            .ok_or_else(|| DeployError::NotFound(format!("no worker `{name}`")))?;
        let version = match record.has(id) {
            true => records::version(&*self.store, name, id)?,
            false => None,
        };
        let Some(version) = version else {
            let kept: Vec<_> = record.versions.iter().map(|v| v.id.as_str()).collect();
            return Err(DeployError::NotFound(format!(
                "worker `{name}` has no version `{id}`; kept: {}",
                kept.join(", ")
            )));
        };
        let secrets = records::secrets(&*self.store, name)?;
        record.set_active(id);
        record.split = None;
        let mut batch = Batch::default();
        batch.put(records::deployment_key(name), records::encode(&record));
        let (_, routes) = self
            .go_live(name, id, &version, &secrets, batch, None)
            .await?;
        tracing::info!(worker = name, version = id, "rolled back");
        Ok(Deployed {
            created: false,
            version: id.to_owned(),
            routes,
        })
    }

    /// Serves kept versions of `name` by `percent` (adding up to 100): random per request,
    /// or by the request's `isola-version-key`. The heaviest version becomes the active one
    /// and its routes apply; the next upload or rollback ends the rollout.
    pub async fn split(
        &self,
        name: &str,
        percent: BTreeMap<String, u32>,
    ) -> Result<Deployed, DeployError> {
        self.check_uploadable(name).await?;
        let percent: BTreeMap<String, u32> = percent.into_iter().filter(|(_, p)| *p > 0).collect();
        let total: u64 = percent.values().map(|p| u64::from(*p)).sum();
        if total != 100 {
            return Err(DeployError::BadRequest(format!(
                "expected percentages adding up to 100, got {total}"
            )));
        }
        let _guard = self.lock_name(name).await;
        let mut record = records::deployment(&*self.store, name)?
            .ok_or_else(|| DeployError::NotFound(format!("no worker `{name}`")))?;
        if let Some(id) = percent.keys().find(|id| !record.has(id)) {
            return Err(DeployError::NotFound(format!(
                "worker `{name}` has no version `{id}`"
            )));
        }
        let Some(active) = percent
            .iter()
            .max_by_key(|(id, p)| (**p, std::cmp::Reverse(*id)))
            .map(|(id, _)| id.clone())
        else {
            return Err(DeployError::BadRequest(
                "expected at least one version".into(),
            ));
        };
        record.set_active(&active);
        record.split = (percent.len() > 1).then_some(percent);
        let secrets = records::secrets(&*self.store, name)?;
        let version = self.version(name, &active)?;
        let rollout = self.start_rollout(name, &record, &secrets).await?;
        let mut batch = Batch::default();
        batch.put(records::deployment_key(name), records::encode(&record));
        let (_, routes) = self
            .go_live(name, &active, &version, &secrets, batch, rollout)
            .await?;
        tracing::info!(worker = name, version = %active, "rollout");
        Ok(Deployed {
            created: false,
            version: active,
            routes,
        })
    }

    /// Removes uploaded worker `name`: its versions, secrets, routes and cached responses.
    /// Requests in flight finish; its isolates stop when they have.
    pub async fn delete(&self, name: &str) -> Result<(), DeployError> {
        self.check_uploadable(name).await?;
        let _guard = self.lock_name(name).await;
        let stored = records::deployment(&*self.store, name)?.is_some()
            || !records::secrets(&*self.store, name)?.is_empty();
        if !stored {
            return Err(DeployError::NotFound(format!("no worker `{name}`")));
        }
        let mut batch = Batch::default();
        records::delete_all(&*self.store, name, &mut batch)?;
        let mut state = self.state.lock().await;
        self.commit(batch).await?;
        state.pools.remove(name);
        state.splits.remove(name);
        state.active.remove(name);
        state.routes.retain(|r| r.worker != name);
        if let Some(file) = state.files.remove(name) {
            crate::code::files::remove(&file);
        }
        self.publish(state, [name]);
        crate::metrics::forget_worker(name);
        tracing::info!(worker = name, "deleted");
        Ok(())
    }

    /// Sets secret `key` of `name` (a running worker restarts with it in `env`); whether it
    /// is new. The value is never logged nor returned.
    pub async fn put_secret(
        &self,
        name: &str,
        key: &str,
        value: String,
    ) -> Result<bool, DeployError> {
        self.check_secret(name, key).await?;
        let _guard = self.lock_name(name).await;
        let mut secrets = records::secrets(&*self.store, name)?;
        let mut batch = Batch::default();
        batch.put(records::secret_key(name, key), value.as_bytes());
        let created = secrets.insert(key.to_owned(), value).is_none();
        self.apply_secrets(name, &secrets, batch).await?;
        tracing::info!(worker = name, secret = key, created, "secret set");
        Ok(created)
    }

    /// Removes secret `key` of `name` (a running worker restarts without it).
    pub async fn delete_secret(&self, name: &str, key: &str) -> Result<(), DeployError> {
        self.check_secret(name, key).await?;
        let _guard = self.lock_name(name).await;
        let mut secrets = records::secrets(&*self.store, name)?;
        if secrets.remove(key).is_none() {
            return Err(DeployError::NotFound(format!(
                "worker `{name}` has no secret `{key}`"
            )));
        }
        let mut batch = Batch::default();
        batch.delete(records::secret_key(name, key));
        self.apply_secrets(name, &secrets, batch).await?;
        tracing::info!(worker = name, secret = key, "secret deleted");
        Ok(())
    }

    async fn check_secret(&self, name: &str, key: &str) -> Result<(), DeployError> {
        self.check_uploadable(name).await?;
        if !edge_config::valid_identifier(key) {
            return Err(DeployError::BadRequest(format!(
                "expected a JavaScript identifier as secret name, got `{key}`"
            )));
        }
        Ok(())
    }

    /// Commits `batch` (a secret change); a deployed worker restarts its active version with
    /// `secrets` first, and keeps its old ones if that fails.
    async fn apply_secrets(
        &self,
        name: &str,
        secrets: &BTreeMap<String, String>,
        batch: Batch,
    ) -> Result<(), DeployError> {
        let Some(record) = records::deployment(&*self.store, name)? else {
            return self.commit(batch).await;
        };
        let version = self.version(name, &record.active)?;
        let rollout = self.start_rollout(name, &record, secrets).await?;
        self.go_live(name, &record.active, &version, secrets, batch, rollout)
            .await
            .map(drop)
    }
}

/// Routes as an upload writes them.
fn routes_json(routes: &[edge_config::Route]) -> serde_json::Value {
    routes
        .iter()
        .map(|r| serde_json::json!({ "host": r.host, "path_prefix": r.path_prefix }))
        .collect()
}
