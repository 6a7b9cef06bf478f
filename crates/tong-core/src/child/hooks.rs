//! The hook runner ([`crate::hooks`]): forks, enters the container's namespaces when
//! asked, execs the hook with the state on stdin and waits for it within its timeout.
//! It allocates nothing after it forks, so the same code serves the engine (possibly
//! inside a multi-threaded Go program) and the container's process between clone and
//! exec (startContainer).

use std::ffi::{c_int, CString};
use std::os::fd::{AsRawFd, OwnedFd};

use tong_abi::ChildError;

use crate::cstrings::CStrings;

/// A hook ready to run without allocating.
#[derive(Debug)]
pub struct PreparedHook {
    /// Where it was found, for messages (and for execve when `exe` is None).
    pub path: CString,
    /// The executable opened in the runtime's mount namespace, for hooks that run after
    /// joining the container's (execveat with AT_EMPTY_PATH).
    pub exe: Option<OwnedFd>,
    pub argv: CStrings,
    pub envp: CStrings,
    /// Milliseconds before it is killed; 0: no limit.
    pub timeout_ms: i64,
}

/// What a hook that could not be executed gets added to its message.
pub(crate) const EXEC_FAILED: &[u8] = b" (could not be executed)";

/// Forks, enters `joins`, execs the hook with `stdin_fd` (rewound) as stdin, and waits
/// for it within its timeout. Allocates nothing; callable between clone and exec.
/// `name`: the hook point's, for messages; `exec_failed`: what the message of a hook
/// that could not be executed adds.
pub(crate) fn run(
    name: &[u8],
    exec_failed: &[u8],
    hook: &PreparedHook,
    stdin_fd: c_int,
    joins: &[(c_int, c_int)],
    err: &mut ChildError,
) -> std::result::Result<(), ()> {
    let path = hook.path.to_bytes();
    // SAFETY: the new process runs hook_process only, which allocates nothing, takes no
    // lock, and execs the hook or _exits.
    let pid = unsafe { tong_sys::fork() };
    if pid < 0 {
        err.os(&[b"fork for hook ", path]);
        return Err(());
    }
    if pid == 0 {
        hook_process(hook, stdin_fd, joins);
    }
    let deadline = (hook.timeout_ms > 0).then(|| now_ms() + hook.timeout_ms);
    let mut status = 0;
    loop {
        // SAFETY: non-blocking waitpid on our own child.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &raw mut status, libc::WNOHANG) };
        if r == pid as libc::pid_t {
            break;
        }
        if r < 0 && ChildError::last_errno() != libc::EINTR {
            err.os(&[b"waiting for hook ", path]);
            return Err(());
        }
        if deadline.is_some_and(|d| now_ms() >= d) {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, &raw mut status, 0);
            }
            let mut secs = [0u8; 20];
            let n = tong_sys::write_decimal(&mut secs, (hook.timeout_ms / 1000) as u64);
            err.set(
                0,
                &[
                    name,
                    b" hook ",
                    path,
                    b": timed out after ",
                    &secs[..n],
                    b"s (killed)",
                ],
            );
            return Err(());
        }
        sleep_ms(5);
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    let mut num = [0u8; 20];
    if libc::WIFSIGNALED(status) {
        let n = tong_sys::write_decimal(&mut num, libc::WTERMSIG(status) as u64);
        err.set(
            0,
            &[name, b" hook ", path, b": killed by signal ", &num[..n]],
        );
    } else {
        let code = libc::WEXITSTATUS(status);
        let n = tong_sys::write_decimal(&mut num, code as u64);
        let why: &[u8] = match code {
            EXIT_EXEC => exec_failed,
            EXIT_SETNS if !joins.is_empty() => b" (could not join the container's namespaces)",
            _ => b"",
        };
        err.set(
            0,
            &[
                name,
                b" hook ",
                path,
                b": exited with status ",
                &num[..n],
                why,
            ],
        );
    }
    Err(())
}

/// Exit codes of the hook process when tong's own steps fail in it.
const EXIT_EXEC: c_int = 127;
const EXIT_SETNS: c_int = 126;

/// The forked hook process: never returns.
fn hook_process(hook: &PreparedHook, stdin_fd: c_int, joins: &[(c_int, c_int)]) -> ! {
    // SAFETY: plain syscalls in our own single-threaded fork, on prepared descriptors and
    // C strings; _exit on every failure.
    unsafe {
        for &(fd, nstype) in joins {
            if libc::setns(fd, nstype) != 0 {
                libc::_exit(EXIT_SETNS);
            }
        }
        if !joins.is_empty() {
            // A joined pid namespace applies to children only: run the hook in one.
            // (Inside the unsafe block above.) The new process runs the same
            // no-allocation code: it execs the hook or _exits.
            let pid = tong_sys::fork();
            if pid < 0 {
                libc::_exit(EXIT_SETNS);
            }
            if pid > 0 {
                let mut status = 0;
                while libc::waitpid(pid as libc::pid_t, &raw mut status, 0) < 0 {}
                libc::_exit(crate::process::exit_code(status));
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        }
        libc::lseek(stdin_fd, 0, libc::SEEK_SET);
        if libc::dup2(stdin_fd, 0) < 0 {
            libc::_exit(EXIT_EXEC);
        }
        super::signals::reset_handlers();
        super::signals::unblock_all();
        match &hook.exe {
            Some(exe) => {
                // Scripts are run by the kernel as /dev/fd/N: the descriptor must survive exec.
                libc::fcntl(exe.as_raw_fd(), libc::F_SETFD, 0);
                libc::syscall(
                    libc::SYS_execveat,
                    exe.as_raw_fd(),
                    c"".as_ptr(),
                    hook.argv.as_ptr(),
                    hook.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
            }
            None => {
                libc::execve(hook.path.as_ptr(), hook.argv.as_ptr(), hook.envp.as_ptr());
            }
        }
        libc::_exit(EXIT_EXEC)
    }
}

fn now_ms() -> i64 {
    // SAFETY: clock_gettime into a zeroed local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

fn sleep_ms(ms: i64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: ms * 1_000_000,
    };
    // SAFETY: nanosleep with a live timespec; an early wake-up is harmless.
    unsafe { libc::nanosleep(&raw const ts, std::ptr::null_mut()) };
}

/// The prepared startContainer hooks and the memfd with their state, handed to the
/// container's process.
#[derive(Debug, Default)]
pub struct StartHooks {
    pub hooks: Vec<PreparedHook>,
    pub state_fd: Option<OwnedFd>,
}

impl StartHooks {
    /// Runs them in the container's process (no allocation).
    pub(crate) fn run_in_child(&self, err: &mut ChildError) -> std::result::Result<(), ()> {
        let Some(fd) = &self.state_fd else {
            return Ok(());
        };
        for hook in &self.hooks {
            // SAFETY: access(2) on a prepared C string.
            if unsafe { libc::access(hook.path.as_ptr(), libc::X_OK) } != 0 {
                err.os(&[b"startContainer hook ", hook.path.to_bytes()]);
                return Err(());
            }
            run(
                b"startContainer",
                EXEC_FAILED,
                hook,
                fd.as_raw_fd(),
                &[],
                err,
            )?;
        }
        Ok(())
    }
}
