//! `net=cni`: connects the container with CNI plugins (spec 1.0): network configuration
//! lists from a directory, plugin binaries from `CNI_PATH`, `ADD` on create with the
//! container's network namespace, `DEL` (in reverse order, with the cached result) on
//! delete, `CHECK` after `ADD` when the config asks for it.
//!
//! The namespace is pinned by a bind mount in the container's state directory for the
//! container's whole life, so `DEL` reaches it even after the container's processes
//! are gone (it crashed, or `delete` killed it first): the plugins can then remove what
//! they put inside, and the pin is released once `DEL` succeeds.

mod conf;
mod exec;
mod pin;

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tong_net_common::{annotation, flag_annotation, loopback_up, published_ports, Netlink};
use tong_plugin_sdk::wire::NetworkRequest;
use tong_plugin_sdk::{NetworkPlugin, PluginError, PluginInfo, PluginResult};

use conf::NetworkList;
use exec::{Command, Invocation};

/// Where the result of every ADD is written in the state directory.
const RESULT_FILE: &str = "cni-result.json";

struct NetCni;

/// One network the container joined.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    name: String,
    ifname: String,
    /// The configuration list as used for ADD; DEL must see the same one.
    config: Value,
    #[serde(default)]
    result: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CniState {
    id: String,
    netns: PathBuf,
    cni_path: String,
    result_file: PathBuf,
    #[serde(default)]
    runtime_config: Value,
    attachments: Vec<Attachment>,
    /// Shown by `tong state` among the container's annotations.
    annotations: BTreeMap<String, String>,
}

impl PluginInfo for NetCni {
    const NAME: &'static CStr = c"cni";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr = c"CNI plugins (spec 1.0) from /etc/cni/net.d and CNI_PATH";
    // Below net-none: CNI is used when chosen.
    const PRIORITY: u32 = 4;

    fn probe() -> PluginResult<()> {
        Ok(())
    }
}

impl NetworkPlugin for NetCni {
    fn setup(req: &[u8]) -> PluginResult<Vec<u8>> {
        let req: NetworkRequest = serde_json::from_slice(req)?;
        tong_net_common::require_host_privileges(
            "running CNI plugins (they configure the host's side of the network)",
        )?;
        let settings = Settings::from_request(&req)?;
        let lists = settings
            .networks
            .iter()
            .map(|name| conf::find(&settings.conf_dir, name.as_deref()))
            .collect::<PluginResult<Vec<NetworkList>>>()?;

        let netns_file = File::open(&req.netns_path)
            .map_err(|e| PluginError::os(format!("open {}", req.netns_path), e))?;
        let mut inside = Netlink::open_in(&netns_file)?;
        loopback_up(&mut inside)?;

        let state_dir = Path::new(&req.state_dir);
        let netns = pin::pin(&req.netns_path, state_dir)?;
        let mut state = CniState {
            id: req.id.clone(),
            netns,
            cni_path: settings.cni_path,
            result_file: state_dir.join(RESULT_FILE),
            runtime_config: settings.runtime_config,
            attachments: Vec::new(),
            annotations: BTreeMap::new(),
        };
        let mut eth = 0;
        for list in lists {
            let ifname = if list.is_loopback() {
                "lo".to_string()
            } else {
                eth += 1;
                format!("eth{}", eth - 1)
            };
            state.attachments.push(Attachment {
                name: list.name.clone(),
                ifname,
                config: list.raw.clone(),
                result: None,
            });
            let added = add(&state, state.attachments.len() - 1, &list);
            match added {
                Ok(result) => {
                    state.attachments.last_mut().expect("just pushed").result = Some(result);
                }
                Err(e) => {
                    // Undo every network, the failed one included (its first plugins
                    // may have done their part), then release the pin.
                    let _ = teardown(&state);
                    return Err(e);
                }
            }
        }
        if settings.check {
            for i in 0..state.attachments.len() {
                if let Err(e) = run_list(&state, i, Command::Check) {
                    let _ = teardown(&state);
                    return Err(e);
                }
            }
        }
        if let Err(e) = describe(&mut state) {
            let _ = teardown(&state);
            return Err(e);
        }
        Ok(serde_json::to_vec(&state)?)
    }

    fn teardown(state: &[u8]) -> PluginResult<()> {
        match serde_json::from_slice::<CniState>(state) {
            Ok(state) => teardown(&state),
            // tong died during setup, before it could record our state: DEL every
            // network the request names (DEL is idempotent), against the pin if made.
            Err(e) => match serde_json::from_slice::<NetworkRequest>(state) {
                Ok(req) => teardown(&state_from_request(&req)?),
                Err(_) => Err(e.into()),
            },
        }
    }
}

/// Where the configuration comes from, from the annotations, then the environment.
struct Settings {
    conf_dir: PathBuf,
    cni_path: String,
    /// Network names in order; None means the first list in the directory.
    networks: Vec<Option<String>>,
    check: bool,
    runtime_config: Value,
}

