//! Routes a request to a deployment by host and path prefix: an exact host beats a wildcard
//! host (`*.example.com`), which beats a route for any host; among those, the longest path
//! prefix wins. A route serves one deployment's pool, or during a gradual rollout several
//! versions' pools by weight: chosen at random per request, or by the hash of the request's
//! `isola-version-key` so one client keeps one version.

use std::sync::Arc;

use crate::pool::Pool;

/// How a route matches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    Suffix(String),
    Any,
}

impl HostMatch {
    fn parse(host: Option<&str>) -> Self {
        match host {
            None | Some("*") | Some("") => Self::Any,
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => Self::Suffix(format!(".{}", suffix.to_ascii_lowercase())),
                None => Self::Exact(h.to_ascii_lowercase()),
            },
        }
    }

    /// Higher is more specific.
    fn rank(&self, host: &str) -> Option<u8> {
        match self {
            Self::Exact(h) if h == host => Some(2),
            Self::Suffix(s) if host.ends_with(s.as_str()) => Some(1),
            Self::Any => Some(0),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Route {
    host: HostMatch,
    path_prefix: String,
    backend: Backend,
}

/// Pools by weight (percent), for a gradual rollout.
pub type Weighted = Arc<[(Arc<Pool>, u32)]>;

/// What a route serves.
#[derive(Debug, Clone)]
pub enum Backend {
    /// One pool.
    One(Arc<Pool>),
    /// Pools by weight (a gradual rollout); the weights are positive.
    Split(Weighted),
}

impl Backend {
    /// The pool for a request carrying `key` (`isola-version-key`), or a random one by weight.
    fn pick(&self, key: Option<&[u8]>) -> Option<&Arc<Pool>> {
        let split = match self {
            Self::One(pool) => return Some(pool),
            Self::Split(split) => split,
        };
        let total: u64 = split.iter().map(|(_, weight)| u64::from(*weight)).sum();
        let mut point = match key {
            Some(key) => {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                // Fixed keys: the same client gets the same version on every node and restart.
                BuildHasherDefault::<DefaultHasher>::default().hash_one(key) % total.max(1)
            }
            None => fastrand::u64(0..total.max(1)),
        };
        let mut chosen = None;
        for (pool, weight) in split.iter() {
            chosen = Some(pool);
            match point.checked_sub(u64::from(*weight)) {
                Some(rest) => point = rest,
                None => break,
            }
        }
        chosen
    }
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Adds a route to one pool; `host` is an exact name, `*.suffix`, or `None` for any host.
    pub fn add(&mut self, host: Option<&str>, path_prefix: &str, deployment: Arc<Pool>) {
        self.add_backend(host, path_prefix, Backend::One(deployment));
    }

    /// Adds a route to `backend`. Of equally specific routes the last added wins.
    pub fn add_backend(&mut self, host: Option<&str>, path_prefix: &str, backend: Backend) {
        self.routes.push(Route {
            host: HostMatch::parse(host),
            path_prefix: path_prefix.to_owned(),
            backend,
        });
    }

    /// The deployment for `host` (lower-case, without port) and `path`; `key` is the
    /// request's `isola-version-key`, which keeps a client on one version of a rollout.
    pub fn route(&self, host: &str, path: &str, key: Option<&[u8]>) -> Option<&Arc<Pool>> {
        self.routes
            .iter()
            .filter(|route| path_matches(&route.path_prefix, path))
            .filter_map(|route| Some(((route.host.rank(host)?, route.path_prefix.len()), route)))
            .max_by_key(|(rank, _)| *rank)
            .and_then(|(_, route)| route.backend.pick(key))
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
fn path_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix_respects_segments() {
        assert!(path_matches("/", "/anything"));
        assert!(path_matches("/api", "/api"));
        assert!(path_matches("/api", "/api/users"));
        assert!(!path_matches("/api", "/apix"));
        assert!(path_matches("/api/", "/api/x"));
    }

    #[test]
    fn host_specificity() {
        assert_eq!(
            HostMatch::parse(Some("A.example.com")).rank("a.example.com"),
            Some(2)
        );
        assert_eq!(
            HostMatch::parse(Some("*.example.com")).rank("a.example.com"),
            Some(1)
        );
        assert_eq!(
            HostMatch::parse(Some("*.example.com")).rank("example.com"),
            None
        );
        assert_eq!(HostMatch::parse(None).rank("x"), Some(0));
        assert_eq!(
            HostMatch::parse(Some("b.example.com")).rank("a.example.com"),
            None
        );
    }
}
