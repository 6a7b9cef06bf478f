//! OCI hooks (`config.json` `hooks`), at the points the runtime spec names:
//!
//! | hook | when | where it runs | on failure |
//! | --- | --- | --- | --- |
//! | `prestart`, `createRuntime` | create, after the cgroup, id maps and network exist, before the container sets up its root | the runtime's namespaces | create fails and undoes everything |
//! | `createContainer` | create, once the container's root is ready, before `create` returns | the container's namespaces (a helper joins them); the path resolves in the runtime's | as above |
//! | `startContainer` | start, in the container's process before the user's program | the container | the process exits; the container is stopped (`run` reports the error) |
//! | `poststart` | start, once the program has been exec'd (the close-on-exec report fd or exec fifo is gone) | the runtime's | a warning; the next hooks still run |
//! | `poststop` | delete, once everything is undone | the runtime's | a warning; the next hooks still run |
//!
//! Each hook gets the container's state JSON on stdin (a memfd): status `creating` for
//! prestart, createRuntime and createContainer, `created` for startContainer, `running`
//! for poststart, `stopped` (no pid) for poststop; the pid is the one seen from the
//! hook's pid namespace (1 in the container for createContainer and startContainer), as
//! the runtime spec says and runc gives. Each hook gets its own `args` and
//! `env` only, and is killed when its `timeout` passes. The runner allocates nothing
//! after it forks, so the same code serves the engine (possibly inside a multi-threaded
//! Go program) and the container's process between clone and exec (startContainer).

use std::ffi::{c_int, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use oci_spec::runtime::{Hook, Hooks};
use serde_json::Value;
use tong_abi::ChildError;

use crate::cstrings::CStrings;
use crate::error::{Error, Result};

/// The hook points, by their config.json names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::Prestart => "prestart",
            Point::CreateRuntime => "createRuntime",
            Point::CreateContainer => "createContainer",
            Point::StartContainer => "startContainer",
            Point::Poststart => "poststart",
            Point::Poststop => "poststop",
        }
    }

    /// The hooks of this point in a config's `hooks`.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Point::Prestart => hooks.prestart(),
            Point::CreateRuntime => hooks.create_runtime(),
            Point::CreateContainer => hooks.create_container(),
            Point::StartContainer => hooks.start_container(),
            Point::Poststart => hooks.poststart(),
            Point::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// The hooks kept in a container's record (for `start` and `delete`).
pub fn from_record(value: Option<&Value>) -> Hooks {
    value
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

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

/// Every point, in lifecycle order.
pub const POINTS: [Point; 6] = [
    Point::Prestart,
    Point::CreateRuntime,
    Point::CreateContainer,
    Point::StartContainer,
    Point::Poststart,
    Point::Poststop,
];

/// Checks every hook of a config (absolute paths, positive timeouts) before anything is
/// made, including those that run only at start or delete.
pub fn validate(hooks: &Hooks) -> Result<()> {
    for point in POINTS {
        for (i, hook) in point.of(hooks).iter().enumerate() {
            let what = || format!("hooks.{}[{i}] {}", point.name(), hook.path().display());
            if !hook.path().is_absolute() {
                return Err(Error::invalid(format!(
                    "{}: the path must be absolute",
                    what()
                )));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(Error::invalid(format!(
                    "{}: timeout must be greater than zero",
                    what()
                )));
            }
        }
    }
    Ok(())
}

/// Whether a config has no hook at all.
pub fn is_empty(hooks: &Hooks) -> bool {
    POINTS.iter().all(|p| p.of(hooks).is_empty())
}

/// Prepares the hooks of one point (checked by [`validate`] first). `open_exe`: open the executable now (it
/// runs after the runner joins other namespaces). `check_exists`: its path is in our
/// mount namespace, so a missing file is reported now, by name.
pub fn prepare(point: Point, hooks: &[Hook], open_exe: bool) -> Result<Vec<PreparedHook>> {
    hooks
        .iter()
        .enumerate()
        .map(|(i, hook)| prepare_one(point, i, hook, open_exe))
        .collect()
}

/// Prepares `hook`, the `i`th of its point.
fn prepare_one(point: Point, i: usize, hook: &Hook, open_exe: bool) -> Result<PreparedHook> {
    let check_exists = point != Point::StartContainer;
    let what = format!("hooks.{}[{i}] {}", point.name(), hook.path().display());
    if check_exists {
        let c = cstring(&what, hook.path().as_os_str().as_bytes())?;
        // SAFETY: access(2) on a live C string.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::invalid(format!("{what}: cannot execute: {e}")));
        }
    }
    let exe = if open_exe {
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(hook.path())
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        Some(OwnedFd::from(file))
    } else {
        None
    };
    let args = match hook.args() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![hook.path().display().to_string()],
    };
    let env = hook.env().clone().unwrap_or_default();
    let strings = |items: &[String]| -> Result<CStrings> {
        Ok(CStrings::new(
            items
                .iter()
                .map(|s| cstring(&what, s.as_bytes()))
                .collect::<Result<_>>()?,
        ))
    };
    Ok(PreparedHook {
        path: cstring(&what, hook.path().as_os_str().as_bytes())?,
        exe,
        argv: strings(&args)?,
        envp: strings(&env)?,
        timeout_ms: hook.timeout().unwrap_or(0).saturating_mul(1000),
    })
}

