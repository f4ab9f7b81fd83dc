//! The modules of an upload (`"modules"` + `"main_module"`, as Cloudflare's multi-module
//! upload): names checked to stay inside the upload, kinds from the name or `"type"`, contents
//! as text or base64.

use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::ConfigError;

/// Most modules one upload may carry.
pub const MAX_MODULES: usize = 100;

/// Longest module name, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// What a module is, and so what importing it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// JavaScript, an ES module (`.js`, `.mjs`).
    Esm,
    /// TypeScript (`.ts`, `.mts`): types are stripped at deploy.
    TypeScript,
    /// JSON (`.json`): the default export is the parsed value.
    Json,
    /// Text (`.txt`, `.html`, `.md`, `.css`, `.svg`, …): the default export is the string.
    Text,
    /// WebAssembly (`.wasm`): the default export is a compiled `WebAssembly.Module`.
    Wasm,
}

impl ModuleKind {
    /// The kind a module named `name` has when the upload does not say.
    pub fn from_name(name: &str) -> Option<Self> {
        let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        Some(match extension.as_str() {
            "js" | "mjs" => Self::Esm,
            "ts" | "mts" => Self::TypeScript,
            "json" => Self::Json,
            "txt" | "html" | "htm" | "md" | "css" | "svg" | "xml" | "csv" => Self::Text,
            "wasm" => Self::Wasm,
            _ => return None,
        })
    }

    /// Whether the module is code (may be the main module and import others).
    pub fn is_code(self) -> bool {
        matches!(self, Self::Esm | Self::TypeScript)
    }
}

/// One module as uploaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadModule {
    /// Its path inside the upload, e.g. `src/index.ts`: what relative imports name.
    pub name: String,
    /// Its kind; default: from the name's extension.
    #[serde(default, rename = "type")]
    pub kind: Option<ModuleKind>,
    /// Its content as text.
    #[serde(default)]
    pub content: Option<String>,
    /// Its content as base64 (for WebAssembly).
    #[serde(default)]
    pub content_base64: Option<String>,
}

/// One checked module: where it goes and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceModule {
    /// Its relative path (`/`-separated, no `.`/`..` segments).
    pub path: String,
    /// What it is.
    pub kind: ModuleKind,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// The checked modules of an upload; `main` is the path of the module that is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSet {
    /// The main module's path.
    pub main: String,
    /// Every module, the main one included.
    pub modules: Vec<SourceModule>,
}

impl ModuleSet {
    /// A worker of one JavaScript module named `main`.
    pub fn single(main: String, code: String) -> Self {
        Self {
            modules: vec![SourceModule {
                path: main.clone(),
                kind: ModuleKind::Esm,
                content: code.into_bytes(),
            }],
            main,
        }
    }

    /// Checks uploaded `modules` with `main` as the main module; errors name the key.
    pub fn check(
        origin: &Path,
        main: &str,
        modules: Vec<UploadModule>,
    ) -> Result<Self, ConfigError> {
        if modules.len() > MAX_MODULES {
            return Err(ConfigError::key(
                origin,
                "modules",
                format!(
                    "expected at most {MAX_MODULES} modules, got {}",
                    modules.len()
                ),
            ));
        }
        let mut checked: Vec<SourceModule> = Vec::with_capacity(modules.len());
        for (i, module) in modules.into_iter().enumerate() {
            let key = format!("modules[{i}]");
            check_module_path(origin, &format!("{key}.name"), &module.name)?;
            if checked.iter().any(|m| m.path == module.name) {
                return Err(ConfigError::key(
                    origin,
                    format!("{key}.name"),
                    format!("`{}` is uploaded twice", module.name),
                ));
            }
            let kind = module
                .kind
                .or_else(|| ModuleKind::from_name(&module.name))
                .ok_or_else(|| {
                    ConfigError::key(
                        origin,
                        format!("{key}.type"),
                        format!(
                            "cannot tell the kind of `{}` from its extension: expected \"type\": one of esm, typescript, json, text, wasm",
                            module.name
                        ),
                    )
                })?;
            let content = match (module.content, module.content_base64) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|e| {
                        ConfigError::key(
                            origin,
                            format!("{key}.content_base64"),
                            format!("expected base64: {e}"),
                        )
                    })?,
                _ => {
                    return Err(ConfigError::key(
                        origin,
                        key,
                        "expected exactly one of \"content\" (text) and \"content_base64\"",
                    ));
                }
            };
            if kind != ModuleKind::Wasm && std::str::from_utf8(&content).is_err() {
                return Err(ConfigError::key(
                    origin,
                    key,
                    "expected UTF-8 text for a module that is not WebAssembly",
                ));
            }
            checked.push(SourceModule {
                path: module.name,
                kind,
                content,
            });
        }
        match checked.iter().find(|m| m.path == main) {
            Some(module) if module.kind.is_code() => {}
            Some(_) => {
                return Err(ConfigError::key(
                    origin,
                    "main_module",
                    format!("`{main}` is not JavaScript or TypeScript"),
                ));
            }
            None => {
                return Err(ConfigError::key(
                    origin,
                    "main_module",
                    format!("expected the name of one of the uploaded modules, got `{main}`"),
                ));
            }
        }
        Ok(Self {
            main: main.to_owned(),
            modules: checked,
        })
    }
}

