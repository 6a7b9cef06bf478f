//! tong's `chroot` rootfs backend, for a rootfs that cannot be pivoted (one on ramfs or
//! initramfs, where pivot_root(2) fails) or when asked (`tong create --no-pivot`, as
//! containerd passes for runc's `--no-pivot`). Everything is as in the pivot backend —
//! same mount plan, same in-root resolution, same /dev, masked and read-only paths —
//! except the last step: the rootfs is moved onto `/` and chroot(2)ed into.
//!
//! What that gives up, compared with pivot_root (see docs/rootfs.md):
//! - the host's mounts stay in the container's mount namespace, hidden under its root
//!   rather than detached;
//! - a process keeping CAP_SYS_CHROOT can leave a chroot (chroot into a subdirectory,
//!   then walk `..`), and one with CAP_SYS_ADMIN can unmount the root it sits on; drop
//!   both capabilities from containers run this way.
//!
//! Nothing is refused silently: every config this backend accepts is set up exactly as
//! the pivot backend would, and every error names the step that failed.

use std::ffi::CStr;

use tong_abi::ChildError;
use tong_plugin_sdk::{PluginInfo, PluginResult, RootfsPlugin};
use tong_rootfs_common::{child, plan, Enter, Plan};

/// The plugin.
pub struct ChrootRootfs;

impl PluginInfo for ChrootRootfs {
    const NAME: &'static CStr = c"chroot";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"chroot into the bundle's rootfs (no pivot_root: host mounts stay, hidden); --no-pivot";
    // Below pivot: chosen by name or --no-pivot, never by probing while pivot works.
    const PRIORITY: u32 = 5;

    fn probe() -> PluginResult<()> {
        tong_rootfs_common::probe_mount_and_openat2("chroot")
    }
}

impl RootfsPlugin for ChrootRootfs {
    type Plan = Plan;

    fn prepare(req: &[u8]) -> PluginResult<(Box<Plan>, Vec<u8>)> {
        plan::prepare_bound(req, Enter::Chroot)
    }

    fn child_setup(plan: &mut Plan, err: &mut ChildError) -> Result<(), ()> {
        child::setup(plan, err)
    }

    fn cleanup(_state: &[u8]) -> PluginResult<()> {
        Ok(())
    }
}

tong_plugin_sdk::export_rootfs_plugin!(ChrootRootfs);

#[cfg(test)]
mod tests {
    #[test]
    fn exported_table_reports_errors_and_state() {
        let good = br#"{"id":"x","bundle":"/","stateDir":"/","rootfs":"/tmp"}"#;
        let state = tong_rootfs_common::testing::check_exported_table(
            crate::tong_plugin_entry,
            c"chroot",
            5,
            good,
        );
        assert_eq!(state, b"{}");
    }
}
