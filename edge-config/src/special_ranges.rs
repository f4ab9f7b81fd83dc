//! The address ranges outbound fetch refuses, and the arithmetic that opens holes in them
//! (pure, so the policy can be tested and fuzzed without the runtime).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::IpCidr;

/// Special-purpose ranges (RFC 6890 and successors) no worker may reach unless its config
/// opens them: this host, private networks, shared address space, loopback, link-local
/// (incl. the 169.254.169.254 metadata service), documentation, benchmarking, multicast,
/// reserved; IPv6 unspecified/loopback/IPv4-compatible, NAT64, discard, Teredo (which
/// tunnels to an IPv4 address it carries), documentation, 6to4, unique-local, site-local, link-local and multicast. v4-mapped IPv6 addresses are
/// judged as the IPv4 address they carry.
pub const BLOCKED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/32",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fec0::/10",
    "fe80::/10",
    "ff00::/8",
];

/// Loopback, opened by `allow_loopback` (local development).
pub const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128"];

/// An inclusive range of addresses of one family (IPv4 as 32-bit numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    v6: bool,
    start: u128,
    end: u128,
}

impl Span {
    fn of(cidr: &IpCidr) -> Self {
        let (v6, bits, value) = match cidr.network() {
            IpAddr::V4(v4) => (false, 32, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if cidr.prefix() >= 96 => {
                    let prefix = cidr.prefix() - 96;
                    return Self::from_prefix(false, 32, u128::from(u32::from(v4)), prefix);
                }
                _ => (true, 128, u128::from(v6)),
            },
        };
        Self::from_prefix(v6, bits, value, cidr.prefix())
    }

    fn from_prefix(v6: bool, bits: u32, value: u128, prefix: u8) -> Self {
        let host_bits = bits - u32::from(prefix);
        let size_mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        Self {
            v6,
            start: value & !size_mask,
            end: value | size_mask,
        }
    }

    /// This span without `hole`: zero, one or two spans.
    fn without(self, hole: Self) -> Vec<Self> {
        if hole.v6 != self.v6 || hole.end < self.start || hole.start > self.end {
            return vec![self];
        }
        let mut rest = Vec::new();
        if hole.start > self.start {
            rest.push(Self {
                end: hole.start - 1,
                ..self
            });
        }
        if hole.end < self.end {
            rest.push(Self {
                start: hole.end + 1,
                ..self
            });
        }
        rest
    }

    /// The fewest CIDRs covering exactly this span.
    fn to_cidrs(self) -> Vec<IpCidr> {
        let bits: u32 = if self.v6 { 128 } else { 32 };
        let mut cidrs = Vec::new();
        let mut start = self.start;
        loop {
            // The largest aligned block at `start` that does not pass `end`.
            let mut host_bits = if start == 0 {
                bits
            } else {
                start.trailing_zeros().min(bits)
            };
            while host_bits > 0 && block_end(start, host_bits) > self.end {
                host_bits -= 1;
            }
            let prefix = u8::try_from(bits - host_bits).unwrap_or(0);
            // Inside the v4-mapped block an IPv6 CIDR would read as an IPv4 network.
            let mapped = self.v6 && prefix >= 96 && start >> 32 == 0xffff;
            let address = if self.v6 {
                IpAddr::V6(Ipv6Addr::from(start))
            } else {
                IpAddr::V4(Ipv4Addr::from(u32::try_from(start).unwrap_or(u32::MAX)))
            };
            if !mapped && let Ok(cidr) = format!("{address}/{prefix}").parse() {
                cidrs.push(cidr);
            }
            let last = block_end(start, host_bits);
            if last >= self.end {
                return cidrs;
            }
            start = last + 1;
        }
    }
}

fn block_end(start: u128, host_bits: u32) -> u128 {
    if host_bits >= 128 {
        u128::MAX
    } else {
        start | ((1u128 << host_bits) - 1)
    }
}

