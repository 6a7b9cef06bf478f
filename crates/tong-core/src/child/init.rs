//! Init mode ([`crate::init`]): the container's first process forks right before exec;
//! the child goes on to exec the user's program, the parent stays as the container's
//! pid 1. It reaps every process that is orphaned into it, forwards the signals it
//! receives to the program, and exits with the program's status once the program exits
//! (the kernel then kills what is left in the pid namespace). No re-exec of tong: this
//! is the cloned child itself, so like the rest of it the loop allocates nothing.

use std::ffi::c_int;

use tong_abi::ChildError;

/// Forks: returns in the child (which execs the program next); the parent never returns.
/// Every signal is blocked in the caller.
pub(crate) fn fork_init(err: &mut ChildError) -> Result<(), ()> {
    // SAFETY: orphans of the container are reparented to us even without a pid namespace.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // SAFETY: we are the container's child between clone and exec; the new process
    // returns into that same no-allocation code, which execs the program or _exits.
    let pid = unsafe { tong_sys::fork() };
    if pid < 0 {
        err.os(&[b"fork of the container's init"]);
        return Err(());
    }
    if pid == 0 {
        // SAFETY: the program must not inherit the subreaper flag.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
        return Ok(());
    }
    supervise(pid as libc::pid_t)
}

/// The init loop: waits for signals (all blocked, so they queue), reaps on SIGCHLD,
/// forwards the rest to the program.
fn supervise(main: libc::pid_t) -> ! {
    // SAFETY: names this process (its comm) after its job; the name is a static string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"tong-init".as_ptr(), 0, 0, 0) };
    // SAFETY: closes every descriptor from 3 up: the runtime's pipes (so `run` sees the
    // report pipe close when the program execs), the exec fifo, anything else inherited.
    // The init needs only its stdio.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // SAFETY: a full sigset on the stack.
    let all = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut set);
        set
    };
    loop {
        // SAFETY: siginfo into a zeroed local; the set is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let sig = unsafe { libc::sigwaitinfo(&raw const all, &raw mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            if let Some(code) = reap_all(main) {
                // SAFETY: the program is gone; so are we.
                unsafe { libc::_exit(code) };
            }
        } else {
            // SAFETY: kill(2) of our own child (the program).
            unsafe { libc::kill(main, sig) };
        }
    }
}

/// Reaps every exited child; the program's exit code when it was among them.
fn reap_all(main: libc::pid_t) -> Option<c_int> {
    let mut main_code = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid for any child, without blocking.
        let pid = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
        if pid <= 0 {
            return main_code;
        }
        if pid == main {
            main_code = Some(crate::process::exit_code(status));
        }
    }
}
