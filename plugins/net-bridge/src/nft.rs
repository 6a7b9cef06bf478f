//! Published ports and outbound NAT: one nftables table per container (`ip tong_<veth>`)
//! written through nft's JSON API in a single atomic batch, so removing the container's
//! rules is deleting its table, and no other table is touched.
//!
//! Only containers that ask for publishing or NAT pay for this (one `nft -j -f -`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use tong_net_common::PortMapping;
use tong_plugin_sdk::{PluginError, PluginResult};

pub struct Rules<'a> {
    pub table: &'a str,
    pub bridge: &'a str,
    pub address: Ipv4Addr,
    pub publish: &'a [PortMapping],
    pub nat: bool,
}

pub fn table_name(veth: &str) -> String {
    format!("tong_{veth}")
}

/// Creates the container's table. Published ports are DNATed both for traffic coming
/// in (prerouting) and for the host's own connections, loopback included (output);
/// connections from 127.0.0.0/8 are masqueraded so the container can answer them.
pub fn apply(rules: &Rules) -> PluginResult<()> {
    let table = rules.table;
    let mut batch = vec![
        json!({"add": {"table": {"family": "ip", "name": table}}}),
        chain(table, "prerouting", -100),
        chain(table, "output", -100),
        chain(table, "postrouting", 100),
    ];
    for p in rules.publish {
        for hook in ["prerouting", "output"] {
            batch.push(rule(
                table,
                hook,
                &[
                    json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}),
                    json!({"match": {"op": "==", "left": {"payload": {"protocol": p.protocol, "field": "dport"}}, "right": p.host_port}}),
                    json!({"dnat": {"addr": rules.address.to_string(), "port": p.container_port}}),
                ],
            ));
        }
    }
    if !rules.publish.is_empty() {
        batch.push(rule(
            table,
            "postrouting",
            &[
                json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}),
                json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": rules.address.to_string()}}),
                json!({"masquerade": null}),
            ],
        ));
        // Loopback-sourced packets may leave through the bridge only with this set.
        sysctl(
            &format!("net/ipv4/conf/{}/route_localnet", rules.bridge),
            "1",
        )?;
    }
    if rules.nat {
        batch.push(rule(
            table,
            "postrouting",
            &[
                json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": rules.address.to_string()}}),
                json!({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": rules.bridge}}),
                json!({"masquerade": null}),
            ],
        ));
    }
    if rules.nat || !rules.publish.is_empty() {
        // Traffic between the outside and the bridge is routed by the host.
        sysctl("net/ipv4/ip_forward", "1")?;
    }
    nft(&json!({"nftables": batch}))
}

/// Deletes the container's table; Ok when it is already gone (add-then-delete in one
/// batch never fails on a missing table).
pub fn remove(table: &str) -> PluginResult<()> {
    let t = json!({"table": {"family": "ip", "name": table}});
    nft(&json!({"nftables": [{"add": t}, {"delete": t}]}))
}

fn chain(table: &str, hook: &str, priority: i32) -> Value {
    json!({"add": {"chain": {
        "family": "ip", "table": table, "name": hook,
        "type": "nat", "hook": hook, "prio": priority, "policy": "accept"
    }}})
}

fn rule(table: &str, chain: &str, expr: &[Value]) -> Value {
    json!({"add": {"rule": {"family": "ip", "table": table, "chain": chain, "expr": expr}}})
}

fn sysctl(key: &str, value: &str) -> PluginResult<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value)
        .map_err(|e| PluginError::os(format!("write {} to {}", value, path.display()), e))
}

/// Runs one batch through `nft -j -f -`.
fn nft(batch: &Value) -> PluginResult<()> {
    let binary = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            PluginError::unsupported(
                "port publishing and NAT need nftables' nft (apt-get install nftables)",
            )
        })?;
    let mut child = Command::new(binary)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PluginError::os(format!("run {binary}"), e))?;
    let input = serde_json::to_vec(batch)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(|e| PluginError::os(format!("write to {binary}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PluginError::os(format!("wait for {binary}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(PluginError::failed(format!(
        "nft failed ({}): {}",
        out.status,
        first.trim()
    )))
}
