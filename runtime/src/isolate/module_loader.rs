//! Module loading for a worker: the worker is one bundled module, so imports are refused with
//! a message saying how to fix it; the bundle's source map feeds stack traces.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Arc;

use deno_core::{
    ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleResolveResponse,
    ModuleSpecifier, ResolutionKind,
};
use deno_error::JsErrorBox;

/// Resolves nothing but the worker's own module; serves its source map. Made with the
/// isolate (which may be created ahead as a spare) and told its worker once, when the worker
/// is loaded.
#[derive(Default)]
pub(crate) struct WorkerModuleLoader {
    worker: OnceCell<(ModuleSpecifier, Option<Arc<[u8]>>)>,
}

impl WorkerModuleLoader {
    /// The worker's module and its source map; the first call wins.
    pub(crate) fn set_worker(&self, main: ModuleSpecifier, source_map: Option<Arc<[u8]>>) {
        let _ = self.worker.set((main, source_map));
    }

    fn source_map(&self) -> Option<&[u8]> {
        self.worker.get()?.1.as_deref()
    }

    fn is_main(&self, url: &str) -> bool {
        self.worker
            .get()
            .is_some_and(|(main, _)| main.as_str() == url)
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
        if self.is_main(file_name) {
            self.source_map().map(Cow::Borrowed)
        } else {
            None
        }
    }

    /// Sources named by the worker's map are shown in stack traces even though they are not
    /// on this machine: a deployed bundle never ships its sources, and the names still help.
    fn source_map_source_exists(&self, _source_url: &str) -> Option<bool> {
        Some(self.source_map().is_some())
    }

    fn load_external_source_map(&self, source_map_url: &str) -> Option<Cow<'_, [u8]>> {
        match source_map_url.strip_suffix(".map") {
            Some(main) if self.is_main(main) => self.source_map().map(Cow::Borrowed),
            _ => None,
        }
    }
}
