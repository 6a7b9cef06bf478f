//! Signalling, waiting for and reaping container processes, through pidfds so a
//! recycled pid is never hit.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::io::Errno;
use rustix::process::{
    kill_process, pidfd_open, pidfd_send_signal, waitpid, Pid, PidfdFlags, Signal, WaitOptions,
};

use crate::error::{Error, Result};
use crate::state;
use crate::terminal::Relay;

/// How long `kill_and_reap` waits for a killed process to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pidfd for `pid` and checks it is still the process that started at `start`.
fn open_pidfd(pid: i32, start: u64) -> std::io::Result<Option<OwnedFd>> {
    let Some(target) = Pid::from_raw(pid) else {
        return Ok(None);
    };
    let fd = match pidfd_open(target, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
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
        return Err(Errno::SRCH.into());
    };
    send(&fd, signal)
}

/// The signal numbered `number`: a named one, or a realtime one (`tong kill` takes any
/// number from 1 to SIGRTMAX; rustix names only the classic signals).
pub(crate) fn signal_of(number: i32) -> std::io::Result<Signal> {
    if let Some(sig) = Signal::from_named_raw(number) {
        return Ok(sig);
    }
    if (1..=libc::SIGRTMAX()).contains(&number) {
        // SAFETY: a valid, non-zero signal number. It is only sent to another process,
        // never blocked or handled in this one (what libc's reserved realtime signals
        // must be kept from).
        return Ok(unsafe { Signal::from_raw_unchecked(number) });
    }
    Err(Errno::INVAL.into())
}

/// pidfd_open(2) is missing: Linux before 5.3, or a tool that does not know it (valgrind
/// 3.19, which runs the C API tests).
fn no_pidfd(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(Errno::NOSYS.raw_os_error())
}

/// Without pidfds: kill(2) right after checking that the pid still names the process
/// that started at `start` (a narrow window instead of none).
fn signal_by_pid(pid: i32, start: u64, signal: i32) -> std::io::Result<()> {
    let target = Pid::from_raw(pid).filter(|_| state::is_alive(pid, start));
    let Some(target) = target else {
        return Err(Errno::SRCH.into());
    };
    Ok(kill_process(target, signal_of(signal)?)?)
}

/// Without pidfds: SIGKILL, then poll until the process is gone (reaping it when ours).
fn kill_and_reap_by_pid(pid: i32, start: u64) -> Result<()> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    let _ = signal_by_pid(pid, start, Signal::KILL.as_raw());
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
    Ok(pidfd_send_signal(fd, signal_of(signal)?)?)
}

/// Waits until a pidfd is readable (its process exited) or the timeout passes.
fn wait_pidfd(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut pfd,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// `waitpid(pid)`, blocking or not: the exit code once the child is collected, None
/// while it runs (`block` false).
fn wait_for(pid: i32, block: bool) -> std::io::Result<Option<i32>> {
    let target = Pid::from_raw(pid).ok_or(Errno::CHILD)?;
    let options = if block {
        WaitOptions::empty()
    } else {
        WaitOptions::NOHANG
    };
    Ok(waitpid(Some(target), options)?.map(|(_, status)| exit_code(status.as_raw())))
}

/// Collects the exit status of our own child; a process that is not ours is left alone.
fn reap(pid: i32) {
    // ECHILD (not our child) is fine.
    let _ = wait_for(pid, false);
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
    match send(&fd, Signal::KILL.as_raw()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => {}
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
const FORWARDED: [NixSignal; 9] = [
    NixSignal::SIGHUP,
    NixSignal::SIGINT,
    NixSignal::SIGQUIT,
    NixSignal::SIGTERM,
    NixSignal::SIGUSR1,
    NixSignal::SIGUSR2,
    NixSignal::SIGWINCH,
    NixSignal::SIGCONT,
    NixSignal::SIGALRM,
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
        (false, true) => Some(signalfd(&[NixSignal::SIGWINCH])?),
        (false, false) => None,
    };
    if pidfd.is_none() && sigfd.is_none() {
        return blocking_wait(pid);
    }
    loop {
        match wait_for(pid, false) {
            Ok(Some(code)) => {
                if let Some(relay) = relay {
                    relay.drain();
                }
                return Ok(code);
            }
            Ok(None) => {}
            Err(e) => return Err(Error::os(format!("waitpid({pid})"), e)),
        }
        let mut fds: Vec<PollFd> = pidfd
            .map(AsFd::as_fd)
            .into_iter()
            .chain(sigfd.as_ref().map(AsFd::as_fd))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let ours = fds.len();
        if let Some(relay) = &relay {
            relay.poll_fds(&mut fds);
        }
        // Without a pidfd, SIGCHLD (in the signalfd set) wakes us; poll with a bound anyway.
        let ready = poll(&mut fds, PollTimeout::from(1000u16)).unwrap_or(0);
        let relay_ready = Relay::ready(&fds[ours..]);
        drop(fds);
        if let Some(fd) = &sigfd {
            handle_pending(fd, pid, forward, relay.as_deref());
        }
        if let (Some(relay), true) = (relay.as_deref_mut(), ready > 0) {
            relay.pump(relay_ready);
        }
    }
}

/// Waits for our child `pid`; the error says when it is not ours.
pub fn wait_child(pid: i32) -> std::io::Result<i32> {
    const EINTR: i32 = Errno::INTR.raw_os_error();
    const ECHILD: i32 = Errno::CHILD.raw_os_error();
    loop {
        match wait_for(pid, true) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {}
            Err(e) => match e.raw_os_error() {
                Some(EINTR) => {}
                Some(ECHILD) => {
                    return Err(std::io::Error::other(format!(
                        "pid {pid} is not a child of this process (only its creator can collect the exit status)"
                    )))
                }
                _ => return Err(e),
            },
        }
    }
}

fn blocking_wait(pid: i32) -> Result<i32> {
    loop {
        match wait_for(pid, true) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(Errno::INTR.raw_os_error()) => {}
            Err(e) => return Err(Error::os(format!("waitpid({pid})"), e)),
        }
    }
}

/// A signalfd for `signals` and SIGCHLD, which it blocks in this thread (so they queue
/// on it instead of running handlers).
fn signalfd(signals: &[NixSignal]) -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for sig in signals.iter().chain(&[NixSignal::SIGCHLD]) {
        set.add(*sig);
    }
    set.thread_block()
        .map_err(|e| Error::os("block the forwarded signals", e))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::os("signalfd", e))
}

/// Forwards (with `forward`) the signals queued on `fd` to our child `pid`; with a
/// terminal relay, SIGWINCH resizes the pty instead (the kernel tells its processes).
fn handle_pending(fd: &SignalFd, pid: i32, forward: bool, relay: Option<&Relay>) {
    while let Ok(Some(info)) = fd.read_signal() {
        let Ok(sig) = NixSignal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        match relay {
            Some(relay) if sig == NixSignal::SIGWINCH => relay.resize(),
            _ if sig != NixSignal::SIGCHLD && forward => {
                // Our own child; it may be gone already.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
            _ => {}
        }
    }
}
