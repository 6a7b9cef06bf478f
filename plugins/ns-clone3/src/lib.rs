//! `ns=clone3`: creates the container process with clone3(2), born in its new
//! namespaces, directly inside its cgroup (CLONE_INTO_CGROUP) and with a pidfd
//! (CLONE_PIDFD). Falls back to clone(2) where clone3 is refused (ENOSYS, as some
//! seccomp profiles answer) and to a plain clone when the kernel rejects
//! CLONE_INTO_CGROUP.
//!
//! Namespaces given by path are joined with setns(2): a pid namespace in the parent's
//! calling thread just around the clone (a pid namespace only applies to children), all
//! others in the child, user namespace first. The child allocates nothing and takes no
//! lock before it hands over to the host's `child_main`.

use std::ffi::{c_int, CStr};
use std::os::fd::AsRawFd;

use tong_abi::{ChildError, SpawnRequest, SpawnResult};
use tong_plugin_sdk::{NamespacePlugin, PluginError, PluginInfo, PluginResult};

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), up to the `cgroup` field (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

struct Clone3;

impl PluginInfo for Clone3 {
    const NAME: &'static CStr = c"clone3";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"clone3 with CLONE_INTO_CGROUP and CLONE_PIDFD, clone(2) fallback";
    const PRIORITY: u32 = 20;

    fn probe() -> PluginResult<()> {
        // Works everywhere clone(2) does; clone3's absence only costs the fallback.
        Ok(())
    }
}

impl NamespacePlugin for Clone3 {
    unsafe fn spawn(req: &SpawnRequest) -> PluginResult<SpawnResult> {
        let joins = if req.join_len == 0 {
            &[][..]
        } else {
            // SAFETY: the host passes join/join_len describing a live array.
            unsafe { std::slice::from_raw_parts(req.join, req.join_len) }
        };
        if req.clone_flags != 0 && joins.iter().any(|j| j.nstype == libc::CLONE_NEWUSER) {
            // Namespaces created by clone3 belong to the caller's user namespace, not to
            // the one the child joins afterwards, which then has no power over them.
            return Err(PluginError::unsupported(
                "joining a user namespace by path while creating other namespaces needs them created after the join: use ns=fork",
            ));
        }
        let pid_join = joins.iter().find(|j| j.nstype == libc::CLONE_NEWPID);
        if pid_join.is_some() && req.clone_flags & libc::CLONE_NEWPID as u64 != 0 {
            return Err(PluginError::invalid(
                "the config both creates and joins a pid namespace",
            ));
        }
        let pid_ns = match pid_join {
            Some(j) => Some(PidNamespaceSwitch::enter(j.fd)?),
            None => None,
        };
        let mut pidfd: c_int = -1;
        let mut flags = req.clone_flags | CLONE_PIDFD;
        if req.cgroup_fd >= 0 {
            flags |= CLONE_INTO_CGROUP;
        }
        let mut ret = clone3(flags, req.cgroup_fd, &mut pidfd);
        if ret < 0
            && flags & CLONE_INTO_CGROUP != 0
            && matches!(errno(), libc::E2BIG | libc::EINVAL)
        {
            // An older kernel without CLONE_INTO_CGROUP: the host adds the process itself.
            flags &= !CLONE_INTO_CGROUP;
            ret = clone3(flags, -1, &mut pidfd);
        }
        if ret < 0 && errno() == libc::ENOSYS {
            flags &= !CLONE_INTO_CGROUP;
            ret = clone2(flags, &mut pidfd);
        }
        if ret == 0 {
            let own_pid_ns = pid_ns.as_ref().map_or(-1, |s| s.own.as_raw_fd());
            // SAFETY: we are the new child; the request lives in our copy of memory.
            unsafe { child(req, joins, own_pid_ns) }
        }
        if ret < 0 {
            return Err(PluginError::os(
                "clone3",
                std::io::Error::from_raw_os_error(errno()),
            ));
        }
        Ok(SpawnResult {
            pid: ret as c_int,
            pidfd,
            in_cgroup: u32::from(flags & CLONE_INTO_CGROUP != 0),
        })
    }
}

fn errno() -> c_int {
    ChildError::last_errno()
}

fn clone3(flags: u64, cgroup_fd: c_int, pidfd: &mut c_int) -> libc::c_long {
    let args = CloneArgs {
        flags,
        pidfd: std::ptr::from_mut(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: if cgroup_fd >= 0 { cgroup_fd as u64 } else { 0 },
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of our
    // memory and returns 0 here; args is a live struct of the size we pass.
    unsafe { libc::syscall(libc::SYS_clone3, &args, std::mem::size_of::<CloneArgs>()) }
}

fn clone2(flags: u64, pidfd: &mut c_int) -> libc::c_long {
    // SAFETY: clone(2) with a null stack and no CLONE_VM behaves like fork; with
    // CLONE_PIDFD the kernel writes the pidfd through the parent_tid argument.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::from_mut(pidfd),
            std::ptr::null_mut::<libc::c_int>(),
            0usize,
        )
    }
}

/// The child: joins the remaining namespaces and runs the host's child_main. Never
/// returns. No allocation, no locks.
///
/// # Safety
/// Only in the freshly cloned child, with the request the parent passed.
unsafe fn child(req: &SpawnRequest, joins: &[tong_abi::NamespaceJoin], own_pid_ns: c_int) -> ! {
    for j in joins.iter().filter(|j| j.nstype != libc::CLONE_NEWPID) {
        // SAFETY: setns on a descriptor the host opened for us.
        if unsafe { libc::setns(j.fd, j.nstype) } != 0 {
            let mut err = ChildError::default();
            err.os(&[
                b"setns into the ",
                tong_sys::namespace_name(j.nstype),
                b" namespace given in linux.namespaces",
            ]);
            // SAFETY: the host's reporting hook, valid in the child.
            unsafe { (req.child_fail)(req.child_arg, &raw const err) };
            // SAFETY: leaving the child without running any parent-side cleanup.
            unsafe { libc::_exit(1) };
        }
    }
    // The namespace descriptors have served (the pid one before clone, with the
    // parent's own pid namespace, a host one): a waiting container process keeps none.
    for fd in joins.iter().map(|j| j.fd).chain([own_pid_ns]) {
        if fd >= 0 {
            // SAFETY: closing our copies of descriptors nothing in the child uses again.
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: the host's child entry with its own argument.
    let code = unsafe { (req.child_main)(req.child_arg) };
    // SAFETY: as above.
    unsafe { libc::_exit(code) }
}

/// Puts the calling thread's future children into another pid namespace and restores
/// the thread's own when dropped.
struct PidNamespaceSwitch {
    own: std::os::fd::OwnedFd,
}

impl PidNamespaceSwitch {
    fn enter(target: c_int) -> PluginResult<PidNamespaceSwitch> {
        let own = std::fs::File::open("/proc/thread-self/ns/pid")
            .map_err(|e| PluginError::os("open /proc/thread-self/ns/pid", e))?;
        // SAFETY: setns on a live namespace fd; affects only this thread's children.
        if unsafe { libc::setns(target, libc::CLONE_NEWPID) } != 0 {
            return Err(PluginError::os(
                "setns into the pid namespace given in linux.namespaces",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(PidNamespaceSwitch { own: own.into() })
    }
}

impl Drop for PidNamespaceSwitch {
    fn drop(&mut self) {
        // SAFETY: back to the thread's own pid namespace, from a live fd.
        unsafe { libc::setns(self.own.as_raw_fd(), libc::CLONE_NEWPID) };
    }
}

tong_plugin_sdk::export_namespace_plugin!(Clone3);
