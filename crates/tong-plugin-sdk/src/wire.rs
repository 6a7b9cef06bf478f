//! JSON documents exchanged between host and plugins. Sections of the OCI config travel
//! as they appear in config.json (camelCase), so plugins can parse them with `oci-spec`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `create` request of a cgroup plugin.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CgroupRequest {
    /// The container id.
    pub id: String,
    /// `linux.cgroupsPath` from the config; when absent the plugin uses `tong/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    /// `linux.resources` from the config, as OCI JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// Set by `delete --force` when the container's state file is lost or damaged: the
    /// cgroup is this container's own, so reuse it even when processes are left in it
    /// (a plain create refuses that), to hand back the state that destroys it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// Statistics of a container's cgroup, in the shape `tong events --stats` prints.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<PidsStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio: Option<Value>,
}

/// Memory use in bytes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryStats {
    pub usage: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// CPU time in nanoseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuStats {
    pub usage_total: u64,
    #[serde(default)]
    pub usage_user: u64,
    #[serde(default)]
    pub usage_kernel: u64,
}

/// Process counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PidsStats {
    pub current: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `prepare` request of a rootfs plugin.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootfsRequest {
    pub id: String,
    /// Absolute path of the bundle.
    pub bundle: String,
    /// The container's private state directory (0700), for the plugin's own files.
    pub state_dir: String,
    /// Absolute path of `root.path`.
    pub rootfs: String,
    /// `root.readonly`.
    #[serde(default)]
    pub readonly: bool,
    /// `mounts` from the config, as OCI JSON.
    #[serde(default)]
    pub mounts: Vec<Value>,
    /// `linux.maskedPaths`.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// `linux.readonlyPaths`.
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    /// `linux.devices`, as OCI JSON.
    #[serde(default)]
    pub devices: Vec<Value>,
    /// `linux.rootfsPropagation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_propagation: Option<String>,
    /// The container gets a new user namespace (device nodes must be bind-mounted).
    #[serde(default)]
    pub user_namespace: bool,
    /// The container gets a new cgroup namespace.
    #[serde(default)]
    pub cgroup_namespace: bool,
    /// The container gets a new network namespace.
    #[serde(default)]
    pub network_namespace: bool,
    /// The container has no mount namespace of its own (none created, none joined): it
    /// mounts in the runtime's, and enters its root with a plain chroot (as runc does).
    #[serde(default)]
    pub caller_mount_namespace: bool,
    /// The config's annotations, for backend-specific settings.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `linux.mountLabel` (an SELinux context for the container's mounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_label: Option<String>,
}

/// `setup` request of a network plugin.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRequest {
    pub id: String,
    /// The container's private state directory (0700).
    pub state_dir: String,
    /// The container's init process, as the host sees it.
    pub pid: i32,
    /// Path of the container's network namespace (`/proc/PID/ns/net`).
    pub netns_path: String,
    /// The config's annotations, for backend-specific settings.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}
