//! `ns=fork`: creates the container process the classic way, for kernels and seccomp
//! profiles that refuse clone3 (some container engines' default profiles answer clone3
//! with ENOSYS) and as a second start path to measure `ns=clone3` against.
//!
//! How the process is made:
//!
//! 1. The caller forks (a raw `clone(SIGCHLD)`, so no `pthread_atfork` handler runs and
//!    nothing in libc takes a lock) a first child.
//! 2. That child joins the namespaces given by path with setns(2), in the order the host
//!    gives them (user namespace first), then creates the requested ones with a single
//!    unshare(2) — the kernel creates a new user namespace before the others, so they are
//!    owned by it.
//! 3. A new pid (or time) namespace only applies to the children of the process that
//!    unshared or joined it, so in that case the first child clones once more with
//!    `CLONE_PARENT`: the grandchild becomes pid 1 of the new pid namespace **and a child
//!    of the caller**, not of the intermediate process. The intermediate reports the
//!    grandchild's pid over a pipe and exits; `spawn` reaps it before returning. Without
//!    a pid or time namespace there is no second fork: the first child is the container.
//! 4. The container process runs the host's `child_main`.
//!
//! Semantics for the caller: the pid returned is the caller's own child (thanks to
//! `CLONE_PARENT`), so `waitpid(pid)` and the pidfd work exactly as with `ns=clone3`; the
//! intermediate has already been reaped when `spawn` returns, so no zombie is left and no
//! subreaper is needed. A caller that reaps every child itself (a `waitpid(-1)` loop in
//! another thread) may collect the intermediate first; `spawn` tolerates that (ECHILD).
//!
//! Namespace errors (a refused setns or unshare) come back synchronously as `spawn`'s
//! own error: the parent waits for the first child's report, which also carries the
//! pid. The pidfd comes from pidfd_open(2) after the fact; since the container is our
//! child its pid cannot be recycled before we reap it, so that is race-free. There is no
//! CLONE_INTO_CGROUP (`in_cgroup` is always 0): the host moves the process into its
//! cgroup before it sends GO. Between the fork and `child_main` no code allocates or
//! takes a lock: only raw system calls and the fixed-size [`ChildError`].

use std::ffi::{c_int, CStr};
use std::os::fd::BorrowedFd;

use tong_abi::{ChildError, NamespaceJoin, SpawnRequest, SpawnResult};
use tong_plugin_sdk::{NamespacePlugin, PluginError, PluginInfo, PluginResult};

/// `CLONE_NEWTIME`, like `CLONE_NEWPID`, applies to children only.
const CLONE_NEWTIME: c_int = 0x80;

struct Fork;

impl PluginInfo for Fork {
    const NAME: &'static CStr = c"fork";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"fork, setns/unshare, and a CLONE_PARENT clone for a pid namespace (no clone3)";
    // Below ns=clone3 (20): clone3 creates the process in its namespaces and cgroup in
    // one system call; see docs/benchmarks.md for the measured difference.
    const PRIORITY: u32 = 10;

    fn probe() -> PluginResult<()> {
        probe_namespaces(std::path::Path::new("/proc/self/ns"))
    }
}

/// The namespaces every container gets; their files in `/proc/self/ns`.
const NEEDED: [&str; 5] = ["mnt", "pid", "uts", "ipc", "net"];

/// fork, unshare and setns exist on every kernel tong supports, but unshare only creates
/// the namespace types the kernel was built with (the others are EINVAL): each shows as
/// a file in `ns_dir` (`/proc/self/ns`, which also needs /proc mounted).
fn probe_namespaces(ns_dir: &std::path::Path) -> PluginResult<()> {
    let missing: Vec<&str> = NEEDED
        .into_iter()
        .filter(|ns| !ns_dir.join(ns).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PluginError::unsupported(format!(
        "{} has no {} (a kernel without those namespaces, or /proc not mounted)",
        ns_dir.display(),
        missing.join(", ")
    )))
}

/// What the first child reports: the container's pid (as the caller sees it), or
/// -1 followed by a [`ChildError`].
const PID_LEN: usize = std::mem::size_of::<c_int>();
const REPORT_LEN: usize = PID_LEN + std::mem::size_of::<ChildError>();

