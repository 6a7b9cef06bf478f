//! `child_setup`: runs in the container's child, in its mount namespace (new, joined, or
//! without one the caller's), before exec.
//!
//! No allocation, no locks: only raw system calls on the C strings and flags the plan
//! holds, stack buffers, and errors written into the host's [`ChildError`].

use std::ffi::{c_int, CStr};
use std::mem::MaybeUninit;

use tong_abi::ChildError;

use crate::options::REMOUNT_FLAGS;
use crate::resolve::{errno, open_in_root, openat2, Create, Fd, ProcFdPath};
use crate::steps::{CopyUp, DeviceStep, Enter, MountKind, MountStep, Plan, RootMount};
use crate::syscalls::{
    bind, make_symlink, mount, path_mount_flags, remount_bind, resolve_failed, set_recursive_attrs,
    Step,
};

fn mount_one(root: c_int, m: &MountStep, err: &mut ChildError) -> Step {
    let create = if m.source_is_file {
        Create::File
    } else {
        Create::Dir
    };
    let extra = if m.no_symlinks {
        libc::RESOLVE_NO_SYMLINKS
    } else {
        0
    };
    // tmpcopyup (tmpfs only) reads the directory through an fd opened before the tmpfs
    // covers it. A directory tong has to create holds nothing to copy.
    let existing = match m.tmpcopyup {
        Some(_) => open_in_root(root, &m.dest, Create::Nothing, extra).ok(),
        None => None,
    };
    let copy_from = match &existing {
        Some(fd) => Some(crate::copyup::open_dir(fd).map_err(|e| {
            err.set(
                e,
                &[
                    b"tmpcopyup on ",
                    m.dest.to_bytes(),
                    b": open ",
                    m.dest.to_bytes(),
                ],
            );
        })?),
        None => None,
    };
    let target = match existing {
        Some(fd) => fd,
        None => open_in_root(root, &m.dest, create, extra)
            .map_err(|e| resolve_failed(err, b"mount ", &m.dest, e))?,
    };
    match &m.kind {
        MountKind::Bind { recursive } => {
            bind(root, &m.dest, &m.source, &target, *recursive, m.flags, err)?;
        }
        MountKind::Cgroup(plan) => {
            crate::cgroup::mount_all(root, &m.dest, &target, plan, m.flags, err)?;
        }
        MountKind::Fs {
            fstype,
            fallback_bind,
        } => {
            // The tmpfs is filled before it may become read-only.
            let flags = if copy_from.is_some() {
                m.flags & !libc::MS_RDONLY
            } else {
                m.flags
            };
            let path = ProcFdPath::new(target.raw());
            match mount(
                Some(&m.source),
                path.as_cstr(),
                Some(fstype),
                flags,
                m.data.as_deref(),
            ) {
                Ok(()) => {}
                Err(libc::EPERM) if fallback_bind.is_some() => {
                    let host = fallback_bind.as_deref().unwrap_or(c"/");
                    let flags = (m.flags & REMOUNT_FLAGS) | libc::MS_RDONLY;
                    bind(root, &m.dest, host, &target, true, flags, err)?;
                }
                Err(e) => {
                    err.set(
                        e,
                        &[b"mount ", fstype.to_bytes(), b" on ", m.dest.to_bytes()],
                    );
                    return Err(());
                }
            }
            if let (Some(how), Some(src)) = (m.tmpcopyup, copy_from) {
                copy_up(root, m, &src, how, err)?;
            }
        }
    }
    drop(target);
    if m.recursive_set | m.recursive_clear != 0 {
        let top = open_in_root(root, &m.dest, Create::Nothing, 0)
            .map_err(|e| resolve_failed(err, b"set recursive attributes of ", &m.dest, e))?;
        set_recursive_attrs(&top, m.recursive_set, m.recursive_clear).map_err(|e| {
            err.set(
                e,
                &[b"mount_setattr (recursive options) on ", m.dest.to_bytes()],
            );
        })?;
    }
    if !m.propagation.is_empty() {
        let top = open_in_root(root, &m.dest, Create::Nothing, 0)
            .map_err(|e| resolve_failed(err, b"set propagation of ", &m.dest, e))?;
        let path = ProcFdPath::new(top.raw());
        for &prop in &m.propagation {
            mount(None, path.as_cstr(), None, prop, None).map_err(|e| {
                err.set(e, &[b"set propagation of ", m.dest.to_bytes()]);
            })?;
        }
    }
    Ok(())
}

