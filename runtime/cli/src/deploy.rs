//! `isola deploy`: reads the project file, collects the main module and every module it
//! imports by relative paths (as `isola dev` serves them), and uploads them to a node's admin
//! API as one version (`PUT /workers/NAME` with `modules` + `main_module`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use edge_config::{ModuleKind, Project, UploadRoute};
use http::Method;

use crate::client::AdminClient;

/// `isola deploy`'s arguments.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The project file: `name`, `main`, `routes` and the keys of a `[workers.NAME]` entry
    /// (`vars`, `limits`, `outbound`, `allow_eval`, `allow_wasm_compile`, `cache`).
    #[arg(long, short, default_value = edge_config::PROJECT_FILE)]
    pub config: PathBuf,
    /// Deploy under this name instead of the project's `name`.
    #[arg(long)]
    pub name: Option<String>,
    /// A var for the worker, over the project's `vars`; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::parse_var)]
    pub vars: Vec<(String, String)>,
    /// A route (`host/path`, e.g. `shop.example.com/api/*`), besides the project's `routes`;
    /// repeatable.
    #[arg(long = "route", value_name = "HOST/PATH", value_parser = edge_config::parse_route)]
    pub routes: Vec<UploadRoute>,
    /// The node's admin API.
    #[arg(long, env = "ISOLA_ADMIN_URL", default_value = "http://127.0.0.1:9000")]
    pub admin: String,
}

/// Uploads the project as a new version and prints what the node answered.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let project = edge_config::load_project(&args.config)?;
    let client = AdminClient::new(&args.admin)?;
    let name = args.name.clone().unwrap_or_else(|| project.name.clone());
    let body = upload_body(&project, &args)?;
    let answer = client
        .call(Method::PUT, &format!("/workers/{name}"), body.to_string())
        .await?;
    let version = answer.body["version"].as_str().unwrap_or("?");
    let verb = if answer.status == http::StatusCode::CREATED {
        "created"
    } else {
        "updated"
    };
    println!("{verb} worker {name}: version {version} is active");
    if let Some(routes) = answer.body["routes"].as_array() {
        for route in routes {
            let host = route["host"].as_str().unwrap_or("*");
            let path = route["path_prefix"].as_str().unwrap_or("/");
            println!("  route {host}{path}");
        }
    }
    Ok(())
}

/// The upload: the project's settings with `--var`s over its vars, its routes plus
/// `--route`s (none at all: the worker keeps the routes it has), and its modules.
fn upload_body(project: &Project, args: &DeployArgs) -> anyhow::Result<serde_json::Value> {
    let mut body = project.settings.clone();
    if !args.vars.is_empty() {
        let vars = body
            .entry("vars")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(vars) = vars.as_object_mut() {
            for (key, value) in &args.vars {
                vars.insert(key.clone(), value.clone().into());
            }
        }
    }
    let routes: Vec<serde_json::Value> = project
        .routes
        .iter()
        .chain(&args.routes)
        .map(|r| serde_json::json!({ "host": r.host, "path_prefix": r.path_prefix }))
        .collect();
    if !routes.is_empty() {
        body.insert("routes".into(), routes.into());
    }
    let (main, modules) = collect_modules(&project.main, &project.dir)?;
    body.insert("main_module".into(), main.into());
    body.insert("modules".into(), modules.into());
    Ok(serde_json::Value::Object(body))
}

/// The main module's name and every module of its graph as the upload carries them: named
/// by their path relative to the project's directory, text as `content`, WebAssembly as
/// `content_base64`, TypeScript as written (the node strips the types).
fn collect_modules(main: &Path, dir: &Path) -> anyhow::Result<(String, Vec<serde_json::Value>)> {
    let graph = isola_runtime::code::ModuleGraph::load(main, Some(dir))?;
    let root = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot read the project directory {}", dir.display()))?;
    let name_of = |path: &Path| -> anyhow::Result<String> {
        let relative = path.strip_prefix(&root).with_context(|| {
            format!(
                "{} is outside the project's directory {}",
                path.display(),
                root.display()
            )
        })?;
        Ok(relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"))
    };
    let main_path =
        std::fs::canonicalize(main).with_context(|| format!("cannot read {}", main.display()))?;
    let mut modules = BTreeMap::new();
    for path in graph.files() {
        let name = name_of(path)?;
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
        let module = if ModuleKind::from_name(&name) == Some(ModuleKind::Wasm) {
            serde_json::json!({
                "name": name,
                "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
            })
        } else {
            let Ok(text) = String::from_utf8(bytes) else {
                bail!("{name}: expected UTF-8 text");
            };
            serde_json::json!({ "name": name, "content": text })
        };
        modules.insert(name, module);
    }
    Ok((name_of(&main_path)?, modules.into_values().collect()))
}
