//! The parent side's seam to the kernel: the calls about container processes on which
//! the lifecycle and the launcher decide (is the container's init alive, signal it, kill
//! it). [`Kernel`] makes them; unit tests put a fake in its place, so the lifecycle's
//! rules are tested without root or a real container (as youki's `syscall` module).
//! Only what some test needs goes through here; the rest calls the kernel directly.

use std::io;

use rustix::process::{kill_process, Pid};

use crate::error::Result;
use crate::{process, state};

/// The kernel calls the lifecycle makes about container processes.
pub(crate) trait Host: std::fmt::Debug + Send + Sync {
    /// Whether the process `pid` that started at `start` still runs (not a zombie).
    fn is_alive(&self, pid: i32, start: u64) -> bool;

    /// Sends `signal` to the process `pid` that started at `start` (through a pidfd, so
    /// never to a recycled pid).
    fn signal(&self, pid: i32, start: u64, signal: i32) -> io::Result<()>;

    /// Sends `signal` to `pid` as it is: a process its cgroup backend just listed.
    fn signal_pid(&self, pid: i32, signal: i32) -> io::Result<()>;

    /// SIGKILLs the process `pid` that started at `start` if it lives, waits until it is
    /// gone and reaps it when it is ours.
    fn kill_and_reap(&self, pid: i32, start: u64) -> Result<()>;
}

/// The real kernel.
#[derive(Debug)]
pub(crate) struct Kernel;

impl Host for Kernel {
    fn is_alive(&self, pid: i32, start: u64) -> bool {
        state::is_alive(pid, start)
    }

    fn signal(&self, pid: i32, start: u64, signal: i32) -> io::Result<()> {
        process::signal(pid, start, signal)
    }

    fn signal_pid(&self, pid: i32, signal: i32) -> io::Result<()> {
        let target = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        Ok(kill_process(target, process::signal_of(signal)?)?)
    }

    fn kill_and_reap(&self, pid: i32, start: u64) -> Result<()> {
        process::kill_and_reap(pid, start)
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A kernel in memory: the processes it says live, and every signal and kill asked.

    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::{io, Host, Result};

    #[derive(Debug, Default)]
    pub(crate) struct FakeHost {
        /// (pid, start time) of the processes that live.
        pub(crate) alive: Mutex<BTreeSet<(i32, u64)>>,
        /// Every signal sent: (pid, signal).
        pub(crate) signals: Mutex<Vec<(i32, i32)>>,
        /// Every process killed and reaped: (pid, start time).
        pub(crate) killed: Mutex<Vec<(i32, u64)>>,
    }

    impl FakeHost {
        /// A fake that lives as long as the test binary (the runtime holds a `'static`).
        pub(crate) fn leaked() -> &'static FakeHost {
            Box::leak(Box::default())
        }

        pub(crate) fn start(&self, pid: i32, start: u64) {
            self.alive.lock().unwrap().insert((pid, start));
        }

        pub(crate) fn signals(&self) -> Vec<(i32, i32)> {
            self.signals.lock().unwrap().clone()
        }

        pub(crate) fn killed(&self) -> Vec<(i32, u64)> {
            self.killed.lock().unwrap().clone()
        }
    }

    impl Host for FakeHost {
        fn is_alive(&self, pid: i32, start: u64) -> bool {
            self.alive.lock().unwrap().contains(&(pid, start))
        }

        fn signal(&self, pid: i32, start: u64, signal: i32) -> io::Result<()> {
            if !self.is_alive(pid, start) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            self.signals.lock().unwrap().push((pid, signal));
            Ok(())
        }

        fn signal_pid(&self, pid: i32, signal: i32) -> io::Result<()> {
            self.signals.lock().unwrap().push((pid, signal));
            Ok(())
        }

        fn kill_and_reap(&self, pid: i32, start: u64) -> Result<()> {
            self.alive.lock().unwrap().remove(&(pid, start));
            self.killed.lock().unwrap().push((pid, start));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    //! The real seam on processes of our own, without root.

    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};

    use super::*;

    fn sleeper() -> (Child, i32, u64) {
        let child = Command::new("sleep").arg("10").spawn().unwrap();
        let pid = child.id() as i32;
        let start = state::process_start_time(pid).unwrap();
        (child, pid, start)
    }

    #[test]
    fn signals_reach_the_recorded_process_only() {
        let (mut child, pid, start) = sleeper();
        assert!(Kernel.is_alive(pid, start));
        // Another start time: a recycled pid, left alone.
        let err = Kernel.signal(pid, start + 1, libc::SIGTERM).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
        Kernel.signal(pid, start, libc::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert!(!Kernel.is_alive(pid, start));
    }

    #[test]
    fn a_cgroup_member_gets_any_signal_number() {
        // A realtime signal (its default action ends the process): `kill --all` takes
        // every number up to SIGRTMAX.
        let (mut child, pid, _) = sleeper();
        let rt = libc::SIGRTMIN() + 2;
        Kernel.signal_pid(pid, rt).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(rt));
        // Never kill(0, ...), which would signal our own process group.
        assert!(Kernel.signal_pid(0, libc::SIGTERM).is_err());
    }

    #[test]
    fn kill_and_reap_leaves_no_process_nor_zombie() {
        let (mut child, pid, start) = sleeper();
        Kernel.kill_and_reap(pid, start).unwrap();
        assert!(!Kernel.is_alive(pid, start));
        // Reaped already: nothing left to wait for.
        let err = child.wait().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECHILD));
        // Gone: nothing to do.
        Kernel.kill_and_reap(pid, start).unwrap();
    }
}
