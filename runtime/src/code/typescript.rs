//! Parsing with deno_ast (swc): the static imports of a module, and TypeScript's types
//! stripped as Deno does, with a source map back to the TypeScript lines.

use std::sync::Arc;

use deno_ast::swc::ast::{ModuleDecl, ModuleItem};
use deno_ast::{
    EmitOptions, MediaType, ModuleSpecifier, ParseDiagnostic, ParseParams, ParsedSource,
    ProgramRef, SourceMapOption, SourceRangedForSpanned, TranspileModuleOptions, TranspileOptions,
};

use super::error::SourceError;

/// JavaScript made from a TypeScript module, with its source map.
pub(crate) struct Transpiled {
    /// The JavaScript.
    pub(crate) code: String,
    /// The source map (JSON) from the JavaScript back to the TypeScript.
    pub(crate) source_map: Option<Vec<u8>>,
    /// The module's static imports (`import … from`, `export … from`).
    pub(crate) imports: Vec<Import>,
}

/// A static import: the specifier as written and where it is.
pub(crate) struct Import {
    pub(crate) specifier: String,
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) source_line: String,
}

/// Strips `text`'s types (`file` names it in errors).
pub(crate) fn transpile(
    specifier: &ModuleSpecifier,
    file: &str,
    text: Arc<str>,
) -> Result<Transpiled, SourceError> {
    let parsed = deno_ast::parse_module(params(specifier, text.clone(), MediaType::TypeScript))
        .map_err(|e| syntax(file, &text, &e))?;
    let imports = imports(&parsed);
    let emitted = parsed
        .transpile(
            &TranspileOptions {
                imports_not_used_as_values: deno_ast::ImportsNotUsedAsValues::Remove,
                ..TranspileOptions::default()
            },
            &TranspileModuleOptions::default(),
            &EmitOptions {
                source_map: SourceMapOption::Separate,
                inline_sources: true,
                ..EmitOptions::default()
            },
        )
        .map_err(|e| SourceError {
            file: file.to_owned(),
            line: 1,
            column: 1,
            source_line: None,
            message: format!("cannot strip the types: {e}"),
        })?
        .into_source();
    Ok(Transpiled {
        code: emitted.text,
        source_map: emitted.source_map.map(String::into_bytes),
        imports,
    })
}

/// The static imports of a JavaScript module. A module swc cannot parse yields none: V8,
/// which runs it, reports its syntax errors.
pub(crate) fn js_imports(specifier: &ModuleSpecifier, text: Arc<str>) -> Vec<Import> {
    // Most bundles import nothing; skip parsing them.
    if !text.contains("import") && !text.contains("export") {
        return Vec::new();
    }
    deno_ast::parse_program(params(specifier, text, MediaType::JavaScript))
        .map(|parsed| imports(&parsed))
        .unwrap_or_default()
}

fn params(specifier: &ModuleSpecifier, text: Arc<str>, media_type: MediaType) -> ParseParams {
    ParseParams {
        specifier: specifier.clone(),
        text,
        media_type,
        capture_tokens: false,
        scope_analysis: false,
        maybe_syntax: None,
    }
}

fn imports(parsed: &ParsedSource) -> Vec<Import> {
    let ProgramRef::Module(module) = parsed.program_ref() else {
        return Vec::new();
    };
    let info = parsed.text_info_lazy();
    module
        .body
        .iter()
        .filter_map(|item| {
            let ModuleItem::ModuleDecl(decl) = item else {
                return None;
            };
            let src = match decl {
                ModuleDecl::Import(import) if !import.type_only => &import.src,
                ModuleDecl::ExportAll(export) if !export.type_only => &export.src,
                ModuleDecl::ExportNamed(export) if !export.type_only => export.src.as_ref()?,
                _ => return None,
            };
            let position = info.line_and_column_display(src.start());
            let line_index = position.line_number.saturating_sub(1);
            Some(Import {
                specifier: src.value.to_string_lossy().into_owned(),
                line: u32::try_from(position.line_number).unwrap_or(u32::MAX),
                column: u32::try_from(position.column_number).unwrap_or(u32::MAX),
                source_line: info.line_text(line_index).to_owned(),
            })
        })
        .collect()
}

fn syntax(file: &str, text: &str, diagnostic: &ParseDiagnostic) -> SourceError {
    use deno_ast::diagnostics::Diagnostic as _;
    let position = diagnostic.display_position();
    let source_line = text
        .lines()
        .nth(position.line_number.saturating_sub(1))
        .map(str::to_owned);
    SourceError {
        file: file.to_owned(),
        line: u32::try_from(position.line_number).unwrap_or(u32::MAX),
        column: u32::try_from(position.column_number).unwrap_or(u32::MAX),
        source_line,
        message: format!("SyntaxError: {}", diagnostic.message()),
    }
}
