//! `prepare`: validates a [`RootfsRequest`] in the parent and turns it into a [`Plan`],
//! holding every C string and flag the child needs, so the child never allocates.

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};
use tong_plugin_sdk::wire::RootfsRequest;
use tong_plugin_sdk::{PluginError, PluginResult};

use crate::options::{parse_mount_options, parse_propagation, REMOUNT_FLAGS};
use crate::resolve::{NAME_MAX, PATH_MAX};
pub use crate::steps::{
    CopyUp, DeviceStep, Enter, MountKind, MountStep, Plan, Root, RootMount, SymlinkStep,
};

/// Default device nodes: path, fallback major/minor when the host has no such node.
/// In runc's order, so that where they are bind mounts (in a user namespace) the
/// container's mountinfo lists them as under runc.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/random", 1, 8),
    ("/dev/full", 1, 7),
    ("/dev/tty", 5, 0),
    ("/dev/zero", 1, 5),
    ("/dev/urandom", 1, 9),
];

const DEFAULT_SYMLINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
];

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn cstring(what: &str, s: impl Into<Vec<u8>>) -> PluginResult<CString> {
    CString::new(s).map_err(|_| PluginError::invalid(format!("{what} contains a NUL byte")))
}

/// Normalises an absolute container path lexically (`/a/./b/../c` → `/a/c`; `..` stops
/// at `/`), checking the limits the child's stack buffers impose.
pub fn normalize_container_path(what: &str, path: &str) -> PluginResult<String> {
    if !path.starts_with('/') {
        return Err(PluginError::invalid(format!(
            "{what} {path:?} must be an absolute path"
        )));
    }
    if path.contains('\0') {
        return Err(PluginError::invalid(format!(
            "{what} {path:?} contains a NUL byte"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c if c.len() > NAME_MAX => {
                return Err(PluginError::invalid(format!(
                    "{what} {path:?} has a component longer than {NAME_MAX} bytes"
                )))
            }
            c => parts.push(c),
        }
    }
    let out = format!("/{}", parts.join("/"));
    if out.len() >= PATH_MAX {
        return Err(PluginError::invalid(format!("{what} {path:?} is too long")));
    }
    Ok(out)
}

/// Splits a normalised path into parent and name C strings.
fn split_parent(what: &str, path: &str) -> PluginResult<(CString, CString)> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    if name.is_empty() {
        return Err(PluginError::invalid(format!("{what} {path:?} has no name")));
    }
    let parent = if parent.is_empty() { "/" } else { parent };
    Ok((cstring(what, parent)?, cstring(what, name)?))
}

/// Parses the request JSON.
pub fn parse_request(req: &[u8]) -> PluginResult<RootfsRequest> {
    Ok(serde_json::from_slice(req)?)
}

/// Builds the pivot_root plan for `root.path` (bound onto itself).
pub fn build(req: &RootfsRequest) -> PluginResult<Plan> {
    let root = Root {
        path: check_rootfs(&req.rootfs)?,
        mount: RootMount::Bind,
        enter: Enter::Pivot,
    };
    build_for(req, root)
}

/// `prepare` of a backend that binds `root.path` onto itself and enters it as `enter`
/// says: the plan, and the state `{}` (nothing on the host to undo).
pub fn prepare_bound(req: &[u8], enter: Enter) -> PluginResult<(Box<Plan>, Vec<u8>)> {
    let req = parse_request(req)?;
    let root = Root {
        path: check_rootfs(&req.rootfs)?,
        mount: RootMount::Bind,
        enter,
    };
    Ok((Box::new(build_for(&req, root)?), b"{}".to_vec()))
}

/// Builds the plan for a root the backend chose.
pub fn build_for(req: &RootfsRequest, root: Root) -> PluginResult<Plan> {
    let rootfs = root.path;
    if let Some(label) = req.mount_label.as_deref().filter(|l| !l.is_empty()) {
        if selinux_enabled() {
            return Err(PluginError::unsupported(format!(
                "linux.mountLabel {label:?}: SELinux is enabled on this host and tong does not \
                 apply mount labels yet"
            )));
        }
        tong_plugin_sdk::warn(&format!(
            "linux.mountLabel {label:?} ignored: SELinux is not enabled"
        ));
    }

    let final_propagation = match req.rootfs_propagation.as_deref() {
        None | Some("") => None,
        Some(p) => Some(parse_propagation(p).ok_or_else(|| {
            PluginError::invalid(format!(
                "unknown rootfsPropagation {p:?} (expected shared, slave, private, \
                 unbindable or their r-prefixed recursive forms)"
            ))
        })?),
    };
    let root_propagation = match final_propagation {
        Some(p) if p & libc::MS_UNBINDABLE == 0 => p,
        _ => libc::MS_SLAVE | libc::MS_REC,
    };
    // Without a mount namespace of its own the rootfs stays where it is bound.
    let enter = if req.caller_mount_namespace {
        Enter::ChrootInPlace
    } else {
        root.enter
    };
    let rootfs_parent_mount = if root_propagation & libc::MS_SHARED != 0 {
        let mp = mount_point_of(&rootfs)
            .map_err(|e| PluginError::os("reading /proc/self/mountinfo", e))?;
        Some(cstring("mount point", mp.as_os_str().as_encoded_bytes())?)
    } else {
        None
    };

    let cgroup2_host = host_is_cgroup2();
    let mut mounts = Vec::with_capacity(req.mounts.len());
    for (i, raw) in req.mounts.iter().enumerate() {
        let m: Mount = serde_json::from_value(raw.clone())
            .map_err(|e| PluginError::invalid(format!("mounts[{i}]: {e}")))?;
        mounts.push(mount_step(req, &m, cgroup2_host)?);
    }

    // /dev is ours to fill when the config mounts a fresh filesystem there; a bind mount
    // of /dev brings its own nodes.
    let dev_mount = mounts.iter().rev().find(|m| m.dest.as_bytes() == b"/dev");
    let dev_is_fresh = dev_mount.is_some_and(|m| matches!(m.kind, MountKind::Fs { .. }));
    let dev_is_bind = dev_mount.is_some_and(|m| matches!(m.kind, MountKind::Bind { .. }));

    let mut devices = Vec::new();
    if !dev_is_bind {
        for (i, raw) in req.devices.iter().enumerate() {
            let d: LinuxDevice = serde_json::from_value(raw.clone())
                .map_err(|e| PluginError::invalid(format!("linux.devices[{i}]: {e}")))?;
            devices.push(device_step(&d)?);
        }
    }
    let mut symlinks = Vec::new();
    if dev_is_fresh {
        for &(path, major, minor) in DEFAULT_DEVICES {
            if devices.iter().any(|d| d.path.as_bytes() == path.as_bytes()) {
                continue;
            }
            devices.push(default_device(path, major, minor)?);
        }
        for &(path, target) in DEFAULT_SYMLINKS {
            if devices.iter().any(|d| d.path.as_bytes() == path.as_bytes()) && path != "/dev/ptmx" {
                continue;
            }
            let (parent, name) = split_parent("symlink", path)?;
            symlinks.push(SymlinkStep {
                path: cstring("symlink", path)?,
                parent,
                name,
                target: cstring("symlink target", target)?,
                replace: path == "/dev/ptmx",
            });
        }
    }

    let masked_paths = req
        .masked_paths
        .iter()
        .map(|p| {
            cstring(
                "maskedPaths",
                normalize_container_path("maskedPaths entry", p)?,
            )
        })
        .collect::<PluginResult<_>>()?;
    let readonly_paths = req
        .readonly_paths
        .iter()
        .map(|p| {
            cstring(
                "readonlyPaths",
                normalize_container_path("readonlyPaths entry", p)?,
            )
        })
        .collect::<PluginResult<_>>()?;

    Ok(Plan {
        rootfs: cstring("rootfs", rootfs.as_os_str().as_encoded_bytes())?,
        root_mount: root.mount,
        enter,
        root_propagation,
        final_propagation,
        rootfs_parent_mount,
        readonly: req.readonly,
        user_namespace: req.user_namespace,
        mounts,
        devices,
        symlinks,
        masked_paths,
        readonly_paths,
    })
}

/// Whether SELinux is on (selinuxfs is mounted).
fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// The rootfs must be an existing absolute directory; returns it canonicalised, so the
/// child's own path walk sees no symlinks.
pub fn check_rootfs(rootfs: &str) -> PluginResult<PathBuf> {
    if rootfs.is_empty() {
        return Err(PluginError::invalid("rootfs path is empty"));
    }
    if !rootfs.starts_with('/') {
        return Err(PluginError::invalid(format!(
            "rootfs {rootfs:?} must be an absolute path"
        )));
    }
    let canon = std::fs::canonicalize(rootfs)
        .map_err(|e| PluginError::invalid(format!("rootfs {rootfs:?}: {e}")))?;
    if !canon.is_dir() {
        return Err(PluginError::invalid(format!(
            "rootfs {rootfs:?} is not a directory"
        )));
    }
    if canon == Path::new("/") {
        return Err(PluginError::invalid("rootfs must not be the host's /"));
    }
    Ok(canon)
}

fn mount_step(req: &RootfsRequest, m: &Mount, cgroup2_host: bool) -> PluginResult<MountStep> {
    let dest_raw = m.destination().to_string_lossy();
    let what = format!("mount destination {dest_raw:?}");
    let dest = normalize_container_path("mount destination", &dest_raw)?;
    if dest == "/" {
        return Err(PluginError::invalid(format!(
            "{what}: mounting over the container's / is not supported"
        )));
    }
    let opts = parse_mount_options(m.options().as_deref().unwrap_or_default())
        .map_err(|e| PluginError::invalid(format!("mount {dest}: {e}")))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let propagation = opts.propagation.clone();
    let data = if opts.data.is_empty() {
        None
    } else {
        Some(cstring("mount options", opts.data.clone())?)
    };

    if opts.tmpcopyup && (opts.bind || typ != "tmpfs") {
        return Err(PluginError::invalid(format!(
            "mount {dest}: tmpcopyup is only valid on a tmpfs mount"
        )));
    }
    let tmpcopyup = opts.tmpcopyup.then(|| {
        let has = |key: &str| opts.data.split(',').any(|o| o.starts_with(key));
        CopyUp {
            root_mode: !has("mode="),
            root_owner: !has("uid=") && !has("gid="),
        }
    });

    if opts.bind || typ == "bind" {
        // The kernel ignores the data of MS_BIND, and runc and crun accept filesystem
        // data such as `mode=755,size=1k` on a bind mount: tong ignores `key=value`
        // data too. A bare unknown word is still refused: it is most likely a misspelt
        // flag (`nosiud`) that runc would drop silently.
        let unknown: Vec<&str> = opts
            .data
            .split(',')
            .filter(|o| !o.is_empty() && !o.contains('='))
            .collect();
        if !unknown.is_empty() {
            return Err(PluginError::invalid(format!(
                "mount {dest}: unknown mount option(s) {:?} for a bind mount",
                unknown.join(",")
            )));
        }
        if source.is_empty() {
            return Err(PluginError::invalid(format!(
                "mount {dest}: a bind mount needs a source"
            )));
        }
        // OCI: a relative bind source is relative to the bundle.
        let src = if source.starts_with('/') {
            PathBuf::from(&source)
        } else {
            Path::new(&req.bundle).join(&source)
        };
        let meta = std::fs::metadata(&src).map_err(|e| {
            PluginError::invalid(format!("mount {dest}: bind source {}: {e}", src.display()))
        })?;
        return Ok(MountStep {
            dest: cstring("mount destination", dest)?,
            source: cstring("mount source", src.as_os_str().as_encoded_bytes())?,
            kind: MountKind::Bind {
                recursive: opts.flags & libc::MS_REC != 0,
            },
            flags: opts.flags & !(libc::MS_BIND | libc::MS_REC),
            data: None,
            propagation,
            source_is_file: !meta.is_dir(),
            no_symlinks: false,
            recursive_set: opts.recursive_set,
            recursive_clear: opts.recursive_clear,
            tmpcopyup: None,
        });
    }

    if typ.is_empty() {
        return Err(PluginError::invalid(format!(
            "mount {dest}: no type given and not a bind mount"
        )));
    }
    let mut step = MountStep {
        dest: cstring("mount destination", dest.clone())?,
        source: cstring(
            "mount source",
            if source.is_empty() { typ } else { &source },
        )?,
        kind: MountKind::Fs {
            fstype: cstring("mount type", typ)?,
            fallback_bind: None,
        },
        flags: opts.flags,
        data,
        propagation,
        source_is_file: false,
        // Kernel filesystems and /dev (which tong fills with nodes) must not be mounted
        // through a symlink: a planted `/proc -> /` or `/dev -> /etc` would redirect them.
        no_symlinks: matches!(
            typ,
            "proc" | "sysfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2"
        ) || dest == "/dev",
        recursive_set: opts.recursive_set,
        recursive_clear: opts.recursive_clear,
        tmpcopyup,
    };
    match typ {
        "sysfs" => {
            // sysfs may not be mounted from a user namespace that does not own the
            // network namespace: bind the host's /sys read-only instead, as runc does.
            let host_sys = cstring("path", "/sys")?;
            if req.user_namespace && !req.network_namespace {
                step.kind = MountKind::Bind { recursive: true };
                step.source = host_sys;
                step.flags |= libc::MS_RDONLY;
                step.data = None;
            } else {
                step.kind = MountKind::Fs {
                    fstype: cstring("mount type", "sysfs")?,
                    fallback_bind: Some(host_sys),
                };
            }
        }
        "cgroup" | "cgroup2" if cgroup2_host && req.cgroup_namespace => {
            // The namespace's root is the container's cgroup: a fresh cgroup2 shows it.
            step.kind = MountKind::Fs {
                fstype: cstring("mount type", "cgroup2")?,
                fallback_bind: None,
            };
            if source.is_empty() || source == "cgroup" {
                step.source = cstring("mount source", "cgroup2")?;
            }
        }
        "cgroup" | "cgroup2" => {
            step.kind = MountKind::Cgroup(crate::cgroup::plan(&dest, req.cgroup_namespace)?);
            step.data = None;
        }
        _ => {}
    }
    if let MountKind::Bind { .. } = step.kind {
        step.flags &= REMOUNT_FLAGS;
    }
    Ok(step)
}

fn device_step(d: &LinuxDevice) -> PluginResult<DeviceStep> {
    let raw = d.path().to_string_lossy();
    let path = normalize_container_path("device path", &raw)?;
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(PluginError::invalid(format!(
                "device {path}: type \"a\" is only valid in cgroup rules"
            )))
        }
    };
    let (major, minor) = (d.major(), d.minor());
    if kind != libc::S_IFIFO
        && (major < 0 || minor < 0 || major > u32::MAX as i64 || minor > u32::MAX as i64)
    {
        return Err(PluginError::invalid(format!(
            "device {path}: invalid major/minor {major}:{minor}"
        )));
    }
    let rdev = if kind == libc::S_IFIFO {
        0
    } else {
        libc::makedev(major as u32, minor as u32)
    };
    let (parent, name) = split_parent("device path", &path)?;
    Ok(DeviceStep {
        host_path: cstring("device path", path.clone())?,
        path: cstring("device path", path)?,
        parent,
        name,
        kind,
        perm: d.file_mode().map_or(0o666, |m| m & 0o7777),
        rdev,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// A default device with the host's major/minor (the usual numbers if the host lacks it).
fn default_device(path: &str, major: u32, minor: u32) -> PluginResult<DeviceStep> {
    let rdev = std::fs::metadata(path)
        .ok()
        .filter(|m| m.file_type().is_char_device())
        .map_or_else(|| libc::makedev(major, minor), |m| m.rdev());
    let (parent, name) = split_parent("device path", path)?;
    Ok(DeviceStep {
        path: cstring("device path", path)?,
        host_path: cstring("device path", path)?,
        parent,
        name,
        kind: libc::S_IFCHR,
        perm: 0o666,
        rdev,
        uid: 0,
        gid: 0,
    })
}

fn host_is_cgroup2() -> bool {
    // SAFETY: statfs fills a zeroed struct from a NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/sys/fs/cgroup".as_ptr(), &raw mut st) == 0
            && st.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// Unescapes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mount point (in our mount namespace) that holds `path`.
fn mount_point_of(path: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut best = PathBuf::from("/");
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(std::ffi::OsString::from_vec(unescape_mountinfo(mp)));
        if path.starts_with(&mp) && mp.components().count() > best.components().count() {
            best = mp;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(rootfs: &str, mounts: serde_json::Value) -> RootfsRequest {
        RootfsRequest {
            id: "t".into(),
            bundle: "/".into(),
            rootfs: rootfs.into(),
            mounts: serde_json::from_value(mounts).unwrap(),
            ..RootfsRequest::default()
        }
    }

    fn err_of(r: &RootfsRequest) -> String {
        build(r).unwrap_err().message
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(
            normalize_container_path("p", "/a/./b/../c/").unwrap(),
            "/a/c"
        );
        assert_eq!(normalize_container_path("p", "/../../x").unwrap(), "/x");
        assert_eq!(normalize_container_path("p", "/").unwrap(), "/");
        assert!(normalize_container_path("p", "rel/x")
            .unwrap_err()
            .message
            .contains("must be an absolute path"));
        let long = format!("/{}", "x".repeat(300));
        assert!(normalize_container_path("p", &long).is_err());
    }

    #[test]
    fn rejects_bad_rootfs() {
        assert!(err_of(&req("", json!([]))).contains("empty"));
        assert!(err_of(&req("relative/root", json!([]))).contains("absolute"));
        let e = err_of(&req("/nonexistent/tong/rootfs", json!([])));
        assert!(
            e.contains("/nonexistent/tong/rootfs") && e.contains("No such file"),
            "{e}"
        );
        assert!(
            err_of(&req("/etc/hostname", json!([]))).contains("not a directory")
                || err_of(&req("/etc/hostname", json!([]))).contains("No such file")
        );
        assert!(err_of(&req("/", json!([]))).contains("host's /"));
    }

    #[test]
    fn rejects_bad_mounts() {
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "proc", "type": "proc"}]),
        ));
        assert!(e.contains("\"proc\" must be an absolute path"), "{e}");
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "/x", "type": "tmpfs", "options": ["idmap"]}]),
        ));
        assert!(e.contains("mount /x") && e.contains("not supported"), "{e}");
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "/x", "type": "tmpfs", "options": ["size=1m,ridmap"]}]),
        ));
        assert!(e.contains("\"ridmap\" is not supported"), "{e}");
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "/x", "type": "proc", "options": ["tmpcopyup"]}]),
        ));
        assert!(
            e.contains("mount /x: tmpcopyup is only valid on a tmpfs"),
            "{e}"
        );
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "/x", "type": "tmpfs", "source": "/tmp", "options": ["bind", "tmpcopyup"]}]),
        ));
        assert!(e.contains("tmpcopyup is only valid on a tmpfs"), "{e}");
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "/x", "type": "bind", "source": "/tmp", "options": ["bind", "frobnicate"]}]),
        ));
        assert!(e.contains("unknown mount option(s) \"frobnicate\""), "{e}");
        // Filesystem data on a bind mount is ignored (the kernel ignores it for MS_BIND);
        // a bare unknown word beside it is still refused.
        let plan = build(&req(
            "/tmp",
            json!([{"destination": "/x", "type": "bind", "source": "/tmp", "options": ["bind", "mode=755", "size=1k", "ro"]}]),
        ));
        assert!(plan.is_ok(), "{:?}", plan.err().map(|e| e.message));
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "mode=755", "nosiud"]}]),
        ));
        assert!(e.contains("unknown mount option(s) \"nosiud\""), "{e}");
        let e = err_of(&req(
            "/tmp",
            json!([{"destination": "/x", "options": ["bind"], "source": "/nonexistent/src"}]),
        ));
        assert!(e.contains("bind source /nonexistent/src"), "{e}");
        let e = err_of(&req("/tmp", json!([{"destination": "/x"}])));
        assert!(e.contains("no type"), "{e}");
        let e = err_of(&req("/tmp", json!([{"destination": "/", "type": "tmpfs"}])));
        assert!(e.contains("over the container's /"), "{e}");
        let e = err_of(&req("/tmp", json!([{"type": "tmpfs"}])));
        assert!(e.contains("mounts[0]"), "{e}");
        let mut r = req("/tmp", json!([]));
        r.rootfs_propagation = Some("sideways".into());
        assert!(err_of(&r).contains("unknown rootfsPropagation \"sideways\""));
        let mut r = req("/tmp", json!([]));
        r.devices = vec![json!({"path": "/dev/all", "type": "a"})];
        assert!(err_of(&r).contains("only valid in cgroup rules"));
        let mut r = req("/tmp", json!([]));
        r.masked_paths = vec!["proc/kcore".into()];
        assert!(err_of(&r).contains("absolute"));
    }

    #[test]
    fn builds_a_typical_plan() {
        let mut r = req(
            "/tmp",
            json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/etc/hostname", "type": "bind", "source": "/etc/passwd",
                 "options": ["rbind", "ro", "rprivate"]},
            ]),
        );
        r.devices = vec![
            json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 8630, "uid": 0, "gid": 0}),
        ];
        r.masked_paths = vec!["/proc/kcore".into()];
        r.readonly_paths = vec!["/proc/sys/".into()];
        let p = build(&r).unwrap();
        assert_eq!(p.root_propagation, libc::MS_SLAVE | libc::MS_REC);
        assert!(p.rootfs_parent_mount.is_none());
        assert_eq!(p.mounts.len(), 5);
        assert_eq!(p.mounts[1].data.as_deref(), Some(c"mode=755,size=65536k"));
        assert!(p.mounts[0].no_symlinks);
        let bind = &p.mounts[4];
        assert!(matches!(bind.kind, MountKind::Bind { recursive: true }));
        assert_eq!(bind.flags, libc::MS_RDONLY);
        assert_eq!(bind.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert!(bind.source_is_file);
        // /dev/fuse plus the six defaults; mode bits masked to permissions.
        assert_eq!(p.devices.len(), 7);
        assert_eq!(p.devices[0].perm, 0o666);
        assert_eq!(p.devices[0].rdev, libc::makedev(10, 229));
        assert_eq!(p.devices[0].parent.as_c_str(), c"/dev");
        assert_eq!(p.devices[0].name.as_c_str(), c"fuse");
        assert!(p
            .symlinks
            .iter()
            .any(|s| s.path.as_c_str() == c"/dev/ptmx" && s.replace));
        assert_eq!(p.readonly_paths[0].as_c_str(), c"/proc/sys");

        // In a user namespace without its own network namespace, sysfs becomes a bind.
        r.user_namespace = true;
        let p = build(&r).unwrap();
        assert!(matches!(
            p.mounts[3].kind,
            MountKind::Bind { recursive: true }
        ));
        assert_eq!(p.mounts[3].source.as_c_str(), c"/sys");
        r.network_namespace = true;
        assert!(matches!(
            build(&r).unwrap().mounts[3].kind,
            MountKind::Fs { .. }
        ));
    }

    #[test]
    fn tmpcopyup_keeps_the_options_mode_and_owner() {
        let p = build(&req(
            "/tmp",
            json!([
                {"destination": "/a", "type": "tmpfs", "options": ["nosuid", "tmpcopyup"]},
                {"destination": "/b", "type": "tmpfs", "options": ["tmpcopyup", "mode=1777", "uid=5"]},
                {"destination": "/c", "type": "tmpfs", "options": ["size=1m"]},
            ]),
        ))
        .unwrap();
        assert_eq!(
            p.mounts[0].tmpcopyup,
            Some(CopyUp {
                root_mode: true,
                root_owner: true
            })
        );
        assert!(p.mounts[0].data.is_none());
        assert_eq!(p.mounts[0].flags, libc::MS_NOSUID);
        assert_eq!(
            p.mounts[1].tmpcopyup,
            Some(CopyUp {
                root_mode: false,
                root_owner: false
            })
        );
        assert_eq!(p.mounts[1].data.as_deref(), Some(c"mode=1777,uid=5"));
        assert_eq!(p.mounts[2].tmpcopyup, None);
    }

    #[test]
    fn shared_propagation_finds_the_parent_mount() {
        let mut r = req("/tmp", json!([]));
        r.rootfs_propagation = Some("rshared".into());
        let p = build(&r).unwrap();
        assert_eq!(p.root_propagation, libc::MS_SHARED | libc::MS_REC);
        assert_eq!(p.final_propagation, Some(libc::MS_SHARED | libc::MS_REC));
        assert!(p.rootfs_parent_mount.is_some());
    }

    #[test]
    fn unbindable_root_is_applied_only_to_the_new_root() {
        for (value, flags) in [
            ("unbindable", libc::MS_UNBINDABLE),
            ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
        ] {
            let mut r = req("/tmp", json!([]));
            r.rootfs_propagation = Some(value.into());
            let p = build(&r).unwrap();
            assert_eq!(p.root_propagation, libc::MS_SLAVE | libc::MS_REC, "{value}");
            assert_eq!(p.final_propagation, Some(flags), "{value}");
            assert!(p.rootfs_parent_mount.is_none(), "{value}");
        }
    }

    #[test]
    fn no_mount_namespace_enters_with_a_chroot_in_place() {
        let mut r = req("/tmp", json!([]));
        assert_eq!(build(&r).unwrap().enter, Enter::Pivot);
        r.caller_mount_namespace = true;
        assert_eq!(build(&r).unwrap().enter, Enter::ChrootInPlace);
    }

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(unescape_mountinfo("/end\\"), b"/end\\");
    }
}
