//! tong's `pivot` rootfs backend: the classic runc/crun sequence. In the parent,
//! [`plan::prepare`] validates the config's root, mounts, devices, masked and read-only
//! paths and builds a [`plan::Plan`]; in the child, [`child::setup`] makes `/` rslave,
//! binds the rootfs onto itself, mounts everything with destinations resolved *inside*
//! the rootfs (openat2 `RESOLVE_IN_ROOT`), fills `/dev`, pivots, then masks, makes paths
//! read-only and finally the root itself if asked. No host-side artifacts: the state is
//! `{}` and cleanup has nothing to undo.

use std::ffi::CStr;

use tong_abi::plugin::{PluginError, PluginInfo, PluginResult, RootfsPlugin};
use tong_abi::ChildError;

pub mod child;
pub mod options;
pub mod plan;
pub mod resolve;

#[cfg(test)]
mod tests;

pub use options::{parse_mount_options, parse_propagation, MountOptions};
pub use plan::Plan;

/// The plugin.
pub struct PivotRootfs;

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

impl PluginInfo for PivotRootfs {
    const NAME: &'static CStr = c"pivot";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"pivot_root into the bundle's rootfs; mounts resolved in-root with openat2";
    const PRIORITY: u32 = 20;

    fn probe() -> PluginResult<()> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root && !has_cap_sys_admin() {
            return Err(PluginError::unsupported(
                "pivot_root and mount need root or CAP_SYS_ADMIN, which this process lacks",
            ));
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
}

impl RootfsPlugin for PivotRootfs {
    type Plan = Plan;

    fn prepare(req: &[u8]) -> PluginResult<(Box<Plan>, Vec<u8>)> {
        Ok((Box::new(plan::prepare(req)?), b"{}".to_vec()))
    }

    fn child_setup(plan: &mut Plan, err: &mut ChildError) -> Result<(), ()> {
        child::setup(plan, err)
    }

    fn cleanup(_state: &[u8]) -> PluginResult<()> {
        Ok(())
    }
}

tong_abi::export_rootfs_plugin!(PivotRootfs);
