//! The one rule for directories tong trusts (the state root, container directories, the
//! pool): owned by the caller and not writable by group or others. A leaf module, so the
//! state store and the pool share it without depending on each other.

use std::path::Path;

use crate::error::{Error, Result};

/// Refuses a directory that is not the caller's or that group or others may write: a
/// record forged there would make tong run its hooks and undo its backends as the caller
/// (often root). Read and search rights for others are fine (containerd makes its roots
/// 0711).
pub(crate) fn check_private(what: &str, path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "refusing {what} {}: it is not a directory",
            path.display()
        )));
    }
    if meta.uid() != euid {
        return Err(Error::invalid(format!(
            "refusing {what} {}: it is owned by uid {}, not the caller",
            path.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::invalid(format!(
            "refusing {what} {}: it is writable by group or others (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}
