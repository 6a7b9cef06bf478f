//! Signalling, waiting for and reaping container processes, through pidfds so a
//! recycled pid is never hit.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::state;
use crate::terminal::Relay;

/// How long `kill_and_reap` waits for a killed process to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pidfd for `pid` and checks it is still the process that started at `start`.
fn open_pidfd(pid: i32, start: u64) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags, returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return if err.raw_os_error() == Some(libc::ESRCH) {
            Ok(None)
        } else {
            Err(err)
        };
    }
    // SAFETY: the kernel just gave us this fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked after opening: from here on the fd pins this exact process.
    Ok(state::is_alive(pid, start).then_some(fd))
}

/// Sends `signal` to the process `pid` that started at `start`.
pub fn signal(pid: i32, start: u64, signal: i32) -> std::io::Result<()> {
    let fd = match open_pidfd(pid, start) {
        Err(e) if no_pidfd(&e) => return signal_by_pid(pid, start, signal),
        other => other?,
    };
    let Some(fd) = fd else {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    };
    send(&fd, signal)
}

/// pidfd_open(2) is missing: Linux before 5.3, or a tool that does not know it (valgrind
/// 3.19, which runs the C API tests).
fn no_pidfd(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSYS)
}

/// Without pidfds: kill(2) right after checking that the pid still names the process
/// that started at `start` (a narrow window instead of none).
fn signal_by_pid(pid: i32, start: u64, signal: i32) -> std::io::Result<()> {
    if !state::is_alive(pid, start) {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) of the pid just checked to be the recorded process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Without pidfds: SIGKILL, then poll until the process is gone (reaping it when ours).
fn kill_and_reap_by_pid(pid: i32, start: u64) -> Result<()> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    let _ = signal_by_pid(pid, start, libc::SIGKILL);
    loop {
        reap(pid);
        if !state::is_alive(pid, start) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Internal(format!(
                "pid {pid} did not die within {KILL_TIMEOUT:?} of SIGKILL"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn send(fd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits until a pidfd is readable (its process exited) or the timeout passes.
fn wait_pidfd(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().try_into().unwrap_or(i32::MAX)) };
        if r > 0 {
            return true;
        }
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Collects the exit status of our own child; a process that is not ours is left alone.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on a specific pid; ECHILD (not our child) is fine.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// SIGKILLs the container's init if it still lives, waits for it to die and reaps it
/// when it is our child.
pub fn kill_and_reap(pid: i32, start: u64) -> Result<()> {
    let fd = match open_pidfd(pid, start) {
        Ok(Some(fd)) => fd,
        Ok(None) => {
            reap(pid);
            return Ok(());
        }
        Err(e) if no_pidfd(&e) => return kill_and_reap_by_pid(pid, start),
        Err(e) => return Err(Error::os(format!("pidfd_open({pid})"), e)),
    };
    match send(&fd, libc::SIGKILL) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
        Err(e) => return Err(Error::os(format!("cannot kill pid {pid}"), e)),
    }
    if !wait_pidfd(&fd, KILL_TIMEOUT) {
        return Err(Error::Internal(format!(
            "pid {pid} did not die within {KILL_TIMEOUT:?} of SIGKILL"
        )));
    }
    reap(pid);
    Ok(())
}

/// Converts a wait status to a shell-style exit code.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Signals forwarded by `run` to the container.
const FORWARDED: [i32; 9] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGALRM,
];

/// Waits for our child `pid` to exit and returns its exit code. With `forward`, the
/// usual termination and job-control signals sent to us go to it meanwhile. Relays the
/// process's terminal meanwhile when there is one: then
/// SIGWINCH resizes the pty instead of being forwarded, and once the process exited,
/// the output it left in the pty is copied out before returning.
pub(crate) fn wait_and_relay(
    pid: i32,
    pidfd: Option<&OwnedFd>,
    forward: bool,
    mut relay: Option<&mut Relay>,
) -> Result<i32> {
    let sigfd = match (forward, relay.is_some()) {
        (true, _) => Some(signalfd(&FORWARDED)?),
        (false, true) => Some(signalfd(&[libc::SIGWINCH])?),
        (false, false) => None,
    };
    if pidfd.is_none() && sigfd.is_none() {
        return blocking_wait(pid);
    }
    let mut fds = Vec::with_capacity(4);
    loop {
        let mut status = 0;
        // SAFETY: non-blocking waitpid on our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if let Some(relay) = relay {
                relay.drain();
            }
            return Ok(exit_code(status));
        }
        if r < 0 {
            return Err(Error::os(
                format!("waitpid({pid})"),
                std::io::Error::last_os_error(),
            ));
        }
        fds.clear();
        fds.extend(
            pidfd
                .into_iter()
                .chain(sigfd.as_ref())
                .map(|fd| libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }),
        );
        let ours = fds.len();
        if let Some(relay) = &relay {
            relay.poll_fds(&mut fds);
        }
        // Without a pidfd, SIGCHLD (in the signalfd set) wakes us; poll with a bound anyway.
        // SAFETY: poll over live pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if let Some(fd) = &sigfd {
            handle_pending(fd, pid, forward, relay.as_deref());
        }
        if let (Some(relay), true) = (relay.as_deref_mut(), ready > 0) {
            relay.pump(&fds[ours..]);
        }
    }
}

/// Waits for our child `pid`; the error says when it is not ours.
pub fn wait_child(pid: i32) -> std::io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: blocking waitpid on one pid.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(exit_code(status));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ECHILD) => {
                return Err(std::io::Error::other(format!(
                    "pid {pid} is not a child of this process (only its creator can collect the exit status)"
                )))
            }
            _ => return Err(err),
        }
    }
}

fn blocking_wait(pid: i32) -> Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: blocking waitpid on our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(exit_code(status));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::os(format!("waitpid({pid})"), err));
        }
    }
}

/// A signalfd for `signals` and SIGCHLD, which it blocks in this thread (so they queue
/// on it instead of running handlers).
fn signalfd(signals: &[i32]) -> Result<OwnedFd> {
    // SAFETY: builds a sigset on the stack, blocks it in this thread and opens the signalfd.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in signals.iter().chain(&[libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(Error::os("signalfd", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Forwards (with `forward`) the signals queued on `fd` to our child `pid`; with a
/// terminal relay, SIGWINCH resizes the pty instead (the kernel tells its processes).
fn handle_pending(fd: &OwnedFd, pid: i32, forward: bool, relay: Option<&Relay>) {
    loop {
        // SAFETY: reads one signalfd_siginfo into a zeroed local.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is exactly one siginfo.
        let n = unsafe { libc::read(fd.as_raw_fd(), std::ptr::from_mut(&mut info).cast(), size) };
        if n != size as isize {
            return;
        }
        let sig = info.ssi_signo as i32;
        match relay {
            Some(relay) if sig == libc::SIGWINCH => relay.resize(),
            _ if sig != libc::SIGCHLD && forward => {
                // SAFETY: kill(2) of our own child.
                unsafe { libc::kill(pid, sig) };
            }
            _ => {}
        }
    }
}
