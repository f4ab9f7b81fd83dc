//! The isolate's blob store: deno_web's, with each entry (a part id, an object URL) charged
//! to the isolate's memory limit while it is in the store.

use std::collections::HashMap;
use std::sync::Arc;

use deno_core::parking_lot::Mutex;
use deno_core::url::Url;
use deno_web::{Blob, BlobPart, BlobStore, BlobStoreTrait};
use uuid::Uuid;

use crate::memory::{Charge, MemoryAccount};

/// Bookkeeping of one part id: the map entry and, for a slice, its small part object.
const PART_ENTRY_BYTES: usize = 128;
/// Bookkeeping of one object URL besides its text and media type: two map entries, the
/// `Blob` and its list of parts.
const URL_ENTRY_BYTES: usize = 256;

/// A blob store whose entries are charged to an isolate's memory account. The contents of
/// parts are charged by the parts themselves (see the `isola_blob` extension).
#[derive(Debug)]
pub struct ChargedBlobStore {
    inner: BlobStore,
    account: MemoryAccount,
    parts: Mutex<HashMap<Uuid, Charge>>,
    urls: Mutex<HashMap<Url, Charge>>,
}

impl ChargedBlobStore {
    /// An empty store charging `account`.
    pub fn new(account: MemoryAccount) -> Self {
        Self {
            inner: BlobStore::default(),
            account,
            parts: Mutex::default(),
            urls: Mutex::default(),
        }
    }

    /// Charges an entry. Past the hard cap the entry is kept uncharged: the isolate was
    /// killed when it passed its limit and is discarded when its JavaScript unwinds.
    fn charge(&self, bytes: usize) -> Option<Charge> {
        self.account.charge(bytes).ok()
    }
}

impl BlobStoreTrait for ChargedBlobStore {
    fn insert_part(&self, part: Arc<dyn BlobPart + Send + Sync>) -> Uuid {
        let id = self.inner.insert_part(part);
        if let Some(charge) = self.charge(PART_ENTRY_BYTES) {
            self.parts.lock().insert(id, charge);
        }
        id
    }

    fn get_part(&self, id: &Uuid) -> Option<Arc<dyn BlobPart + Send + Sync>> {
        self.inner.get_part(id)
    }

    fn remove_part(&self, id: &Uuid) -> Option<Arc<dyn BlobPart + Send + Sync>> {
        self.parts.lock().remove(id);
        self.inner.remove_part(id)
    }

    fn get_object_url(&self, url: Url) -> Option<Arc<Blob>> {
        self.inner.get_object_url(url)
    }

    fn insert_object_url(&self, blob: Blob, maybe_location: Option<Url>) -> Url {
        let bytes = URL_ENTRY_BYTES.saturating_add(blob.media_type.len());
        let url = self.inner.insert_object_url(blob, maybe_location);
        if let Some(charge) = self.charge(bytes.saturating_add(url.as_str().len())) {
            self.urls.lock().insert(url.clone(), charge);
        }
        url
    }

    fn remove_object_url(&self, url: &Url) {
        self.urls.lock().remove(url);
        self.inner.remove_object_url(url);
    }

    fn clear(&self) {
        self.parts.lock().clear();
        self.urls.lock().clear();
        self.inner.clear();
    }
}
