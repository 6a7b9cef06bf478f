//! The container's process between clone and exec.
//!
//! The parent builds a [`ChildContext`] holding every C string, pointer array and number
//! the child will need; the child only reads it and makes system calls. It must not
//! allocate or take a lock: in a multi-threaded caller (any Go program) another thread
//! may have held the allocator's lock at the moment of clone, and it never lets go in
//! the child. So no `String`, `Vec` growth, `format!` or `std::io` writers here: only
//! `libc` calls and [`ChildError`], which formats into a fixed buffer.
//!
//! Protocol with the parent, over two pipes:
//! 1. The child waits for [`GO`] on `sync_fd`: the parent has placed it in its cgroup,
//!    written its id maps and set up its network.
//! 2. It sets the hostname, builds the root filesystem through the rootfs plugin, sets
//!    its credentials and working directory, and finds the executable.
//! 3. It reports [`READY`] on `report_fd`, or a [`ChildError`] and exits.
//! 4. It waits to be started: a byte on the exec fifo (`create`, released by `start`), or
//!    [`START`] on `sync_fd` (`run`); runs the startContainer hooks; in init mode forks
//!    and stays as pid 1 ([`init`]); with a terminal, takes it as its controlling
//!    terminal ([`terminal`], the pty itself is opened after the root is set up).
//! 5. It execs the exec stub from a sealed memfd, which execs the program
//!    ([`crate::exec_stub`]): no process of the container ever runs as a clone of the
//!    host binary. A failed exec is reported on `report_fd` (by the child, or by the stub,
//!    which marks it close-on-exec first, so the parent of a `run` sees EOF when the
//!    program's exec succeeded).
//!
//! The child is non-dumpable from its first instruction until that exec (see
//! [`child_main`]).
//!
//! This folder holds all the code that runs between clone (or fork) and exec, and the
//! raw `libc` calls it makes: the parent prepares everything, the modules here only
//! read it. Its submodules are the child halves of [`crate::terminal`] (the pty),
//! [`crate::hooks`] (the fork/exec runner, shared with the engine), [`crate::init`],
//! [`crate::exec_stub`] and [`crate::security`] (applying what the parent compiled).

pub(crate) mod exec_stub;
pub(crate) mod hooks;
pub(crate) mod init;
pub(crate) mod security;
pub(crate) mod signals;
pub(crate) mod terminal;

use std::ffi::{c_int, c_void, CString};
use std::os::fd::BorrowedFd;

use crate::cstrings::CStrings;

use tong_abi::{ChildError, Status, STATUS_OK};

/// Parent → child: setup on the host side is done.
pub const GO: u8 = b'G';
/// Parent → child (`run` only): exec now.
pub const START: u8 = b'S';
/// Child → parent: ready to exec.
pub const READY: u8 = b'R';

/// The child-side entry of a rootfs plugin, with its plan.
pub type RootfsEntry = (
    unsafe extern "C" fn(*mut c_void, *mut ChildError) -> Status,
    *mut c_void,
);

/// Everything the child needs, prepared by the parent.
#[derive(Debug)]
pub struct ChildContext {
    /// Descriptors to close first (the container's state lock, the parent's ends).
    pub close_first: Vec<c_int>,
    /// Read end of the parent → child pipe.
    pub sync_fd: c_int,
    /// Write end of the child → parent pipe (close-on-exec).
    pub report_fd: c_int,
    /// The exec fifo opened read-write (`create`), or -1 (`run`).
    pub fifo_fd: c_int,
    /// Descriptors to become the container's 0, 1, 2; -1 keeps the inherited one.
    pub stdio: [c_int; 3],
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    pub rootfs: Option<RootfsEntry>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    /// setgroups(2) is allowed (not in a user namespace with setgroups denied).
    pub set_groups: bool,
    pub umask: Option<libc::mode_t>,
    pub cwd: CString,
    pub no_new_privileges: bool,
    /// Owns the strings `stub_args` points into (the stub execs with them).
    #[allow(dead_code)]
    pub argv: CStrings,
    pub envp: CStrings,
    /// Where the executable may be: `args[0]` itself when it holds a `/`, else each
    /// `$PATH` directory joined with it, in order.
    pub exec_candidates: Vec<CString>,
    /// `args[0]`, for messages.
    pub program: CString,
    /// The sealed memfd of the exec stub (close-on-exec, above the passed descriptors).
    pub exec_stub: c_int,
    /// The stub's argv for each of `exec_candidates`.
    pub stub_args: crate::exec_stub::StubArgs,
    /// Stay dumpable until the go-ahead: a parent without root must write the id maps of
    /// the new user namespace, and `/proc/<pid>/uid_map` of a non-dumpable process belongs
    /// to root.
    pub dumpable_until_go: bool,
    /// Close-on-exec copies of the descriptors the container gets as 3, 4, ..., in that
    /// order, all numbered at or above 3 + their count (see `PassedFds` in runtime.rs),
    /// as is every other descriptor the child uses after moving them in.
    pub pass_fds: Vec<c_int>,
    /// Connected console socket (`process.terminal`), or -1: see [`crate::terminal`].
    pub console_socket: c_int,
    /// Stay as the container's init and fork the program: see [`crate::init`].
    pub init: bool,
    /// startContainer hooks, run after the start gate: see [`crate::hooks`].
    pub start_hooks: hooks::StartHooks,
    /// In a user namespace (new or joined): become its uid/gid 0 right after the go-ahead
    /// (the parent has written a new namespace's id maps by then), before anything
    /// creates files.
    pub user_namespace_root: bool,
    /// Create the cgroup namespace after the go-ahead rather than at clone: its root is
    /// the cgroup its creator is in, and only then is the process in its own cgroups
    /// (cgroup v1 cannot place a process at clone).
    pub unshare_cgroup: bool,
    /// Capabilities, seccomp, sysctls and LSM labels, prepared by the parent.
    pub security: crate::security::ChildSecurity,
}

