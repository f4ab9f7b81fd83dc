//! Routes a request to a deployment by host and path prefix: an exact host beats a wildcard
//! host (`*.example.com`), which beats a route for any host; among those, the longest path
//! prefix wins. A route serves one deployment's pool, or during a gradual rollout several
//! versions' pools by weight: chosen at random per request, or by the hash of the request's
//! `isola-version-key` so one client keeps one version.

use std::collections::HashMap;
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
struct Route<T> {
    host: HostMatch,
    path_prefix: String,
    target: T,
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
    table: Table<Backend>,
}

impl Router {
    /// Adds a route to one pool; `host` is an exact name, `*.suffix`, or `None` for any host.
    pub fn add(&mut self, host: Option<&str>, path_prefix: &str, deployment: Arc<Pool>) {
        self.add_backend(host, path_prefix, Backend::One(deployment));
    }

    /// Adds a route to `backend`. Of equally specific routes the last added wins.
    pub fn add_backend(&mut self, host: Option<&str>, path_prefix: &str, backend: Backend) {
        self.table.add(host, path_prefix, backend);
    }

    /// The deployment for `host` (lower-case, without port) and `path`; `key` is the
    /// request's `isola-version-key`, which keeps a client on one version of a rollout.
    pub fn route(&self, host: &str, path: &str, key: Option<&[u8]>) -> Option<&Arc<Pool>> {
        self.table.find(host, path)?.pick(key)
    }
}

/// Route numbers by host or path segment. Hashed by foldhash (seeded per process), not std's
/// SipHash (~190 instructions per request for the two lookups): the keys are the operator's
/// routes, and a client's host or path only probes them, so there is no table to flood.
type Index = HashMap<String, Vec<usize>, foldhash::fast::RandomState>;

/// Routes to `T`s, indexed so a lookup checks only the routes that can match: those for the
/// request's exact host, and those for any or a wildcard host whose prefix starts with the
/// path's first segment or is `/`. (A scan of every route cost each request microseconds on
/// a node with 1,000 workers, each routed by prefix and by `NAME.{domain}`.)
#[derive(Debug)]
struct Table<T> {
    routes: Vec<Route<T>>,
    /// Routes for an exact host, by host.
    exact: Index,
    /// Routes for any or a wildcard host, by their prefix's first segment.
    segment: Index,
    /// Routes for any or a wildcard host whose prefix is `/` (every path).
    root: Vec<usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            exact: Index::default(),
            segment: Index::default(),
            root: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    fn add(&mut self, host: Option<&str>, path_prefix: &str, target: T) {
        let index = self.routes.len();
        let host = HostMatch::parse(host);
        match (&host, first_segment(path_prefix)) {
            (HostMatch::Exact(name), _) => self.exact.entry(name.clone()).or_default().push(index),
            (_, Some(segment)) if !segment.is_empty() => {
                self.segment
                    .entry(segment.to_owned())
                    .or_default()
                    .push(index);
            }
            _ => self.root.push(index),
        }
        self.routes.push(Route {
            host,
            path_prefix: path_prefix.to_owned(),
            target,
        });
    }

    /// The most specific route for `host` and `path`: the best host match, then the longest
    /// prefix, then the last added.
    fn find(&self, host: &str, path: &str) -> Option<&T> {
        let exact = self.exact.get(host).map_or(&[][..], Vec::as_slice);
        let segment = first_segment(path)
            .and_then(|segment| self.segment.get(segment))
            .map_or(&[][..], Vec::as_slice);
        exact
            .iter()
            .chain(segment)
            .chain(&self.root)
            .filter_map(|&index| {
                let route = &self.routes[index];
                if !path_matches(&route.path_prefix, path) {
                    return None;
                }
                Some((
                    (route.host.rank(host)?, route.path_prefix.len(), index),
                    route,
                ))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, route)| &route.target)
    }
}

/// The first segment of an absolute path (`api` for `/api/users`, empty for `/`); none for a
/// path that does not start with `/`.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    Some(rest.split('/').next().unwrap_or(rest))
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

    #[test]
    fn the_most_specific_route_wins_whatever_the_index_looks_at() {
        let mut table = Table::default();
        table.add(None, "/", "any host, any path");
        table.add(None, "/api", "any host, /api");
        table.add(Some("*.example.com"), "/api/v1", "wildcard, /api/v1");
        table.add(Some("a.example.com"), "/", "exact, any path");
        table.add(Some("a.example.com"), "/static", "exact, /static");
        table.add(None, "/apix", "any host, /apix");
        table.add(None, "/api", "any host, /api, added last");
        let find = |host, path| table.find(host, path).copied();
        assert_eq!(find("b.test", "/"), Some("any host, any path"));
        assert_eq!(
            find("b.test", "/api/users"),
            Some("any host, /api, added last")
        );
        assert_eq!(find("b.test", "/apix/1"), Some("any host, /apix"));
        assert_eq!(find("b.test", "/apiary"), Some("any host, any path"));
        assert_eq!(
            find("b.example.com", "/api/v1/x"),
            Some("wildcard, /api/v1")
        );
        assert_eq!(find("a.example.com", "/api/v1/x"), Some("exact, any path"));
        assert_eq!(
            find("a.example.com", "/static/app.js"),
            Some("exact, /static")
        );
        let mut rooted = Table::default();
        rooted.add(Some("only.test"), "/x", "exact, /x");
        assert_eq!(rooted.find("other.test", "/x"), None);
        assert_eq!(rooted.find("only.test", "/y"), None);
    }

    #[test]
    fn first_segments() {
        assert_eq!(first_segment("/api/users"), Some("api"));
        assert_eq!(first_segment("/api"), Some("api"));
        assert_eq!(first_segment("/"), Some(""));
        assert_eq!(first_segment("api"), None);
    }
}