/// `blocked` minus `opened`, as the fewest CIDRs per remaining span. A v4-mapped IPv6 network
/// of prefix 96 or more counts as the IPv4 network it carries (as in [`IpCidr::contains`]);
/// an IPv6 span covers no v4-mapped address (those are judged as IPv4), so no CIDR inside
/// `::ffff:0:0/96` is in the result: it would read as an IPv4 network.
pub fn subtract(blocked: &[IpCidr], opened: &[IpCidr]) -> Vec<IpCidr> {
    let holes: Vec<Span> = opened.iter().map(Span::of).collect();
    let mut spans: Vec<Span> = blocked.iter().map(Span::of).collect();
    for hole in holes {
        spans = spans.into_iter().flat_map(|s| s.without(hole)).collect();
    }
    spans.into_iter().flat_map(Span::to_cidrs).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(texts: &[&str]) -> Result<Vec<IpCidr>, crate::CidrParseError> {
        texts.iter().map(|t| t.parse()).collect()
    }

    fn strings(cidrs: &[IpCidr]) -> Vec<String> {
        cidrs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_listed_range_parses() {
        for text in BLOCKED.iter().chain(LOOPBACK) {
            assert!(text.parse::<IpCidr>().is_ok(), "{text}");
        }
    }

    #[test]
    fn a_hole_splits_a_range_into_the_fewest_cidrs() -> Result<(), Box<dyn std::error::Error>> {
        let rest = subtract(&cidrs(&["10.0.0.0/8"])?, &cidrs(&["10.1.2.3"])?);
        assert_eq!(rest.len(), 24 - 8 + 8, "one CIDR per bit on each side");
        let hole: IpAddr = "10.1.2.3".parse()?;
        assert!(!rest.iter().any(|c| c.contains(hole)));
        for kept in ["10.0.0.0", "10.1.2.2", "10.1.2.4", "10.255.255.255"] {
            let kept: IpAddr = kept.parse()?;
            assert!(rest.iter().any(|c| c.contains(kept)), "{kept}");
        }
        assert_eq!(
            strings(&subtract(
                &cidrs(&["10.0.0.0/8"])?,
                &cidrs(&["10.128.0.0/9"])?
            )),
            ["10.0.0.0/9"]
        );
        Ok(())
    }

    #[test]
    fn whole_spaces_edges_and_families() -> Result<(), Box<dyn std::error::Error>> {
        assert!(subtract(&cidrs(&["0.0.0.0/0"])?, &cidrs(&["0.0.0.0/0"])?).is_empty());
        assert_eq!(
            strings(&subtract(&cidrs(&["::/0"])?, &cidrs(&["0.0.0.0/0"])?)),
            ["::/0"],
            "an IPv4 hole leaves IPv6 alone"
        );
        assert_eq!(
            strings(&subtract(&cidrs(&["::/0"])?, &cidrs(&["::/1"])?)),
            ["8000::/1"]
        );
        assert_eq!(
            strings(&subtract(
                &cidrs(&["0.0.0.0/0"])?,
                &cidrs(&["255.255.255.255"])?
            ))
            .len(),
            32
        );
        assert_eq!(
            strings(&subtract(
                &cidrs(&["10.0.0.0/8"])?,
                &cidrs(&["::ffff:10.0.0.0/104"])?
            )),
            Vec::<String>::new(),
            "a v4-mapped hole opens the IPv4 range it carries"
        );
        assert_eq!(
            strings(&subtract(&cidrs(&["::ffff:10.0.0.0/104"])?, &[])),
            ["10.0.0.0/8"]
        );
        Ok(())
    }

    /// Found by fuzzing (`cidr_ranges`): an IPv6 range around the v4-mapped block, with a hole
    /// next to it, left `::ffff:0.0.0.0/96` in the result, which denies every IPv4 address.
    #[test]
    fn an_ipv6_range_never_denies_ipv4_through_the_mapped_block()
    -> Result<(), Box<dyn std::error::Error>> {
        let denied = subtract(
            &cidrs(&["::fffe:ffff:fe00/78"])?,
            &cidrs(&["::fffe:ff00:0/126"])?,
        );
        let v4: IpAddr = "203.0.113.7".parse()?;
        assert!(
            !denied.iter().any(|c| c.contains(v4)),
            "{:?}",
            strings(&denied)
        );
        let v6: IpAddr = "::fffe:ff00:4".parse()?;
        assert!(denied.iter().any(|c| c.contains(v6)));
        assert_eq!(
            strings(&subtract(&cidrs(&["::ffff:0:0/95"])?, &[])),
            ["::fffe:0:0/95"],
            "an IPv6 network wider than the mapped block stays whole"
        );
        assert_eq!(
            strings(&subtract(
                &cidrs(&["::fffe:0:0/95"])?,
                &cidrs(&["::fffe:0:0/96"])?
            )),
            Vec::<String>::new()
        );
        Ok(())
    }
}
