//! The child's last step: exec the stub from its sealed memfd ([`crate::exec_stub`]
//! tells why), which then execs the program.

use std::ffi::{c_char, c_int, CStr};

/// Runs the stub from `memfd`. Returns only on failure, with errno set. `report_fd` must
/// have been made inheritable by the caller.
///
/// execveat(2) with AT_EMPTY_PATH is the way. On any failure the same memfd is exec'd
/// by its /proc path: a seccomp profile may allow execve and refuse execveat with an
/// errno, and valgrind's execveat refuses an empty path (ENOENT).
///
/// # Safety
/// `argv` and `envp` are NULL-terminated arrays of live C strings.
pub unsafe fn exec(
    memfd: c_int,
    proc_path: &CStr,
    argv: *const *const c_char,
    envp: *const *const c_char,
) {
    // SAFETY: the caller's arrays; an empty path with AT_EMPTY_PATH names the memfd.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            memfd,
            c"".as_ptr(),
            argv,
            envp,
            libc::AT_EMPTY_PATH,
        );
    }
    let first = tong_abi::ChildError::last_errno();
    // SAFETY: as above, with a path the parent prepared.
    unsafe { libc::execve(proc_path.as_ptr(), argv, envp) };
    // Report the execveat failure, the one a profile author must look at.
    // SAFETY: errno is thread-local; restoring it has no other effect.
    unsafe { *libc::__errno_location() = first };
}