/// Fills the tmpfs just mounted on `m.dest` with the directory's former contents
/// (`src`), then makes it read-only if the options ask.
fn copy_up(root: c_int, m: &MountStep, src: &Fd, how: CopyUp, err: &mut ChildError) -> Step {
    let top = open_in_root(root, &m.dest, Create::Nothing, 0)
        .map_err(|e| resolve_failed(err, b"tmpcopyup on ", &m.dest, e))?;
    let dst = crate::copyup::open_dir(&top).map_err(|e| {
        err.set(
            e,
            &[b"tmpcopyup on ", m.dest.to_bytes(), b": open the new tmpfs"],
        );
    })?;
    crate::copyup::copy(src, &dst, &m.dest, how, err)?;
    if m.flags & libc::MS_RDONLY != 0 {
        remount_bind(&top, m.flags)
            .map_err(|e| err.set(e, &[b"remount read-only ", m.dest.to_bytes()]))?;
    }
    Ok(())
}

/// The directory `path` (resolved in the rootfs, created if missing), reusing the one
/// opened for the previous node when it is the same: `/dev`'s nodes and links share it.
fn parent_dir<'p>(
    root: c_int,
    cache: &mut Option<(&'p CStr, Fd)>,
    path: &'p CStr,
    verb: &[u8],
    what: &CStr,
    err: &mut ChildError,
) -> Result<c_int, ()> {
    if let Some((cached, fd)) = cache {
        if *cached == path {
            return Ok(fd.raw());
        }
    }
    let fd =
        open_in_root(root, path, Create::Dir, 0).map_err(|e| resolve_failed(err, verb, what, e))?;
    Ok(cache.insert((path, fd)).1.raw())
}

fn make_device(parent: c_int, d: &DeviceStep, user_ns: bool, err: &mut ChildError) -> Step {
    if user_ns {
        // mknod is not allowed in a user namespace: bind the host's node onto a file.
        // SAFETY: name is NUL-terminated; parent is an open directory fd.
        let rc = unsafe { libc::mknodat(parent, d.name.as_ptr(), libc::S_IFREG | 0o644, 0) };
        if rc != 0 && errno() != libc::EEXIST {
            err.os(&[b"create device placeholder ", d.path.to_bytes()]);
            return Err(());
        }
        let node = openat2(
            parent,
            &d.name,
            libc::O_PATH,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| err.set(e, &[b"open device placeholder ", d.path.to_bytes()]))?;
        let path = ProcFdPath::new(node.raw());
        return mount(
            Some(&d.host_path),
            path.as_cstr(),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(|e| {
            err.set(
                e,
                &[
                    b"bind device ",
                    d.host_path.to_bytes(),
                    b" on ",
                    d.path.to_bytes(),
                ],
            );
        });
    }
    // SAFETY: name is NUL-terminated; parent is an open directory fd.
    let rc = unsafe { libc::mknodat(parent, d.name.as_ptr(), d.kind | d.perm, d.rdev) };
    if rc != 0 {
        if errno() == libc::EEXIST {
            return Ok(());
        }
        err.os(&[b"mknod ", d.path.to_bytes()]);
        return Err(());
    }
    // SAFETY: as above; AT_SYMLINK_NOFOLLOW keeps us on the node we just made.
    let rc = unsafe {
        libc::fchownat(
            parent,
            d.name.as_ptr(),
            d.uid,
            d.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        err.os(&[b"chown ", d.path.to_bytes()]);
        return Err(());
    }
    Ok(())
}

/// pivot_root into the cwd-to-be `root`, then detach the old root.
fn pivot(root: &Fd, err: &mut ChildError) -> Step {
    // SAFETY: a NUL-terminated literal path; the result is checked.
    let old = unsafe {
        libc::open(
            c"/".as_ptr(),
            libc::O_DIRECTORY | libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if old < 0 {
        err.os(&[b"open the old root"]);
        return Err(());
    }
    let old = Fd::from_raw(old);
    // SAFETY: root is an open directory fd (O_PATH is enough for fchdir).
    if unsafe { libc::fchdir(root.raw()) } != 0 {
        err.os(&[b"chdir to the rootfs"]);
        return Err(());
    }
    // pivot_root(".", ".") stacks the old root on top of the new one, so no put_old
    // directory is needed in the image (as runc does).
    // SAFETY: two NUL-terminated literal paths.
    if unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } != 0 {
        err.os(&[b"pivot_root"]);
        return Err(());
    }
    // SAFETY: old is an open directory fd.
    if unsafe { libc::fchdir(old.raw()) } != 0 {
        err.os(&[b"chdir to the old root"]);
        return Err(());
    }
    // The old root must not propagate our unmount to the host.
    mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
        .map_err(|e| err.set(e, &[b"make the old root rslave"]))?;
    // SAFETY: a NUL-terminated literal path.
    if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } != 0 {
        err.os(&[b"unmount the old root"]);
        return Err(());
    }
    // SAFETY: a NUL-terminated literal path.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        err.os(&[b"chdir to /"]);
        return Err(());
    }
    Ok(())
}

/// Moves the rootfs (the cwd-to-be `root`, a mount point) onto `/` and chroots into it,
/// as runc's `--no-pivot` does. The old root stays in the namespace under it.
fn chroot_into(root: &Fd, err: &mut ChildError) -> Step {
    // The move must not propagate to the host through a shared `/`: only the mount that
    // is about to be covered loses its propagation.
    mount(None, c"/", None, libc::MS_PRIVATE, None)
        .map_err(|e| err.set(e, &[b"make the old / private"]))?;
    // SAFETY: root is an open directory fd (O_PATH is enough for fchdir).
    if unsafe { libc::fchdir(root.raw()) } != 0 {
        err.os(&[b"chdir to the rootfs"]);
        return Err(());
    }
    mount(Some(c"."), c"/", None, libc::MS_MOVE, None)
        .map_err(|e| err.set(e, &[b"move the rootfs onto /"]))?;
    chroot_cwd(err)
}

/// chroot(2) into the rootfs where it is: the container has no mount namespace of its
/// own, so nothing may be moved or detached (it would be the caller's mount).
fn chroot_in_place(root: &Fd, err: &mut ChildError) -> Step {
    // SAFETY: root is an open directory fd (O_PATH is enough for fchdir).
    if unsafe { libc::fchdir(root.raw()) } != 0 {
        err.os(&[b"chdir to the rootfs"]);
        return Err(());
    }
    chroot_cwd(err)
}

/// chroot(2) into the working directory, then chdir to the new `/`.
fn chroot_cwd(err: &mut ChildError) -> Step {
    // SAFETY: a NUL-terminated literal path.
    if unsafe { libc::chroot(c".".as_ptr()) } != 0 {
        err.os(&[b"chroot"]);
        return Err(());
    }
    // SAFETY: a NUL-terminated literal path.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        err.os(&[b"chdir to /"]);
        return Err(());
    }
    Ok(())
}

