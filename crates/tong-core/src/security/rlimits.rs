//! `process.rlimits` and `process.oomScoreAdj`, set by the parent on the container's
//! process (prlimit(2) and /proc/PID/oom_score_adj) before it proceeds to exec.
//!
//! Raising a hard limit above the current one needs CAP_SYS_RESOURCE; tong checks that
//! before creating anything, so the error names the limit and the reason.

use rustix::process::{getrlimit, prlimit, Pid, Resource};
use serde::Serialize;

use super::invalid;
use crate::error::Result;

/// One limit to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub name: String,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The rlimit names of the OCI spec and their resource numbers.
pub const RESOURCES: [(&str, Resource); 16] = [
    ("RLIMIT_AS", Resource::As),
    ("RLIMIT_CORE", Resource::Core),
    ("RLIMIT_CPU", Resource::Cpu),
    ("RLIMIT_DATA", Resource::Data),
    ("RLIMIT_FSIZE", Resource::Fsize),
    ("RLIMIT_LOCKS", Resource::Locks),
    ("RLIMIT_MEMLOCK", Resource::Memlock),
    ("RLIMIT_MSGQUEUE", Resource::Msgqueue),
    ("RLIMIT_NICE", Resource::Nice),
    ("RLIMIT_NOFILE", Resource::Nofile),
    ("RLIMIT_NPROC", Resource::Nproc),
    ("RLIMIT_RSS", Resource::Rss),
    ("RLIMIT_RTPRIO", Resource::Rtprio),
    ("RLIMIT_RTTIME", Resource::Rttime),
    ("RLIMIT_SIGPENDING", Resource::Sigpending),
    ("RLIMIT_STACK", Resource::Stack),
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
        let current = current_hard(resource);
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

/// tong's own hard limit (None: unlimited, `RLIM_INFINITY`).
fn current_hard(resource: Resource) -> u64 {
    getrlimit(resource).maximum.unwrap_or(u64::MAX)
}

/// Sets the limits on `pid`.
pub fn apply(pid: i32, rlimits: &[Rlimit]) -> Result<()> {
    // u64::MAX is RLIM_INFINITY, which rustix spells None.
    let limit = |value: u64| (value != u64::MAX).then_some(value);
    for r in rlimits {
        let new = rustix::process::Rlimit {
            current: limit(r.soft),
            maximum: limit(r.hard),
        };
        prlimit(Pid::from_raw(pid), r.resource, new).map_err(|e| {
            invalid(
                &format!("process.rlimits {}", r.name),
                format!(
                    "cannot set soft {} hard {}: {}",
                    r.soft,
                    r.hard,
                    std::io::Error::from(e)
                ),
            )
        })?;
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
        let why = if e.raw_os_error() == Some(rustix::io::Errno::ACCESS.raw_os_error()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The soft and hard columns of a /proc/PID/limits line.
    fn shown(limits: &str, line: &str) -> Vec<String> {
        let row = limits.lines().find(|l| l.starts_with(line)).unwrap();
        row[line.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn applies_limits_to_another_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Up to our own hard limits: allowed without CAP_SYS_RESOURCE. The core one is
        // usually unlimited (soft 0), which must go through as RLIM_INFINITY.
        let (core, files) = (current_hard(Resource::Core), current_hard(Resource::Nofile));
        let limit = |name: &str, resource, soft, hard| Rlimit {
            name: name.into(),
            resource,
            soft,
            hard,
        };
        let applied = apply(
            pid,
            &[
                limit("RLIMIT_CORE", Resource::Core, core, core),
                limit("RLIMIT_NOFILE", Resource::Nofile, 123, files),
            ],
        );
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        applied.unwrap();
        let text = |v: u64| {
            if v == u64::MAX {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        assert_eq!(
            shown(&limits, "Max core file size"),
            [text(core), text(core)],
            "{limits}"
        );
        assert_eq!(
            shown(&limits, "Max open files"),
            ["123".to_string(), text(files)],
            "{limits}"
        );
    }
}