/// The entry point the namespace plugin calls in the child.
///
/// # Safety
/// `arg` must point at a live [`ChildContext`] (in the child's copy of the parent's
/// memory), and the caller must be the freshly cloned child.
pub unsafe extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: the parent passed a pointer to its ChildContext, which the child's copy of
    // the address space still holds; nothing else touches it in the child.
    let ctx = unsafe { &*arg.cast::<ChildContext>() };
    if !ctx.dumpable_until_go {
        set_non_dumpable();
    }
    let mut err = ChildError::default();
    if setup_and_exec(ctx, &mut err).is_err() {
        report_failure(ctx, &err);
    }
    127
}

/// Called by the namespace plugin when its own child-side step (setns) fails.
///
/// # Safety
/// As for [`child_main`]; `err` points at a live [`ChildError`].
pub unsafe extern "C" fn child_fail(arg: *mut c_void, err: *const ChildError) {
    // SAFETY: see child_main; err is the plugin's live buffer.
    let (ctx, err) = unsafe { (&*arg.cast::<ChildContext>(), &*err) };
    report_failure(ctx, err);
}

fn report_failure(ctx: &ChildContext, err: &ChildError) {
    // Signals stay blocked here, so a parent that went away cannot kill us with SIGPIPE.
    signals::block_all();
    report(ctx, err.as_bytes());
}

/// Writes to the report pipe, which stays open in the child until exec (O_CLOEXEC).
fn report(ctx: &ChildContext, data: &[u8]) {
    // SAFETY: report_fd is the child's end of the report pipe, open for the child's life.
    tong_sys::write_all(unsafe { BorrowedFd::borrow_raw(ctx.report_fd) }, data);
}

