//! Keeps the container's network namespace alive for DEL: a bind mount of
//! `/proc/PID/ns/net` on a file in the container's state directory.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tong_plugin_sdk::{PluginError, PluginResult};

/// statfs f_type of nsfs, the filesystem of namespace files.
const NSFS_MAGIC: libc::c_long = 0x6e73_6673;

fn c_path(path: &Path) -> PluginResult<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| PluginError::invalid(format!("path {} contains NUL", path.display())))
}

/// Pins the namespace at `source` on `<state_dir>/netns` and returns that path.
pub fn pin(source: &str, state_dir: &Path) -> PluginResult<PathBuf> {
    let target = state_dir.join("netns");
    std::fs::File::create(&target)
        .map_err(|e| PluginError::os(format!("create {}", target.display()), e))?;
    let src = c_path(Path::new(source))?;
    let dst = c_path(&target)?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call; a bind mount
    // has no filesystem type or data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(&target);
        return Err(PluginError::os(
            format!("bind-mount {source} on {}", target.display()),
            err,
        ));
    }
    Ok(target)
}

/// Whether `path` is a namespace file (the pin is in place).
pub fn is_pinned(path: &Path) -> bool {
    let Ok(p) = c_path(path) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid output buffer.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: p is NUL-terminated; buf is ours to fill.
    let rc = unsafe { libc::statfs(p.as_ptr(), &raw mut buf) };
    rc == 0 && buf.f_type as libc::c_long == NSFS_MAGIC
}

/// Removes the pin; Ok when there is none.
pub fn unpin(path: &Path) -> PluginResult<()> {
    if is_pinned(path) {
        let p = c_path(path)?;
        // SAFETY: p is NUL-terminated; a lazy unmount of our own bind mount.
        if unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(PluginError::os(
                format!("unmount {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(PluginError::os(format!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}
