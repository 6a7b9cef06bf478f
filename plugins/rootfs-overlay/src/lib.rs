//! tong's `overlay` rootfs backend: Docker's layered-image model. The bundle's
//! `root.path` and any further read-only layers named in the
//! `tong.rootfs.overlay.lowerdirs` annotation (colon-separated, topmost first, lowest
//! last; relative paths are relative to the bundle) become overlayfs lowerdirs. Each
//! container gets its own upper and work directory in its state directory
//! (`<state dir>/rootfs-overlay/{upper,work,merged}`), so many containers share one
//! rootfs, every write lands in the container's own layer, and the bundle stays
//! pristine. The overlay is mounted on `merged` inside the container's mount namespace
//! (never on the host), then everything proceeds as in the pivot backend.
//!
//! The state is `{"layer": "<dir>"}`; `cleanup` unmounts `merged` should it be mounted
//! anywhere we can see, and removes the layer.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tong_abi::ChildError;
use tong_plugin_sdk::wire::RootfsRequest;
use tong_plugin_sdk::{PluginError, PluginInfo, PluginResult, RootfsPlugin};
use tong_rootfs_common::plan::{check_rootfs, Root};
use tong_rootfs_common::{child, plan, Enter, Plan, RootMount};

/// Annotation naming further read-only layers below `root.path`.
pub const LOWERDIRS_ANNOTATION: &str = "tong.rootfs.overlay.lowerdirs";
/// The layer's directory inside the container's state directory.
const LAYER_DIR: &str = "rootfs-overlay";
/// mount(2) copies at most one page of options.
const MAX_MOUNT_DATA: usize = 4095;

/// The plugin.
pub struct OverlayRootfs;

/// What `cleanup` needs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    layer: Option<PathBuf>,
}

impl PluginInfo for OverlayRootfs {
    const NAME: &'static CStr = c"overlay";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"overlayfs: root.path (+ annotated layers) read-only, a per-container upper layer; pivot_root";
    // Below pivot: the per-container layer is a choice, made by name or annotation.
    const PRIORITY: u32 = 10;

    fn probe() -> PluginResult<()> {
        tong_rootfs_common::probe_mount_and_openat2("pivot_root")?;
        let fs = std::fs::read_to_string("/proc/filesystems")
            .map_err(|e| PluginError::os("reading /proc/filesystems", e))?;
        if fs
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
            || Path::new("/sys/module/overlay").exists()
        {
            Ok(())
        } else {
            Err(PluginError::unsupported(
                "the kernel has no overlay filesystem (modprobe overlay, or CONFIG_OVERLAY_FS)",
            ))
        }
    }
}

/// A lower or upper directory must not hold the characters overlayfs uses to separate
/// its options and layers.
fn check_overlay_path(what: &str, path: &Path) -> PluginResult<String> {
    let s = path.to_str().ok_or_else(|| {
        PluginError::invalid(format!("{what} {} is not valid UTF-8", path.display()))
    })?;
    if s.contains([':', ',', '\\']) {
        return Err(PluginError::invalid(format!(
            "{what} {s:?} contains ':', ',' or '\\', which overlayfs options cannot carry"
        )));
    }
    Ok(s.to_owned())
}

/// `root.path`, then the annotated layers, as overlayfs lowerdir entries (top first).
fn lower_dirs(req: &RootfsRequest) -> PluginResult<Vec<String>> {
    let mut lowers = vec![check_overlay_path(
        "root.path",
        &check_rootfs(&req.rootfs)?,
    )?];
    let Some(list) = req.annotations.get(LOWERDIRS_ANNOTATION) else {
        return Ok(lowers);
    };
    for entry in list.split(':') {
        if entry.is_empty() {
            return Err(PluginError::invalid(format!(
                "annotation {LOWERDIRS_ANNOTATION} {list:?} has an empty entry"
            )));
        }
        let path = Path::new(&req.bundle).join(entry);
        let canon = std::fs::canonicalize(&path).map_err(|e| {
            PluginError::invalid(format!(
                "annotation {LOWERDIRS_ANNOTATION}: layer {}: {e}",
                path.display()
            ))
        })?;
        if !canon.is_dir() || canon == Path::new("/") {
            return Err(PluginError::invalid(format!(
                "annotation {LOWERDIRS_ANNOTATION}: layer {} is not a directory other than /",
                path.display()
            )));
        }
        lowers.push(check_overlay_path("overlay layer", &canon)?);
    }
    Ok(lowers)
}

/// The layer directory for a container: `<state dir>/rootfs-overlay`.
fn layer_path(state_dir: &str) -> PluginResult<PathBuf> {
    if !state_dir.starts_with('/') {
        return Err(PluginError::invalid(format!(
            "the overlay backend needs the container's state directory, got {state_dir:?}"
        )));
    }
    let dir = std::fs::canonicalize(state_dir)
        .map_err(|e| PluginError::invalid(format!("state directory {state_dir:?}: {e}")))?;
    Ok(dir.join(LAYER_DIR))
}

