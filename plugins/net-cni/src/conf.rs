//! Network configuration lists (`.conflist`, or a single-plugin `.conf`/`.json`) and
//! the per-plugin configuration each plugin receives on stdin.

use std::path::Path;

use serde_json::{json, Map, Value};
use tong_plugin_sdk::{PluginError, PluginResult};

#[derive(Debug)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    /// The list in conflist form, saved in the state for DEL.
    pub raw: Value,
}

impl NetworkList {
    /// Reads a list, or a single plugin configuration turned into a one-plugin list.
    pub fn from_value(mut value: Value, origin: &str) -> PluginResult<NetworkList> {
        let bad = |why: &str| PluginError::invalid(format!("CNI configuration {origin}: {why}"));
        let object = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
        if object.contains_key("type") && !object.contains_key("plugins") {
            let name = object.get("name").cloned().unwrap_or(Value::Null);
            let version = object.get("cniVersion").cloned().unwrap_or(Value::Null);
            value = json!({"cniVersion": version, "name": name, "plugins": [value]});
        }
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no \"name\""))?
            .to_string();
        let cni_version = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"cniVersion\""))?
            .to_string();
        let plugins = value
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("no \"plugins\""))?
            .clone();
        for plugin in &plugins {
            let kind = plugin_type(plugin);
            if kind.is_empty() || kind.contains('/') || kind.starts_with('.') {
                return Err(bad(&format!("plugin type {kind:?} is not a file name")));
            }
        }
        Ok(NetworkList {
            name,
            cni_version,
            plugins,
            raw: value,
        })
    }

    /// A network of loopback plugins only: it configures `lo`, not a new interface.
    pub fn is_loopback(&self) -> bool {
        self.plugins.iter().all(|p| plugin_type(p) == "loopback")
    }

    /// What one plugin gets on stdin: its own section plus the list's name and version,
    /// the previous result, and the runtime values its capabilities ask for.
    pub fn plugin_config(
        &self,
        plugin: &Value,
        previous: Option<&Value>,
        runtime: &Value,
    ) -> Value {
        let mut config = plugin.as_object().cloned().unwrap_or_default();
        config.insert("name".into(), Value::String(self.name.clone()));
        config.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        if let Some(previous) = previous {
            config.insert("prevResult".into(), previous.clone());
        }
        let mut runtime_config = Map::new();
        if let Some(capabilities) = plugin.get("capabilities").and_then(Value::as_object) {
            for (capability, enabled) in capabilities {
                let value = runtime.get(capability);
                let empty = value.and_then(Value::as_array).is_some_and(Vec::is_empty);
                if enabled.as_bool() == Some(true) && value.is_some() && !empty {
                    runtime_config.insert(capability.clone(), value.cloned().unwrap_or_default());
                }
            }
        }
        if !runtime_config.is_empty() {
            config.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        Value::Object(config)
    }
}

pub fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The list named `name` in `dir`, or the first one (by file name) when `name` is None.
pub fn find(dir: &Path, name: Option<&str>) -> PluginResult<NetworkList> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        PluginError::os(format!("CNI configuration directory {}", dir.display()), e)
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    let mut skipped = Vec::new();
    for file in files {
        let origin = file.display().to_string();
        let parsed = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .and_then(|v| NetworkList::from_value(v, &origin).map_err(|e| e.message));
        match parsed {
            Ok(list) if name.is_none_or(|n| n == list.name) => return Ok(list),
            Ok(_) => {}
            Err(why) => skipped.push(why),
        }
    }
    let wanted = name.map_or_else(
        || "no CNI network".to_string(),
        |n| format!("no CNI network {n:?}"),
    );
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!(" (skipped: {})", skipped.join("; "))
    };
    Err(PluginError::invalid(format!(
        "{wanted} in {}{skipped}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_conf_becomes_a_list_and_capabilities_pass_runtime_values() {
        let list = NetworkList::from_value(
            json!({"cniVersion": "1.0.0", "name": "n", "type": "portmap", "capabilities": {"portMappings": true}}),
            "test",
        )
        .unwrap();
        assert_eq!(list.plugins.len(), 1);
        let runtime =
            json!({"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]});
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let config = list.plugin_config(&list.plugins[0], Some(&prev), &runtime);
        assert_eq!(config["name"], "n");
        assert_eq!(config["prevResult"], prev);
        assert_eq!(config["runtimeConfig"]["portMappings"][0]["hostPort"], 80);
        let none = list.plugin_config(&list.plugins[0], None, &json!({"portMappings": []}));
        assert!(none.get("runtimeConfig").is_none() && none.get("prevResult").is_none());
    }

    #[test]
    fn bad_lists_are_named() {
        for (value, why) in [
            (json!([]), "not a JSON object"),
            (
                json!({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}),
                "name",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": []}),
                "plugins",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]}),
                "not a file name",
            ),
        ] {
            let err = NetworkList::from_value(value, "f.conflist")
                .unwrap_err()
                .message;
            assert!(err.contains("f.conflist") && err.contains(why), "{err}");
        }
    }
}