fn cstring(what: &str, bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::invalid(format!("{what}: contains a NUL byte")))
}

/// A memfd holding the state JSON, to be every hook's stdin.
pub fn state_memfd(state: &[u8]) -> Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(
        c"tong-hook-state",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| Error::os("memfd_create", std::io::Error::from(e)))?;
    write_state(&fd, state)?;
    Ok(fd)
}

/// Replaces the memfd's content with `state`.
pub fn write_state(fd: &OwnedFd, state: &[u8]) -> Result<()> {
    let mut file = File::from(fd.try_clone().map_err(|e| Error::os("dup", e))?);
    file.set_len(0)
        .and_then(|()| std::io::Seek::rewind(&mut file))
        .and_then(|()| file.write_all(state))
        .map_err(|e| Error::os("writing the hook state", e))
}

/// Runs the hooks of one point in the engine, in order; the first failure is the error.
/// `joins`: namespace descriptors to enter first (createContainer), user namespace first.
pub fn run_all(
    point: Point,
    hooks: &[PreparedHook],
    state: &[u8],
    joins: &[(c_int, File)],
) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let memfd = state_memfd(state)?;
    let joins: Vec<(c_int, c_int)> = joins.iter().map(|(t, f)| (f.as_raw_fd(), *t)).collect();
    for hook in hooks {
        let mut err = ChildError::default();
        let mask = crate::signals::block_all_signals();
        let r = run(point, hook, memfd.as_raw_fd(), &joins, &mut err);
        crate::signals::restore_signal_mask(&mask);
        if r.is_err() {
            return Err(Error::Container(err.describe()));
        }
    }
    Ok(())
}

/// Runs the hooks of a point whose failure only warns (poststart, poststop): each one
/// that fails is a warning, and the rest of the point's hooks still run.
pub fn run_warn(point: Point, hooks: &Hooks, state: &[u8]) {
    for (i, hook) in point.of(hooks).iter().enumerate() {
        let result = prepare_one(point, i, hook, false)
            .and_then(|prepared| run_all(point, &[prepared], state, &[]));
        if let Err(e) = result {
            crate::log::warn(format_args!("{e}"));
        }
    }
}

/// Waits until nobody reads the exec fifo any more: the container's process closed it
/// by exec'ing its program (the descriptor is close-on-exec), or died.
pub fn wait_readers_gone(fifo: &File) {
    loop {
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: poll on one live pollfd; a write end reports POLLERR without readers.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r > 0 || ChildError::last_errno() != libc::EINTR {
            return;
        }
    }
}

/// Forks, enters `joins`, execs the hook with `stdin_fd` (rewound) as stdin, and waits
/// for it within its timeout. Allocates nothing; callable between clone and exec.
pub(crate) fn run(
    point: Point,
    hook: &PreparedHook,
    stdin_fd: c_int,
    joins: &[(c_int, c_int)],
    err: &mut ChildError,
) -> std::result::Result<(), ()> {
    let name = point.name().as_bytes();
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
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
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
                libc::waitpid(pid as libc::pid_t, &mut status, 0);
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
            EXIT_EXEC if point == Point::CreateContainer => {
                b" (could not be executed: in the container's mount namespace its interpreter or loader must exist inside the container)"
            }
            EXIT_EXEC => b" (could not be executed)",
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
                while libc::waitpid(pid as libc::pid_t, &mut status, 0) < 0 {}
                libc::_exit(crate::process::exit_code(status));
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        }
        libc::lseek(stdin_fd, 0, libc::SEEK_SET);
        if libc::dup2(stdin_fd, 0) < 0 {
            libc::_exit(EXIT_EXEC);
        }
        crate::signals::reset_signal_handlers();
        crate::signals::unblock_all_signals();
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
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

fn sleep_ms(ms: i64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: ms * 1_000_000,
    };
    // SAFETY: nanosleep with a live timespec; an early wake-up is harmless.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
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
            run(Point::StartContainer, hook, fd.as_raw_fd(), &[], err)?;
        }
        Ok(())
    }
}
