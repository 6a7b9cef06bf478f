//! The exec stub: how a container process stops being a clone of tong before it runs
//! anything of the container's.
//!
//! Between clone and exec a container process is a copy of tong (or of the program that
//! embeds libtong): its `/proc/self/exe` is that host binary. Were it to exec the
//! container's program directly, a program that is a `#!/proc/self/exe` script would
//! make the kernel run the host binary inside the container, where it can reopen its own
//! exe and write to it (CVE-2019-5736). So the child execs this stub instead, from a
//! sealed memfd, and the stub execs the program: the interpreter `/proc/self/exe` then
//! names the stub's memfd, which cannot be written, shrunk or grown.
//!
//! The stub (stub/exec-stub.c, built by build.rs) is a few KB of freestanding code; the
//! memfd is made and sealed by the parent before clone, close-on-exec, so the program
//! never sees it. See docs/security.md, "Escapes: the host binary".

use std::ffi::{c_char, c_int, CStr, CString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

/// The stub program.
pub static EXEC_STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/exec-stub"));

/// `MFD_EXEC` (Linux 6.3): executable even where `vm.memfd_noexec` makes that opt-in.
const MFD_EXEC: libc::c_uint = 0x10;

/// A sealed, close-on-exec memfd holding the stub.
pub fn sealed_memfd() -> Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a static name; the result is checked.
    let mut fd = unsafe { libc::memfd_create(c"tong-exec-stub".as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // A kernel before 6.3 does not know MFD_EXEC; its memfds are executable anyway.
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(c"tong-exec-stub".as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(Error::os(
            "memfd_create for the exec stub",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a descriptor we just created and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::File::from(fd.try_clone().map_err(|e| Error::os("dup", e))?)
        .write_all(EXEC_STUB)
        .map_err(|e| Error::os("writing the exec stub", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::os(
            "sealing the exec stub",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(fd)
}

/// The stub's arguments for each candidate path of the program: `[path, report fd,
/// program argv...]`, pointing into strings the caller keeps alive.
#[derive(Debug, Default)]
pub struct StubArgs {
    /// Owns the string the argv arrays point at.
    _report_fd: CString,
    /// `/proc/self/fd/N` of the memfd, for a seccomp profile that refuses execveat.
    pub proc_path: CString,
    per_candidate: Vec<Vec<*const c_char>>,
}

impl StubArgs {
    /// `argv` is the program's NULL-terminated array, `candidates` the program's
    /// possible paths; both must outlive the result (their heap buffers do not move).
    pub fn new(
        memfd: c_int,
        report_fd: c_int,
        candidates: &[CString],
        argv: &[*const c_char],
    ) -> StubArgs {
        let report_fd = CString::new(report_fd.to_string()).unwrap_or_default();
        let proc_path = CString::new(format!("/proc/self/fd/{memfd}")).unwrap_or_default();
        let per_candidate = candidates
            .iter()
            .map(|path| {
                let mut v = vec![path.as_ptr(), report_fd.as_ptr()];
                v.extend_from_slice(argv);
                v
            })
            .collect();
        StubArgs {
            _report_fd: report_fd,
            proc_path,
            per_candidate,
        }
    }

    /// The stub's argv for candidate `index`.
    pub fn for_candidate(&self, index: usize) -> *const *const c_char {
        self.per_candidate[index].as_ptr()
    }
}

/// In the child, as its last step: runs the stub from `memfd`. Returns only on failure,
/// with errno set. `report_fd` must have been made inheritable by the caller.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_is_small_static_elf() {
        assert_eq!(&EXEC_STUB[..4], b"\x7fELF");
        assert!(EXEC_STUB.len() < 16 * 1024, "{} bytes", EXEC_STUB.len());
    }

    #[test]
    fn memfd_is_sealed() {
        let fd = sealed_memfd().unwrap();
        let mut file = std::fs::File::from(fd);
        let err = file.write_all(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert_eq!(file.metadata().unwrap().len(), EXEC_STUB.len() as u64);
    }
}
