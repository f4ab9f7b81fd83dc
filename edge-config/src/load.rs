//! Reading a config file: TOML → model, defaults resolved, paths made absolute, validated.

use std::path::{Path, PathBuf};

use crate::error::{ConfigError, Location};
use crate::model::{Config, RawConfig, Worker};

/// Reads, parses and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        at: Location::File,
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and validates config `text`; `path` names the file in errors and is the base of
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.message().trim().to_owned();
        if key.is_empty() || key == "." {
            let (line, column) = inner
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError {
                file: path.to_owned(),
                at: Location::Position { line, column },
                message,
            }
        } else {
            ConfigError::key(path, key, message)
        }
    })?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let config = resolve(raw, &base);
    config.validate_in(path)?;
    Ok(config)
}

fn resolve(raw: RawConfig, base: &Path) -> Config {
    let defaults = raw.limits.over(&Default::default());
    let mut listeners = raw.listeners;
    for listener in &mut listeners {
        if let Some(tls) = &mut listener.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
            for sni in &mut tls.sni {
                sni.cert = base.join(&sni.cert);
                sni.key = base.join(&sni.key);
            }
        }
    }
    let mut admin = raw.admin;
    admin.deploy_dir = admin.deploy_dir.map(|dir| base.join(dir));
    let mut node = raw.node;
    node.data_dir = node.data_dir.map(|dir| base.join(dir));
    node.domain = node.domain.trim_end_matches('.').to_ascii_lowercase();
    let mut routes = raw.routes;
    for route in &mut routes {
        route.host = route.host.take().map(|h| h.to_ascii_lowercase());
    }
    let workers = raw
        .workers
        .into_iter()
        .map(|(name, worker)| {
            let resolved = Worker {
                name: name.clone(),
                file: base.join(&worker.file),
                root: None,
                vars: worker.vars,
                allow_eval: worker.allow_eval,
                allow_wasm_compile: worker.allow_wasm_compile,
                cache: worker.cache,
                outbound: worker.outbound,
                limits: worker.limits.over(&defaults),
            };
            (name, resolved)
        })
        .collect();
    Config {
        node,
        http: raw.http,
        cache: raw.cache,
        admin,
        limits: defaults,
        listeners,
        routes,
        workers,
    }
}

pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("edge-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("api.js"), "export default {}")?;
        Ok(dir)
    }

    fn parse_in(text: &str) -> Result<Config, Box<dyn std::error::Error>> {
        Ok(parse(text, &dir()?.join("edge.toml"))?)
    }

    const MINIMAL: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[[routes]]\nworker = \"api\"\n[workers.api]\nfile = \"api.js\"\n";

    #[test]
    fn data_dir_is_relative_to_the_file_and_the_domain_is_checked()
    -> Result<(), Box<dyn std::error::Error>> {
        let config = parse_in(&format!(
            "[node]\ndata_dir = \"state\"\ndomain = \"Edge.Test\"\n{MINIMAL}"
        ))?;
        assert_eq!(config.node.data_dir, Some(dir()?.join("state")));
        assert_eq!(config.node.domain, "edge.test");
        assert_eq!(parse_in(MINIMAL)?.node.domain, "localhost");
        assert_eq!(parse_in(MINIMAL)?.node.data_dir, None);
        let error = parse_in(&format!("[node]\ndomain = \"a b\"\n{MINIMAL}"))
            .err()
            .ok_or("a bad domain is refused")?;
        assert!(error.to_string().contains("node.domain"), "{error}");
        Ok(())
    }

    #[test]
    fn defaults_and_precedence() -> Result<(), Box<dyn std::error::Error>> {
        let config = parse_in(&format!(
            "[limits]\ncpu_ms = 20\nwall_ms = 900\n{MINIMAL}[workers.api.limits]\ncpu_ms = 10\n"
        ))?;
        let limits = &config.workers["api"].limits;
        assert_eq!(limits.cpu_ms, 10, "worker value wins");
        assert_eq!(limits.wall_ms, 900, "then [limits]");
        assert_eq!(limits.memory_mb, 128, "then the built-in default");
        assert_eq!(config.routes[0].path_prefix, "/");
        assert!(
            config.workers["api"].file.is_absolute()
                || config.workers["api"].file.starts_with(dir()?)
        );
        assert_eq!(config.http.max_url_bytes, 16384);
        Ok(())
    }

    #[test]
    fn vars_become_json() -> Result<(), Box<dyn std::error::Error>> {
        let config = parse_in(&format!(
            "{MINIMAL}vars = {{ A = \"x\", B = 2, C = {{ on = true }} }}\n"
        ))?;
        let vars = &config.workers["api"].vars;
        assert_eq!(vars["A"], "x");
        assert_eq!(vars["B"], 2);
        assert_eq!(vars["C"]["on"], true);
        Ok(())
    }

    #[test]
    fn wrong_type_names_the_key() -> Result<(), Box<dyn std::error::Error>> {
        let error = parse_in(&format!(
            "{MINIMAL}[workers.api.limits]\ncpu_ms = \"fast\"\n"
        ))
        .err()
        .ok_or("expected an error")?
        .to_string();
        assert!(error.contains("edge.toml"), "{error}");
        assert!(error.contains("`workers.api.limits.cpu_ms`"), "{error}");
        assert!(error.contains("expected"), "{error}");
        Ok(())
    }

    #[test]
    fn unknown_key_is_rejected() -> Result<(), Box<dyn std::error::Error>> {
        let error = parse_in(&format!("{MINIMAL}[workers.api.limits]\ncpu_seconds = 1\n"))
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(error.contains("cpu_seconds"), "{error}");
        assert!(error.contains("cpu_ms"), "lists the expected keys: {error}");
        Ok(())
    }

    #[test]
    fn syntax_error_has_line_and_column() -> Result<(), Box<dyn std::error::Error>> {
        let error = parse_in("[[listeners]]\naddress = \n")
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(error.contains("edge.toml:2:"), "{error}");
        Ok(())
    }
}
