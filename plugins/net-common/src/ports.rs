//! Published ports: `tong.net.publish` = `HOSTPORT:CONTAINERPORT[/tcp|/udp],...`.

use serde::{Deserialize, Serialize};
use tong_plugin_sdk::{PluginError, PluginResult};

/// One host port forwarded to a container port, in CNI's `portMappings` shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// Parses the annotation's value; the error names the entry that is wrong.
pub fn parse(value: &str) -> PluginResult<Vec<PortMapping>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = |why: &str| {
                PluginError::invalid(format!(
                    "annotation {}: entry {entry:?} {why} (expected HOSTPORT:CONTAINERPORT[/tcp|/udp])",
                    crate::PUBLISH_ANNOTATION
                ))
            };
            let (ports, protocol) = entry.split_once('/').unwrap_or((entry, "tcp"));
            if protocol != "tcp" && protocol != "udp" {
                return Err(bad("has an unknown protocol"));
            }
            let (host, container) = ports.split_once(':').ok_or_else(|| bad("has no ':'"))?;
            let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
            Ok(PortMapping {
                host_port: port(host).ok_or_else(|| bad("has a bad host port"))?,
                container_port: port(container).ok_or_else(|| bad("has a bad container port"))?,
                protocol: protocol.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_defaults_to_tcp() {
        let got = parse("8080:80, 5353:53/udp").unwrap();
        assert_eq!(
            got,
            vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into()
                },
                PortMapping {
                    host_port: 5353,
                    container_port: 53,
                    protocol: "udp".into()
                },
            ]
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn names_the_bad_entry() {
        for (value, why) in [
            ("80", "no ':'"),
            ("0:80", "bad host port"),
            ("80:70000", "bad container port"),
            ("80:80/sctp", "unknown protocol"),
        ] {
            let err = parse(value).unwrap_err().message;
            assert!(err.contains(value) && err.contains(why), "{err}");
        }
    }
}