fn setup_and_exec(ctx: &ChildContext, err: &mut ChildError) -> Result<(), ()> {
    for &fd in &ctx.close_first {
        // SAFETY: closing descriptors the parent listed as ours to drop.
        unsafe { libc::close(fd) };
    }
    signals::reset_handlers();
    wait_for(ctx.sync_fd, GO, err, b"waiting for the runtime")?;
    if ctx.dumpable_until_go {
        set_non_dumpable();
    }
    if ctx.user_namespace_root {
        // SAFETY: raw setresgid/setresuid to 0 of the new namespace (see set_credentials).
        unsafe {
            let ret = libc::syscall(libc::SYS_setresgid, 0, 0, 0);
            check(
                ret as c_int,
                err,
                &[b"setresgid(0) in the container's user namespace"],
            )?;
            let ret = libc::syscall(libc::SYS_setresuid, 0, 0, 0);
            check(
                ret as c_int,
                err,
                &[b"setresuid(0) in the container's user namespace"],
            )?;
        }
    }
    if ctx.unshare_cgroup {
        // SAFETY: unshare(2) has no memory preconditions.
        let ret = unsafe { libc::unshare(libc::CLONE_NEWCGROUP) };
        check(ret, err, &[b"unshare the cgroup namespace"])?;
    }
    let security = &ctx.security;
    self::security::apply_sysctls(&security.sysctls, err)?;

    if let Some(name) = &ctx.hostname {
        // SAFETY: name is a live C string of the given length.
        let ret = unsafe { libc::sethostname(name.as_ptr(), name.as_bytes().len()) };
        check(ret, err, &[b"sethostname"])?;
    }
    if let Some(name) = &ctx.domainname {
        // SAFETY: name is a live C string of the given length.
        let ret = unsafe { libc::setdomainname(name.as_ptr(), name.as_bytes().len()) };
        check(ret, err, &[b"setdomainname"])?;
    }
    if let Some((setup, plan)) = ctx.rootfs {
        // SAFETY: the plugin's child entry with the plan it prepared for this child.
        if unsafe { setup(plan, err) } != STATUS_OK {
            if err.len == 0 {
                err.set(0, &[b"rootfs setup failed"]);
            }
            return Err(());
        }
    }
    // The pty comes from the container's devpts: after the root is set up (or joined).
    let tty = if ctx.console_socket >= 0 {
        Some(terminal::open_and_send(ctx.console_socket, err)?)
    } else {
        None
    };
    if let Some(caps) = &security.capabilities {
        caps.before_credentials(err)?;
    }
    if !ctx.no_new_privileges {
        // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while the
        // process still has it (as runc does).
        if let Some(seccomp) = &security.seccomp {
            seccomp.install(err)?;
        }
    }
    set_credentials(ctx, err)?;
    if let Some(caps) = &security.capabilities {
        caps.after_credentials(err)?;
    }
    // SAFETY: plain syscalls on prepared values.
    unsafe {
        if let Some(mask) = ctx.umask {
            libc::umask(mask);
        }
        check(
            libc::chdir(ctx.cwd.as_ptr()),
            err,
            &[b"chdir to process.cwd ", ctx.cwd.to_bytes()],
        )?;
        if ctx.no_new_privileges {
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                err,
                &[b"prctl(PR_SET_NO_NEW_PRIVS)"],
            )?;
        }
    }
    let candidate = find_executable(ctx, err)?;
    let program = &ctx.exec_candidates[candidate];
    // Stdio first: its sources may be among the passed descriptors' targets.
    setup_stdio(ctx, tty, err)?;
    let passed_end = 3 + ctx.pass_fds.len() as c_int;
    for (target, &copy) in (3..).zip(&ctx.pass_fds) {
        // SAFETY: dup2 of a copy the parent made for us; the copy is above every target,
        // so none still to be moved is overwritten. The new descriptor is inheritable.
        let ret = unsafe { libc::dup2(copy, target) };
        check(
            ret,
            err,
            &[b"dup2 of a passed descriptor (extra_fds, --preserve-fds)"],
        )?;
    }
    // SAFETY: marks every descriptor above the passed ones close-on-exec (ours already
    // are): the caller's and tong's stay out of the container.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            passed_end as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    for label in &security.exec_labels {
        label.apply(err)?;
    }

    report(ctx, &[READY]);
    if ctx.fifo_fd >= 0 {
        let mut byte = 0u8;
        // SAFETY: reads one byte into a local; blocks until `start` writes the fifo.
        let n = unsafe { libc::read(ctx.fifo_fd, std::ptr::from_mut(&mut byte).cast(), 1) };
        if n != 1 {
            err.os(&[b"waiting on the exec fifo"]);
            return Err(());
        }
    } else {
        wait_for(ctx.sync_fd, START, err, b"waiting for start")?;
    }
    ctx.start_hooks.run_in_child(err)?;
    // With no_new_privs the filter waits for the last moment (below); tong's init stays
    // in the container beside the program, so then it takes the filter before the fork.
    let mut filter_pending = ctx.no_new_privileges;
    if ctx.init {
        if filter_pending {
            if let Some(seccomp) = &security.seccomp {
                seccomp.install(err)?;
            }
            filter_pending = false;
        }
        init::fork_init(err)?;
    }
    if tty.is_some() {
        terminal::take_controlling(err)?;
    }

    signals::unblock_all();
    if filter_pending {
        // As close to execve as possible, so the profile need allow almost nothing of ours.
        if let Some(seccomp) = &security.seccomp {
            seccomp.install(err)?;
        }
    }
    // SAFETY: the stub reports a failed exec of the program on the report pipe, so it
    // must inherit it; it marks it close-on-exec again before that exec. The arrays are
    // NULL-terminated and built by the parent.
    unsafe {
        if ctx.report_fd >= 0 {
            libc::fcntl(ctx.report_fd, libc::F_SETFD, 0);
        }
        exec_stub::exec(
            ctx.exec_stub,
            &ctx.stub_args.proc_path,
            ctx.stub_args.for_candidate(candidate),
            ctx.envp.as_ptr(),
        );
    }
    err.os(&[b"exec ", program.to_bytes(), b" through tong's exec stub"]);
    Err(())
}

