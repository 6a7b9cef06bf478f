//! `process.apparmorProfile` and `process.selinuxLabel`: refused with a clear error when
//! the host has no such LSM; otherwise written to the LSM's exec attribute by the child
//! just before execve, so they apply to the container's program.

use std::ffi::CString;
use std::path::Path;

use oci_spec::runtime::Process;

use super::invalid;
use crate::error::Result;

/// An LSM attribute the child writes before execve.
#[derive(Debug)]
pub struct ExecLabel {
    pub(crate) path: CString,
    pub(crate) value: CString,
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim_start().starts_with('Y'))
        && Path::new("/sys/kernel/security/apparmor").exists()
}

/// Whether SELinux is enabled on this host (selinuxfs mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// The labels to write, or an error when the host cannot apply one.
pub fn plan(process: &Process) -> Result<Vec<ExecLabel>> {
    let mut out = Vec::new();
    let label = |path: &str, value: String, field: &str| -> Result<ExecLabel> {
        Ok(ExecLabel {
            path: CString::new(path).map_err(|_| invalid(field, "bad path"))?,
            value: CString::new(value).map_err(|_| invalid(field, "contains a NUL byte"))?,
        })
    };
    if let Some(profile) = process
        .apparmor_profile()
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        let field = "process.apparmorProfile";
        if !apparmor_enabled() {
            return Err(invalid(
                field,
                format!(
                    "profile {profile:?} cannot be applied: AppArmor is not enabled on this host"
                ),
            ));
        }
        // Kernels since 5.8 have a per-LSM directory; older ones share attr/exec.
        let path = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        out.push(label(path, format!("exec {profile}"), field)?);
    }
    if let Some(context) = process.selinux_label().as_ref().filter(|p| !p.is_empty()) {
        let field = "process.selinuxLabel";
        if !selinux_enabled() {
            return Err(invalid(
                field,
                format!("label {context:?} cannot be applied: SELinux is not enabled on this host"),
            ));
        }
        out.push(label("/proc/self/attr/exec", context.clone(), field)?);
    }
    Ok(out)
}