/// Whether `path` exists and is a directory; `Err` carries the errno of stat(2).
fn is_dir(path: &CStr) -> Result<bool, c_int> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated, st is writable storage for one stat.
    if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: stat succeeded and filled st.
    Ok(unsafe { st.assume_init() }.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// How `linux.maskedPaths` are covered: /dev/null over a file, an empty read-only tmpfs
/// over a directory. stat(2) tells which, before any mount: a bind that fails after the
/// kernel cloned its source (a file onto a directory: ENOTDIR) costs an RCU grace period
/// to free the clone, far more than the stat.
struct Masker<'p> {
    /// The directories share one tmpfs: the first masked directory gets it, the others
    /// a bind of it, which mountinfo shows the same way (same flags and options).
    shared_tmpfs: Option<&'p CStr>,
}

impl<'p> Masker<'p> {
    fn mask(&mut self, path: &'p CStr, err: &mut ChildError) -> Step {
        let r = match is_dir(path) {
            Ok(true) => self.mask_dir(path),
            Ok(false) => mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) | Err(libc::ENOENT) => Ok(()),
            Err(e) => {
                err.set(e, &[b"mask ", path.to_bytes()]);
                Err(())
            }
        }
    }

    fn mask_dir(&mut self, path: &'p CStr) -> Result<(), c_int> {
        if let Some(first) = self.shared_tmpfs {
            // ENOENT (found by path lookup, before any clone): a later mask covered
            // `first` (it was below another masked directory); a fresh tmpfs, shared
            // from here on, does instead.
            match mount(Some(first), path, None, libc::MS_BIND, None) {
                Err(libc::ENOENT) => {}
                r => return r,
            }
        }
        // As runc: read-only and nothing else (flags and mode of an empty read-only
        // tmpfs change nothing the process can do, but it sees them in mountinfo).
        mount(Some(c"tmpfs"), path, Some(c"tmpfs"), libc::MS_RDONLY, None)?;
        self.shared_tmpfs = Some(path);
        Ok(())
    }
}

/// Makes `path` a read-only bind of itself.
fn make_readonly(path: &CStr, err: &mut ChildError) -> Step {
    match mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
        Ok(()) => {}
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => {
            err.set(e, &[b"bind readonly path ", path.to_bytes()]);
            return Err(());
        }
    }
    let flags = path_mount_flags(path).map_err(|e| err.set(e, &[b"statvfs ", path.to_bytes()]))?;
    mount(
        None,
        path,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
        None,
    )
    .map_err(|e| err.set(e, &[b"remount read-only ", path.to_bytes()]))
}

