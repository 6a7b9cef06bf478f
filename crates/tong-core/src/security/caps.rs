//! The five capability sets of `process.capabilities`.
//!
//! Names are parsed in the parent with the `caps` crate into 64-bit masks; the child
//! drops the bounding set with prctl, keeps its permitted set across setresuid with
//! PR_SET_KEEPCAPS, then sets effective/permitted/inheritable with a raw capset(2) and
//! the ambient set with prctl. No allocation in the child. An ambient capability that is
//! not both permitted and inheritable cannot be raised: it is left out with one warning,
//! as runc and crun do (their default specs have no inheritable set).

use std::str::FromStr;

use ::caps::{CapSet, Capability};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use serde_json::Value;

use super::invalid;
use crate::error::Result;

const SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// Capability masks (bit n = capability n) for the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityPlan {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    /// The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap).
    pub last_cap: u32,
}

/// Parses one capability name as the OCI spec writes it ("CAP_NET_RAW").
pub fn parse_name(name: &str) -> Option<Capability> {
    Capability::from_str(&name.to_ascii_uppercase()).ok()
}

/// The masks for the config's capabilities, or None when the config has none (the
/// process then keeps what its uid gives it, as with runc).
pub fn plan(
    caps: Option<&LinuxCapabilities>,
    user_namespace: bool,
) -> Result<Option<CapabilityPlan>> {
    let Some(caps) = caps else { return Ok(None) };
    let last_cap = last_cap();
    let mask = |set: &str, list: Option<&Capabilities>| -> Result<u64> {
        let mut mask = 0u64;
        for cap in list.into_iter().flatten() {
            // oci-spec's serialized name is the spec's ("CAP_NET_RAW").
            let name = serde_json::to_value(cap)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let parsed = parse_name(&name).ok_or_else(|| {
                invalid(
                    &format!("process.capabilities.{set}"),
                    format!("unknown capability {name:?}"),
                )
            })?;
            if u32::from(parsed.index()) > last_cap {
                return Err(invalid(
                    &format!("process.capabilities.{set}"),
                    format!(
                        "{name} is not known to this kernel (its last capability is {last_cap})"
                    ),
                ));
            }
            mask |= parsed.bitmask();
        }
        Ok(mask)
    };
    let mut plan = CapabilityPlan {
        bounding: mask("bounding", caps.bounding().as_ref())?,
        effective: mask("effective", caps.effective().as_ref())?,
        permitted: mask("permitted", caps.permitted().as_ref())?,
        inheritable: mask("inheritable", caps.inheritable().as_ref())?,
        ambient: mask("ambient", caps.ambient().as_ref())?,
        last_cap,
    };
    let skipped = plan.drop_unraisable_ambient();
    if skipped != 0 {
        crate::log::warn(format_args!(
            "process.capabilities.ambient: {} not raised: an ambient capability must also be in the permitted and inheritable sets",
            names(skipped)
        ));
    }
    check(&plan, user_namespace)?;
    Ok(Some(plan))
}

impl CapabilityPlan {
    /// The kernel raises an ambient capability only when it is both permitted and
    /// inheritable. runc and crun skip the others (their default specs list ambient
    /// capabilities with no inheritable set), and so does tong: returns the skipped mask.
    fn drop_unraisable_ambient(&mut self) -> u64 {
        let skipped = self.ambient & !(self.permitted & self.inheritable);
        self.ambient &= !skipped;
        skipped
    }
}

/// Refuses what capset(2) or prctl would refuse in the child, naming the capability.
fn check(plan: &CapabilityPlan, user_namespace: bool) -> Result<()> {
    let extra = |have: u64, want: u64| want & !have;
    if let Some(cap) = first(extra(plan.permitted, plan.effective)) {
        return Err(invalid(
            "process.capabilities.effective",
            format!("{cap} is not in the permitted set (effective must be a subset of permitted)"),
        ));
    }
    // In a new user namespace the process holds every capability of that namespace; in
    // tong's own it can only keep what tong has.
    if !user_namespace {
        let own = ::caps::read(None, CapSet::Permitted).map_or(u64::MAX, |set| {
            set.iter().fold(0u64, |m, c| m | c.bitmask())
        });
        let wanted = plan.effective | plan.permitted | plan.inheritable | plan.ambient;
        if let Some(cap) = first(extra(own, wanted)) {
            return Err(invalid(
                "process.capabilities",
                format!("{cap} is not available: tong itself does not hold it (it is outside tong's permitted and bounding sets)"),
            ));
        }
    }
    Ok(())
}

/// The name of the lowest capability in `mask`.
fn first(mask: u64) -> Option<String> {
    (mask != 0).then(|| name(mask.trailing_zeros() as u8))
}

/// The names of every capability in `mask`, lowest first, comma-separated.
fn names(mask: u64) -> String {
    (0..64u8)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn name(index: u8) -> String {
    ::caps::all()
        .into_iter()
        .find(|c| c.index() == index)
        .map_or_else(|| format!("capability {index}"), |c| c.to_string())
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The names tong knows, for `tong features`.
pub fn known_names() -> Vec<String> {
    let last = last_cap();
    let mut caps: Vec<Capability> = ::caps::all()
        .into_iter()
        .filter(|c| u32::from(c.index()) <= last)
        .collect();
    caps.sort_by_key(Capability::index);
    caps.into_iter().map(|c| c.to_string()).collect()
}

/// Names an unknown capability in a config that failed to parse.
pub(super) fn diagnose(config: &Value) -> Option<String> {
    let caps = config.get("process")?.get("capabilities")?;
    for set in SETS {
        for name in caps
            .get(set)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(text) = name.as_str() else {
                return Some(format!(
                    "process.capabilities.{set}: {name} is not a capability name"
                ));
            };
            if parse_name(text).is_none() {
                return Some(format!(
                    "process.capabilities.{set}: unknown capability {text:?}"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_names() {
        assert_eq!(parse_name("CAP_NET_RAW"), Some(Capability::CAP_NET_RAW));
        assert_eq!(parse_name("cap_chown"), Some(Capability::CAP_CHOWN));
        assert_eq!(parse_name("CAP_BOGUS"), None);
    }

    #[test]
    fn diagnoses_unknown_names() {
        let cfg = serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN", "CAP_NOPE"]}}});
        assert_eq!(
            diagnose(&cfg).unwrap(),
            "process.capabilities.effective: unknown capability \"CAP_NOPE\""
        );
    }

    #[test]
    fn effective_must_be_permitted() {
        let caps: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": []}))
        .unwrap();
        let err = plan(Some(&caps), true).unwrap_err().to_string();
        assert!(
            err.contains("CAP_KILL is not in the permitted set"),
            "{err}"
        );
    }

    #[test]
    fn ambient_keeps_only_what_the_kernel_raises() {
        // runc spec's sets: ambient with no inheritable set.
        let caps: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": ["CAP_CHOWN", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"]}))
        .unwrap();
        let plan = plan(Some(&caps), true).unwrap().unwrap();
        assert_eq!(plan.ambient, Capability::CAP_CHOWN.bitmask());
        assert_eq!(
            names(Capability::CAP_KILL.bitmask() | Capability::CAP_NET_RAW.bitmask()),
            "CAP_KILL, CAP_NET_RAW"
        );
    }
}
