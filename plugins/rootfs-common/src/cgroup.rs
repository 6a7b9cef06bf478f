//! `cgroup` and `cgroup2` mounts that show the container its own cgroup, as runc does.
//!
//! - With a cgroup namespace, the kernel does it: each hierarchy is mounted fresh
//!   (cgroup2, or `cgroup -o <controllers>` per v1 hierarchy) and shows the namespace's
//!   root, the container's cgroup.
//! - Without one, a fresh mount would show the host's whole tree, so each hierarchy's
//!   directory of the container (read from `/proc/self/cgroup` in the child, which is in
//!   its cgroups by then) is bind-mounted instead.
//!
//! On a v1 or hybrid host the destination gets a tmpfs holding one directory per
//! hierarchy (and the host's symlinks such as `cpu -> cpu,cpuacct`), made read-only at
//! the end when the mount asks for `ro`. Parent side: [`plan`]; child side: [`mount`]
//! (no allocation).

use std::ffi::{c_int, CStr, CString};
use std::path::Path;

use tong_abi::ChildError;
use tong_cgroup_common::mounts::{cgroup2_mount, read_mounts, v1_hierarchies};
use tong_plugin_sdk::{PluginError, PluginResult};

use crate::options::REMOUNT_FLAGS;
use crate::resolve::{errno, open_in_root, openat2, Create, Fd, ProcFdPath, PATH_MAX};
use crate::steps::SymlinkStep;
pub use crate::steps::{CgroupPlan, Hierarchy};
use crate::syscalls::{bind, make_symlink, mount, remount_bind, resolve_failed, set_bind_flags};

fn cstring(what: &str, s: impl Into<Vec<u8>>) -> PluginResult<CString> {
    CString::new(s).map_err(|_| PluginError::invalid(format!("{what} contains a NUL byte")))
}

/// Plans the cgroup mount at `dest` (normalised) from the host's cgroup mounts.
pub fn plan(dest: &str, cgroup_namespace: bool) -> PluginResult<CgroupPlan> {
    let mounts = read_mounts()?;
    let v1 = v1_hierarchies(&mounts);
    let v2 = cgroup2_mount(&mounts);
    let join = |name: &str| format!("{}/{name}", dest.trim_end_matches('/'));
    let path_bytes = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();

    if v1.is_empty() {
        let v2 = v2.ok_or_else(|| {
            PluginError::unsupported(format!(
                "mount {dest}: the host has no cgroup hierarchy mounted to show"
            ))
        })?;
        return Ok(CgroupPlan {
            tmpfs: false,
            hierarchies: vec![Hierarchy {
                dest: cstring("mount destination", dest)?,
                name: CString::default(),
                host_mount: cstring("cgroup mount", path_bytes(&v2.mount_point))?,
                key: CString::default(),
                fresh: cgroup_namespace.then(|| (c"cgroup2".to_owned(), None)),
            }],
            links: Vec::new(),
        });
    }

    let mut hierarchies = Vec::new();
    for h in v1.iter().chain(v2.iter()) {
        let Some(name) = h.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let key = h.controllers.join(",");
        let fresh = if h.fstype == "cgroup2" {
            (c"cgroup2".to_owned(), None)
        } else {
            (
                c"cgroup".to_owned(),
                Some(cstring("cgroup options", key.clone())?),
            )
        };
        hierarchies.push(Hierarchy {
            dest: cstring("mount destination", join(name))?,
            name: cstring("mount destination", name)?,
            host_mount: cstring("cgroup mount", path_bytes(&h.mount_point))?,
            key: cstring("cgroup controllers", key)?,
            fresh: cgroup_namespace.then_some(fresh),
        });
    }
    // The host's aliases (`cpu -> cpu,cpuacct`) in the directory holding the hierarchies.
    let mut links = Vec::new();
    if let Some(parent) = v1[0].mount_point.parent() {
        for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let Ok(target) = std::fs::read_link(e.path()) else {
                continue;
            };
            let file_name = e.file_name();
            let (Some(name), Some(target)) = (file_name.to_str(), target.to_str()) else {
                continue;
            };
            if target.contains('/')
                || !hierarchies
                    .iter()
                    .any(|h| h.dest.to_bytes() == join(target).as_bytes())
            {
                continue;
            }
            links.push(SymlinkStep {
                path: cstring("symlink", join(name))?,
                parent: cstring("symlink", dest)?,
                name: cstring("symlink", name)?,
                target: cstring("symlink target", target)?,
                replace: false,
            });
        }
    }
    Ok(CgroupPlan {
        tmpfs: true,
        hierarchies,
        links,
    })
}