/// Makes upper, work and merged; the upper's root takes the mode and owner of
/// `root.path`, because the merged root shows the upper's.
fn make_layer(layer: &Path, top_lower: &Path) -> PluginResult<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let mk = |p: &Path| {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(p)
            .map_err(|e| PluginError::os(format!("mkdir {}", p.display()), e))
    };
    mk(layer)?;
    for sub in ["upper", "work", "merged"] {
        mk(&layer.join(sub))?;
    }
    let meta = std::fs::metadata(top_lower)
        .map_err(|e| PluginError::os(format!("stat {}", top_lower.display()), e))?;
    let upper = layer.join("upper");
    std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| PluginError::os(format!("chown {}", upper.display()), e))?;
    std::fs::set_permissions(
        &upper,
        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
    )
    .map_err(|e| PluginError::os(format!("chmod {}", upper.display()), e))
}

fn prepare_in(req: &RootfsRequest, layer: &Path) -> PluginResult<Plan> {
    let lowers = lower_dirs(req)?;
    make_layer(layer, Path::new(&lowers[0]))?;
    let upper = check_overlay_path("upper directory", &layer.join("upper"))?;
    let work = check_overlay_path("work directory", &layer.join("work"))?;
    let data = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        lowers.join(":")
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(PluginError::invalid(format!(
            "overlay options are {} bytes, more than the {MAX_MOUNT_DATA} mount(2) takes: \
             use fewer or shorter layer paths",
            data.len()
        )));
    }
    let data = CString::new(data)
        .map_err(|_| PluginError::invalid("overlay options contain a NUL byte"))?;
    let root = Root {
        path: layer.join("merged"),
        mount: RootMount::Overlay { data },
        enter: Enter::Pivot,
    };
    plan::build_for(req, root)
}

/// Unmounts `merged` if mounted where we can see it, then removes the layer.
fn remove_layer(layer: &Path) -> PluginResult<()> {
    if layer.file_name() != Some(LAYER_DIR.as_ref()) || !layer.is_absolute() {
        return Err(PluginError::invalid(format!(
            "overlay state names {}, not a {LAYER_DIR} directory",
            layer.display()
        )));
    }
    let merged = layer.join("merged");
    if let Ok(c) = CString::new(merged.as_os_str().as_encoded_bytes()) {
        // SAFETY: a NUL-terminated path; EINVAL (not a mount point) and ENOENT are fine.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        let e = std::io::Error::last_os_error();
        if rc != 0 && !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(PluginError::os(format!("unmount {}", merged.display()), e));
        }
    }
    match std::fs::remove_dir_all(layer) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PluginError::os(format!("remove {}", layer.display()), e)),
    }
}

impl RootfsPlugin for OverlayRootfs {
    type Plan = Plan;

    fn prepare(req: &[u8]) -> PluginResult<(Box<Plan>, Vec<u8>)> {
        let req = plan::parse_request(req)?;
        // Check root.path first: a missing rootfs is named before anything is made.
        check_rootfs(&req.rootfs)?;
        if req.user_namespace {
            // The layer sits in the state directory, which only the host's root may
            // enter; the container's root in its own user namespace could not mount it.
            return Err(PluginError::unsupported(
                "the overlay rootfs backend does not support user namespaces yet \
                 (use --backend rootfs=pivot)",
            ));
        }
        if req.caller_mount_namespace {
            // The overlay would be mounted in the caller's namespace, on the state
            // directory, and outlive the container there.
            return Err(PluginError::unsupported(
                "the overlay rootfs backend needs a mount namespace (type \"mount\" in \
                 linux.namespaces): without one the overlay would be mounted in the caller's \
                 (use --backend rootfs=pivot or chroot)",
            ));
        }
        let layer = layer_path(&req.state_dir)?;
        if layer.exists() {
            return Err(PluginError::invalid(format!(
                "{} already exists: another overlay layer is in the way",
                layer.display()
            )));
        }
        match prepare_in(&req, &layer) {
            Ok(plan) => {
                let state = serde_json::to_vec(&State { layer: Some(layer) })?;
                Ok((Box::new(plan), state))
            }
            Err(e) => {
                let _ = remove_layer(&layer);
                Err(e)
            }
        }
    }

    fn child_setup(plan: &mut Plan, err: &mut ChildError) -> Result<(), ()> {
        child::setup(plan, err)
    }

    fn cleanup(state: &[u8]) -> PluginResult<()> {
        let state: State = if state.is_empty() {
            State::default()
        } else {
            serde_json::from_slice(state)?
        };
        match state.layer {
            Some(layer) => remove_layer(&layer),
            None => Ok(()),
        }
    }
}

tong_plugin_sdk::export_rootfs_plugin!(OverlayRootfs);

#[cfg(test)]
mod tests;
