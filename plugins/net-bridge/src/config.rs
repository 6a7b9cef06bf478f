//! The container's bridge settings, read from its config annotations.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

use tong_net_common::{
    annotation, flag_annotation, parse_annotation, published_ports, PortMapping,
};
use tong_plugin_sdk::{PluginError, PluginResult};

pub const DEFAULT_BRIDGE: &str = "tong0";
pub const DEFAULT_SUBNET: &str = "10.77.0.0/24";
pub const DEFAULT_MTU: u32 = 1500;

#[derive(Debug)]
pub struct BridgeConfig {
    pub bridge: String,
    pub subnet: Subnet,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub publish: Vec<PortMapping>,
    pub nat: bool,
}

impl BridgeConfig {
    pub fn from_annotations(a: &BTreeMap<String, String>) -> PluginResult<BridgeConfig> {
        let bridge = annotation(a, "tong.net.bridge").unwrap_or(DEFAULT_BRIDGE);
        if bridge.len() > 15
            || bridge.is_empty()
            || bridge.contains(['/', ':'])
            || bridge.contains(char::is_whitespace)
        {
            return Err(PluginError::invalid(format!(
                "annotation tong.net.bridge={bridge:?}: not a valid interface name (1-15 characters, no '/', ':' or spaces)"
            )));
        }
        let subnet: Subnet = parse_annotation(a, "tong.net.subnet")?
            .unwrap_or_else(|| DEFAULT_SUBNET.parse().expect("default subnet parses"));
        let mtu: u32 = parse_annotation(a, "tong.net.mtu")?.unwrap_or(DEFAULT_MTU);
        if !(68..=65535).contains(&mtu) {
            return Err(PluginError::invalid(format!(
                "annotation tong.net.mtu={mtu}: out of range 68-65535"
            )));
        }
        let mac = annotation(a, "tong.net.mac")
            .map(|v| {
                parse_mac(v).ok_or_else(|| {
                    PluginError::invalid(format!(
                        "annotation tong.net.mac={v:?}: expected a unicast MAC like 02:00:00:00:00:01"
                    ))
                })
            })
            .transpose()?;
        let publish = published_ports(a)?;
        let nat = flag_annotation(a, "tong.net.nat")?;
        Ok(BridgeConfig {
            bridge: bridge.to_string(),
            subnet,
            mtu,
            mac,
            publish,
            nat,
        })
    }
}

/// An IPv4 subnet; the first address is the gateway (the bridge's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Addresses containers may get: after the gateway, before the broadcast address.
    pub fn container_addresses(self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | (u32::MAX >> self.prefix);
        (first..broadcast).map(Ipv4Addr::from)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or("expected ADDRESS/PREFIX, e.g. 10.77.0.0/24")?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("prefix {prefix:?} is not between 8 and 30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

/// A locally administered MAC derived from the address, so a container's MAC is stable
/// and two containers never share one.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x74, a, b, c, d]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    // Multicast MACs cannot be an interface's address.
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = BridgeConfig::from_annotations(&BTreeMap::new()).unwrap();
        assert_eq!(c.bridge, "tong0");
        assert_eq!(c.subnet.to_string_for_test(), "10.77.0.0/24");
        assert_eq!(c.subnet.gateway(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(c.mtu, 1500);
        assert!(c.publish.is_empty() && !c.nat && c.mac.is_none());
    }

    #[test]
    fn subnet_is_normalised_and_addresses_skip_gateway_and_broadcast() {
        let s: Subnet = "192.168.5.77/29".parse().unwrap();
        assert_eq!(s.network, Ipv4Addr::new(192, 168, 5, 72));
        let all: Vec<_> = s.container_addresses().collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(192, 168, 5, 74)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(192, 168, 5, 78)));
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (key, value) in [
            ("tong.net.subnet", "10.0.0.0"),
            ("tong.net.subnet", "10.0.0.0/31"),
            ("tong.net.subnet", "tenten/24"),
            ("tong.net.mtu", "20"),
            ("tong.net.mtu", "big"),
            ("tong.net.mac", "03:00:00:00:00:01"),
            ("tong.net.mac", "zz"),
            ("tong.net.bridge", "a-very-long-bridge-name"),
            ("tong.net.nat", "yes"),
            ("tong.net.publish", "80"),
        ] {
            let err = BridgeConfig::from_annotations(&with(&[(key, value)]))
                .unwrap_err()
                .message;
            assert!(err.contains(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn mac_round_trip() {
        let mac = mac_for(Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(format_mac(mac), "02:74:0a:4d:00:02");
        assert_eq!(parse_mac("02:74:0a:4d:00:02"), Some(mac));
    }

    impl Subnet {
        fn to_string_for_test(self) -> String {
            format!("{}/{}", self.network, self.prefix)
        }
    }
}
