//! The node's durable state behind one small interface: an ordered map of byte keys to byte
//! values, changed only by atomic batches. Deployments keep their versions, secrets and
//! active version in it; a replicator can ship the same batches to other nodes and a KV
//! binding can reuse the engine.
//!
//! Two engines: [`RedbStore`] (a redb file under `[node] data_dir`, every commit fsync'd) and
//! [`MemoryStore`] (the process's memory: gone at exit, for nodes without a data directory).
#![forbid(unsafe_code)]

mod memory;
mod redb_store;

use std::path::PathBuf;

pub use memory::MemoryStore;
pub use redb_store::RedbStore;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A transactional key-value store.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError>;
    /// Applies every change of `batch` or none: once it returns, the batch survives a crash
    /// (durable engines), and a crash before that leaves the state as it was.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Sets `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key` (nothing if absent).
    Delete(Vec<u8>),
}

/// Changes applied together by [`Store::commit`], in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    changes: Vec<Change>,
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.changes.push(Change::Put(key.into(), value.into()));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.changes.push(Change::Delete(key.into()));
    }

    /// The changes, in order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }
}

/// The store failed; nothing of the failed call was applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory cannot be made.
    #[error("cannot create the data directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database file cannot be opened (or another process has it open).
    #[error("cannot open the store {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<redb::Error>,
    },
    /// Reading or committing failed.
    #[error("the store failed")]
    Engine(#[source] Box<redb::Error>),
    /// The blocking task running the call was lost.
    #[error("the store's task ended early")]
    Task(#[source] tokio::task::JoinError),
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(error: E) -> Self {
        Self::Engine(Box::new(error.into()))
    }
}

#[cfg(test)]
mod tests;
