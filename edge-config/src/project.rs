//! A project file (`isola.toml`), as wrangler users keep a `wrangler.toml`: the worker's
//! name, main module and routes, plus the keys of a `[workers.NAME]` entry of a node config
//! (`vars`, `limits`, `outbound`, `allow_eval`, `allow_wasm_compile`, `cache`). `isola dev`
//! serves it and `isola deploy` uploads it; both read it through [`load_project`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ConfigError, Location};
use crate::model::{Limits, LimitsOverride, Outbound, Worker};
use crate::modules::ModuleKind;
use crate::upload::{UploadRoute, valid_worker_name};
use crate::validate::{check_route, check_worker_settings};

/// The project file's name `isola dev` and `isola deploy` look for by default.
pub const PROJECT_FILE: &str = "isola.toml";

/// A checked project file.
#[derive(Debug, Clone)]
pub struct Project {
    /// The file it was read from.
    pub file: PathBuf,
    /// Its directory: relative paths start here, and uploaded module names are relative to it.
    pub dir: PathBuf,
    /// The worker's name (`name`).
    pub name: String,
    /// The main module (`main`, or `file` as in a `[workers.NAME]` entry), made absolute.
    pub main: PathBuf,
    /// Where the worker is served once deployed (`routes`).
    pub routes: Vec<UploadRoute>,
    /// The worker as `isola dev` runs it: the settings over the built-in default limits.
    pub worker: Worker,
    /// The `[workers.NAME]` keys exactly as written (`vars`, `limits`, …), as JSON: what a
    /// deploy sends, so the node's own `[limits]` fill in what the file leaves out.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// The file as written; the settings are the keys of a `[workers.NAME]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: String,
    #[serde(alias = "file")]
    main: PathBuf,
    #[serde(default)]
    routes: Vec<toml::Value>,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    allow_eval: bool,
    #[serde(default)]
    allow_wasm_compile: bool,
    #[serde(default)]
    cache: bool,
    #[serde(default)]
    outbound: Outbound,
    #[serde(default)]
    limits: LimitsOverride,
}

/// The keys of the file that are not worker settings.
const PROJECT_KEYS: [&str; 3] = ["name", "main", "file"];

/// Reads and checks the project file at `path`.
pub fn load_project(path: &Path) -> Result<Project, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        at: Location::File,
        message: format!(
            "cannot read the project file: {e} (expected `name` and `main` of the worker, see `isola deploy --help`)"
        ),
    })?;
    parse_project(&text, path)
}

/// Parses and checks project `text`; `path` names the file in errors and its directory is
/// the base of relative paths.
pub fn parse_project(text: &str, path: &Path) -> Result<Project, ConfigError> {
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let (line, column) = error
            .span()
            .map_or((1, 1), |span| crate::load::line_column(text, span.start));
        ConfigError {
            file: path.to_owned(),
            at: Location::Position { line, column },
            message: error.message().trim().to_owned(),
        }
    })?;
    let raw: RawProject = serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
        .map_err(|error| {
            let key = error.path().to_string();
            let message = error.into_inner().message().trim().to_owned();
            ConfigError::key(path, if key == "." { String::new() } else { key }, message)
        })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if !valid_worker_name(&raw.name) {
        return Err(ConfigError::key(
            path,
            "name",
            format!(
                "expected 1-63 letters, digits, '-' or '_', got `{}`",
                raw.name
            ),
        ));
    }
    let main = dir.join(&raw.main);
    let main_name = raw.main.to_string_lossy();
    if !ModuleKind::from_name(&main_name).is_some_and(ModuleKind::is_code) {
        return Err(ConfigError::key(
            path,
            "main",
            format!("expected a .js, .mjs, .ts or .mts module, got `{main_name}`"),
        ));
    }
    if !main.is_file() {
        return Err(ConfigError::key(
            path,
            "main",
            format!(
                "expected the worker's main module, {} does not exist",
                main.display()
            ),
        ));
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, value) in raw.routes.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        let route = match value {
            toml::Value::String(text) => {
                parse_route(&text).map_err(|message| ConfigError::key(path, &key, message))?
            }
            table @ toml::Value::Table(_) => serde_path_to_error::deserialize(table).map_err(
                |error: serde_path_to_error::Error<toml::de::Error>| {
                    let at = error.path().to_string();
                    let key = if at == "." {
                        key.clone()
                    } else {
                        format!("{key}.{at}")
                    };
                    ConfigError::key(path, key, error.into_inner().message().trim().to_owned())
                },
            )?,
            other => {
                return Err(ConfigError::key(
                    path,
                    key,
                    format!(
                        "expected \"host/path\" or {{ host, path_prefix }}, got a {}",
                        other.type_str()
                    ),
                ));
            }
        };
        let route = UploadRoute {
            host: route.host.map(|h| h.to_ascii_lowercase()),
            path_prefix: route.path_prefix,
        };
        check_route(path, &key, route.host.as_deref(), &route.path_prefix)?;
        routes.push(route);
    }
    let worker = Worker {
        name: raw.name.clone(),
        file: main.clone(),
        root: Some(dir.clone()),
        vars: raw.vars,
        allow_eval: raw.allow_eval,
        allow_wasm_compile: raw.allow_wasm_compile,
        cache: raw.cache,
        outbound: raw.outbound,
        limits: raw.limits.over(&Limits::default()),
    };
    check_worker_settings(path, "", &worker)?;
    let settings = table
        .into_iter()
        .filter(|(key, _)| !PROJECT_KEYS.contains(&key.as_str()) && key != "routes")
        .map(|(key, value)| {
            let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
            (key, value)
        })
        .collect();
    Ok(Project {
        file: path.to_owned(),
        dir,
        name: raw.name,
        main,
        routes,
        worker,
        settings,
    })
}

