//! A container's backends as its record keeps them: the request a step is about to send a
//! plugin, the state the plugin returned (checked before it is recorded), and the plugin
//! itself, loaded again by later commands. Shared by create and teardown.

use oci_spec::runtime::Spec;
use serde::Serialize;
use serde_json::Value;
use tong_abi::PluginKind;
use tong_plugin_sdk::wire;

use crate::error::{Error, Result};
use crate::plugins::{Backend, PluginHost};
use crate::state::Record;

/// Deepest plugin state accepted: the state file nests it three levels down, and must
/// stay under serde_json's limit of 128 to be read back (found by fuzz/plugin_json).
const MAX_STATE_DEPTH: usize = 64;

/// The plugin of `B`'s kind the container was made with.
pub(crate) fn recorded_plugin<B: Backend>(plugins: &PluginHost, record: &Record) -> Result<B> {
    let kind = B::KIND;
    let backend = record.backend(kind).ok_or_else(|| {
        Error::InvalidState(format!("container {:?} has no {kind} backend", record.id))
    })?;
    plugins.load_recorded(&backend.name, &backend.path)
}

/// The cgroup plugin's create request for a container.
pub(crate) fn cgroup_request(id: &str, spec: &Spec) -> Result<wire::CgroupRequest> {
    let linux = spec.linux().as_ref();
    Ok(wire::CgroupRequest {
        id: id.to_string(),
        cgroups_path: linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string()),
        resources: linux
            .and_then(|l| l.resources().as_ref())
            .map(to_value)
            .transpose()?,
        adopt: false,
    })
}

/// Records the request a step of `kind` is about to send.
pub(crate) fn set_backend_request<T: Serialize>(
    record: &mut Record,
    kind: PluginKind,
    req: &T,
) -> Result<()> {
    if let Some(b) = record.backends.get_mut(kind.as_str()) {
        b.request = Some(to_value(req)?);
    }
    Ok(())
}

/// Records the state the plugin of `kind` returned, in place of its request.
pub(crate) fn set_backend_state(record: &mut Record, kind: PluginKind, state: &[u8]) -> Result<()> {
    let name = record.backend(kind).map_or("?", |b| b.name.as_str());
    let value = plugin_state(kind, name, state)?;
    if let Some(b) = record.backends.get_mut(kind.as_str()) {
        b.state = Some(value);
        b.request = None;
    }
    Ok(())
}

/// Parses the state JSON a plugin returned (empty means `{}`).
pub fn plugin_state(kind: PluginKind, name: &str, state: &[u8]) -> Result<Value> {
    if state.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let value: Value = serde_json::from_slice(state)
        .map_err(|e| Error::Plugin(format!("{kind}={name} returned invalid state JSON: {e}")))?;
    // The state file cannot tell a null state from none recorded (found by
    // fuzz/plugin_json): teardown would then skip the backend.
    if value.is_null() {
        return Err(Error::Plugin(format!(
            "{kind}={name} returned null as its state (return {{}} or nothing for no state)"
        )));
    }
    if depth(&value) > MAX_STATE_DEPTH {
        return Err(Error::Plugin(format!(
            "{kind}={name} returned state JSON nested deeper than {MAX_STATE_DEPTH} levels"
        )));
    }
    Ok(value)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether a backend's state says it made nothing teardown would undo (pivot and
/// chroot's rootfs, net-none): `{}` (or empty, which means the same). Its record write
/// waits for the next one, so a crash before that finds no state and skips the backend,
/// which is then right.
pub(crate) fn nothing_to_undo(state: &[u8]) -> bool {
    matches!(state.trim_ascii(), b"" | b"{}")
}

/// A config section or request as a JSON value.
pub(crate) fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v)
        .map_err(|e| Error::Internal(format!("cannot encode config section: {e}")))
}

/// A request as the JSON bytes a plugin reads.
pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("cannot encode plugin request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_state_is_checked_before_it_is_recorded() {
        assert_eq!(
            plugin_state(PluginKind::Cgroup, "v1", b"").unwrap(),
            serde_json::json!({})
        );
        let err = plugin_state(PluginKind::Cgroup, "v1", b"null").unwrap_err();
        assert!(err.to_string().contains("returned null"), "{err}");
        let deep = "[".repeat(MAX_STATE_DEPTH + 1) + &"]".repeat(MAX_STATE_DEPTH + 1);
        let err = plugin_state(PluginKind::Rootfs, "x", deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        assert!(nothing_to_undo(b" {} ") && nothing_to_undo(b"") && !nothing_to_undo(b"{\"a\":1}"));
    }
}
