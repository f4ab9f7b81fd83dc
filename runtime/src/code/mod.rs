//! A worker's code as a module graph: the main module and every module it imports by a
//! relative path, read from the worker's directory (never outside it), TypeScript stripped to
//! JavaScript with source maps, JSON checked. The isolate's module loader serves imports from
//! this graph only: no file system, no network.

mod error;
pub mod files;
mod typescript;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deno_core::ModuleSpecifier;
use edge_config::{MAX_MODULES, ModuleKind};

pub use error::{CodeError, SourceError};

/// What one module of the graph holds.
#[derive(Debug)]
pub enum Content {
    /// JavaScript (TypeScript already stripped), with its source map when it has one.
    Code {
        /// The JavaScript.
        code: Arc<str>,
        /// Its source map (JSON).
        source_map: Option<Arc<[u8]>>,
    },
    /// JSON text (checked to parse).
    Json(Arc<str>),
    /// Text.
    Text(Arc<str>),
    /// WebAssembly bytes.
    Wasm(Arc<[u8]>),
}

/// One module of the graph.
#[derive(Debug)]
pub struct Module {
    /// Its file on disk.
    pub path: PathBuf,
    /// What it holds.
    pub content: Content,
}

/// A worker's modules by URL (`file:///…`), the main one first to be evaluated.
#[derive(Debug)]
pub struct ModuleGraph {
    root: ModuleSpecifier,
    main: ModuleSpecifier,
    modules: BTreeMap<ModuleSpecifier, Module>,
}

impl ModuleGraph {
    /// Reads `entry` and, following static imports, every module it reaches by relative paths
    /// inside `root` (default: `entry`'s directory); TypeScript is stripped, JSON checked.
    /// Errors name modules relative to `root`.
    pub fn load(entry: &Path, root: Option<&Path>) -> Result<Self, CodeError> {
        let read_error = |path: &Path, source| CodeError::Read {
            file: path.display().to_string(),
            path: path.to_owned(),
            source,
        };
        // Canonical, so URLs have no `..` and stack traces show real paths.
        let entry = std::fs::canonicalize(entry).map_err(|e| read_error(entry, e))?;
        let dir = match root {
            Some(root) => std::fs::canonicalize(root).map_err(|e| read_error(root, e))?,
            None => entry.parent().unwrap_or(Path::new("/")).to_owned(),
        };
        let dir = dir.as_path();
        let root = ModuleSpecifier::from_directory_path(dir)
            .map_err(|()| CodeError::UnknownKind(dir.display().to_string()))?;
        let main = ModuleSpecifier::from_file_path(&entry)
            .map_err(|()| CodeError::UnknownKind(entry.display().to_string()))?;
        let mut graph = Self {
            root,
            main: main.clone(),
            modules: BTreeMap::new(),
        };
        let mut queued = BTreeSet::from([main.clone()]);
        let mut queue = VecDeque::from([main]);
        while let Some(url) = queue.pop_front() {
            let imports = graph.read(&url)?;
            for import in imports {
                let target = graph.resolve(&url, &import)?;
                if queued.insert(target.clone()) {
                    if queued.len() > MAX_MODULES {
                        return Err(CodeError::TooMany(MAX_MODULES));
                    }
                    queue.push_back(target);
                }
            }
        }
        Ok(graph)
    }

    /// The main module's URL.
    pub fn main(&self) -> &ModuleSpecifier {
        &self.main
    }

    /// The module at `url`, if it is part of the graph.
    pub fn get(&self, url: &str) -> Option<&Module> {
        let url = ModuleSpecifier::parse(url).ok()?;
        self.modules.get(&url)
    }