/// `/proc/<pid>/exe`, `fd/` and `map_files/` of a non-dumpable process are refused to
/// anyone without CAP_SYS_PTRACE over the user namespace of its memory, which is the
/// host's: a neighbour sharing the container's pid namespace cannot reach the host binary
/// while this process is a clone of it. The exec resets it.
fn set_non_dumpable() {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// Looks the executable up without allocating; the message keeps runc's wording
/// ("executable file not found in $PATH"), which engines map to exit code 127.
/// Returns the index of the executable among `exec_candidates`.
fn find_executable(ctx: &ChildContext, err: &mut ChildError) -> Result<usize, ()> {
    let mut denied = None;
    for (index, path) in ctx.exec_candidates.iter().enumerate() {
        // SAFETY: stat into a local buffer; path is a live C string.
        let mut st = unsafe { std::mem::zeroed::<libc::stat>() };
        // SAFETY: as above.
        if unsafe { libc::stat(path.as_ptr(), &raw mut st) } != 0
            || st.st_mode & libc::S_IFMT != libc::S_IFREG
        {
            continue;
        }
        // SAFETY: access() on a live C string.
        if unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0 {
            return Ok(index);
        }
        denied.get_or_insert(path);
    }
    if let Some(path) = denied {
        err.set(0, &[b"exec ", path.to_bytes(), b": permission denied"]);
    } else if ctx.program.to_bytes().contains(&b'/') {
        err.set(
            0,
            &[
                b"exec: \"",
                ctx.program.to_bytes(),
                b"\": stat ",
                ctx.program.to_bytes(),
                b": no such file or directory",
            ],
        );
    } else {
        err.set(
            0,
            &[
                b"exec: \"",
                ctx.program.to_bytes(),
                b"\": executable file not found in $PATH",
            ],
        );
    }
    Err(())
}

/// Raw system calls, not glibc's wrappers: in a process glibc believes multi-threaded
/// (any caller with a second thread at clone time, like tong's own warm-up thread or a Go
/// program), `setresuid` and friends signal every other thread and wait for them, and in
/// the child those threads do not exist: it would wait forever. The kernel changes the
/// credentials of the calling thread, which is all the child has.
fn set_credentials(ctx: &ChildContext, err: &mut ChildError) -> Result<(), ()> {
    // SAFETY: plain syscalls with values and a slice the parent prepared.
    unsafe {
        if ctx.set_groups {
            let ret = libc::syscall(libc::SYS_setgroups, ctx.groups.len(), ctx.groups.as_ptr());
            check(ret as c_int, err, &[b"setgroups"])?;
        }
        let ret = libc::syscall(libc::SYS_setresgid, ctx.gid, ctx.gid, ctx.gid);
        check(ret as c_int, err, &[b"setresgid"])?;
        let ret = libc::syscall(libc::SYS_setresuid, ctx.uid, ctx.uid, ctx.uid);
        check(ret as c_int, err, &[b"setresuid"])?;
    }
    Ok(())
}

fn setup_stdio(ctx: &ChildContext, tty: Option<c_int>, err: &mut ChildError) -> Result<(), ()> {
    let stdio = tty.map_or(ctx.stdio, |slave| [slave; 3]);
    for (target, &fd) in stdio.iter().enumerate() {
        if fd >= 0 && fd != target as c_int {
            // SAFETY: dup2 of a descriptor the caller handed us onto 0, 1 or 2.
            let ret = unsafe { libc::dup2(fd, target as c_int) };
            check(ret, err, &[b"dup2 of a stdio descriptor"])?;
        }
    }
    Ok(())
}

fn wait_for(fd: c_int, expected: u8, err: &mut ChildError, what: &[u8]) -> Result<(), ()> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a local.
        let n = unsafe { libc::read(fd, std::ptr::from_mut(&mut byte).cast(), 1) };
        if n == 1 && byte == expected {
            return Ok(());
        }
        if n < 0 && ChildError::last_errno() == libc::EINTR {
            continue;
        }
        // EOF: the parent gave up; nothing to report to.
        err.set(0, &[what, b": the runtime went away"]);
        return Err(());
    }
}

fn check(ret: c_int, err: &mut ChildError, what: &[&[u8]]) -> Result<(), ()> {
    if ret < 0 {
        err.os(what);
        Err(())
    } else {
        Ok(())
    }
}