/// The calling process's cgroup path in the hierarchy `key` (`/proc/self/cgroup` is in
/// `buf`): the bytes after the second colon of the line whose middle field is `key`.
fn own_path<'a>(buf: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    for line in buf.split(|&b| b == b'\n') {
        let mut fields = line.splitn(3, |&b| b == b':');
        let (Some(_), Some(k), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if k == key {
            return Some(path);
        }
    }
    None
}

/// Reads `/proc/self/cgroup` into `buf`; returns the length.
fn read_own_cgroups(buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: a NUL-terminated literal path; the result is checked.
    let fd = unsafe {
        libc::open(
            c"/proc/self/cgroup".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    let fd = Fd::from_raw(fd);
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: the pointer and length stay inside buf.
        let n = unsafe { libc::read(fd.raw(), buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        match n {
            0 => return Ok(len),
            n if n > 0 => len += n as usize,
            _ if errno() == libc::EINTR => {}
            _ => return Err(errno()),
        }
    }
    Err(libc::E2BIG)
}

/// Makes the directory `name` in `dir` and opens it (`O_PATH`, no symlink followed).
fn mkdir_in(dir: &Fd, name: &CStr) -> Result<Fd, c_int> {
    // SAFETY: name is NUL-terminated; dir is an open directory fd.
    if unsafe { libc::mkdirat(dir.raw(), name.as_ptr(), 0o755) } != 0 && errno() != libc::EEXIST {
        return Err(errno());
    }
    openat2(
        dir.raw(),
        name,
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
}

/// Child side: mounts the hierarchies under the destination `target` (opened in the
/// rootfs `root`) with the mount's `flags` (`ro`, `nosuid`, ...). The error's detail is
/// in `err`.
#[allow(clippy::result_unit_err)]
pub fn mount_all(
    root: c_int,
    dest: &CStr,
    target: &Fd,
    plan: &CgroupPlan,
    flags: libc::c_ulong,
    err: &mut ChildError,
) -> Result<(), ()> {
    // On v1 and hybrid hosts: the tmpfs, and an fd of its root. It is fresh and empty,
    // so the hierarchies' directories and the aliases are made in it by name, with no
    // walk from the rootfs's root.
    let tmpfs = if plan.tmpfs {
        let path = ProcFdPath::new(target.raw());
        mount(
            Some(c"cgroup"),
            path.as_cstr(),
            Some(c"tmpfs"),
            flags & !libc::MS_RDONLY,
            Some(c"mode=755"),
        )
        .map_err(|e| err.set(e, &[b"mount tmpfs on ", dest.to_bytes()]))?;
        Some(
            open_in_root(root, dest, Create::Nothing, libc::RESOLVE_NO_SYMLINKS)
                .map_err(|e| resolve_failed(err, b"mount ", dest, e))?,
        )
    } else {
        None
    };
    let mut own = [0u8; 4096];
    let own_len = read_own_cgroups(&mut own)
        .map_err(|e| err.set(e, &[b"read /proc/self/cgroup for ", dest.to_bytes()]))?;
    for h in &plan.hierarchies {
        let dir = match &tmpfs {
            Some(top) => mkdir_in(top, &h.name).map_err(|e| {
                err.set(e, &[b"mount ", h.dest.to_bytes(), b": mkdir in the tmpfs"]);
            })?,
            None => open_in_root(root, &h.dest, Create::Dir, libc::RESOLVE_NO_SYMLINKS)
                .map_err(|e| resolve_failed(err, b"mount ", &h.dest, e))?,
        };
        if let Some((fstype, data)) = &h.fresh {
            // A fresh mount shows the namespace's root: that must be our own cgroup,
            // or the container would see (and with rw, write) the host's hierarchy.
            if own_path(&own[..own_len], h.key.to_bytes()) != Some(&b"/"[..]) {
                err.set(
                    libc::EPERM,
                    &[
                        b"mount ",
                        h.dest.to_bytes(),
                        b": the cgroup namespace's root is not the container's cgroup (it was \
                          made before the process joined it), refusing to show the host's hierarchy",
                    ],
                );
                return Err(());
            }
            let path = ProcFdPath::new(dir.raw());
            mount(
                Some(c"cgroup"),
                path.as_cstr(),
                Some(fstype),
                flags,
                data.as_deref(),
            )
            .map_err(|e| {
                err.set(
                    e,
                    &[b"mount ", fstype.to_bytes(), b" on ", h.dest.to_bytes()],
                );
            })?;
            continue;
        }
        let Some(own_path) = own_path(&own[..own_len], h.key.to_bytes()) else {
            err.set(
                libc::ENOENT,
                &[
                    b"mount ",
                    h.dest.to_bytes(),
                    b": no hierarchy \"",
                    h.key.to_bytes(),
                    b"\" in /proc/self/cgroup",
                ],
            );
            return Err(());
        };
        // host mount point + own path, NUL-terminated, on the stack.
        let host = h.host_mount.to_bytes();
        let mut src = [0u8; PATH_MAX];
        if host.len() + own_path.len() >= PATH_MAX {
            err.set(
                libc::ENAMETOOLONG,
                &[b"cgroup path for ", h.dest.to_bytes()],
            );
            return Err(());
        }
        src[..host.len()].copy_from_slice(host);
        src[host.len()..host.len() + own_path.len()].copy_from_slice(own_path);
        let Ok(src) = CStr::from_bytes_until_nul(&src) else {
            err.set(libc::EINVAL, &[b"cgroup path for ", h.dest.to_bytes()]);
            return Err(());
        };
        match &tmpfs {
            // The bind's flags through its name in the tmpfs: no reopen.
            Some(top) if flags & REMOUNT_FLAGS != 0 => {
                bind(root, &h.dest, src, &dir, false, 0, err)?;
                if set_bind_flags(top.raw(), &h.name, flags).is_err() {
                    let mnt = mkdir_in(top, &h.name)
                        .and_then(|mnt| remount_bind(&mnt, flags).map(|()| mnt));
                    mnt.map_err(|e| err.set(e, &[b"remount ", h.dest.to_bytes()]))?;
                }
            }
            _ => bind(root, &h.dest, src, &dir, false, flags, err)?,
        }
    }
    let Some(top) = tmpfs else {
        return Ok(());
    };
    for link in &plan.links {
        make_symlink(top.raw(), link, err)?;
    }
    if flags & libc::MS_RDONLY != 0 {
        let path = ProcFdPath::new(top.raw());
        mount(
            None,
            path.as_cstr(),
            None,
            libc::MS_REMOUNT | flags,
            Some(c"mode=755"),
        )
        .map_err(|e| err.set(e, &[b"remount read-only ", dest.to_bytes()]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_path_by_controllers() {
        let text = b"12:cpu,cpuacct:/tong/a\n1:name=systemd:/x:y\n0::/tong/b\n";
        assert_eq!(own_path(text, b"cpu,cpuacct"), Some(&b"/tong/a"[..]));
        assert_eq!(own_path(text, b"name=systemd"), Some(&b"/x:y"[..]));
        assert_eq!(own_path(text, b""), Some(&b"/tong/b"[..]));
        assert_eq!(own_path(text, b"memory"), None);
    }

    #[test]
    fn plans_this_hosts_hierarchies() {
        let p = plan("/sys/fs/cgroup", false).unwrap();
        assert!(!p.hierarchies.is_empty());
        for h in &p.hierarchies {
            assert!(h.dest.to_bytes().starts_with(b"/sys/fs/cgroup"));
            assert!(h.fresh.is_none());
            assert!(Path::new(h.host_mount.to_str().unwrap()).is_dir());
        }
        let p = plan("/sys/fs/cgroup", true).unwrap();
        assert!(p.hierarchies.iter().all(|h| h.fresh.is_some()));
    }
}
