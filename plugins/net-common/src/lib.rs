//! What tong's network plugins share: a synchronous rtnetlink socket (opened in the
//! runtime's namespace or in a container's), the few link, address and route requests
//! they make, and the port-publishing annotation they both read.
//!
//! Synchronous on purpose: plugins are dlopened on the create path and must start no
//! threads, so no async runtime (rtnetlink's tokio) is brought in; netlink-packet-route
//! builds and parses the messages, netlink-sys owns the socket.

pub mod netlink;
pub mod ports;

pub use netlink::Netlink;
pub use ports::PortMapping;

use std::collections::BTreeMap;

use tong_plugin_sdk::{PluginError, PluginResult};

/// Annotation listing published ports, read by net-bridge and passed to CNI's portmap.
pub const PUBLISH_ANNOTATION: &str = "tong.net.publish";

/// The annotation's value, if set and not blank.
pub fn annotation<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    annotations
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// Parses an annotation with `FromStr`, naming the annotation when the value is bad.
pub fn parse_annotation<T: std::str::FromStr>(
    annotations: &BTreeMap<String, String>,
    key: &str,
) -> PluginResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    annotation(annotations, key)
        .map(|v| {
            v.parse()
                .map_err(|e| PluginError::invalid(format!("annotation {key}={v:?}: {e}")))
        })
        .transpose()
}

/// A `true`/`false` annotation, false when absent.
pub fn flag_annotation(annotations: &BTreeMap<String, String>, key: &str) -> PluginResult<bool> {
    match annotation(annotations, key) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(PluginError::invalid(format!(
            "annotation {key}={v:?}: expected true or false"
        ))),
    }
}

/// The ports `tong.net.publish` asks for (none when absent).
pub fn published_ports(annotations: &BTreeMap<String, String>) -> PluginResult<Vec<PortMapping>> {
    annotation(annotations, PUBLISH_ANNOTATION).map_or(Ok(Vec::new()), ports::parse)
}

/// Brings up `lo` in the namespace `nl` talks to.
pub fn loopback_up(nl: &mut Netlink) -> PluginResult<()> {
    let lo = nl
        .link_index("lo")
        .map_err(|e| PluginError::os("netlink: look up lo", e))?
        .ok_or_else(|| PluginError::failed("no lo interface in the container's namespace"))?;
    nl.set_up(lo)
        .map_err(|e| PluginError::os("netlink: set lo up", e))
}

/// Refuses, before anything is made, a caller without CAP_NET_ADMIN and CAP_SYS_ADMIN
/// (tong run by a non-root user): `what` creates interfaces on the host and enters the
/// container's namespace from there, which needs both.
pub fn require_host_privileges(what: &str) -> PluginResult<()> {
    // Bit numbers from linux/capability.h.
    const NEEDED: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")];
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| PluginError::os("read /proc/self/status", e))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| PluginError::failed("no CapEff line in /proc/self/status"))?;
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PluginError::unsupported(format!(
        "{what} needs root: tong runs without {} (a rootless container can use net=none, the default)",
        missing.join(" and ")
    )))
}
