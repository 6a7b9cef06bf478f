//! User namespaces: `linux.uidMappings` / `linux.gidMappings` checked before anything is
//! made, and written by the parent into /proc/PID/{uid,gid}_map while the child waits
//! for its go-ahead. Run by a non-root user ("rootless"), tong can only map its own ids
//! (one line each, the kernel's rule for unprivileged writers), denies setgroups(2)
//! first as the kernel requires, and runs without cgroups when it may not create them.

use std::fmt::Write as _;

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespaceType, Spec};

use crate::error::{Error, Result};
use crate::namespaces::NamespacePlan;

/// The kernel's limit on lines in an id map (since Linux 4.15).
const MAX_MAP_LINES: usize = 340;

/// Whether tong runs without root (effective uid not 0).
pub fn rootless() -> bool {
    !nix::unistd::geteuid().is_root()
}

fn mappings(spec: &Spec) -> (&[LinuxIdMapping], &[LinuxIdMapping]) {
    let linux = spec.linux().as_ref();
    (
        linux
            .and_then(|l| l.uid_mappings().as_deref())
            .unwrap_or_default(),
        linux
            .and_then(|l| l.gid_mappings().as_deref())
            .unwrap_or_default(),
    )
}

/// Says, on stderr, that the container runs without a cgroup and why.
pub fn warn_no_cgroup(why: &crate::Error) {
    crate::log::warn(format_args!(
        "running without root and without a cgroup: linux.resources limits, pause, ps and stats are not available ({why})"
    ));
}

/// Fills in the id maps of a config that creates a user namespace but gives none, as
/// crun does: an unprivileged caller's own uid/gid becomes root inside (one id); root's
/// ids map onto themselves up to the process's user. runc refuses such a config; crun
/// accepts it, and `crun spec --rootless` writes one. (crun also takes a range from
/// /etc/subuid through newuidmap when the user has one; tong maps the single id.)
pub fn fill_default_maps(spec: &mut Spec) {
    let creates_userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
        });
    if !creates_userns {
        return;
    }
    let user = spec.process().as_ref().map(|p| p.user().clone());
    let (inside_uid, inside_gid) = user.map_or((0, 0), |u| (u.uid(), u.gid()));
    let one = |host: u32, inside: u32| {
        let (host, size) = if host == 0 {
            (0, inside.saturating_add(1))
        } else {
            (host, 1)
        };
        LinuxIdMappingBuilder::default()
            .container_id(0_u32)
            .host_id(host)
            .size(size)
            .build()
            .map(|map| vec![map])
            .unwrap_or_default()
    };
    let uid_map = one(nix::unistd::geteuid().as_raw(), inside_uid);
    let gid_map = one(nix::unistd::getegid().as_raw(), inside_gid);
    if let Some(linux) = spec.linux_mut() {
        if linux.uid_mappings().as_ref().is_none_or(Vec::is_empty) {
            linux.set_uid_mappings(Some(uid_map));
        }
        if linux.gid_mappings().as_ref().is_none_or(Vec::is_empty) {
            linux.set_gid_mappings(Some(gid_map));
        }
    }
}

/// Checks the mappings against the namespaces, before anything is created.
pub fn check(spec: &Spec, namespaces: &NamespacePlan) -> Result<()> {
    let (uid, gid) = mappings(spec);
    let creates = namespaces.creates(nix::sched::CloneFlags::CLONE_NEWUSER.bits());
    if !creates {
        if !uid.is_empty() || !gid.is_empty() {
            return Err(Error::invalid(
                "linux.uidMappings/gidMappings are set but the config creates no user namespace (add {\"type\": \"user\"} to linux.namespaces)",
            ));
        }
        if rootless() && !namespaces.has(nix::sched::CloneFlags::CLONE_NEWUSER.bits()) {
            return Err(Error::invalid(
                "tong runs as a non-root user: the config needs a new user namespace (type \"user\") with uidMappings and gidMappings of that user",
            ));
        }
        return Ok(());
    }
    if uid.is_empty() || gid.is_empty() {
        return Err(Error::invalid(
            "a new user namespace needs linux.uidMappings and linux.gidMappings",
        ));
    }
    check_map("linux.uidMappings", uid)?;
    check_map("linux.gidMappings", gid)
}

fn check_map(field: &str, map: &[LinuxIdMapping]) -> Result<()> {
    let bad = |msg: String| Err(Error::invalid(format!("invalid {field}: {msg}")));
    if map.len() > MAX_MAP_LINES {
        return bad(format!(
            "{} entries (the kernel takes at most {MAX_MAP_LINES})",
            map.len()
        ));
    }
    for (i, m) in map.iter().enumerate() {
        let (inside, outside, size) = (
            u64::from(m.container_id()),
            u64::from(m.host_id()),
            u64::from(m.size()),
        );
        if size == 0 {
            return bad(format!("entry {i} has size 0"));
        }
        if inside + size > u64::from(u32::MAX) || outside + size > u64::from(u32::MAX) {
            return bad(format!("entry {i} runs past the largest id 4294967294"));
        }
        for (j, o) in map.iter().enumerate().take(i) {
            let overlap = |a: u64, b: u64| a < b + u64::from(o.size()) && b < a + size;
            if overlap(inside, u64::from(o.container_id())) {
                return bad(format!("container ids of entries {j} and {i} overlap"));
            }
            if overlap(outside, u64::from(o.host_id())) {
                return bad(format!("host ids of entries {j} and {i} overlap"));
            }
        }
    }
    Ok(())
}

/// Writes the child's id maps (and, without root, denies setgroups first).
pub fn write_maps(spec: &Spec, pid: i32) -> Result<()> {
    let (uid, gid) = mappings(spec);
    if rootless() {
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, "deny").map_err(|e| Error::os(format!("cannot write {path}"), e))?;
    }
    for (file, field, maps) in [
        ("uid_map", "uidMappings", uid),
        ("gid_map", "gidMappings", gid),
    ] {
        let text = maps.iter().fold(String::new(), |mut text, m| {
            let _ = writeln!(text, "{} {} {}", m.container_id(), m.host_id(), m.size());
            text
        });
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text.as_bytes()).map_err(|e| {
            let hint = if rootless() {
                " (without root only a single entry mapping your own id is allowed)"
            } else {
                ""
            };
            Error::invalid(format!(
                "invalid linux.{field}: the kernel refused {path}: {e}{hint}"
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(maps: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "user"}, {"type": "mount"}],
                      "uidMappings": maps, "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}
        }))
        .unwrap()
    }

    #[test]
    fn refuses_overlap_and_zero_size() {
        let s = spec(
            serde_json::json!([{"containerID": 0, "hostID": 100_000, "size": 10},
                                       {"containerID": 5, "hostID": 200_000, "size": 10}]),
        );
        let err = check(&s, &NamespacePlan::from_spec(&s))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid linux.uidMappings: container ids of entries 0 and 1 overlap"
        );
        let s = spec(serde_json::json!([{"containerID": 0, "hostID": 100_000, "size": 0}]));
        let err = check(&s, &NamespacePlan::from_spec(&s))
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 0 has size 0"), "{err}");
        let s = spec(serde_json::json!([{"containerID": 0, "hostID": 100_000, "size": 65536}]));
        check(&s, &NamespacePlan::from_spec(&s)).unwrap();
    }
}
