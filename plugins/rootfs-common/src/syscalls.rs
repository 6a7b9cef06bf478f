//! The no-allocation mount and file calls that the child's steps are made of (child.rs,
//! and cgroup.rs's mounts at /sys/fs/cgroup): raw system calls on C strings and flags
//! prepared in the parent, errors written into the host's [`ChildError`].

use std::ffi::{c_int, CStr};
use std::mem::MaybeUninit;

use libc::c_ulong;
use tong_abi::ChildError;

use crate::options::REMOUNT_FLAGS;
use crate::resolve::{errno, open_in_root, Create, Fd, ProcFdPath, ResolveError};
use crate::steps::SymlinkStep;

pub(crate) type Step = Result<(), ()>;

fn ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// mount(2); the errno on failure.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), c_int> {
    // SAFETY: every pointer is null or a NUL-terminated string alive for the call.
    let rc = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Maps statvfs `ST_*` bits to the `MS_*` flags a remount must keep (in a user namespace
/// the kernel refuses to clear "locked" ones). glibc computes `f_flag` from statfs(2)'s
/// `f_flags` without touching /proc/mounts on any kernel since 2.6.36: no allocation.
fn flags_from_statvfs(st: &libc::statvfs) -> c_ulong {
    const MAP: [(c_ulong, c_ulong); 9] = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_SYNCHRONOUS, libc::MS_SYNCHRONOUS),
        (libc::ST_MANDLOCK, libc::MS_MANDLOCK),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    MAP.iter()
        .filter(|(st_bit, _)| st.f_flag & st_bit != 0)
        .fold(0, |acc, (_, ms)| acc | ms)
}

