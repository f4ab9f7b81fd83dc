//! How deployments are kept in the [`Store`]: under `deploy/NAME` the deployment (its kept
//! versions and the active one), under `version/NAME/ID` each immutable version, under
//! `secret/NAME/KEY` each secret's value. Worker names and keys hold no `/`, so the
//! prefixes never overlap.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Batch, Store, StoreError};

/// Versions kept per deployment; older ones are dropped as new ones come.
pub const KEPT_VERSIONS: usize = 20;

/// A stored record is unreadable, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record is not what this version of Isola wrote.
    #[error("the stored record {key} is unreadable")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// A deployment as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The version serving.
    pub active: String,
    /// The kept versions, oldest first.
    pub versions: Vec<VersionEntry>,
    /// A gradual rollout: percent by version id (`active` is the heaviest of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<BTreeMap<String, u32>>,
    /// The version that was active before `active` (what `isola rollback NAME` goes back
    /// to), while it is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// One kept version in a deployment's list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionEntry {
    /// Its id.
    pub id: String,
    /// When it was first uploaded (milliseconds since the Unix epoch).
    pub created_ms: u64,
}

/// An immutable version: the upload (its routes filled in) and the names of the secrets
/// the deployment had then. Its id is the hash of this content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The upload's JSON (the keys of a `[workers.NAME]` entry, with `routes`).
    pub spec: serde_json::Value,
    /// The secrets' names (never their values).
    pub secrets: Vec<String>,
}

impl VersionRecord {
    /// The version's id: the first 16 bytes of the SHA-256 of its canonical JSON, in hex.
    pub fn id(&self) -> String {
        let mut canonical = String::new();
        write_canonical(&self.spec, &mut canonical);
        let mut hasher = Sha256::new();
        hasher.update(canonical.as_bytes());
        for secret in &self.secrets {
            hasher.update(b"\0secret:");
            hasher.update(secret.as_bytes());
        }
        hasher.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// JSON with object keys sorted, so equal content hashes equally whatever the key order.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<_, _> = map.iter().collect();
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The key of deployment `name`.
pub fn deployment_key(name: &str) -> String {
    format!("deploy/{name}")
}

/// The key of version `id` of `name`.
pub fn version_key(name: &str, id: &str) -> String {
    format!("version/{name}/{id}")
}

/// The key of secret `key` of `name`.
pub fn secret_key(name: &str, key: &str) -> String {
    format!("secret/{name}/{key}")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, RecordError> {
    serde_json::from_slice(bytes).map_err(|source| RecordError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

/// Encodes a record; these types always serialise.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// Every stored deployment by name.
pub fn deployments(store: &dyn Store) -> Result<Vec<(String, DeploymentRecord)>, RecordError> {
    store
        .scan(b"deploy/")?
        .into_iter()
        .map(|(key, value)| {
            let key = String::from_utf8_lossy(&key).into_owned();
            let record = decode(&key, &value)?;
            let name = key.trim_start_matches("deploy/").to_owned();
            Ok((name, record))
        })
        .collect()
}

/// Deployment `name`, if stored.
pub fn deployment(store: &dyn Store, name: &str) -> Result<Option<DeploymentRecord>, RecordError> {
    let key = deployment_key(name);
    store
        .get(key.as_bytes())?
        .map(|bytes| decode(&key, &bytes))
        .transpose()
}

/// Version `id` of `name`, if stored.
pub fn version(
    store: &dyn Store,
    name: &str,
    id: &str,
) -> Result<Option<VersionRecord>, RecordError> {
    let key = version_key(name, id);
    store
        .get(key.as_bytes())?
        .map(|bytes| decode(&key, &bytes))
        .transpose()
}

/// The secrets of `name`: key → value.
pub fn secrets(store: &dyn Store, name: &str) -> Result<BTreeMap<String, String>, RecordError> {
    let prefix = format!("secret/{name}/");
    Ok(store
        .scan(prefix.as_bytes())?
        .into_iter()
        .map(|(key, value)| {
            let key = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            (key, String::from_utf8_lossy(&value).into_owned())
        })
        .collect())
}

/// Adds to `batch` the removal of everything stored for `name`.
pub fn delete_all(store: &dyn Store, name: &str, batch: &mut Batch) -> Result<(), RecordError> {
    batch.delete(deployment_key(name));
    for prefix in [format!("version/{name}/"), format!("secret/{name}/")] {
        for (key, _) in store.scan(prefix.as_bytes())? {
            batch.delete(key);
        }
    }
    Ok(())
}

impl DeploymentRecord {
    /// Whether version `id` is kept.
    pub fn has(&self, id: &str) -> bool {
        self.versions.iter().any(|v| v.id == id)
    }

    /// Adds version `id` (made now) unless kept, makes it active, and drops the oldest
    /// versions past [`KEPT_VERSIONS`], returning their ids.
    pub fn activate_new(&mut self, id: &str, now_ms: u64) -> Vec<String> {
        if !self.has(id) {
            self.versions.push(VersionEntry {
                id: id.to_owned(),
                created_ms: now_ms,
            });
        }
        self.set_active(id);
        self.split = None;
        let mut dropped = Vec::new();
        while self.versions.len() > KEPT_VERSIONS {
            let Some(oldest) = self.versions.iter().position(|v| v.id != self.active) else {
                break;
            };
            dropped.push(self.versions.remove(oldest).id);
        }
        if self.previous.as_deref().is_some_and(|p| !self.has(p)) {
            self.previous = None;
        }
        dropped
    }

    /// Makes `id` the active version, remembering the one it replaces as `previous`.
    pub fn set_active(&mut self, id: &str) {
        if self.active != id {
            let replaced = std::mem::replace(&mut self.active, id.to_owned());
            self.previous = (!replaced.is_empty()).then_some(replaced);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_content_not_its_key_order() -> Result<(), serde_json::Error> {
        let a = VersionRecord {
            spec: serde_json::from_str(r#"{"code":"x","vars":{"A":1,"B":2}}"#)?,
            secrets: vec![],
        };
        let b = VersionRecord {
            spec: serde_json::from_str(r#"{"vars":{"B":2,"A":1},"code":"x"}"#)?,
            secrets: vec![],
        };
        let c = VersionRecord {
            spec: a.spec.clone(),
            secrets: vec!["TOKEN".into()],
        };
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id().len(), 32);
        Ok(())
    }

    #[test]
    fn the_last_twenty_versions_are_kept() {
        let mut record = DeploymentRecord::default();
        let mut dropped = Vec::new();
        for n in 0..25u64 {
            dropped.extend(record.activate_new(&format!("v{n}"), n));
        }
        assert_eq!(record.versions.len(), KEPT_VERSIONS);
        assert_eq!(dropped, ["v0", "v1", "v2", "v3", "v4"]);
        assert_eq!(record.active, "v24");
        assert_eq!(record.previous.as_deref(), Some("v23"));
        assert!(record.activate_new("v10", 99).is_empty());
        assert_eq!(record.active, "v10");
        assert_eq!(
            record.previous.as_deref(),
            Some("v24"),
            "what rollback goes back to"
        );
        record.set_active("v10");
        assert_eq!(
            record.previous.as_deref(),
            Some("v24"),
            "no change, no new previous"
        );
    }
}
