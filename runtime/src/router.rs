//! Routes a request to a deployment by host and path prefix: an exact host beats a wildcard
//! host (`*.example.com`), which beats a route for any host; among those, the longest path
//! prefix wins.

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
    deployment: Arc<Pool>,
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Adds a route; `host` is an exact name, `*.suffix`, or `None` for any host.
    pub fn add(&mut self, host: Option<&str>, path_prefix: &str, deployment: Arc<Pool>) {
        self.routes.push(Route {
            host: HostMatch::parse(host),
            path_prefix: path_prefix.to_owned(),
            deployment,
        });
    }

    /// The deployment for `host` (lower-case, without port) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Pool>> {
        self.routes
            .iter()
            .filter(|route| path_matches(&route.path_prefix, path))
            .filter_map(|route| Some(((route.host.rank(host)?, route.path_prefix.len()), route)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, route)| &route.deployment)
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