/// A route written as wrangler does, `host/path` (`example.com/api/*`, `*.example.com/*`,
/// `/api` for any host): the host (none for an empty one or `*`) and the path prefix, a
/// trailing `*` dropped.
pub fn parse_route(text: &str) -> Result<UploadRoute, String> {
    let text = text.trim();
    let (host, path) = match text.find('/') {
        Some(at) => text.split_at(at),
        None => (text, "/"),
    };
    let mut path = path.trim_end_matches('*').to_owned();
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if path.is_empty() {
        path.push('/');
    }
    if path.contains('*') {
        return Err(format!(
            "expected `host/path` with `*` only at the end of the path, got `{text}`"
        ));
    }
    let host = match host {
        "" | "*" => None,
        host => Some(host.to_ascii_lowercase()),
    };
    if text.is_empty() {
        return Err("expected `host/path`, got an empty route".into());
    }
    Ok(UploadRoute {
        host,
        path_prefix: path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(test: &str) -> std::io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("isola-project-{test}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(dir.join("src/index.ts"), "export default {}")?;
        Ok(dir)
    }

    fn parse_in(test: &str, text: &str) -> Result<Project, Box<dyn std::error::Error>> {
        Ok(parse_project(text, &dir(test)?.join(PROJECT_FILE))?)
    }

    #[test]
    fn a_project_has_a_worker_routes_and_the_settings_as_written()
    -> Result<(), Box<dyn std::error::Error>> {
        let project = parse_in(
            "good",
            r#"
name = "shop"
main = "src/index.ts"
routes = ["Shop.example.com/api/*", { host = "*.shop.test" }, "/static"]
vars = { A = "1", N = 2 }
[limits]
cpu_ms = 20
"#,
        )?;
        assert_eq!(project.name, "shop");
        assert!(project.main.ends_with("src/index.ts"));
        assert_eq!(project.routes[0].host.as_deref(), Some("shop.example.com"));
        assert_eq!(project.routes[0].path_prefix, "/api");
        assert_eq!(project.routes[1].host.as_deref(), Some("*.shop.test"));
        assert_eq!(project.routes[1].path_prefix, "/");
        assert_eq!(project.routes[2].host, None);
        assert_eq!(project.routes[2].path_prefix, "/static");
        assert_eq!(project.worker.limits.cpu_ms, 20);
        assert_eq!(project.worker.limits.wall_ms, Limits::default().wall_ms);
        assert_eq!(project.worker.vars["N"], 2);
        assert_eq!(
            serde_json::Value::Object(project.settings),
            serde_json::json!({ "vars": { "A": "1", "N": 2 }, "limits": { "cpu_ms": 20 } })
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_expectation() -> Result<(), Box<dyn std::error::Error>>
    {
        let error = |text: &str| match parse_in("bad", text) {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.to_string(),
        };
        let main = "main = \"src/index.ts\"\n";
        let e = error(&format!(
            "name = \"a\"\n{main}[limits]\ncpu_ms = \"fast\"\n"
        ));
        assert!(
            e.contains("isola.toml") && e.contains("`limits.cpu_ms`") && e.contains("expected"),
            "{e}"
        );
        let e = error(&format!("name = \"a\"\n{main}compatibility_date = \"x\"\n"));
        assert!(e.contains("compatibility_date"), "{e}");
        let e = error(&format!("name = \"a b\"\n{main}"));
        assert!(e.contains("`name`"), "{e}");
        let e = error("name = \"a\"\nmain = \"src/missing.js\"\n");
        assert!(e.contains("`main`") && e.contains("does not exist"), "{e}");
        let e = error("name = \"a\"\nmain = \"src/index.json\"\n");
        assert!(e.contains("`main`") && e.contains(".ts"), "{e}");
        let e = error(&format!(
            "name = \"a\"\n{main}routes = [{{ host = \"a b\" }}]\n"
        ));
        assert!(e.contains("`routes[0].host`"), "{e}");
        let e = error(&format!(
            "name = \"a\"\n{main}routes = [{{ hots = \"x\" }}]\n"
        ));
        assert!(e.contains("routes[0]") && e.contains("hots"), "{e}");
        let e = error(&format!("name = \"a\"\n{main}vars = {{ \"a-b\" = 1 }}\n"));
        assert!(e.contains("`vars.a-b`"), "{e}");
        let e = error(&format!("name = \"a\"\n{main}[limits]\ncpu_ms = 0\n"));
        assert!(e.contains("`limits.cpu_ms`"), "{e}");
        let e = error("name = \"a\"\nmain = \n");
        assert!(e.contains("isola.toml:2:"), "{e}");
        let e = error(main);
        assert!(e.contains("name"), "{e}");
        Ok(())
    }

    #[test]
    fn wrangler_routes() -> Result<(), String> {
        let route = parse_route("example.com/*")?;
        assert_eq!(
            (route.host.as_deref(), route.path_prefix.as_str()),
            (Some("example.com"), "/")
        );
        let route = parse_route("*/api/")?;
        assert_eq!((route.host, route.path_prefix.as_str()), (None, "/api"));
        let route = parse_route("example.com")?;
        assert_eq!(route.path_prefix, "/");
        assert!(parse_route("example.com/a*b").is_err());
        assert!(parse_route("").is_err());
        Ok(())
    }
}