/// Checks that `path` names a file inside the upload: relative, `/`-separated, no empty, `.`
/// or `..` segments, at most 256 bytes of letters, digits and `-_.~@+`.
pub fn check_module_path(origin: &Path, key: &str, path: &str) -> Result<(), ConfigError> {
    let refuse = |why: &str| {
        Err(ConfigError::key(
            origin,
            key,
            format!("expected a relative module path inside the upload, got `{path}`: {why}"),
        ))
    };
    if path.is_empty() || path.len() > MAX_NAME_BYTES {
        return refuse("expected 1-256 bytes");
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return refuse("absolute paths are refused");
    }
    if path.split('/').any(|segment| segment == "..") {
        return refuse("`..` is refused");
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == ".")
    {
        return refuse("empty and `.` segments are refused");
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~@+/".contains(&b))
    {
        return refuse("expected letters, digits, `/` and `-_.~@+`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, content: &str) -> UploadModule {
        UploadModule {
            name: name.to_owned(),
            kind: None,
            content: Some(content.to_owned()),
            content_base64: None,
        }
    }

    fn refusal(main: &str, modules: Vec<UploadModule>) -> String {
        match ModuleSet::check(Path::new("PUT /workers/a"), main, modules) {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn paths_stay_inside_the_upload() {
        for bad in [
            "../x.js",
            "a/../../x.js",
            "/etc/passwd",
            "a//b.js",
            "./a.js",
            "a\\b.js",
            "",
        ] {
            let error = refusal(bad, vec![module(bad, "")]);
            assert!(error.contains("modules[0].name"), "{bad}: {error}");
        }
        assert_eq!(
            refusal("src/index.js", vec![module("src/index.js", "")]),
            "accepted"
        );
    }

    #[test]
    fn modules_are_counted_typed_and_the_main_one_is_code() {
        let many = (0..=MAX_MODULES)
            .map(|i| module(&format!("m{i}.js"), ""))
            .collect();
        assert!(refusal("m0.js", many).contains("at most 100"));
        assert!(refusal("a.json", vec![module("a.json", "{}")]).contains("main_module"));
        assert!(refusal("b.js", vec![module("a.js", "")]).contains("main_module"));
        assert!(refusal("a.js", vec![module("a.js", ""), module("x.bin", "")]).contains("type"));
        assert!(refusal("a.js", vec![module("a.js", ""), module("a.js", "")]).contains("twice"));
        let wasm = UploadModule {
            name: "add.wasm".to_owned(),
            kind: None,
            content: None,
            content_base64: Some("AGFzbQEAAAA=".to_owned()),
        };
        let set = ModuleSet::check(
            Path::new("x"),
            "a.ts",
            vec![module("a.ts", ""), module("t.txt", "hi"), wasm],
        );
        let set = set.map_err(|e| e.to_string());
        assert_eq!(
            set.map(|s| s.modules.iter().map(|m| m.kind).collect::<Vec<_>>()),
            Ok(vec![
                ModuleKind::TypeScript,
                ModuleKind::Text,
                ModuleKind::Wasm
            ])
        );
    }
}
