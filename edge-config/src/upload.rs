//! A worker deployed through the admin API (`PUT /workers/NAME`): the JSON body, validated
//! like a `[workers.NAME]` entry of a config file, with its routes and its code: one module
//! (`code`) or a module graph (`modules` + `main_module`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::model::{Limits, LimitsOverride, Outbound, Route, Worker};
use crate::modules::{ModuleSet, UploadModule};
use crate::validate::{check_route, check_worker_settings};

/// The body of a deploy request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The worker's JavaScript in one module: an ES module (`export default { fetch }`) or a
    /// service-worker script, bundled into one file. Either this or `modules`.
    #[serde(default)]
    pub code: Option<String>,
    /// The worker's modules (JavaScript, TypeScript, JSON, text, WebAssembly), which import
    /// each other by relative paths. Either this (with `main_module`) or `code`.
    #[serde(default)]
    pub modules: Option<Vec<UploadModule>>,
    /// The name of the module in `modules` that is run.
    #[serde(default)]
    pub main_module: Option<String>,
    /// Vars: `env` of module workers, globals of service workers.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Allow `eval`/`new Function`. Default false.
    #[serde(default)]
    pub allow_eval: bool,
    /// Allow compiling WebAssembly from bytes at run time. Default false.
    #[serde(default)]
    pub allow_wasm_compile: bool,
    /// Put the shared response cache in front of the worker. Default false.
    #[serde(default)]
    pub cache: bool,
    /// Outbound fetch policy.
    #[serde(default)]
    pub outbound: Outbound,
    /// Limits over the node's `[limits]`.
    #[serde(default)]
    limits: LimitsOverride,
    /// Where it is served; absent: the routes it already has (none for a new worker).
    #[serde(default)]
    pub routes: Option<Vec<UploadRoute>>,
}

/// A route of an uploaded worker: a `[[routes]]` entry without `worker`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRoute {
    /// Exact host, `*.example.com`, or absent/`*` for any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix on segment boundaries. Default `/`.
    #[serde(default = "root")]
    pub path_prefix: String,
}

fn root() -> String {
    "/".to_owned()
}

