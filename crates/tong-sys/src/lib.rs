//! System calls for forked children and the parents that wait for them, usable between
//! fork and exec: no allocation, no lock, no libc fork handlers. Shared by the engine
//! and the plugins that fork helpers (ns-fork, net-none), and the one call they share
//! that no crate wraps safely ([`interface_up`]).
//!
//! Raw `clone`/`fork` are `unsafe fn`: what the child may do until it execs or exits is a
//! contract the compiler cannot check (see [`clone`]). Everything else here is safe, and
//! also fit for that child: it never allocates and never takes a lock.

use std::ffi::{c_int, c_long};
use std::os::fd::{AsRawFd, BorrowedFd};

/// clone(2) without a new stack or CLONE_VM: fork semantics (with `flags`, e.g.
/// `SIGCHLD` or `CLONE_PARENT | SIGCHLD`) without libc's fork handlers, which may take
/// locks a multithreaded caller holds. Returns 0 in the child, the child's pid in the
/// parent, -1 (errno set) on failure.
///
/// # Safety
/// The child is a copy of the caller with only the calling thread. Any lock another
/// thread held (the allocator's, stdio's, a `Mutex`) stays held forever there, so until
/// the child execs or leaves with `_exit`:
/// - it must not allocate or free, take a lock, or call anything that might (only
///   async-signal-safe calls and this crate's functions);
/// - it ends with `execve` or `_exit`; it may return into the caller's frames only when
///   they keep these rules too (the container's child between clone and exec does),
///   never unwind, and never run destructors or flush buffers that are the parent's;
/// - `flags` must not contain `CLONE_VM`, `CLONE_SETTLS` or `CLONE_*TID` (no stack,
///   TLS or tid pointer is passed).
pub unsafe fn clone(flags: u64) -> c_long {
    // SAFETY: with a null stack and no CLONE_VM the child gets a copy of our memory and
    // returns 0 here, like fork; the tid pointers are unused without CLONE_*TID flags
    // (the caller's promise). What the child does next is the caller's contract.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<c_int>(),
            std::ptr::null_mut::<c_int>(),
            0usize,
        )
    }
}

/// fork(2) as a raw clone (see [`clone`]). Returns 0 in the child.
///
/// # Safety
/// As for [`clone`]: until it execs or `_exit`s, the child allocates nothing, takes no
/// lock and runs no code of the parent's that might.
pub unsafe fn fork() -> c_long {
    // SAFETY: plain SIGCHLD flags; the caller takes on clone's contract for the child.
    unsafe { clone(libc::SIGCHLD as u64) }
}

/// The calling thread's errno, read without allocating.
pub fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub fn read_full(fd: BorrowedFd<'_>, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of a live buffer from a borrowed, open fd.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    got
}

/// Writes all of `data` (until an error other than EINTR).
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from a live slice to a borrowed, open fd.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}

/// Waits for our child `pid`; ECHILD (someone else reaped it) is fine.
pub fn reap(pid: c_int) {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on one specific child, status into a local.
        let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if r >= 0 || errno() != libc::EINTR {
            return;
        }
    }
}

/// Writes `n` in decimal at the start of `buf` (20 bytes always suffice) and returns the
/// length. For messages and paths built in the child, where nothing may allocate.
///
/// # Panics
/// When `buf` is shorter than the number's digits.
pub fn write_decimal(buf: &mut [u8], mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    len
}

/// Which step of [`interface_up`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceStep {
    /// SIOCGIFFLAGS: reading the flags (no such interface, for one).
    GetFlags,
    /// SIOCSIFFLAGS: setting IFF_UP.
    SetFlags,
}

/// Sets IFF_UP on the interface `name` of the network namespace `socket` (any AF_INET
/// datagram socket) was made in. The error is the failed step and its errno. Neither nix
/// nor rustix wraps these ioctls, and a forked helper needs a call that does not
/// allocate (netlink requests do).
pub fn interface_up(
    socket: BorrowedFd<'_>,
    name: &std::ffi::CStr,
) -> Result<(), (InterfaceStep, c_int)> {
    // SAFETY: an all-zero ifreq is a valid value; the name is copied in below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = name.to_bytes_with_nul();
    if name.len() > req.ifr_name.len() {
        return Err((InterfaceStep::GetFlags, libc::EINVAL));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq we own.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err((InterfaceStep::GetFlags, errno()));
    }
    // SAFETY: SIOCGIFFLAGS set the flags member of the union, which we read and update.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err((InterfaceStep::SetFlags, errno()));
    }
    Ok(())
}

/// The name of a `CLONE_NEW*` namespace type, for messages built in the child.
pub fn namespace_name(nstype: c_int) -> &'static [u8] {
    match nstype {
        libc::CLONE_NEWUSER => b"user",
        libc::CLONE_NEWNS => b"mount",
        libc::CLONE_NEWNET => b"network",
        libc::CLONE_NEWUTS => b"uts",
        libc::CLONE_NEWIPC => b"ipc",
        libc::CLONE_NEWCGROUP => b"cgroup",
        libc::CLONE_NEWPID => b"pid",
        0x80 => b"time",
        _ => b"unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 fills the two-element array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these descriptors; nothing else owns them.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn a_forked_child_reports_through_a_pipe_and_is_reaped() {
        let (rd, wr) = pipe();
        // SAFETY: the child only writes to the pipe from a stack buffer and `_exit`s.
        let pid = unsafe { fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let mut msg = *b"child 00000000000000000000";
            let n = write_decimal(&mut msg[6..], 4071);
            write_all(wr.as_fd(), &msg[..6 + n]);
            // SAFETY: leaving the child without running the parent's cleanup.
            unsafe { libc::_exit(7) };
        }
        drop(wr);
        let mut buf = [0u8; 64];
        let got = read_full(rd.as_fd(), &mut buf);
        assert_eq!(&buf[..got], b"child 4071");
        let mut status = 0;
        // SAFETY: waitpid on our own child, status into a local.
        let waited = unsafe { libc::waitpid(pid as c_int, &raw mut status, 0) };
        assert_eq!(waited, pid as c_int);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7);
        // Already reaped: reap must return (ECHILD), not hang.
        reap(pid as c_int);
    }

    #[test]
    fn an_unknown_interface_fails_at_its_first_step() {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0);
        // SAFETY: a descriptor we just made and own.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let missing = c"tong-no-such0";
        assert_eq!(
            interface_up(socket.as_fd(), missing),
            Err((InterfaceStep::GetFlags, libc::ENODEV))
        );
        let too_long = c"a-name-longer-than-ifnamsiz";
        assert_eq!(
            interface_up(socket.as_fd(), too_long),
            Err((InterfaceStep::GetFlags, libc::EINVAL))
        );
    }

    #[test]
    fn writes_decimals_and_names_namespaces() {
        let mut b = [0u8; 20];
        assert_eq!(write_decimal(&mut b, 0), 1);
        assert_eq!(&b[..1], b"0");
        let n = write_decimal(&mut b, u64::MAX);
        assert_eq!(&b[..n], u64::MAX.to_string().as_bytes());
        assert_eq!(namespace_name(libc::CLONE_NEWNET), b"network");
        assert_eq!(namespace_name(0), b"unknown");
    }
}
