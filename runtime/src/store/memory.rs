//! The store of a node without a data directory: a sorted map in memory, gone at exit.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Batch, Change, Entry, Store, StoreError};

/// A [`Store`] in the process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock leaves a whole map: each batch is applied below
        // without any call that can panic between its changes.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries().get(key).cloned())
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .entries()
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut entries = self.entries();
        for change in batch.changes() {
            match change {
                Change::Put(key, value) => {
                    entries.insert(key.clone(), value.clone());
                }
                Change::Delete(key) => {
                    entries.remove(key);
                }
            }
        }
        Ok(())
    }
}