    /// The files of every module (and the `.map` files beside JavaScript ones): what
    /// `isola dev` watches.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.modules.values().map(|m| m.path.as_path())
    }

    /// The URL of the worker's directory (`file:///…/`), which errors shown to uploaders
    /// leave out.
    pub fn root(&self) -> &ModuleSpecifier {
        &self.root
    }

    /// `url` as the user names it: relative to the worker's directory.
    pub fn display(&self, url: &ModuleSpecifier) -> String {
        url.as_str()
            .strip_prefix(self.root.as_str())
            .map_or_else(|| url.to_string(), str::to_owned)
    }

    /// Reads the module at `url` into the graph; returns its static imports.
    fn read(&mut self, url: &ModuleSpecifier) -> Result<Vec<typescript::Import>, CodeError> {
        let file = self.display(url);
        let path = url
            .to_file_path()
            .map_err(|()| CodeError::UnknownKind(file.clone()))?;
        let kind = if *url == self.main {
            ModuleKind::from_name(&file)
                .filter(|k| *k == ModuleKind::TypeScript)
                .unwrap_or(ModuleKind::Esm)
        } else {
            ModuleKind::from_name(&file).ok_or_else(|| CodeError::UnknownKind(file.clone()))?
        };
        let read_error = |source| CodeError::Read {
            file: file.clone(),
            path: path.clone(),
            source,
        };
        let bytes = std::fs::read(&path).map_err(read_error)?;
        let (content, imports) = if kind == ModuleKind::Wasm {
            (Content::Wasm(bytes.into()), Vec::new())
        } else {
            let text = String::from_utf8(bytes).map_err(|e| {
                CodeError::Syntax(Box::new(SourceError {
                    file: file.clone(),
                    line: 1,
                    column: 1,
                    source_line: None,
                    message: format!("expected UTF-8 text: {e}"),
                }))
            })?;
            let text: Arc<str> = text.into();
            match kind {
                ModuleKind::TypeScript => {
                    let out = typescript::transpile(url, &file, text)
                        .map_err(|e| CodeError::Syntax(Box::new(e)))?;
                    let content = Content::Code {
                        code: out.code.into(),
                        source_map: out.source_map.map(Arc::from),
                    };
                    (content, out.imports)
                }
                ModuleKind::Esm => {
                    let imports = typescript::js_imports(url, text.clone());
                    let content = Content::Code {
                        code: text,
                        source_map: read_source_map(&path),
                    };
                    (content, imports)
                }
                ModuleKind::Json => {
                    check_json(&file, &text)?;
                    (Content::Json(text), Vec::new())
                }
                ModuleKind::Text | ModuleKind::Wasm => (Content::Text(text), Vec::new()),
            }
        };
        self.modules.insert(url.clone(), Module { path, content });
        Ok(imports)
    }

    /// The module `import` of the module at `from` names: a relative path inside the
    /// worker's directory.
    fn resolve(
        &self,
        from: &ModuleSpecifier,
        import: &typescript::Import,
    ) -> Result<ModuleSpecifier, CodeError> {
        let refuse = |why: &str| {
            CodeError::Import(Box::new(SourceError {
                file: self.display(from),
                line: import.line,
                column: import.column,
                source_line: Some(import.source_line.clone()),
                message: format!("cannot import `{}`: {why}", import.specifier),
            }))
        };
        let specifier = import.specifier.as_str();
        if !(specifier.starts_with("./") || specifier.starts_with("../")) {
            return Err(refuse(
                "a worker imports only its own modules by relative paths (`./x.js`); bundle packages and remote modules with esbuild",
            ));
        }
        let target = from
            .join(specifier)
            .map_err(|e| refuse(&format!("not a valid path: {e}")))?;
        if !target.as_str().starts_with(self.root.as_str()) {
            return Err(refuse("it is outside the worker's directory"));
        }
        if target.query().is_some() || target.fragment().is_some() {
            return Err(refuse("queries and fragments are not supported"));
        }
        if !target.to_file_path().is_ok_and(|path| path.is_file()) {
            return Err(refuse("there is no such module"));
        }
        Ok(target)
    }
}

/// The JSON answer refusing a deploy: `{"error"}`, plus `file`, `line`, `column` and
/// `source_line` when the problem is at a place in the source.
pub fn refusal(message: &str, at: Option<&SourceError>) -> serde_json::Value {
    let mut answer = serde_json::json!({ "error": message });
    if let (Some(at), Some(object)) = (at, answer.as_object_mut()) {
        object.insert("file".into(), at.file.clone().into());
        object.insert("line".into(), at.line.into());
        object.insert("column".into(), at.column.into());
        if let Some(line) = &at.source_line {
            object.insert("source_line".into(), line.clone().into());
        }
    }
    answer
}

fn check_json(file: &str, text: &str) -> Result<(), CodeError> {
    let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text) else {
        return Ok(());
    };
    let line = error.line();
    Err(CodeError::Syntax(Box::new(SourceError {
        file: file.to_owned(),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(error.column()).unwrap_or(u32::MAX),
        source_line: text.lines().nth(line.saturating_sub(1)).map(str::to_owned),
        message: format!("invalid JSON: {error}"),
    })))
}

/// The source map (`<file>.map`) beside a JavaScript module, if there is one.
fn read_source_map(path: &Path) -> Option<Arc<[u8]>> {
    let mut map_path = path.as_os_str().to_owned();
    map_path.push(".map");
    std::fs::read(PathBuf::from(map_path)).ok().map(Arc::from)
}
