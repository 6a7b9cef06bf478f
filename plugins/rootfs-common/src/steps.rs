//! The plan's data: what `prepare` (plan.rs, cgroup.rs) builds in the parent and the
//! child (child.rs, cgroup.rs, copyup.rs) carries out. Plain data, every string already
//! a C string, so the child never allocates.

use std::ffi::CString;
use std::path::PathBuf;

use libc::{c_ulong, dev_t, mode_t};

/// How a mount is made.
#[derive(Clone, Debug)]
pub enum MountKind {
    /// `mount(source, target, fstype, flags, data)`.
    Fs {
        fstype: CString,
        /// On EPERM (a user namespace may not mount it), bind this host path instead.
        fallback_bind: Option<CString>,
    },
    /// A bind mount of a host path (`MS_REC` when `recursive`).
    Bind { recursive: bool },
    /// The container's own cgroups (see `cgroup.rs`).
    Cgroup(CgroupPlan),
}

/// One entry of the config's `mounts`, ready for the child.
#[derive(Clone, Debug)]
pub struct MountStep {
    /// Normalised absolute destination inside the container.
    pub dest: CString,
    /// Source: a host path for binds, a free-form name (`proc`, `tmpfs`) otherwise.
    pub source: CString,
    pub kind: MountKind,
    /// Flags of the mount call (for binds: of the remount; `MS_BIND`/`MS_REC` excluded).
    pub flags: c_ulong,
    /// Filesystem data (`mode=755,size=65536k`), if any.
    pub data: Option<CString>,
    /// Propagation changes applied after the mount.
    pub propagation: Vec<c_ulong>,
    /// Bind of a non-directory: the destination is created as an empty file.
    pub source_is_file: bool,
    /// proc, sysfs, other kernel filesystems and `/dev` must not be mounted through a
    /// symlink (runc's CVE-2019-19921 rule, extended).
    pub no_symlinks: bool,
    /// `MOUNT_ATTR_*` bits set and cleared recursively afterwards (`rro`, `rnosuid`...).
    pub recursive_set: u64,
    pub recursive_clear: u64,
    /// `tmpcopyup` (tmpfs only): fill the new tmpfs with what the directory held.
    pub tmpcopyup: Option<CopyUp>,
}

/// A tmpfs mount's `tmpcopyup`: after the mount, the directory's former contents are
/// copied into it (as runc and crun do), and its root takes the directory's mode and
/// owner unless the options set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyUp {
    /// No `mode=` was given: the tmpfs root gets the directory's permission bits.
    pub root_mode: bool,
    /// Neither `uid=` nor `gid=` was given: the tmpfs root gets the directory's owner.
    pub root_owner: bool,
}

/// A device node (or, in a user namespace, a bind of the host's node).
#[derive(Clone, Debug)]
pub struct DeviceStep {
    /// Absolute path inside the container, for messages.
    pub path: CString,
    /// Its parent directory and name, resolved separately.
    pub parent: CString,
    pub name: CString,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: mode_t,
    /// Permission bits.
    pub perm: mode_t,
    pub rdev: dev_t,
    pub uid: u32,
    pub gid: u32,
    /// The host node to bind when the container has its own user namespace.
    pub host_path: CString,
}

/// A symlink in `/dev`.
#[derive(Clone, Debug)]
pub struct SymlinkStep {
    pub path: CString,
    pub parent: CString,
    pub name: CString,
    pub target: CString,
    /// Remove what is there first (`/dev/ptmx` may be a device node).
    pub replace: bool,
}

/// How the rootfs becomes a mount point of its own before anything is mounted in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootMount {
    /// A recursive bind of the directory onto itself: writes land in the directory.
    Bind,
    /// An overlay mounted on the (empty) directory; `data` is
    /// `lowerdir=...,upperdir=...,workdir=...`.
    Overlay { data: CString },
}

/// How the child makes the rootfs its `/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enter {
    /// pivot_root(2), then the old root is detached: the host's mounts leave the
    /// container's mount namespace.
    Pivot,
    /// The rootfs is moved onto `/` and chroot(2)ed into: the host's mounts stay in the
    /// namespace, hidden under the container's root.
    Chroot,
    /// chroot(2) into the rootfs where it is bound, nothing moved or detached: the
    /// container has no mount namespace of its own, so every mount is the caller's
    /// (runc's `chroot()` for this case).
    ChrootInPlace,
}

/// What a backend decides: the directory that becomes `/`, and how.
#[derive(Clone, Debug)]
pub struct Root {
    /// Absolute, canonical directory.
    pub path: PathBuf,
    pub mount: RootMount,
    pub enter: Enter,
}

/// Everything the child does, prepared in the parent.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The directory that becomes the container's `/`, absolute.
    pub rootfs: CString,
    pub root_mount: RootMount,
    pub enter: Enter,
    /// Propagation applied to the old `/` first, so nothing mounted for the container
    /// reaches the host: `MS_SLAVE | MS_REC` by default and for the unbindable values
    /// (an unbindable `/` could not be bound onto the rootfs), the config's otherwise.
    pub root_propagation: c_ulong,
    /// `rootfsPropagation` as given, applied to the container's root once it is `/`.
    pub final_propagation: Option<c_ulong>,
    /// With shared propagation, the mount holding the rootfs is made private so
    /// pivot_root accepts it.
    pub rootfs_parent_mount: Option<CString>,
    pub readonly: bool,
    pub user_namespace: bool,
    pub mounts: Vec<MountStep>,
    pub devices: Vec<DeviceStep>,
    pub symlinks: Vec<SymlinkStep>,
    pub masked_paths: Vec<CString>,
    pub readonly_paths: Vec<CString>,
}

/// One hierarchy inside the container's cgroup mount.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    /// Where it goes inside the container (`/sys/fs/cgroup/memory`, or the mount's
    /// destination itself on a cgroup2-only host).
    pub dest: CString,
    /// Its directory's name in the tmpfs (the last component of `dest`).
    pub name: CString,
    /// The host's mount point of the hierarchy (bind source prefix).
    pub host_mount: CString,
    /// Its controllers as `/proc/self/cgroup` names them (`cpu,cpuacct`,
    /// `name=systemd`; empty for cgroup2).
    pub key: CString,
    /// With a cgroup namespace: mount this filesystem type with `data` instead of binding.
    pub fresh: Option<(CString, Option<CString>)>,
}

/// The container's cgroup mount.
#[derive(Clone, Debug)]
pub struct CgroupPlan {
    /// A tmpfs at the destination holds the hierarchies (v1 and hybrid hosts).
    pub tmpfs: bool,
    pub hierarchies: Vec<Hierarchy>,
    pub links: Vec<SymlinkStep>,
}
