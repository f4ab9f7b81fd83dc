//! Validation of a resolved config: references, ranges and files, each failure naming the key.

use std::path::Path;

use crate::error::ConfigError;
use crate::model::{Config, Limits};

impl Config {
    /// Checks a config built in code (named `<config>` in errors).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_in(Path::new("<config>"))
    }

    pub(crate) fn validate_in(&self, file: &Path) -> Result<(), ConfigError> {
        let fail = |key: String, message: String| Err(ConfigError::key(file, key, message));
        if self.listeners.is_empty() {
            return fail(
                "listeners".into(),
                "expected at least one [[listeners]] entry".into(),
            );
        }
        if !valid_domain(&self.node.domain) {
            return fail(
                "node.domain".into(),
                format!(
                    "expected a host name (letters, digits, '-' and '.'), got `{}`",
                    self.node.domain
                ),
            );
        }
        let timeouts = [
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
            ),
            (
                "http.connection_idle_timeout_ms",
                self.http.connection_idle_timeout_ms,
            ),
            ("http.write_timeout_ms", self.http.write_timeout_ms),
            (
                "http.h2_keep_alive_interval_ms",
                self.http.h2_keep_alive_interval_ms,
            ),
            (
                "http.h2_keep_alive_timeout_ms",
                self.http.h2_keep_alive_timeout_ms,
            ),
        ];
        for (key, value) in timeouts {
            if value == 0 {
                return fail(key.into(), "expected a value greater than 0".into());
            }
        }
        let mut hostnames = std::collections::HashSet::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.max_connections == 0 {
                return fail(
                    format!("listeners[{i}].max_connections"),
                    "expected a value greater than 0".into(),
                );
            }
            let Some(tls) = &listener.tls else { continue };
            let key = format!("listeners[{i}].tls");
            check_pem_files(file, &key, [("cert", &tls.cert), ("key", &tls.key)])?;
            for (j, sni) in tls.sni.iter().enumerate() {
                let key = format!("{key}.sni[{j}]");
                if sni.hostnames.is_empty() {
                    return fail(
                        format!("{key}.hostnames"),
                        "expected at least one host name".into(),
                    );
                }
                for host in &sni.hostnames {
                    if !hostnames.insert((i, host.to_ascii_lowercase())) {
                        return fail(
                            format!("{key}.hostnames"),
                            format!("expected each host name once, `{host}` repeats"),
                        );
                    }
                }
                check_pem_files(file, &key, [("cert", &sni.cert), ("key", &sni.key)])?;
            }
        }
        if self.cache.max_object_bytes > MAX_OBJECT_BYTES {
            return fail(
                "cache.max_object_bytes".into(),
                format!(
                    "expected at most {MAX_OBJECT_BYTES} (1 GiB), got {}",
                    self.cache.max_object_bytes
                ),
            );
        }
        for (i, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            if !self.workers.contains_key(&route.worker) {
                let known: Vec<&str> = self.workers.keys().map(String::as_str).collect();
                return fail(
                    format!("{key}.worker"),
                    format!(
                        "expected one of the workers {known:?}, got `{}`",
                        route.worker
                    ),
                );
            }
            check_route(file, &key, route.host.as_deref(), &route.path_prefix)?;
        }
        for (name, worker) in &self.workers {
            let key = format!("workers.{name}");
            if !worker.file.is_file() {
                return fail(
                    format!("{key}.file"),
                    format!(
                        "expected a JavaScript file, {} does not exist",
                        worker.file.display()
                    ),
                );
            }
            check_worker_settings(file, &key, worker)?;
        }
        Ok(())
    }
}

/// A route's host pattern and path prefix (`key` names the route in errors).
pub(crate) fn check_route(
    file: &Path,
    key: &str,
    host: Option<&str>,
    path_prefix: &str,
) -> Result<(), ConfigError> {
    if !path_prefix.starts_with('/') {
        return Err(ConfigError::key(
            file,
            format!("{key}.path_prefix"),
            format!("expected a path starting with '/', got `{path_prefix}`"),
        ));
    }
    if let Some(host) = host
        && !valid_host_pattern(host)
    {
        return Err(ConfigError::key(
            file,
            format!("{key}.host"),
            format!("expected a host name, `*.suffix` or `*`, got `{host}`"),
        ));
    }
    Ok(())
}

/// A worker's vars and limits (`key` names the worker in errors).
pub(crate) fn check_worker_settings(
    file: &Path,
    key: &str,
    worker: &crate::model::Worker,
) -> Result<(), ConfigError> {
    let key = if key.is_empty() {
        String::new()
    } else {
        format!("{key}.")
    };
    for var in worker.vars.keys() {
        if !valid_identifier(var) {
            return Err(ConfigError::key(
                file,
                format!("{key}vars.{var}"),
                "expected a JavaScript identifier as var name",
            ));
        }
    }
    validate_limits(&worker.limits)
        .map_err(|(limit, message)| ConfigError::key(file, format!("{key}limits.{limit}"), message))
}

