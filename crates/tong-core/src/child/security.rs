//! The child side of [`crate::security`]: applies what the parent compiled, with raw
//! system calls and no allocation.

use tong_abi::ChildError;

use crate::security::caps::CapabilityPlan;
use crate::security::lsm::ExecLabel;
use crate::security::seccomp::Program;
use crate::security::sysctl::Sysctl;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl CapabilityPlan {
    /// Before the credentials change: shrink the bounding set (needs CAP_SETPCAP, which
    /// the process still has) and keep the permitted set across setresuid.
    pub(crate) fn before_credentials(&self, err: &mut ChildError) -> Result<(), ()> {
        for cap in 0..=self.last_cap {
            if self.bounding & (1u64 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                let ret =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                if ret != 0 && ChildError::last_errno() != libc::EINVAL {
                    err.os(&[b"prctl(PR_CAPBSET_DROP) for process.capabilities.bounding"]);
                    return Err(());
                }
            }
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            err.os(&[b"prctl(PR_SET_KEEPCAPS)"]);
            return Err(());
        }
        Ok(())
    }

    /// After the credentials change: the three sets with capset(2), then ambient.
    pub(crate) fn after_credentials(&self, err: &mut ChildError) -> Result<(), ()> {
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let word = |mask: u64, i: u32| (mask >> (32 * i)) as u32;
        let data = [0, 1].map(|i| CapData {
            effective: word(self.effective, i),
            permitted: word(self.permitted, i),
            inheritable: word(self.inheritable, i),
        });
        // SAFETY: PR_SET_KEEPCAPS off again, then capset with a v3 header and its two
        // data words, both live locals.
        unsafe {
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
            if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                err.os(&[b"capset of process.capabilities (effective, permitted, inheritable)"]);
                return Err(());
            }
        }
        // SAFETY: prctl with integer arguments.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if ret != 0 {
            err.os(&[b"prctl(PR_CAP_AMBIENT_CLEAR_ALL)"]);
            return Err(());
        }
        for cap in 0..=self.last_cap {
            if self.ambient & (1u64 << cap) != 0 {
                // SAFETY: prctl with integer arguments.
                let ret = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                if ret != 0 {
                    err.os(&[b"prctl(PR_CAP_AMBIENT_RAISE) for process.capabilities.ambient"]);
                    return Err(());
                }
            }
        }
        Ok(())
    }
}

impl Program {
    /// Installs the filter on the calling thread.
    pub(crate) fn install(&self, err: &mut ChildError) -> Result<(), ()> {
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(2) reads the program through a live local sock_fprog that
        // points at our filter array; the kernel copies it.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                self.flags,
                std::ptr::from_ref(&prog),
            )
        };
        if ret != 0 {
            err.os(&[b"installing the linux.seccomp filter"]);
            return Err(());
        }
        Ok(())
    }
}

/// Writes each sysctl.
pub(crate) fn apply_sysctls(sysctls: &[Sysctl], err: &mut ChildError) -> Result<(), ()> {
    for s in sysctls {
        // SAFETY: open/write/close with live C strings and buffers.
        unsafe {
            let fd = libc::open(
                s.path.as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            );
            let bytes = s.value.as_bytes();
            let ok = fd >= 0 && libc::write(fd, bytes.as_ptr().cast(), bytes.len()) >= 0;
            if !ok {
                err.os(&[b"writing linux.sysctl ", s.key.as_bytes()]);
            }
            if fd >= 0 {
                libc::close(fd);
            }
            if !ok {
                return Err(());
            }
        }
    }
    Ok(())
}

impl ExecLabel {
    /// Writes the attribute.
    pub(crate) fn apply(&self, err: &mut ChildError) -> Result<(), ()> {
        // SAFETY: open/write/close with live C strings and buffers.
        unsafe {
            let fd = libc::open(self.path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            let bytes = self.value.as_bytes();
            let ok = fd >= 0 && libc::write(fd, bytes.as_ptr().cast(), bytes.len()) >= 0;
            if !ok {
                err.os(&[b"writing ", self.path.as_bytes(), b" (LSM label)"]);
            }
            if fd >= 0 {
                libc::close(fd);
            }
            if ok {
                Ok(())
            } else {
                Err(())
            }
        }
    }
}
