//! The one policy point for outbound `fetch()`. A deployment's [`OutboundPolicy`] decides
//! which addresses it may connect to, and deno_fetch consults it twice for every request it
//! sends (each redirect hop included): [`guard::request_hook`] checks an IP literal in the URL
//! (and counts subrequests, and marks the hop for loop detection), and [`StaticResolver`]
//! checks every address a name resolves to; deno_fetch then connects to exactly the addresses
//! that were checked. So a name that resolves to 127.0.0.1 is refused as surely as the literal
//! address. The isolate's deno permissions allow the network (the policy does the refusing)
//! and nothing else: no file, environment, process or FFI access.

pub mod guard;
mod resolver;

use std::net::IpAddr;
use std::sync::Arc;

use deno_permissions::{Permissions, PermissionsContainer, PermissionsOptions};
use edge_config::special_ranges;
use edge_config::{IpCidr, Outbound};

pub use resolver::StaticResolver;

/// User agent of outbound `fetch()` requests and WebSocket handshakes (when the worker sets
/// none).
pub const USER_AGENT: &str = concat!("Isola/", env!("CARGO_PKG_VERSION"));

deno_core::extension!(
    isola_outbound,
    options = { permissions: PermissionsContainer },
    state = |state, options| {
        state.put(options.permissions);
    },
);

/// What one deployment's outbound requests may reach.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    /// Ranges refused: the special-purpose ranges minus what the deployment opened.
    denied: Vec<IpCidr>,
}

/// The policy could not be turned into permissions.
#[derive(Debug, thiserror::Error)]
#[error("invalid outbound policy: {0}")]
pub struct PolicyError(#[source] deno_permissions::PermissionsFromOptionsError);

impl OutboundPolicy {
    /// The policy for a worker's `[outbound]` settings.
    pub fn new(outbound: &Outbound) -> Self {
        let mut opened = outbound.allow.clone();
        if outbound.allow_loopback {
            opened.extend(
                special_ranges::LOOPBACK
                    .iter()
                    .filter_map(|c| c.parse::<IpCidr>().ok()),
            );
        }
        let blocked: Vec<IpCidr> = special_ranges::BLOCKED
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        Self {
            denied: special_ranges::subtract(&blocked, &opened),
        }
    }

    /// Whether a connection to `ip` is allowed. v4-mapped IPv6 addresses count as the IPv4
    /// address they carry.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !self.denied.iter().any(|range| range.contains(ip))
    }
}

/// deno permissions for a worker: the network (which [`OutboundPolicy`] polices) and nothing
/// else: no file, environment, process or FFI access.
pub fn permissions() -> Result<PermissionsContainer, PolicyError> {
    let parser = Arc::new(deno_permissions::RuntimePermissionDescriptorParser::new(
        sys_traits::impls::RealSys,
    ));
    let options = PermissionsOptions {
        allow_net: Some(Vec::new()),
        prompt: false,
        ..Default::default()
    };
    let permissions = Permissions::from_options(parser.as_ref(), &options).map_err(PolicyError)?;
    Ok(PermissionsContainer::new(parser, permissions))
}

#[cfg(test)]
mod tests;