/// Largest `cache.max_object_bytes`: one cached response's weight must fit the cache's `u32`.
const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// Each `key.name` must name an existing PEM file.
fn check_pem_files(
    file: &Path,
    key: &str,
    files: [(&str, &std::path::PathBuf); 2],
) -> Result<(), ConfigError> {
    for (name, path) in files {
        if !path.is_file() {
            return Err(ConfigError::key(
                file,
                format!("{key}.{name}"),
                format!(
                    "expected a readable PEM file, {} does not exist",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

fn validate_limits(limits: &Limits) -> Result<(), (&'static str, String)> {
    let positive = [
        ("cpu_ms", limits.cpu_ms),
        ("startup_cpu_ms", limits.startup_cpu_ms),
        ("wall_ms", limits.wall_ms),
        ("startup_wall_ms", limits.startup_wall_ms),
        ("memory_mb", limits.memory_mb),
        ("max_isolates", u64::from(limits.max_isolates)),
        (
            "max_requests_per_isolate",
            u64::from(limits.max_requests_per_isolate),
        ),
        (
            "websocket_message_max_bytes",
            limits.websocket_message_max_bytes,
        ),
        (
            "websocket_idle_timeout_ms",
            limits.websocket_idle_timeout_ms,
        ),
        (
            "websocket_send_buffer_bytes",
            limits.websocket_send_buffer_bytes,
        ),
    ];
    for (name, value) in positive {
        if value == 0 {
            return Err((name, "expected a value greater than 0".into()));
        }
    }
    if limits.memory_mb > 8192 {
        return Err((
            "memory_mb",
            format!("expected at most 8192, got {}", limits.memory_mb),
        ));
    }
    if limits.min_isolates > limits.max_isolates {
        return Err((
            "min_isolates",
            format!(
                "expected at most max_isolates ({}), got {}",
                limits.max_isolates, limits.min_isolates
            ),
        ));
    }
    Ok(())
}

fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn valid_host_pattern(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    host == "*"
        || (!name.is_empty()
            && !name.contains('*')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']')))
}

/// Whether `name` can name a var or secret: a JavaScript identifier.
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Listener, Route};

    fn base() -> Result<Config, std::net::AddrParseError> {
        let mut config = Config::default();
        config.listeners.push(Listener {
            address: "127.0.0.1:0".parse()?,
            tls: None,
            max_connections: crate::model::DEFAULT_MAX_CONNECTIONS,
        });
        Ok(config)
    }

    #[test]
    fn unknown_worker_in_route() -> Result<(), Box<dyn std::error::Error>> {
        let mut config = base()?;
        config.routes.push(Route {
            host: None,
            path_prefix: "/".into(),
            worker: "ghost".into(),
        });
        let error = config
            .validate()
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(
            error.contains("`routes[0].worker`") && error.contains("ghost"),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn oversized_cache_object() -> Result<(), Box<dyn std::error::Error>> {
        let mut config = base()?;
        config.cache.max_object_bytes = 2 << 30;
        let error = config
            .validate()
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(error.contains("`cache.max_object_bytes`"), "{error}");
        Ok(())
    }

    #[test]
    fn no_listener() -> Result<(), Box<dyn std::error::Error>> {
        let error = Config::default()
            .validate()
            .err()
            .ok_or("expected an error")?
            .to_string();
        assert!(error.contains("`listeners`"), "{error}");
        Ok(())
    }

    #[test]
    fn limit_ranges() -> Result<(), Box<dyn std::error::Error>> {
        let mut limits = Limits::default();
        assert!(validate_limits(&limits).is_ok());
        limits.min_isolates = 9;
        assert_eq!(
            validate_limits(&limits).err().ok_or("expected an error")?.0,
            "min_isolates"
        );
        limits = Limits {
            cpu_ms: 0,
            ..Limits::default()
        };
        assert_eq!(
            validate_limits(&limits).err().ok_or("expected an error")?.0,
            "cpu_ms"
        );
        Ok(())
    }

    #[test]
    fn host_patterns_and_identifiers() -> Result<(), Box<dyn std::error::Error>> {
        assert!(valid_host_pattern("*.example.com"));
        assert!(valid_host_pattern("api.example.com"));
        assert!(!valid_host_pattern("a.*.com"));
        assert!(valid_identifier("API_KEY"));
        assert!(!valid_identifier("1abc"));
        assert!(!valid_identifier("a-b"));
        Ok(())
    }
}
