//! Name resolution for outbound fetch: static answers from the worker's `[outbound] resolve`
//! table first (like `/etc/hosts`), the system resolver otherwise. A name with any answer the
//! policy refuses is refused as a whole; deno_fetch connects only to the answers given here.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use deno_fetch::dns::{Resolve, Resolving};
use hyper_util::client::legacy::connect::dns::Name;

use super::OutboundPolicy;

/// A policed resolver with static answers in front of the system's.
#[derive(Debug, Clone)]
pub struct StaticResolver {
    answers: BTreeMap<String, IpAddr>,
    policy: Arc<OutboundPolicy>,
}

impl StaticResolver {
    /// Answers `answers` (names are matched case-insensitively), asks the system otherwise,
    /// and refuses names that resolve to addresses `policy` forbids.
    pub fn new(answers: &BTreeMap<String, IpAddr>, policy: Arc<OutboundPolicy>) -> Self {
        Self {
            answers: answers
                .iter()
                .map(|(name, ip)| (name.to_ascii_lowercase(), *ip))
                .collect(),
            policy,
        }
    }
}

/// `found` if the policy allows every address in it, else the refusal, which names `what`
/// was refused (`fetch`, `WebSocket`).
pub(super) fn police(
    policy: &OutboundPolicy,
    host: &str,
    found: Vec<SocketAddr>,
    what: &str,
) -> io::Result<Vec<SocketAddr>> {
    match found.iter().find(|a| !policy.allows(a.ip())) {
        Some(denied) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} refused: {host} resolves to {}, a private, loopback or otherwise special-purpose address",
                denied.ip()
            ),
        )),
        None => Ok(found),
    }
}

impl StaticResolver {
    /// The addresses `host` resolves to, with `port`, if the policy allows every one of them;
    /// a refusal names `what` asked (`fetch`, `WebSocket`).
    pub async fn lookup(&self, host: &str, port: u16, what: &str) -> io::Result<Vec<SocketAddr>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let found: Vec<SocketAddr> = match self.answers.get(&host) {
            Some(ip) => vec![SocketAddr::new(*ip, port)],
            None => tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect(),
        };
        police(&self.policy, &host, found, what)
    }
}

impl Resolve for StaticResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            resolver
                .lookup(name.as_str(), 0, "fetch")
                .await
                .map(Vec::into_iter)
        })
    }
}