impl Settings {
    fn from_request(req: &NetworkRequest) -> PluginResult<Settings> {
        let a = &req.annotations;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let conf_dir = annotation(a, "tong.cni.confdir")
            .map(str::to_string)
            .or_else(|| env("TONG_CNI_CONF_DIR"))
            .unwrap_or_else(|| "/etc/cni/net.d".into());
        let cni_path = annotation(a, "tong.cni.path")
            .map(str::to_string)
            .or_else(|| env("CNI_PATH"))
            .unwrap_or_else(|| "/opt/cni/bin:/usr/lib/cni".into());
        let networks = match annotation(a, "tong.cni.networks") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| Some(n.to_string()))
                .collect(),
            None => vec![None],
        };
        let check = flag_annotation(a, "tong.cni.check")?;
        let publish = published_ports(a)?;
        let runtime_config = serde_json::json!({ "portMappings": publish });
        Ok(Settings {
            conf_dir: PathBuf::from(conf_dir),
            cni_path,
            networks,
            check,
            runtime_config,
        })
    }
}

/// ADD through every plugin of the list, each getting the previous one's result.
fn add(state: &CniState, index: usize, list: &NetworkList) -> PluginResult<Value> {
    let attachment = &state.attachments[index];
    let mut previous: Option<Value> = None;
    for plugin in &list.plugins {
        let out = exec::run(&Invocation {
            command: Command::Add,
            container_id: &state.id,
            netns: &state.netns.display().to_string(),
            ifname: &attachment.ifname,
            cni_path: &state.cni_path,
            config: &list.plugin_config(plugin, previous.as_ref(), &state.runtime_config),
            network: &list.name,
        })?;
        previous = Some(out.ok_or_else(|| {
            PluginError::failed(format!(
                "CNI plugin {} (network {}) ADD printed no result",
                conf::plugin_type(plugin),
                list.name
            ))
        })?);
    }
    previous.ok_or_else(|| PluginError::invalid(format!("network {} has no plugins", list.name)))
}

/// DEL (reverse order) or CHECK (in order) through the list of attachment `index`, with
/// its cached result as prevResult.
fn run_list(state: &CniState, index: usize, command: Command) -> PluginResult<()> {
    let attachment = &state.attachments[index];
    let list = NetworkList::from_value(attachment.config.clone(), "the saved configuration")?;
    let mut plugins: Vec<&Value> = list.plugins.iter().collect();
    if command == Command::Del {
        plugins.reverse();
    }
    let netns = if pin::is_pinned(&state.netns) {
        state.netns.display().to_string()
    } else {
        // The namespace is gone: plugins clean what lives outside it (spec 1.0 allows
        // an empty CNI_NETNS on DEL).
        String::new()
    };
    let mut first_error = None;
    for plugin in plugins {
        let run = exec::run(&Invocation {
            command,
            container_id: &state.id,
            netns: &netns,
            ifname: &attachment.ifname,
            cni_path: &state.cni_path,
            config: &list.plugin_config(plugin, attachment.result.as_ref(), &state.runtime_config),
            network: &list.name,
        });
        if let Err(e) = run {
            if command == Command::Check {
                return Err(e);
            }
            // DEL keeps going so one failing plugin does not strand the others' work.
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The state a setup from `req` would have recorded, without the results: what DEL needs.
fn state_from_request(req: &NetworkRequest) -> PluginResult<CniState> {
    let settings = Settings::from_request(req)?;
    let state_dir = Path::new(&req.state_dir);
    let mut eth = 0;
    let mut attachments = Vec::new();
    for name in &settings.networks {
        let list = conf::find(&settings.conf_dir, name.as_deref())?;
        let ifname = if list.is_loopback() {
            "lo".to_string()
        } else {
            eth += 1;
            format!("eth{}", eth - 1)
        };
        attachments.push(Attachment {
            name: list.name.clone(),
            ifname,
            config: list.raw.clone(),
            result: None,
        });
    }
    Ok(CniState {
        id: req.id.clone(),
        netns: state_dir.join("netns"),
        cni_path: settings.cni_path,
        result_file: state_dir.join(RESULT_FILE),
        runtime_config: settings.runtime_config,
        attachments,
        annotations: BTreeMap::new(),
    })
}

/// DEL every attachment, newest first, then release the pin and the result file; the
/// pin stays when a DEL failed, so a later `delete` can retry against the namespace.
fn teardown(state: &CniState) -> PluginResult<()> {
    let mut first_error = None;
    for i in (0..state.attachments.len()).rev() {
        if let Err(e) = run_list(state, i, Command::Del) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    pin::unpin(&state.netns)?;
    match std::fs::remove_file(&state.result_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PluginError::os(
            format!("remove {}", state.result_file.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// The results by network: written to the state directory and, for `tong state`, put
/// in the annotations with the first address.
fn describe(state: &mut CniState) -> PluginResult<()> {
    let results: serde_json::Map<String, Value> = state
        .attachments
        .iter()
        .map(|a| (a.name.clone(), a.result.clone().unwrap_or(Value::Null)))
        .collect();
    let results = Value::Object(results);
    std::fs::write(&state.result_file, serde_json::to_vec_pretty(&results)?)
        .map_err(|e| PluginError::os(format!("write {}", state.result_file.display()), e))?;
    let first_ip = state
        .attachments
        .iter()
        .filter(|a| a.ifname != "lo")
        .find_map(|a| {
            a.result
                .as_ref()?
                .get("ips")?
                .as_array()?
                .first()?
                .get("address")?
                .as_str()
        });
    if let Some(ip) = first_ip {
        state
            .annotations
            .insert("tong.net.ip".into(), ip.to_string());
    }
    state
        .annotations
        .insert("tong.cni.result".into(), results.to_string());
    Ok(())
}

tong_plugin_sdk::export_network_plugin!(NetCni);
