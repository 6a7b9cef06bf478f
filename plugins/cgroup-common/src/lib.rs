//! Helpers shared by the cgroup-v1 and cgroup-v2 plugins: where the hierarchies are
//! mounted ([`mounts`]), which directory a container gets ([`path`]), and creating,
//! inspecting and removing cgroup directories ([`dir`]), and device access rules
//! ([`devices`]; on cgroup2 enforced by an eBPF program, [`bpf`]).
//!
//! Errors are [`PluginError`]s without a plugin prefix; each plugin adds its own
//! (`cgroup-v1: ...`) at its boundary.

pub mod bpf;
pub mod controllers;
pub mod devices;
pub mod dir;
pub mod mounts;
pub mod path;
pub mod testing;

pub use tong_plugin_sdk::{PluginError, PluginResult};

/// Says that a setting was not applied, without failing: through the engine's log (see
/// [`tong_plugin_sdk::warn`]).
pub fn warn(message: &str) {
    tong_plugin_sdk::warn(message);
}

/// Warns about each `linux.resources` field in `fields` that this backend has no way to
/// apply (`why` says which backend).
pub fn warn_not_applied(fields: &[&str], why: &str) {
    for field in fields {
        warn(&format!("linux.resources.{field} is not applied: {why}"));
    }
}
