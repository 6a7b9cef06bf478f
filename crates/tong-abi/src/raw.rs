//! System calls for forked children and the parents that wait for them, usable between
//! fork and exec: no allocation, no lock, no libc fork handlers. Shared by the engine
//! and the plugins that fork helpers (ns-fork, net-none).

use std::ffi::{c_int, c_long};

use crate::ChildError;

/// clone(2) without a new stack or CLONE_VM: fork semantics (with `flags`, e.g.
/// `SIGCHLD` or `CLONE_PARENT | SIGCHLD`) without libc's fork handlers, which may take
/// locks a multithreaded caller holds. Returns 0 in the child.
pub fn clone(flags: u64) -> c_long {
    // SAFETY: with a null stack and no CLONE_VM the child gets a copy of our memory and
    // returns 0 here, like fork; the tid pointers are unused without CLONE_*TID flags.
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
pub fn fork() -> c_long {
    clone(libc::SIGCHLD as u64)
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub fn read_full(fd: c_int, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of a live buffer.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 && ChildError::last_errno() == libc::EINTR {
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
pub fn write_all(fd: c_int, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 && ChildError::last_errno() == libc::EINTR {
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
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || ChildError::last_errno() != libc::EINTR {
            return;
        }
    }
}
