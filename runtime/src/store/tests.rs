use super::*;

fn exercise(store: &dyn Store) -> Result<(), StoreError> {
    let mut batch = Batch::default();
    batch.put("a/1", "one");
    batch.put("a/2", "two");
    batch.put("b/1", "other");
    store.commit(&batch)?;
    assert_eq!(store.get(b"a/1")?, Some(b"one".to_vec()));
    let keys: Vec<_> = store.scan(b"a/")?.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [b"a/1".to_vec(), b"a/2".to_vec()]);
    let mut batch = Batch::default();
    batch.delete("a/1");
    batch.put("a/2", "changed");
    store.commit(&batch)?;
    assert_eq!(store.get(b"a/1")?, None);
    assert_eq!(store.get(b"a/2")?, Some(b"changed".to_vec()));
    assert_eq!(store.scan(b"c")?, Vec::new());
    Ok(())
}

#[test]
fn the_memory_store_applies_batches() -> Result<(), StoreError> {
    exercise(&MemoryStore::default())
}

#[test]
fn the_redb_store_applies_batches_and_keeps_them() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("isola-store-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = RedbStore::open(&dir.join("data"))?;
        exercise(&store)?;
    }
    let reopened = RedbStore::open(&dir.join("data"))?;
    assert_eq!(reopened.get(b"a/2")?, Some(b"changed".to_vec()));
    assert_eq!(reopened.get(b"b/1")?, Some(b"other".to_vec()));
    drop(reopened);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
