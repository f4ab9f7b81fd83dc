//! Gradual rollouts: the versions of a split besides the active one run in pools of their
//! own, and the routing table picks among all of them by weight.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::records::DeploymentRecord;
use super::{DeployError, Deployments};
use crate::code::files::CodeDir;
use crate::pool::Pool;
use crate::router::Weighted;

/// The versions of a rollout besides the active one, started.
pub(super) struct Rollout {
    /// The active version's percent.
    pub(super) weight: u32,
    /// The other versions' pools and percents.
    pub(super) others: Vec<(Arc<Pool>, u32)>,
    /// Their code files.
    pub(super) files: Vec<CodeDir>,
}

impl Rollout {
    /// The rollout's pools by weight, `active` (the active version's pool) first.
    pub(super) fn backend(&self, active: &Arc<Pool>) -> Weighted {
        std::iter::once((Arc::clone(active), self.weight))
            .chain(self.others.iter().cloned())
            .filter(|(_, weight)| *weight > 0)
            .collect()
    }
}

impl Deployments {
    /// Starts the versions of `record`'s rollout besides the active one, if it has one.
    pub(super) async fn start_rollout(
        &self,
        name: &str,
        record: &DeploymentRecord,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Option<Rollout>, DeployError> {
        let Some(split) = &record.split else {
            return Ok(None);
        };
        let mut rollout = Rollout {
            weight: split.get(&record.active).copied().unwrap_or(0),
            others: Vec::new(),
            files: Vec::new(),
        };
        for (id, weight) in split {
            if *id == record.active {
                continue;
            }
            let version = self.version(name, id)?;
            let (source, _, file) = self.prepare(name, &version, secrets).await?;
            let pool = Pool::start(source.clone(), self.registry.clone())
                .await
                .map_err(|error| error.naming(&source))?;
            rollout.others.push((pool, *weight));
            rollout.files.push(file);
        }
        Ok(Some(rollout))
    }
}
