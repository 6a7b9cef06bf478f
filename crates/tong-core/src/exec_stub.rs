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
//! never sees it; the child execs it with [`crate::child::exec_stub::exec`]. See
//! docs/security.md, "Escapes: the host binary".

use std::ffi::{c_char, c_int, CString};
use std::io::Write;
use std::os::fd::OwnedFd;

use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// The stub program.
pub static EXEC_STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/exec-stub"));

/// A sealed, close-on-exec memfd holding the stub.
pub fn sealed_memfd() -> Result<OwnedFd> {
    let name = c"tong-exec-stub";
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3): executable even where `vm.memfd_noexec` makes that opt-in.
    let fd = match memfd_create(name, flags | MemfdFlags::EXEC) {
        // A kernel before 6.3 does not know MFD_EXEC; its memfds are executable anyway.
        Err(Errno::INVAL) => memfd_create(name, flags),
        other => other,
    }
    .map_err(|e| Error::os("memfd_create for the exec stub", e))?;
    std::fs::File::from(fd.try_clone().map_err(|e| Error::os("dup", e))?)
        .write_all(EXEC_STUB)
        .map_err(|e| Error::os("writing the exec stub", e))?;
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    fcntl_add_seals(&fd, seals).map_err(|e| Error::os("sealing the exec stub", e))?;
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
        assert_eq!(err.raw_os_error(), Some(Errno::PERM.raw_os_error()));
        assert_eq!(file.metadata().unwrap().len(), EXEC_STUB.len() as u64);
    }
}