/// `linux.devices`, the default nodes and the `/dev` links, one parent fd per run of
/// entries in the same directory.
fn make_devices_and_links(root: c_int, plan: &Plan, err: &mut ChildError) -> Step {
    let mut cache = None;
    for d in &plan.devices {
        let parent = parent_dir(root, &mut cache, &d.parent, b"create device ", &d.path, err)?;
        make_device(parent, d, plan.user_namespace, err)?;
    }
    for s in &plan.symlinks {
        let parent = parent_dir(root, &mut cache, &s.parent, b"symlink ", &s.path, err)?;
        make_symlink(parent, s, err)?;
    }
    Ok(())
}

/// Builds the container's root filesystem and pivots into it. The error's detail is in
/// `err` (the ABI's shape: `RootfsPlugin::child_setup` returns `Result<(), ()>`).
#[allow(clippy::result_unit_err)]
pub fn setup(plan: &Plan, err: &mut ChildError) -> Step {
    // 1. Nothing we mount may propagate back to the host.
    mount(None, c"/", None, plan.root_propagation, None)
        .map_err(|e| err.set(e, &[b"set the propagation of /"]))?;
    if let Some(parent) = &plan.rootfs_parent_mount {
        // pivot_root refuses a new root whose parent mount is shared.
        mount(None, parent, None, libc::MS_PRIVATE, None).map_err(|e| {
            err.set(
                e,
                &[
                    b"make the rootfs's parent mount ",
                    parent.to_bytes(),
                    b" private",
                ],
            );
        })?;
    }

    // 2. The rootfs becomes a mount point of its own.
    match &plan.root_mount {
        RootMount::Bind => mount(
            Some(&plan.rootfs),
            &plan.rootfs,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|e| err.set(e, &[b"bind the rootfs ", plan.rootfs.to_bytes()]))?,
        RootMount::Overlay { data } => mount(
            Some(c"overlay"),
            &plan.rootfs,
            Some(c"overlay"),
            0,
            Some(data),
        )
        .map_err(|e| {
            err.set(
                e,
                &[
                    b"mount the overlay on ",
                    plan.rootfs.to_bytes(),
                    b" (",
                    data.to_bytes(),
                    b")",
                ],
            );
        })?,
    }
    // SAFETY: rootfs is NUL-terminated; the result is checked.
    let root = unsafe {
        libc::open(
            plan.rootfs.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if root < 0 {
        err.os(&[b"open the rootfs ", plan.rootfs.to_bytes()]);
        return Err(());
    }
    let root = Fd::from_raw(root);

    // 3. The config's mounts, in order, each resolved inside the rootfs.
    for m in &plan.mounts {
        mount_one(root.raw(), m, err)?;
    }

    // 4. Device nodes and /dev symlinks, with the modes asked for (no umask).
    // SAFETY: umask only changes this process's file creation mask.
    let old_umask = unsafe { libc::umask(0) };
    let r = make_devices_and_links(root.raw(), plan, err);
    // SAFETY: as above.
    unsafe { libc::umask(old_umask) };
    r?;

    // 5. Into the new root; with pivot_root the old one goes away.
    match plan.enter {
        Enter::Pivot => pivot(&root, err)?,
        Enter::Chroot => chroot_into(&root, err)?,
        Enter::ChrootInPlace => chroot_in_place(&root, err)?,
    }
    drop(root);
    // rootfsPropagation applies to the container's root itself, as with runc: only now
    // is it `/` (and an unbindable mount could not have been bound in step 2).
    if let Some(propagation) = plan.final_propagation {
        mount(None, c"/", None, propagation, None)
            .map_err(|e| err.set(e, &[b"set the propagation of the new /"]))?;
    }

    // 6. readonlyPaths and maskedPaths (in runc's order), now that paths are the
    // container's.
    for p in &plan.readonly_paths {
        make_readonly(p, err)?;
    }
    if !plan.masked_paths.is_empty() {
        let mut masker = Masker { shared_tmpfs: None };
        for p in &plan.masked_paths {
            masker.mask(p, err)?;
        }
    }

    // 7. root.readonly.
    if plan.readonly {
        let flags = path_mount_flags(c"/").map_err(|e| err.set(e, &[b"statvfs /"]))?;
        mount(
            None,
            c"/",
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
            None,
        )
        .map_err(|e| err.set(e, &[b"remount / read-only"]))?;
    }
    Ok(())
}
