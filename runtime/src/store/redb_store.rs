//! The durable store: one redb file (`isola.redb`) in the data directory. redb commits with
//! copy-on-write pages and an fsync'd header switch, so a crash at any moment leaves the
//! last committed transaction.

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, TableDefinition};

use super::{Batch, Change, Entry, Store, StoreError};

/// Every entry lives in one table; callers separate their data by key prefix.
const ENTRIES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("entries");

/// A [`Store`] in a redb file.
pub struct RedbStore {
    db: redb::Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`, creating the directory (mode 0700) if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        let path = dir.join("isola.redb");
        let opened = |source: redb::Error| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        };
        let db = redb::Database::create(&path).map_err(|e| opened(e.into()))?;
        let write = db.begin_write().map_err(|e| opened(e.into()))?;
        write.open_table(ENTRIES).map_err(|e| opened(e.into()))?;
        write.commit().map_err(|e| opened(e.into()))?;
        Ok(Self { db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(ENTRIES)?;
        Ok(table.get(key)?.map(|value| value.value().to_vec()))
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(ENTRIES)?;
        let mut found = Vec::new();
        for entry in table.range(prefix..)? {
            let (key, value) = entry?;
            if !key.value().starts_with(prefix) {
                break;
            }
            found.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(found)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(ENTRIES)?;
            for change in batch.changes() {
                match change {
                    Change::Put(key, value) => {
                        table.insert(key.as_slice(), value.as_slice())?;
                    }
                    Change::Delete(key) => {
                        table.remove(key.as_slice())?;
                    }
                }
            }
        }
        // Durability::Immediate (redb's default): fsync'd before this returns.
        write.commit()?;
        Ok(())
    }
}
