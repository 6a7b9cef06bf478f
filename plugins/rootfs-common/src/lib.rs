//! The part of tong's rootfs plugins that does not depend on how the container enters
//! its root: in the parent, [`plan::build`] validates the config's root, mounts,
//! devices, masked and read-only paths and builds a [`plan::Plan`]; in the child,
//! [`child::setup`] makes `/` rslave, makes the rootfs a mount point (a bind of itself,
//! or an overlay), mounts everything with destinations resolved *inside* the rootfs
//! (openat2 `RESOLVE_IN_ROOT`; a `tmpcopyup` tmpfs gets a copy of what the directory
//! held, see `copyup`), fills `/dev`, enters the root (pivot_root or chroot),
//! then masks, makes paths read-only and finally the root itself if asked.
//!
//! Each backend crate (rootfs-pivot, rootfs-chroot, rootfs-overlay) is a thin
//! `RootfsPlugin` that picks a [`plan::RootMount`] and a [`plan::Enter`].
//!
//! Modules, leaves first (no module imports one that imports it back): `options`,
//! `resolve` and `steps` (the plan's data) ← `syscalls` (the child's no-allocation
//! calls) and `copyup` ← `cgroup` (plans and makes the cgroup mount) ← `plan` (parent)
//! and `child` (child).

use tong_plugin_sdk::{PluginError, PluginResult};

pub mod cgroup;
pub mod child;
mod copyup;
pub mod options;
pub mod plan;
pub mod resolve;
pub mod steps;
mod syscalls;
pub mod testing;

#[cfg(test)]
mod tests;

pub use options::{parse_mount_options, parse_propagation, MountOptions};
pub use plan::{Enter, Plan, RootMount};

/// CAP_SYS_ADMIN's bit in the capability sets.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether the effective capability set (from /proc/self/status) holds CAP_SYS_ADMIN.
fn has_cap_sys_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether unprivileged users may create user namespaces here.
fn user_namespaces_allowed() -> bool {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    // Debian kernels before 6.1 also had kernel.unprivileged_userns_clone.
    let debian = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
        .map_or(true, |s| s.trim() != "0");
    max.is_some_and(|m| m > 0) && debian
}

/// What every backend needs: the right to mount, and openat2 for in-root resolution.
pub fn probe_mount_and_openat2(what: &str) -> PluginResult<()> {
    let root = nix::unistd::geteuid().is_root();
    // Without root the mounts happen in the container's own user namespace, where its
    // process holds CAP_SYS_ADMIN: possible when the host lets users make one.
    if !root && !has_cap_sys_admin() && !user_namespaces_allowed() {
        return Err(PluginError::unsupported(format!(
            "{what} and mount need root, CAP_SYS_ADMIN or a user namespace, and this host allows no user namespaces (user.max_user_namespaces is 0)"
        )));
    }
    match resolve::openat2(libc::AT_FDCWD, c"/", libc::O_PATH, libc::RESOLVE_IN_ROOT) {
        Ok(_) => Ok(()),
        Err(libc::ENOSYS) => Err(PluginError::unsupported(
            "openat2(2) is missing: safe in-rootfs path resolution needs Linux 5.6 or later",
        )),
        Err(e) => Err(PluginError::os(
            "openat2 probe",
            std::io::Error::from_raw_os_error(e),
        )),
    }
}
