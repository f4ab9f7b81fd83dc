//! IP networks in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network; matches v4-mapped IPv6 addresses against IPv4 networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// The network address as written.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network. A v4-mapped IPv6 address is the IPv4 address it
    /// carries, and a v4-mapped IPv6 network of prefix 96 or more (`::ffff:10.0.0.0/104`) the
    /// IPv4 network it carries; an IPv6 network never contains a v4-mapped address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (network, prefix) = match self.network {
            IpAddr::V6(v6) if self.prefix >= 96 => v6
                .to_ipv4_mapped()
                .map_or((self.network, self.prefix), |v4| {
                    (IpAddr::V4(v4), self.prefix - 96)
                }),
            network => (network, self.prefix),
        };
        match (network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(&net.octets(), &ip.octets(), prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_eq(&net.octets(), &ip.octets(), prefix),
            _ => false,
        }
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// A CIDR string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an IP address or CIDR such as 10.0.0.0/8 or ::1/128, got `{0}`")]
pub struct CidrParseError(String);

impl FromStr for IpCidr {
    type Err = CidrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || CidrParseError(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim_matches(['[', ']']).parse().map_err(|_| error())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(error)?,
            None => max,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for IpCidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_v4_v6_and_mapped() -> Result<(), Box<dyn std::error::Error>> {
        let ten: IpCidr = "10.0.0.0/8".parse()?;
        assert!(ten.contains("10.1.2.3".parse()?));
        assert!(!ten.contains("11.0.0.1".parse()?));
        assert!(ten.contains("::ffff:10.9.9.9".parse()?));
        let ula: IpCidr = "fc00::/7".parse()?;
        assert!(ula.contains("fd12::1".parse()?));
        assert!(!ula.contains("fe80::1".parse()?));
        let one: IpCidr = "127.0.0.1".parse()?;
        assert!(one.contains("127.0.0.1".parse()?));
        assert!(!one.contains("127.0.0.2".parse()?));
        let odd: IpCidr = "172.16.0.0/12".parse()?;
        assert!(odd.contains("172.31.255.255".parse()?));
        assert!(!odd.contains("172.32.0.0".parse()?));
        Ok(())
    }

    /// Found by fuzzing (`cidr_ranges`): `::ffff:0.0.0.0/96` contained nothing, not even
    /// its own address, while the outbound policy read it as `0.0.0.0/0`.
    #[test]
    fn a_mapped_network_is_the_ipv4_network_it_carries() -> Result<(), Box<dyn std::error::Error>> {
        let all: IpCidr = "::ffff:0.0.0.0/96".parse()?;
        assert!(all.contains("0.0.0.0".parse()?));
        assert!(all.contains("::ffff:1.2.3.4".parse()?));
        assert!(!all.contains("::1".parse()?));
        let ten: IpCidr = "::ffff:10.0.0.0/104".parse()?;
        assert!(ten.contains("10.9.9.9".parse()?));
        assert!(!ten.contains("11.0.0.0".parse()?));
        let one: IpCidr = "::ffff:10.0.0.1".parse()?;
        assert!(one.contains(one.network()));
        let wide: IpCidr = "::ffff:0:0/95".parse()?;
        assert!(
            !wide.contains("10.0.0.1".parse()?),
            "an IPv6 network below /96"
        );
        assert!(wide.contains("::fffe:0:1".parse()?));
        Ok(())
    }

    #[test]
    fn rejects_garbage() -> Result<(), Box<dyn std::error::Error>> {
        assert!("10.0.0.0/33".parse::<IpCidr>().is_err());
        assert!("nope".parse::<IpCidr>().is_err());
        assert_eq!("::1".parse::<IpCidr>()?.to_string(), "::1/128");
        Ok(())
    }
}
