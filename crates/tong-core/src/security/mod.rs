//! Process security from config.json: capabilities, seccomp, rlimits, oomScoreAdj,
//! sysctls and LSM labels.
//!
//! The parent validates and compiles everything (capability names through `caps`, the
//! seccomp profile to BPF through `libseccomp`) into plain numbers, C strings and a BPF
//! program; the child applies them with raw system calls and allocates nothing. Limits
//! that can be set on another process (rlimits, oom_score_adj) are set by the parent on
//! the child's pid before it proceeds, so their errors are ordinary Rust errors.

pub mod caps;
pub mod lsm;
pub mod rlimits;
pub mod seccomp;
pub mod sysctl;

use oci_spec::runtime::{Process, Spec};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::namespaces::NamespacePlan;

/// What the child applies, prepared by the parent. The default does nothing.
#[derive(Debug, Default)]
pub struct ChildSecurity {
    pub capabilities: Option<caps::CapabilityPlan>,
    /// Installed last before execve with no_new_privileges, else before the
    /// credentials change (installing a filter needs CAP_SYS_ADMIN without it).
    pub seccomp: Option<seccomp::Program>,
    pub sysctls: Vec<sysctl::Sysctl>,
    pub exec_labels: Vec<lsm::ExecLabel>,
}

/// What the parent sets on the child's pid before letting it go on.
#[derive(Debug, Default)]
pub struct HostSteps {
    pub rlimits: Vec<rlimits::Rlimit>,
    pub oom_score_adj: Option<i32>,
}

impl HostSteps {
    /// Applies the rlimits and oom_score_adj to `pid` (the container's process, which
    /// keeps them through execve).
    pub fn apply(&self, pid: i32) -> Result<()> {
        rlimits::apply(pid, &self.rlimits)?;
        if let Some(adj) = self.oom_score_adj {
            rlimits::set_oom_score_adj(pid, adj)?;
        }
        Ok(())
    }
}

/// Checks and compiles the process-level settings. `user_namespace`: the process lives
/// in a user namespace other than tong's (it then holds every capability there).
pub fn prepare(process: &Process, user_namespace: bool) -> Result<(ChildSecurity, HostSteps)> {
    let child = ChildSecurity {
        capabilities: caps::plan(process.capabilities().as_ref(), user_namespace)?,
        seccomp: None,
        sysctls: Vec::new(),
        exec_labels: lsm::plan(process)?,
    };
    let host = HostSteps {
        rlimits: rlimits::plan(process.rlimits().as_deref().unwrap_or_default())?,
        oom_score_adj: rlimits::check_oom_score_adj(process.oom_score_adj())?,
    };
    Ok((child, host))
}

/// Everything of a new container: the process-level settings plus `linux.sysctl` and
/// `linux.seccomp`.
pub fn prepare_container(
    spec: &Spec,
    namespaces: &NamespacePlan,
) -> Result<(ChildSecurity, HostSteps)> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("config has no process"))?;
    let (mut child, host) = prepare(
        process,
        namespaces.has(nix::sched::CloneFlags::CLONE_NEWUSER.bits()),
    )?;
    let linux = spec.linux().as_ref();
    child.sysctls = sysctl::plan(linux.and_then(|l| l.sysctl().as_ref()), namespaces)?;
    child.seccomp = compile_seccomp(spec)?;
    Ok((child, host))
}

/// The seccomp filter of a running container, for a process exec'd into it (as runc,
/// it applies to every process of the container). Read from the bundle's config.json;
/// fails closed when that is gone.
pub fn container_seccomp(bundle: &std::path::Path) -> Result<Option<seccomp::Program>> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::invalid(format!(
            "cannot read {} for the container's seccomp profile: {e}",
            path.display()
        ))
    })?;
    // Parsed here, not through config (which asks this module to diagnose bad input).
    let spec: Spec = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("invalid {}: {e}", path.display())))?;
    compile_seccomp(&spec)
}

/// The config's seccomp profile compiled, with its annotation for unknown names.
fn compile_seccomp(spec: &Spec) -> Result<Option<seccomp::Program>> {
    let ignore_unknown = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(seccomp::UNKNOWN_SYSCALLS_ANNOTATION))
        .is_some_and(|v| v == "ignore");
    spec.linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|profile| seccomp::compile(profile, ignore_unknown))
        .transpose()
}

/// When config.json does not parse, looks for the mistakes this module can name more
/// clearly than serde: an unknown capability, seccomp action, architecture, operator or
/// flag. Returns the message, or None to keep serde's.
pub fn diagnose(config: &Value) -> Option<String> {
    caps::diagnose(config).or_else(|| seccomp::diagnose(config))
}

/// Builds an invalid-input error for a config field.
pub(crate) fn invalid(field: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{field}: {message}"))
}
