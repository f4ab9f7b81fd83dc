//! CIDR parsing (text → `IpCidr` → text → the same `IpCidr`) and the outbound policy's hole
//! punching: `subtract(blocked, opened)` must deny exactly the addresses some blocked range
//! covers and no opened range covers, and `IpCidr::contains` must agree with that notion of
//! covering, checked against a direct computation here at every range's edges and at
//! arbitrary addresses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use edge_config::IpCidr;
use edge_config::special_ranges::{BLOCKED, subtract};
use libfuzzer_sys::fuzz_target;

/// What kind of network to build.
#[derive(Arbitrary, Debug)]
enum Kind {
    V4,
    V6,
    /// A v4-mapped IPv6 network, `::ffff:a.b.c.d/96+n`.
    Mapped,
    /// An IPv6 network starting near the v4-mapped block `::ffff:0:0/96`.
    NearMapped,
}

#[derive(Arbitrary, Debug)]
struct Net {
    kind: Kind,
    address: u128,
    prefix: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    text: String,
    /// Use the real special-purpose ranges as the blocked list.
    real_blocked: bool,
    blocked: Vec<Net>,
    opened: Vec<Net>,
    probes: Vec<(bool, u128)>,
}

impl Net {
    fn cidr(&self) -> IpCidr {
        let text = match self.kind {
            Kind::V4 => format!(
                "{}/{}",
                Ipv4Addr::from(self.address as u32),
                self.prefix % 33
            ),
            Kind::V6 => format!("{}/{}", Ipv6Addr::from(self.address), self.prefix % 129),
            Kind::Mapped => {
                let v4 = Ipv4Addr::from(self.address as u32);
                format!("{}/{}", v4.to_ipv6_mapped(), 96 + self.prefix % 33)
            }
            Kind::NearMapped => {
                let offset = i128::from(self.address as i16) << (self.prefix % 33);
                let address = (0xffff_i128 << 32).wrapping_add(offset) as u128;
                format!("{}/{}", Ipv6Addr::from(address), self.prefix % 129)
            }
        };
        match text.parse() {
            Ok(cidr) => cidr,
            Err(e) => panic!("{text} does not parse: {e}"),
        }
    }
}

/// An address as (is IPv6, value), v4-mapped IPv6 addresses as the IPv4 address they carry.
fn key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (false, u128::from(u32::from(v4))),
            None => (true, u128::from(v6)),
        },
    }
}

/// A network as (is IPv6, first, last), a v4-mapped one of prefix ≥ 96 as its IPv4 network.
fn span(cidr: &IpCidr) -> (bool, u128, u128) {
    let (v6, bits, value, prefix) = match cidr.network() {
        IpAddr::V4(v4) => (
            false,
            32,
            u128::from(u32::from(v4)),
            u32::from(cidr.prefix()),
        ),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if cidr.prefix() >= 96 => (
                false,
                32,
                u128::from(u32::from(v4)),
                u32::from(cidr.prefix()) - 96,
            ),
            _ => (true, 128, u128::from(v6), u32::from(cidr.prefix())),
        },
    };
    let host = bits - prefix;
    let mask = if host == 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    (v6, value & !mask, value | mask)
}

fn covers(cidr: &IpCidr, (v6, value): (bool, u128)) -> bool {
    let (net_v6, first, last) = span(cidr);
    net_v6 == v6 && first <= value && value <= last
}

fn address((v6, value): (bool, u128)) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    }
}

fuzz_target!(|input: Input| {
    if let Ok(cidr) = input.text.parse::<IpCidr>() {
        let max = if cidr.network().is_ipv4() { 32 } else { 128 };
        assert!(cidr.prefix() <= max, "{cidr:?}");
        let text = cidr.to_string();
        assert_eq!(text.parse::<IpCidr>().ok(), Some(cidr), "{text}");
        assert!(
            cidr.contains(cidr.network()),
            "{text} does not contain its own address"
        );
    }

    let blocked: Vec<IpCidr> = if input.real_blocked {
        BLOCKED.iter().filter_map(|c| c.parse().ok()).collect()
    } else {
        input.blocked.iter().take(8).map(Net::cidr).collect()
    };
    let opened: Vec<IpCidr> = input.opened.iter().take(8).map(Net::cidr).collect();
    let denied = subtract(&blocked, &opened);

    let mut probes: Vec<(bool, u128)> = input
        .probes
        .iter()
        .take(16)
        .map(|&(v6, value)| {
            if v6 {
                (true, value)
            } else {
                (false, value & 0xffff_ffff)
            }
        })
        .collect();
    let max = |v6: bool| if v6 { u128::MAX } else { 0xffff_ffff };
    for (v6, first, last) in blocked.iter().chain(&opened).map(span) {
        probes.extend([first, last].map(|value| (v6, value)));
        probes.extend(first.checked_sub(1).map(|value| (v6, value)));
        probes.extend((last < max(v6)).then(|| (v6, last + 1)));
    }
    for probe in probes {
        let ip = key(address(probe));
        for cidr in blocked.iter().chain(&opened) {
            assert_eq!(
                cidr.contains(address(probe)),
                covers(cidr, ip),
                "{cidr} contains {}",
                address(probe)
            );
        }
        let expected =
            blocked.iter().any(|c| covers(c, ip)) && !opened.iter().any(|c| covers(c, ip));
        let actual = denied.iter().any(|c| c.contains(address(probe)));
        assert_eq!(
            actual,
            expected,
            "{} with blocked {blocked:?}, opened {opened:?}: denied {denied:?}",
            address(probe)
        );
    }
    for cidr in &denied {
        let (_, first, _) = span(cidr);
        assert_eq!(key(cidr.network()).1, first, "{cidr} is not aligned");
    }
});
