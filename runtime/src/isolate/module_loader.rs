//! Module loading for a worker: the worker is one bundled module, so imports are refused with
//! a message saying how to fix it; the bundle's source map feeds stack traces.

use std::borrow::Cow;
use std::sync::Arc;

use deno_core::{
    ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleResolveResponse,
    ModuleSpecifier, ResolutionKind,
};
use deno_error::JsErrorBox;

/// Resolves nothing but the worker's own module; serves its source map.
pub(crate) struct WorkerModuleLoader {
    main: ModuleSpecifier,
    source_map: Option<Arc<[u8]>>,
}

impl WorkerModuleLoader {
    pub(crate) fn new(main: ModuleSpecifier, source_map: Option<Arc<[u8]>>) -> Self {
        Self { main, source_map }
    }
}

impl ModuleLoader for WorkerModuleLoader {
    fn resolve(
        &self,
        specifier: &str,
        referrer: &str,
        _kind: ResolutionKind,
    ) -> ModuleResolveResponse {
        deno_core::resolve_import(specifier, referrer).map_err(JsErrorBox::from_err)
    }

    fn load(
        &self,
        specifier: &ModuleSpecifier,
        _referrer: Option<&ModuleLoadReferrer>,
        _options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        ModuleLoadResponse::Sync(Err(JsErrorBox::generic(format!(
            "cannot import {specifier}: a worker is a single module; bundle its imports (e.g. with esbuild --bundle --format=esm)"
        ))))
    }

    fn get_source_map(&self, file_name: &str) -> Option<Cow<'_, [u8]>> {
        if file_name == self.main.as_str() {
            self.source_map.as_deref().map(Cow::Borrowed)
        } else {
            None
        }
    }

    /// Sources named by the worker's map are shown in stack traces even though they are not
    /// on this machine: a deployed bundle never ships its sources, and the names still help.
    fn source_map_source_exists(&self, _source_url: &str) -> Option<bool> {
        Some(self.source_map.is_some())
    }

    fn load_external_source_map(&self, source_map_url: &str) -> Option<Cow<'_, [u8]>> {
        let main_map = format!("{}.map", self.main.as_str());
        if source_map_url == main_map {
            self.source_map.as_deref().map(Cow::Borrowed)
        } else {
            None
        }
    }
}
