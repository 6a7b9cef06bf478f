//! `linux.seccomp`: the OCI profile compiled to a BPF program with libseccomp in the
//! parent; the child installs the program with the raw seccomp(2) system call.
//!
//! Departure from runc: a syscall name libseccomp does not know is an error (runc skips
//! it silently), so a typo cannot weaken a profile unnoticed. Engines' default profiles
//! name system calls newer than an older libseccomp knows: names of real Linux system
//! calls ([`NEWER_SYSCALLS`]) are skipped with a warning, as runc does; the annotation
//! `tong.seccomp.unknown-syscalls: ignore` skips every unknown name.

/// Annotation that makes unknown syscall names a warning instead of an error.
pub const UNKNOWN_SYSCALLS_ANNOTATION: &str = "tong.seccomp.unknown-syscalls";

/// Linux system calls added from 5.3 on, which an older libseccomp may not know (Debian
/// 12's 2.5.4 lacks the newest). Docker's and podman's default profiles name them; a
/// rule for one that libseccomp cannot resolve is skipped with a warning, not refused.
pub const NEWER_SYSCALLS: &[&str] = &[
    "cachestat",
    "clone3",
    "close_range",
    "epoll_pwait2",
    "faccessat2",
    "fchmodat2",
    "file_getattr",
    "file_setattr",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "getxattrat",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "listmount",
    "listxattrat",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "lsm_set_self_attr",
    "map_shadow_stack",
    "memfd_secret",
    "mount_setattr",
    "mseal",
    "open_tree_attr",
    "openat2",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "process_madvise",
    "process_mrelease",
    "quotactl_fd",
    "removexattrat",
    "set_mempolicy_home_node",
    "setxattrat",
    "statmount",
    "uretprobe",
];

use std::collections::HashSet;
use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::invalid;
use crate::error::Result;

const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 4;
/// The kernel's limit on a classic BPF program's length.
const BPF_MAXINSNS: usize = 4096;

/// The actions, operators, architectures and flags tong implements (`tong features`).
pub const ACTIONS: [&str; 8] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
pub const OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
pub const FLAGS: [&str; 3] = [
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
];
/// Actions listed in ACTIONS that need a seccomp agent, which tong does not support.
const UNSUPPORTED_ACTIONS: [&str; 1] = ["SCMP_ACT_NOTIFY"];

/// A compiled filter, ready for seccomp(SECCOMP_SET_MODE_FILTER).
#[derive(Debug)]
pub struct Program {
    pub(crate) filter: Vec<libc::sock_filter>,
    pub(crate) flags: libc::c_ulong,
}

/// The architectures of the OCI spec that this libseccomp knows.
pub fn architectures() -> Vec<String> {
    [
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
    ]
    .into_iter()
    .filter(|a| ScmpArch::from_str(a).is_ok())
    .map(str::to_string)
    .collect()
}

/// The spec's name of an oci-spec enum value ("SCMP_ACT_ERRNO").
fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn action(field: &str, act: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    let name = name_of(&act);
    if UNSUPPORTED_ACTIONS.contains(&name.as_str()) {
        return Err(invalid(
            field,
            format!("{name} needs a seccomp agent (listenerPath), which tong does not support"),
        ));
    }
    // As runc: ERRNO and TRACE answer EPERM unless errnoRet says otherwise.
    let value = errno.map_or(libc::EPERM, |e| e as i32);
    ScmpAction::from_str(&name, Some(value))
        .map_err(|e| invalid(field, format!("invalid seccomp action {name}: {e}")))
}

/// Compiles the profile. Every name is checked here, so the child only installs.
/// With `ignore_unknown_syscalls`, names libseccomp does not know are skipped (with a
/// warning on stderr) instead of refused.
pub fn compile(profile: &LinuxSeccomp, ignore_unknown_syscalls: bool) -> Result<Program> {
    let default = action(
        "linux.seccomp.defaultAction",
        profile.default_action(),
        profile.default_errno_ret(),
    )?;
    let libseccomp_error = |what: &str, e: libseccomp::error::SeccompError| {
        invalid("linux.seccomp", format!("{what}: {e}"))
    };
    let mut filter =
        ScmpFilterContext::new(default).map_err(|e| libseccomp_error("creating the filter", e))?;
    for arch in profile.architectures().iter().flatten() {
        let name = name_of(arch);
        let arch = ScmpArch::from_str(&name).map_err(|_| {
            invalid(
                "linux.seccomp.architectures",
                format!("architecture {name} is not known to libseccomp"),
            )
        })?;
        if !filter.is_arch_present(arch).unwrap_or(false) {
            filter
                .add_arch(arch)
                .map_err(|e| libseccomp_error(&format!("adding architecture {name}"), e))?;
        }
    }
    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(invalid(
                    "linux.seccomp.flags",
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV applies to SCMP_ACT_NOTIFY, which tong does not support",
                ))
            }
        };
    }
    for (i, rule) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(&format!("{field}.action"), rule.action(), rule.errno_ret())?;
        let mut conditions = Vec::new();
        let mut indexes = HashSet::new();
        let mut repeated = false;
        for arg in rule.args().iter().flatten() {
            if arg.index() > 5 {
                return Err(invalid(
                    &format!("{field}.args"),
                    format!("argument index {} is out of range (0 to 5)", arg.index()),
                ));
            }
            repeated |= !indexes.insert(arg.index());
            let op_name = name_of(&arg.op());
            let op = match ScmpCompareOp::from_str(&op_name) {
                Ok(ScmpCompareOp::MaskedEqual(_)) => ScmpCompareOp::MaskedEqual(arg.value()),
                Ok(op) => op,
                Err(_) => {
                    return Err(invalid(
                        &format!("{field}.args"),
                        format!("unknown operator {op_name}"),
                    ))
                }
            };
            // MASKED_EQ compares (arg & value) with valueTwo; the others compare with value.
            let datum = match op {
                ScmpCompareOp::MaskedEqual(_) => arg.value_two().unwrap_or(0),
                _ => arg.value(),
            };
            conditions.push(ScmpArgCompare::new(arg.index() as u32, op, datum));
        }
        if act == default {
            // libseccomp refuses a rule that repeats the default action; it changes nothing.
            continue;
        }
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                if ignore_unknown_syscalls || NEWER_SYSCALLS.contains(&name.as_str()) {
                    crate::log::warn(format_args!(
                        "{field}.names: skipping system call {name:?}, unknown to libseccomp"
                    ));
                    continue;
                }
                return Err(invalid(
                    &format!("{field}.names"),
                    format!("unknown system call {name:?} (annotation {UNKNOWN_SYSCALLS_ANNOTATION}=ignore skips such names)"),
                ));
            };
            let added = if repeated {
                // As runc: conditions on the same argument are alternatives (one rule each).
                conditions
                    .iter()
                    .try_for_each(|c| filter.add_rule_conditional(act, syscall, &[*c]).map(drop))
            } else {
                filter
                    .add_rule_conditional(act, syscall, &conditions)
                    .map(drop)
            };
            added.map_err(|e| libseccomp_error(&format!("rule for {name}"), e))?;
        }
    }
    let bpf = export(&filter)?;
    let filter: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if filter.is_empty() || filter.len() > BPF_MAXINSNS {
        return Err(invalid(
            "linux.seccomp",
            format!(
                "the compiled filter has {} instructions (the kernel takes 1 to {BPF_MAXINSNS})",
                filter.len()
            ),
        ));
    }
    Ok(Program { filter, flags })
}

