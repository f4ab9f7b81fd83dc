//! Module loading for a worker: imports are served from the worker's own module graph only
//! (no file system, no network); JSON, text and WebAssembly modules are imported as Workers
//! import them; source maps (beside a bundle, or from stripping TypeScript) feed stack
//! traces.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Arc;

use deno_core::{
    ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleResolveResponse,
    ModuleSource, ModuleSourceCode, ModuleSpecifier, ModuleType, RequestedModuleType,
    ResolutionKind,
};
use deno_error::JsErrorBox;

use super::code_cache::CodeCache;
use crate::code::{Content, ModuleGraph};

/// The query that marks the compiled-module half of a WebAssembly import (see [`load`]).
const WASM_SOURCE: &str = "isola-wasm-source";

/// Resolves imports among the worker's modules; serves their source maps. Made with the
/// isolate (which may be created ahead as a spare) and told its worker once, when the worker
/// is loaded.
#[derive(Default)]
pub(crate) struct WorkerModuleLoader {
    graph: OnceCell<(Arc<ModuleGraph>, Arc<CodeCache>)>,
}

impl WorkerModuleLoader {
    /// The worker's modules and their code caches; the first call wins.
    pub(crate) fn set_worker(&self, graph: Arc<ModuleGraph>, code_cache: Arc<CodeCache>) {
        let _ = self.graph.set((graph, code_cache));
    }

    fn graph(&self) -> Option<&ModuleGraph> {
        self.graph.get().map(|(graph, _)| &**graph)
    }

    fn source_map(&self, url: &str) -> Option<&[u8]> {
        match &self.graph()?.get(url)?.content {
            Content::Code { source_map, .. } => source_map.as_deref(),
            _ => None,
        }
    }

    fn module(
        &self,
        specifier: &ModuleSpecifier,
        requested: &RequestedModuleType,
    ) -> Result<ModuleSource, JsErrorBox> {
        let not_found = || {
            JsErrorBox::generic(format!(
                "cannot import {specifier}: not one of the worker's modules (a worker imports only its own modules by relative paths; bundle packages with esbuild --bundle --format=esm)"
            ))
        };
        let (graph, code_cache) = self.graph.get().ok_or_else(not_found)?;
        if specifier.query() == Some(WASM_SOURCE) {
            let mut module = specifier.clone();
            module.set_query(None);
            return match graph.get(module.as_str()).map(|m| &m.content) {
                Some(Content::Wasm(bytes)) => Ok(ModuleSource::new(
                    ModuleType::Wasm,
                    ModuleSourceCode::Bytes(bytes.to_vec().into_boxed_slice().into()),
                    specifier,
                    None,
                )),
                _ => Err(not_found()),
            };
        }
        let module = graph.get(specifier.as_str()).ok_or_else(not_found)?;
        let text = |module_type, text: &Arc<str>| {
            ModuleSource::new(
                module_type,
                ModuleSourceCode::String(text.clone().into()),
                specifier,
                None,
            )
        };
        // Workers import JSON, text and WebAssembly without import attributes: a small
        // JavaScript module exports the value.
        let javascript = |code: String| {
            ModuleSource::new(
                ModuleType::JavaScript,
                ModuleSourceCode::String(code.into()),
                specifier,
                None,
            )
        };
        let literal = |text: &str| serde_json::to_string(text).unwrap_or_default();
        Ok(match (&module.content, requested) {
            (Content::Code { code, .. }, RequestedModuleType::None) => ModuleSource::new(
                ModuleType::JavaScript,
                ModuleSourceCode::String(code.clone().into()),
                specifier,
                code_cache.info(specifier.as_str(), code),
            ),
            (Content::Json(json), RequestedModuleType::Json) => text(ModuleType::Json, json),
            (Content::Json(json), RequestedModuleType::None) => {
                javascript(format!("export default JSON.parse({});", literal(json)))
            }
            (Content::Text(t), RequestedModuleType::Text) => text(ModuleType::Text, t),
            (Content::Text(t), RequestedModuleType::None) => {
                javascript(format!("export default {};", literal(t)))
            }
            (Content::Wasm(_), RequestedModuleType::None) => {
                let mut source = specifier.clone();
                source.set_query(Some(WASM_SOURCE));
                javascript(format!(
                    "import source module from {};\nexport default module;",
                    literal(source.as_str())
                ))
            }
            (_, requested) => {
                return Err(JsErrorBox::type_error(format!(
                    "cannot import {} as {}: it is a module of another kind",
                    graph.display(specifier),
                    requested.as_str().unwrap_or("JavaScript")
                )));
            }
        })
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
        options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        ModuleLoadResponse::Sync(self.module(specifier, &options.requested_module_type))
    }

    fn code_cache_ready(
        &self,
        _specifier: ModuleSpecifier,
        hash: u64,
        code_cache: &[u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        if let Some((_, cache)) = self.graph.get() {
            cache.store(hash, code_cache);
        }
        Box::pin(std::future::ready(()))
    }

    fn get_source_map(&self, file_name: &str) -> Option<Cow<'_, [u8]>> {
        self.source_map(file_name).map(Cow::Borrowed)
    }

    /// Sources named by a module's map are shown in stack traces even though they are not
    /// on this machine: a deployed bundle never ships its sources, and the names still help.
    fn source_map_source_exists(&self, _source_url: &str) -> Option<bool> {
        Some(true)
    }

    fn load_external_source_map(&self, source_map_url: &str) -> Option<Cow<'_, [u8]>> {
        let module = source_map_url.strip_suffix(".map")?;
        self.source_map(module).map(Cow::Borrowed)
    }
}