/// The current mount flags of the mount `fd` is on.
fn fd_mount_flags(fd: c_int) -> Result<c_ulong, c_int> {
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: st is writable storage for one statvfs; fd is open.
    if unsafe { libc::fstatvfs(fd, st.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: fstatvfs succeeded and filled st.
    Ok(flags_from_statvfs(unsafe { &st.assume_init() }))
}

/// The current mount flags of the mount `path` is on.
pub(crate) fn path_mount_flags(path: &CStr) -> Result<c_ulong, c_int> {
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: path is NUL-terminated, st is writable storage for one statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: statvfs succeeded and filled st.
    Ok(flags_from_statvfs(unsafe { &st.assume_init() }))
}

/// Records a resolution failure: "`<verb><path>`: `<step>` in the rootfs".
pub(crate) fn resolve_failed(err: &mut ChildError, verb: &[u8], path: &CStr, e: ResolveError) {
    if e.errno == libc::ELOOP {
        err.set(
            e.errno,
            &[
                verb,
                path.to_bytes(),
                b": the destination is or passes through a symlink, refused for this mount",
            ],
        );
    } else {
        err.set(
            e.errno,
            &[verb, path.to_bytes(), b": ", e.what, b" in the rootfs"],
        );
    }
}

/// Remounts the bind mount under `fd` with `flags`, keeping the locked flags on EPERM.
pub(crate) fn remount_bind(fd: &Fd, flags: c_ulong) -> Result<(), c_int> {
    let path = ProcFdPath::new(fd.raw());
    let want = libc::MS_REMOUNT | libc::MS_BIND | (flags & REMOUNT_FLAGS);
    match mount(None, path.as_cstr(), None, want, None) {
        Err(libc::EPERM) => {
            let locked = fd_mount_flags(fd.raw())?;
            mount(None, path.as_cstr(), None, want | locked, None)
        }
        r => r,
    }
}

/// The `mount_attr` that gives a mount exactly the per-mount flags a bind remount with
/// `flags` gives it: the flags asked for set, every other one cleared, the access time
/// relatime unless `noatime` or `strictatime` is asked for (mount(2)'s default).
fn exact_attrs(flags: c_ulong) -> MountAttr {
    const MAP: [(c_ulong, u64); 6] = [
        (libc::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (libc::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
        (libc::MS_NOSYMFOLLOW, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ];
    let set = MAP
        .iter()
        .filter(|(ms, _)| flags & ms != 0)
        .fold(0, |acc, (_, attr)| acc | attr);
    let all = MAP.iter().fold(0, |acc, (_, attr)| acc | attr);
    // In mount(2)'s order: strictatime wins over noatime.
    let atime = if flags & libc::MS_STRICTATIME != 0 {
        libc::MOUNT_ATTR_STRICTATIME
    } else if flags & libc::MS_NOATIME != 0 {
        libc::MOUNT_ATTR_NOATIME
    } else {
        libc::MOUNT_ATTR_RELATIME
    };
    MountAttr {
        attr_set: set | atime,
        attr_clr: (all & !set) | libc::MOUNT_ATTR__ATIME,
        propagation: 0,
        userns_fd: 0,
    }
}

/// mount_setattr(2) on the mount `name` names in `dirfd` (`c""` with `AT_EMPTY_PATH`:
/// `dirfd` itself), only that mount.
fn mount_setattr(
    dirfd: c_int,
    name: &CStr,
    at_flags: c_int,
    attr: &MountAttr,
) -> Result<(), c_int> {
    // SAFETY: name is NUL-terminated; attr is a live mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            name.as_ptr(),
            at_flags,
            std::ptr::from_ref(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Gives the bind mount `name` names in `dirfd` the per-mount `flags`, as a bind
/// remount would, with one mount_setattr(2) and no `/proc/self/fd` path. Callers fall
/// back to [`remount_bind`] when it fails: no mount_setattr before Linux 5.12, or flags
/// a user namespace locks (the remount keeps those).
pub(crate) fn set_bind_flags(dirfd: c_int, name: &CStr, flags: c_ulong) -> Result<(), c_int> {
    let at_flags = if name.is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    mount_setattr(dirfd, name, at_flags, &exact_attrs(flags))
}

/// Binds `source` onto the fd `target`, then remounts with `flags` when they ask for
/// anything (a bind ignores them in the first call).
pub(crate) fn bind(
    root: c_int,
    dest: &CStr,
    source: &CStr,
    target: &Fd,
    recursive: bool,
    flags: c_ulong,
    err: &mut ChildError,
) -> Step {
    let rec = if recursive { libc::MS_REC } else { 0 };
    let path = ProcFdPath::new(target.raw());
    mount(
        Some(source),
        path.as_cstr(),
        None,
        libc::MS_BIND | rec,
        None,
    )
    .map_err(|e| {
        err.set(
            e,
            &[b"bind mount ", source.to_bytes(), b" on ", dest.to_bytes()],
        );
    })?;
    if flags & REMOUNT_FLAGS != 0 {
        // The old fd points under the new mount: reopen to reach the mount itself.
        let top = open_in_root(root, dest, Create::Nothing, 0)
            .map_err(|e| resolve_failed(err, b"remount ", dest, e))?;
        set_bind_flags(top.raw(), c"", flags)
            .or_else(|_| remount_bind(&top, flags))
            .map_err(|e| err.set(e, &[b"remount ", dest.to_bytes()]))?;
    }
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets and clears `MOUNT_ATTR_*` bits on the mount under `fd` and every mount below it.
pub(crate) fn set_recursive_attrs(fd: &Fd, set: u64, clear: u64) -> Result<(), c_int> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    mount_setattr(
        fd.raw(),
        c"",
        libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
        &attr,
    )
}

/// Makes the link `s` in the directory `parent` (its `s.parent`).
pub(crate) fn make_symlink(parent: c_int, s: &SymlinkStep, err: &mut ChildError) -> Step {
    if s.replace {
        // SAFETY: name is NUL-terminated; parent is an open directory fd.
        let rc = unsafe { libc::unlinkat(parent, s.name.as_ptr(), 0) };
        if rc != 0 && errno() != libc::ENOENT {
            err.os(&[b"remove ", s.path.to_bytes()]);
            return Err(());
        }
    }
    // SAFETY: target and name are NUL-terminated; parent is an open directory fd.
    let rc = unsafe { libc::symlinkat(s.target.as_ptr(), parent, s.name.as_ptr()) };
    if rc != 0 && errno() != libc::EEXIST {
        err.os(&[b"symlink ", s.path.to_bytes()]);
        return Err(());
    }
    Ok(())
}