/// The filter's BPF, through a memfd: libseccomp 2.5 (Debian 12) exports only to a
/// descriptor.
fn export(filter: &ScmpFilterContext) -> Result<Vec<u8>> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    use std::io::{Read, Seek};
    let fd = memfd_create(c"tong-seccomp", MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| crate::Error::os("memfd_create for the seccomp program", e))?;
    let mut file = std::fs::File::from(fd);
    filter
        .export_bpf(&file)
        .map_err(|e| invalid("linux.seccomp", format!("exporting the BPF program: {e}")))?;
    let mut bpf = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bpf))
        .map_err(|e| crate::Error::os("reading the seccomp program back", e))?;
    Ok(bpf)
}

/// Names an unknown seccomp action, architecture, operator or flag in a config that
/// failed to parse.
pub(super) fn diagnose(config: &Value) -> Option<String> {
    let seccomp = config.get("linux")?.get("seccomp")?;
    fn bad<T: DeserializeOwned>(value: &Value) -> bool {
        serde_json::from_value::<T>(value.clone()).is_err()
    }
    let describe = |field: String, what: &str, value: &Value| {
        Some(format!("{field}: unknown seccomp {what} {value}"))
    };
    if let Some(v) = seccomp.get("defaultAction") {
        if bad::<LinuxSeccompAction>(v) {
            return describe("linux.seccomp.defaultAction".into(), "action", v);
        }
    }
    let items = |key: &str| {
        seccomp
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for v in items("architectures") {
        if bad::<oci_spec::runtime::Arch>(&v) {
            return describe("linux.seccomp.architectures".into(), "architecture", &v);
        }
    }
    for v in items("flags") {
        if bad::<LinuxSeccompFilterFlag>(&v) {
            return describe("linux.seccomp.flags".into(), "flag", &v);
        }
    }
    for (i, rule) in items("syscalls").iter().enumerate() {
        if let Some(v) = rule.get("action") {
            if bad::<LinuxSeccompAction>(v) {
                return describe(format!("linux.seccomp.syscalls[{i}].action"), "action", v);
            }
        }
        let args = rule.get("args").and_then(Value::as_array);
        for arg in args.into_iter().flatten() {
            if let Some(v) = arg.get("op") {
                if bad::<oci_spec::runtime::LinuxSeccompOperator>(v) {
                    return describe(format!("linux.seccomp.syscalls[{i}].args"), "operator", v);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn compiles_errno_rule_with_conditions() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                          {"index": 0, "value": 0xff, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }));
        let prog = compile(&p, false).unwrap();
        assert!(prog.filter.len() > 5);
    }

    #[test]
    fn flags_go_to_the_seccomp_call() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}));
        let prog = compile(&p, false).unwrap();
        assert_eq!(
            prog.flags,
            SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
        assert!(compile(&p, false)
            .unwrap_err()
            .to_string()
            .contains("SCMP_ACT_NOTIFY"));
    }

    #[test]
    fn unknown_syscall_and_notify_are_errors() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "no_such_call"], "action": "SCMP_ACT_ERRNO"}]}));
        let err = compile(&p, false).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "linux.seccomp.syscalls[0].names: unknown system call \"no_such_call\""
            ),
            "{err}"
        );
        compile(&p, true).unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(compile(&p, false)
            .unwrap_err()
            .to_string()
            .contains("seccomp agent"));
    }

    #[test]
    fn real_syscalls_newer_than_libseccomp_are_skipped() {
        // Every name of the list either resolves or is skipped: a profile naming all of
        // them (as engines' defaults do) compiles without the annotation.
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": NEWER_SYSCALLS, "action": "SCMP_ACT_ALLOW"}]}));
        compile(&p, false).unwrap();
    }

    #[test]
    fn diagnoses_unknown_action() {
        let cfg = serde_json::json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]}}});
        assert_eq!(
            diagnose(&cfg).unwrap(),
            "linux.seccomp.syscalls[0].action: unknown seccomp action \"SCMP_ACT_BOGUS\""
        );
    }
}