impl NamespacePlugin for Fork {
    unsafe fn spawn(req: &SpawnRequest) -> PluginResult<SpawnResult> {
        let joins = if req.join_len == 0 || req.join.is_null() {
            &[][..]
        } else {
            // SAFETY: the host passes join/join_len describing a live array.
            unsafe { std::slice::from_raw_parts(req.join, req.join_len) }
        };
        let create = req.clone_flags as c_int;
        let children_only = libc::CLONE_NEWPID | CLONE_NEWTIME;
        for ty in [libc::CLONE_NEWPID, CLONE_NEWTIME] {
            if create & ty != 0 && joins.iter().any(|j| j.nstype == ty) {
                return Err(PluginError::invalid(format!(
                    "the config both creates and joins a {} namespace",
                    String::from_utf8_lossy(tong_sys::namespace_name(ty))
                )));
            }
        }
        let second_fork =
            create & children_only != 0 || joins.iter().any(|j| j.nstype & children_only != 0);

        let mut fds = [-1 as c_int; 2];
        // SAFETY: pipe2 fills the two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(PluginError::os("pipe2", std::io::Error::last_os_error()));
        }
        let [rd, wr] = fds;
        // SAFETY: the child runs first_child only, which allocates nothing, takes no
        // lock and ends in exec (child_main) or _exit.
        let first = unsafe { tong_sys::clone(libc::SIGCHLD as u64) };
        if first == 0 {
            // SAFETY: we are the freshly forked child, with our own copy of `req`.
            unsafe { first_child(req, joins, create, second_fork, rd, wr) }
        }
        if first < 0 {
            let err = std::io::Error::last_os_error();
            close(rd);
            close(wr);
            return Err(PluginError::os("fork", err));
        }
        let first = first as c_int;
        close(wr);
        let mut report = [0u8; REPORT_LEN];
        let got = tong_sys::read_full(borrow(rd), &mut report);
        close(rd);
        let pid = c_int::from_ne_bytes(report[..PID_LEN].try_into().unwrap_or_default());
        let ok = got >= PID_LEN && pid > 0;
        if second_fork || !ok {
            // The intermediate (or a first child that failed) exits right after its
            // report: reap it so no zombie is left behind.
            tong_sys::reap(first);
        }
        if !ok {
            let message = if got == REPORT_LEN {
                ChildError::from_bytes(&report[PID_LEN..])
                    .map_or_else(|| "malformed report".to_string(), |e| e.describe())
            } else {
                "the namespace child died before reporting".to_string()
            };
            return Err(PluginError {
                status: tong_abi::STATUS_OS,
                message,
            });
        }
        let pid = if second_fork { pid } else { first };
        // SAFETY: pidfd_open takes a pid and flags; our unreaped child cannot be recycled.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        Ok(SpawnResult {
            pid,
            pidfd: if pidfd < 0 { -1 } else { pidfd as c_int },
            in_cgroup: 0,
        })
    }
}

/// Borrows a pipe end this module opened; it stays open until [`close`].
fn borrow<'a>(fd: c_int) -> BorrowedFd<'a> {
    // SAFETY: only called with the pipe ends of `spawn`, open until closed explicitly,
    // after their last use.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn close(fd: c_int) {
    // SAFETY: closing a descriptor this module opened and owns.
    unsafe { libc::close(fd) };
}

/// Reports failure to the parent and exits. Never returns.
fn fail(wr: c_int, err: &ChildError) -> ! {
    tong_sys::write_all(borrow(wr), &(-1 as c_int).to_ne_bytes());
    tong_sys::write_all(borrow(wr), err.as_bytes());
    // SAFETY: leaving the child without running any of the parent's cleanup.
    unsafe { libc::_exit(1) }
}

/// The first child: joins and creates the namespaces, forks the container process when
/// a pid namespace needs it, reports, and either exits or becomes the container.
/// No allocation, no locks.
///
/// # Safety
/// Only in the freshly forked child, with the request the parent passed.
unsafe fn first_child(
    req: &SpawnRequest,
    joins: &[NamespaceJoin],
    create: c_int,
    second_fork: bool,
    rd: c_int,
    wr: c_int,
) -> ! {
    close(rd);
    let mut err = ChildError::default();
    for j in joins {
        // SAFETY: setns on a descriptor the host opened for us.
        if unsafe { libc::setns(j.fd, j.nstype) } != 0 {
            err.os(&[
                b"setns into the ",
                tong_sys::namespace_name(j.nstype),
                b" namespace given in linux.namespaces",
            ]);
            fail(wr, &err);
        }
    }
    // The host's namespace descriptors have served: a waiting container process keeps
    // none of them (they would reach host namespaces).
    for j in joins {
        close(j.fd);
    }
    if create != 0 {
        // SAFETY: unshare with the CLONE_NEW* flags the host asked for; we are
        // single-threaded, as a new user namespace requires.
        if unsafe { libc::unshare(create) } != 0 {
            err.os(&[b"unshare of the namespaces in linux.namespaces"]);
            fail(wr, &err);
        }
    }
    if second_fork {
        // CLONE_PARENT: the container process becomes the caller's child, and inherits
        // our exit signal (SIGCHLD).
        // SAFETY: the container process runs run_child_main only, which allocates
        // nothing before child_main execs or exits.
        let pid = unsafe { tong_sys::clone(libc::CLONE_PARENT as u64 | libc::SIGCHLD as u64) };
        if pid == 0 {
            close(wr);
            // SAFETY: we are the container process, in all our namespaces.
            unsafe { run_child_main(req) }
        }
        if pid < 0 {
            err.os(&[b"clone(CLONE_PARENT) of the process for the new pid namespace"]);
            fail(wr, &err);
        }
        tong_sys::write_all(borrow(wr), &(pid as c_int).to_ne_bytes());
        // SAFETY: the intermediate's work is done; the parent reaps it.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: getpid has no preconditions; our pid namespace did not change.
    let me = unsafe { libc::getpid() };
    tong_sys::write_all(borrow(wr), &me.to_ne_bytes());
    close(wr);
    // SAFETY: we are the container process, in all our namespaces.
    unsafe { run_child_main(req) }
}

/// Hands over to the host's child entry and exits with its status.
///
/// # Safety
/// Only in the container process, with the request the parent passed.
unsafe fn run_child_main(req: &SpawnRequest) -> ! {
    // SAFETY: the host's child entry with its own argument.
    let code = unsafe { (req.child_main)(req.child_arg) };
    // SAFETY: leaving without running the parent's cleanup.
    unsafe { libc::_exit(code) }
}

tong_plugin_sdk::export_namespace_plugin!(Fork);

#[cfg(test)]
mod tests;
