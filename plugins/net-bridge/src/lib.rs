//! `net=bridge`: a host bridge (default `tong0`, made on first use with the gateway
//! address), one veth pair per container with the host end on the bridge and the other
//! end born in the container's namespace as `eth0`, an address from the bridge's subnet
//! (kept in a file-locked IPAM file under the tong root), a default route via the
//! gateway, and on request published ports and outbound NAT through nftables.
//!
//! Teardown frees the address and removes the container's nftables table but does not
//! delete the veth: the kernel destroys it with the container's namespace, after the
//! container's last process is gone, so `delete` does not wait for it.

mod config;
mod ipam;
mod nft;

use std::ffi::CStr;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tong_net_common::netlink::VethPair;
use tong_net_common::{loopback_up, Netlink};
use tong_plugin_sdk::wire::NetworkRequest;
use tong_plugin_sdk::{NetworkPlugin, PluginError, PluginInfo, PluginResult};

use config::BridgeConfig;

/// Name of the container's end of the veth pair.
const CONTAINER_IFNAME: &str = "eth0";

struct NetBridge;

/// What teardown needs, stored by the engine in the container's record.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BridgeState {
    bridge: String,
    veth: String,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    ipam_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nft_table: Option<String>,
    /// Shown by `tong state` among the container's annotations.
    annotations: std::collections::BTreeMap<String, String>,
}

impl PluginInfo for NetBridge {
    const NAME: &'static CStr = c"bridge";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"veth pair on a host bridge (default tong0), IPAM, optional nftables port publishing and NAT";
    // Below net-none: a container joins a bridge only when asked to.
    const PRIORITY: u32 = 5;

    fn probe() -> PluginResult<()> {
        Netlink::open()
            .map(drop)
            .map_err(|e| PluginError::unsupported(format!("cannot open a netlink socket: {e}")))
    }
}

impl NetworkPlugin for NetBridge {
    fn setup(req: &[u8]) -> PluginResult<Vec<u8>> {
        let req: NetworkRequest = serde_json::from_slice(req)?;
        tong_net_common::require_host_privileges("making a bridge and a veth pair on the host")?;
        let config = BridgeConfig::from_annotations(&req.annotations)?;
        let root = Path::new(&req.state_dir)
            .parent()
            .ok_or_else(|| PluginError::invalid("state directory has no parent"))?;
        let ipam = ipam::Ipam::new(root, &config.bridge);
        let address = ipam.allocate(config.subnet, &req.id, &req.state_dir)?;
        let mut state = BridgeState {
            bridge: config.bridge.clone(),
            veth: host_veth_name(&req.state_dir),
            address,
            prefix: config.subnet.prefix,
            gateway: config.subnet.gateway(),
            ipam_file: ipam.file().to_path_buf(),
            nft_table: None,
            annotations: std::collections::BTreeMap::new(),
        };
        match connect(&req, &config, &mut state) {
            Ok(()) => Ok(serde_json::to_vec(&state)?),
            Err(e) => {
                undo_failed_setup(&state);
                Err(e)
            }
        }
    }