/// Whether `name` can name a deployed worker: 1–63 of `a-z`, `A-Z`, `0-9`, `-`, `_`.
pub fn valid_worker_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Upload {
    /// Parses a deploy request's JSON body; errors name the key, as config errors do.
    pub fn parse(json: &[u8], origin: &Path) -> Result<Self, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let key = error.path().to_string();
            let message = error.into_inner().to_string();
            ConfigError::key(
                origin,
                if key == "." { String::new() } else { key },
                message,
            )
        })
    }

    /// The worker (its modules to be written under `dir`, its `file` the main module there)
    /// and its routes if the upload sets them, validated; `defaults` are the node's limits.
    /// `origin` names the request in errors. A single `code` becomes the module `NAME.js`.
    pub fn into_worker(
        self,
        name: &str,
        dir: &Path,
        defaults: &Limits,
        origin: &Path,
    ) -> Result<(Worker, Option<Vec<Route>>, ModuleSet), ConfigError> {
        if !valid_worker_name(name) {
            return Err(ConfigError::key(
                origin,
                "name",
                format!("expected 1-63 letters, digits, '-' or '_', got `{name}`"),
            ));
        }
        let modules = match (self.code, self.modules, self.main_module) {
            (Some(code), None, None) => ModuleSet::single(format!("{name}.js"), code),
            (None, Some(modules), Some(main)) => ModuleSet::check(origin, &main, modules)?,
            (None, Some(_), None) => {
                return Err(ConfigError::key(
                    origin,
                    "main_module",
                    "expected the name of the module to run",
                ));
            }
            _ => {
                return Err(ConfigError::key(
                    origin,
                    "code",
                    "expected either \"code\" or \"modules\" with \"main_module\"",
                ));
            }
        };
        let worker = Worker {
            name: name.to_owned(),
            file: dir.join(&modules.main),
            root: None,
            vars: self.vars,
            allow_eval: self.allow_eval,
            allow_wasm_compile: self.allow_wasm_compile,
            cache: self.cache,
            outbound: self.outbound,
            limits: self.limits.over(defaults),
        };
        check_worker_settings(origin, "", &worker)?;
        let Some(uploaded) = self.routes else {
            return Ok((worker, None, modules));
        };
        let mut routes = Vec::with_capacity(uploaded.len());
        for (i, route) in uploaded.into_iter().enumerate() {
            let host = route.host.map(|h| h.to_ascii_lowercase());
            check_route(
                origin,
                &format!("routes[{i}]"),
                host.as_deref(),
                &route.path_prefix,
            )?;
            routes.push(Route {
                host,
                path_prefix: route.path_prefix,
                worker: name.to_owned(),
            });
        }
        Ok((worker, Some(routes), modules))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn origin() -> PathBuf {
        PathBuf::from("PUT /workers/api")
    }

    #[test]
    fn an_upload_becomes_a_worker_with_routes() -> Result<(), Box<dyn std::error::Error>> {
        let upload = Upload::parse(
            br#"{"code":"export default {}","vars":{"A":"x"},"limits":{"cpu_ms":10},
                "routes":[{"host":"API.example.com","path_prefix":"/v1"},{}]}"#,
            &origin(),
        )?;
        let (worker, routes, code) =
            upload.into_worker("api", Path::new("/d/api.1"), &Limits::default(), &origin())?;
        assert_eq!(code.main, "api.js");
        assert_eq!(code.modules[0].content, b"export default {}");
        assert_eq!(worker.file, Path::new("/d/api.1/api.js"));
        assert_eq!(worker.limits.cpu_ms, 10);
        assert_eq!(worker.limits.memory_mb, Limits::default().memory_mb);
        let routes = routes.ok_or("routes were given")?;
        assert_eq!(routes[0].host.as_deref(), Some("api.example.com"));
        assert_eq!(routes[1].path_prefix, "/");
        assert_eq!(routes[1].worker, "api");
        Ok(())
    }

    #[test]
    fn bad_uploads_name_the_key() -> Result<(), Box<dyn std::error::Error>> {
        let error = |json: &[u8], name: &str| -> String {
            match Upload::parse(json, &origin()).and_then(|u| {
                u.into_worker(name, Path::new("/d/x.1"), &Limits::default(), &origin())
            }) {
                Ok(_) => "accepted".to_owned(),
                Err(e) => e.to_string(),
            }
        };
        assert!(error(br#"{"code":"","limits":{"cpu_ms":"x"}}"#, "a").contains("limits.cpu_ms"));
        assert!(error(br#"{"code":"","limits":{"cpu_ms":0}}"#, "a").contains("cpu_ms"));
        assert!(error(br#"{"code":"","surprise":1}"#, "a").contains("surprise"));
        assert!(
            error(br#"{"code":"","routes":[{"path_prefix":"v1"}]}"#, "a")
                .contains("routes[0].path_prefix")
        );
        assert!(error(br#"{"code":"","vars":{"a-b":1}}"#, "a").contains("vars.a-b"));
        assert!(error(br#"{"code":""}"#, "../etc").contains("name"));
        assert!(error(br#"{"code":""}"#, "ok_name-1") == "accepted");
        assert!(error(br#"{}"#, "a").contains("code"));
        assert!(
            error(br#"{"modules":[{"name":"a.js","content":""}]}"#, "a").contains("main_module")
        );
        assert!(
            error(
                br#"{"code":"","modules":[{"name":"a.js","content":""}],"main_module":"a.js"}"#,
                "a"
            )
            .contains("code")
        );
        assert!(
            error(
                br#"{"modules":[{"name":"../a.js","content":""}],"main_module":"../a.js"}"#,
                "a"
            )
            .contains("`..`")
        );
        Ok(())
    }
}
