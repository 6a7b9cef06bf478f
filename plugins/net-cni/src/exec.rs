//! Running one CNI plugin binary: the CNI_* environment, the configuration on stdin, the
//! result or the error object on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tong_plugin_sdk::{PluginError, PluginResult};

use crate::conf::plugin_type;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

pub struct Invocation<'a> {
    pub command: Command,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub cni_path: &'a str,
    pub config: &'a Value,
    /// The network's name, for error messages.
    pub network: &'a str,
}

/// Runs the plugin; returns what it printed (ADD's result), None when it printed nothing.
pub fn run(inv: &Invocation) -> PluginResult<Option<Value>> {
    let kind = plugin_type(inv.config);
    let what = format!(
        "CNI plugin {kind} {} (network {})",
        inv.command.as_str(),
        inv.network
    );
    let binary = find_binary(kind, inv.cni_path).ok_or_else(|| {
        PluginError::failed(format!(
            "{what}: no executable {kind:?} in CNI_PATH {}",
            inv.cni_path
        ))
    })?;
    let mut command = std::process::Command::new(&binary);
    command
        .env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_PATH", inv.cni_path)
        .env_remove("CNI_ARGS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("PATH").is_none() {
        // Plugins such as portmap run iptables.
        command.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    let mut child = command
        .spawn()
        .map_err(|e| PluginError::os(format!("{what}: run {}", binary.display()), e))?;
    let input = serde_json::to_vec(inv.config)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin may exit without reading; its status tells what happened.
        let _ = stdin.write_all(&input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PluginError::os(format!("{what}: wait"), e))?;
    let stdout: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if out.status.success() {
        if stdout.is_none() && !out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Err(PluginError::failed(format!(
                "{what}: printed something that is not JSON: {}",
                first_line(&out.stdout)
            )));
        }
        return Ok(stdout);
    }
    // The spec's error object: {"code", "msg", "details"}; else whatever it said.
    let message = match &stdout {
        Some(e) if e.get("msg").is_some() => {
            let msg = e["msg"].as_str().unwrap_or_default();
            let details = e
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            let code = e.get("code").map(ToString::to_string).unwrap_or_default();
            format!("{msg}{details} (CNI error code {code})")
        }
        _ => {
            let said = first_line(&out.stderr);
            if said.is_empty() {
                first_line(&out.stdout)
            } else {
                said
            }
        }
    };
    Err(PluginError::failed(format!(
        "{what} failed ({}): {message}",
        out.status
    )))
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

fn find_binary(kind: &str, cni_path: &str) -> Option<PathBuf> {
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(kind))
        .find(|p| p.is_file())
}