    fn teardown(state: &[u8]) -> PluginResult<()> {
        let state: BridgeState = match serde_json::from_slice(state) {
            Ok(state) => state,
            // tong died during setup, before it could record our state: undo from the
            // request it recorded instead.
            Err(e) => match serde_json::from_slice::<NetworkRequest>(state) {
                Ok(req) => return teardown_from_request(&req),
                Err(_) => return Err(e.into()),
            },
        };
        let mut first_error = None;
        if let Some(table) = &state.nft_table {
            if let Err(e) = nft::remove(table) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = ipam::Ipam::at(&state.ipam_file).release(state.address) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Undoes a setup that may have run in part: frees whatever address the container holds
/// and removes its nftables table (made only with publishing or NAT). The veth, if any,
/// goes with the container's namespace.
fn teardown_from_request(req: &NetworkRequest) -> PluginResult<()> {
    let config = BridgeConfig::from_annotations(&req.annotations)?;
    let root = Path::new(&req.state_dir)
        .parent()
        .ok_or_else(|| PluginError::invalid("state directory has no parent"))?;
    ipam::Ipam::new(root, &config.bridge).release_owner(&req.state_dir)?;
    if !config.publish.is_empty() || config.nat {
        nft::remove(&nft::table_name(&host_veth_name(&req.state_dir)))?;
    }
    Ok(())
}

/// Bridge, veth pair, container addressing and routes, then published ports; records
/// in `state` what it made as it goes so a failure can be undone.
fn connect(
    req: &NetworkRequest,
    config: &BridgeConfig,
    state: &mut BridgeState,
) -> PluginResult<()> {
    let netns = File::open(&req.netns_path)
        .map_err(|e| PluginError::os(format!("open {}", req.netns_path), e))?;
    let mut host = Netlink::open().map_err(|e| PluginError::os("netlink socket", e))?;
    let bridge_index = ensure_bridge(&mut host, config)?;
    let mac = config.mac.unwrap_or_else(|| config::mac_for(state.address));
    host.add_veth(&VethPair {
        host: &state.veth,
        bridge_index,
        container_netns: &netns,
        container_name: CONTAINER_IFNAME,
        container_mac: mac,
        mtu: config.mtu,
    })
    .map_err(|e| PluginError::os(format!("netlink: create veth {}", state.veth), e))?;

    let mut inside = Netlink::open_in(&netns)?;
    loopback_up(&mut inside)?;
    let eth0 = inside
        .link_index(CONTAINER_IFNAME)
        .map_err(|e| PluginError::os("netlink: look up eth0", e))?
        .ok_or_else(|| PluginError::failed("eth0 missing in the container after veth creation"))?;
    inside
        .set_up(eth0)
        .map_err(|e| PluginError::os("netlink: set eth0 up", e))?;
    inside
        .add_address(eth0, state.address, state.prefix)
        .map_err(|e| {
            PluginError::os(
                format!("netlink: add {}/{} to eth0", state.address, state.prefix),
                e,
            )
        })?;
    inside
        .add_default_route(eth0, state.gateway)
        .map_err(|e| PluginError::os(format!("netlink: default route via {}", state.gateway), e))?;

    if !config.publish.is_empty() || config.nat {
        let table = nft::table_name(&state.veth);
        state.nft_table = Some(table.clone());
        nft::apply(&nft::Rules {
            table: &table,
            bridge: &config.bridge,
            address: state.address,
            publish: &config.publish,
            nat: config.nat,
        })?;
    }
    let annotations = &mut state.annotations;
    annotations.insert(
        "tong.net.ip".into(),
        format!("{}/{}", state.address, state.prefix),
    );
    annotations.insert("tong.net.gateway".into(), state.gateway.to_string());
    annotations.insert("tong.net.bridge".into(), config.bridge.clone());
    annotations.insert("tong.net.veth".into(), state.veth.clone());
    annotations.insert("tong.net.mac".into(), config::format_mac(mac));
    Ok(())
}

/// The bridge's index, creating it (up, with the gateway address) when missing. Safe
/// against concurrent creates: whoever loses the race finds the winner's bridge.
fn ensure_bridge(nl: &mut Netlink, config: &BridgeConfig) -> PluginResult<u32> {
    let lookup = |nl: &mut Netlink| {
        nl.link_index(&config.bridge)
            .map_err(|e| PluginError::os(format!("netlink: look up {}", config.bridge), e))
    };
    let index = if let Some(index) = lookup(nl)? {
        index
    } else {
        match nl.add_bridge(&config.bridge, config.mtu) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(PluginError::os(
                    format!("netlink: create bridge {}", config.bridge),
                    e,
                ))
            }
        }
        lookup(nl)?.ok_or_else(|| {
            PluginError::failed(format!("bridge {} vanished after creation", config.bridge))
        })?
    };
    let gateway = config.subnet.gateway();
    match nl.add_address(index, gateway, config.subnet.prefix) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
            return Err(PluginError::os(
                format!(
                    "netlink: add {gateway}/{} to {}",
                    config.subnet.prefix, config.bridge
                ),
                e,
            ))
        }
        _ => {}
    }
    nl.set_up(index)
        .map_err(|e| PluginError::os(format!("netlink: set {} up", config.bridge), e))?;
    Ok(index)
}

/// Undoes a setup that failed part way. The veth is deleted here (the container's
/// namespace may outlive this failure briefly); the cost is paid only on this path.
fn undo_failed_setup(state: &BridgeState) {
    if let Some(table) = &state.nft_table {
        let _ = nft::remove(table);
    }
    if let Ok(mut nl) = Netlink::open() {
        if let Ok(Some(index)) = nl.link_index(&state.veth) {
            let _ = nl.delete_link(index);
        }
    }
    let _ = ipam::Ipam::at(&state.ipam_file).release(state.address);
}

/// A host-side interface name unique per container (root + id), within IFNAMSIZ.
fn host_veth_name(state_dir: &str) -> String {
    // FNV-1a: stable across builds, no dependency.
    let hash = state_dir.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("tv{:012x}", hash & 0xffff_ffff_ffff)
}

tong_plugin_sdk::export_network_plugin!(NetBridge);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz_and_differ() {
        let a = host_veth_name("/run/tong/a");
        let b = host_veth_name("/run/tong/b");
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
        assert_eq!(a, host_veth_name("/run/tong/a"));
    }
}
