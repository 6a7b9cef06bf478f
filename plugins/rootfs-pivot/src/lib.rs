//! tong's `pivot` rootfs backend: the classic runc/crun sequence. The bundle's rootfs is
//! bound onto itself in the container's mount namespace, every OCI mount is made inside
//! it (destinations resolved with openat2 `RESOLVE_IN_ROOT`), then `pivot_root` and the
//! old root is detached: the host's mounts leave the container's namespace. The shared
//! work is in `tong-rootfs-common`. No host-side artifacts: the state is `{}` and
//! cleanup has nothing to undo.

use std::ffi::CStr;

use tong_abi::ChildError;
use tong_plugin_sdk::{PluginInfo, PluginResult, RootfsPlugin};
use tong_rootfs_common::{child, plan, Enter, Plan};

/// The plugin.
pub struct PivotRootfs;

impl PluginInfo for PivotRootfs {
    const NAME: &'static CStr = c"pivot";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"pivot_root into the bundle's rootfs; mounts resolved in-root with openat2";
    const PRIORITY: u32 = 20;

    fn probe() -> PluginResult<()> {
        tong_rootfs_common::probe_mount_and_openat2("pivot_root")
    }
}

impl RootfsPlugin for PivotRootfs {
    type Plan = Plan;

    fn prepare(req: &[u8]) -> PluginResult<(Box<Plan>, Vec<u8>)> {
        plan::prepare_bound(req, Enter::Pivot)
    }

    fn child_setup(plan: &mut Plan, err: &mut ChildError) -> Result<(), ()> {
        child::setup(plan, err)
    }

    fn cleanup(_state: &[u8]) -> PluginResult<()> {
        Ok(())
    }
}

tong_plugin_sdk::export_rootfs_plugin!(PivotRootfs);

#[cfg(test)]
mod tests {
    #[test]
    fn exported_table_reports_errors_and_state() {
        let good = br#"{"id":"x","bundle":"/","stateDir":"/","rootfs":"/tmp"}"#;
        let state = tong_rootfs_common::testing::check_exported_table(
            crate::tong_plugin_entry,
            c"pivot",
            20,
            good,
        );
        assert_eq!(state, b"{}");
    }
}
