//! `process.rlimits` and `process.oomScoreAdj`, set by the parent on the container's
//! process (prlimit(2) and /proc/PID/oom_score_adj) before it proceeds to exec.
//!
//! Raising a hard limit above the current one needs CAP_SYS_RESOURCE; tong checks that
//! before creating anything, so the error names the limit and the reason.

use serde::Serialize;

use super::invalid;
use crate::error::{Error, Result};

/// One limit to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub name: String,
    pub resource: libc::c_int,
    pub soft: u64,
    pub hard: u64,
}

/// The rlimit names of the OCI spec and their resource numbers.
pub const RESOURCES: [(&str, libc::c_int); 16] = [
    ("RLIMIT_AS", libc::RLIMIT_AS as libc::c_int),
    ("RLIMIT_CORE", libc::RLIMIT_CORE as libc::c_int),
    ("RLIMIT_CPU", libc::RLIMIT_CPU as libc::c_int),
    ("RLIMIT_DATA", libc::RLIMIT_DATA as libc::c_int),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as libc::c_int),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as libc::c_int),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as libc::c_int),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as libc::c_int),
    ("RLIMIT_NICE", libc::RLIMIT_NICE as libc::c_int),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as libc::c_int),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC as libc::c_int),
    ("RLIMIT_RSS", libc::RLIMIT_RSS as libc::c_int),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as libc::c_int),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as libc::c_int),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as libc::c_int),
    ("RLIMIT_STACK", libc::RLIMIT_STACK as libc::c_int),
];

fn spec_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Checks the limits against each other and against what tong may set.
pub fn plan(rlimits: &[oci_spec::runtime::PosixRlimit]) -> Result<Vec<Rlimit>> {
    let may_raise = ::caps::has_cap(
        None,
        ::caps::CapSet::Effective,
        ::caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    let mut out: Vec<Rlimit> = Vec::new();
    for r in rlimits {
        let name = spec_name(&r.typ());
        let resource = RESOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, res)| *res)
            .ok_or_else(|| invalid("process.rlimits", format!("unknown limit {name:?}")))?;
        let field = format!("process.rlimits {name}");
        if out.iter().any(|o| o.resource == resource) {
            return Err(invalid(&field, "listed twice"));
        }
        let (soft, hard) = (r.soft(), r.hard());
        if soft > hard {
            return Err(invalid(
                &field,
                format!("soft limit {soft} is above hard limit {hard}"),
            ));
        }
        let current = current_hard(resource)?;
        if hard > current && !may_raise {
            return Err(invalid(
                &field,
                format!(
                    "hard limit {hard} is above the current hard limit {current}, and raising a hard limit needs CAP_SYS_RESOURCE, which tong does not have"
                ),
            ));
        }
        out.push(Rlimit {
            name,
            resource,
            soft,
            hard,
        });
    }
    Ok(out)
}

fn current_hard(resource: libc::c_int) -> Result<u64> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on ourselves (pid 0) with no new value, reading into a local.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            std::ptr::null::<libc::rlimit64>(),
            &mut old,
        )
    };
    if ret != 0 {
        return Err(Error::os(
            "reading tong's own resource limits",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(old.rlim_max)
}

/// Sets the limits on `pid`.
pub fn apply(pid: i32, rlimits: &[Rlimit]) -> Result<()> {
    for r in rlimits {
        let new = libc::rlimit64 {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: prlimit64 with a live local value and no old-value pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                pid,
                r.resource,
                &new,
                std::ptr::null_mut::<libc::rlimit64>(),
            )
        };
        if ret != 0 {
            let e = std::io::Error::last_os_error();
            return Err(invalid(
                &format!("process.rlimits {}", r.name),
                format!("cannot set soft {} hard {}: {e}", r.soft, r.hard),
            ));
        }
    }
    Ok(())
}

/// Checks the range of oomScoreAdj (-1000 to 1000).
pub fn check_oom_score_adj(value: Option<i32>) -> Result<Option<i32>> {
    match value {
        Some(v) if !(-1000..=1000).contains(&v) => Err(invalid(
            "process.oomScoreAdj",
            format!("{v} is out of range (-1000 to 1000)"),
        )),
        v => Ok(v),
    }
}

/// Writes /proc/PID/oom_score_adj.
pub fn set_oom_score_adj(pid: i32, value: i32) -> Result<()> {
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, value.to_string()).map_err(|e| {
        let why = if e.raw_os_error() == Some(libc::EACCES) {
            " (setting it below tong's own value needs CAP_SYS_RESOURCE, which tong does not have)"
        } else {
            ""
        };
        invalid(
            "process.oomScoreAdj",
            format!("cannot write {value} to {path}: {e}{why}"),
        )
    })
}
