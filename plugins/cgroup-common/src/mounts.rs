//! Cgroup mount discovery from `/proc/self/mountinfo` (never hard-coded paths).

use std::path::PathBuf;

use crate::{PluginError, PluginResult};

/// One cgroup or cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The hierarchy path mounted there (`/` unless a sub-tree is bind-mounted).
    pub root: String,
    /// `cgroup2` or `cgroup`.
    pub fstype: String,
    /// v1 only: the controllers of the hierarchy (`cpu`, `cpuacct`, `name=systemd`, ...).
    pub controllers: Vec<String>,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The v1 controllers we know; other super options (`rw`, `clone_children`, ...) are not
/// controllers.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let code = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(code as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text, keeping cgroup and cgroup2 mounts in file order.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // id parent maj:min root mount-point mount-opts [optional...] - fstype source super-opts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 3 {
            continue;
        }
        let fstype = right[0];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let controllers = if fstype == "cgroup" {
            right[2]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        mounts.push(CgroupMount {
            mount_point: PathBuf::from(unescape(left[4])),
            root: unescape(left[3]),
            fstype: fstype.to_owned(),
            controllers,
            read_only: left[5].split(',').any(|o| o == "ro"),
        });
    }
    mounts
}

/// The cgroup mounts of this process's mount namespace.
pub fn read_mounts() -> PluginResult<Vec<CgroupMount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| PluginError::os("read /proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text))
}

/// The v1 hierarchies, one mount each (the first seen when a hierarchy is mounted twice).
pub fn v1_hierarchies(mounts: &[CgroupMount]) -> Vec<CgroupMount> {
    let mut out: Vec<CgroupMount> = Vec::new();
    for m in mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && !m.controllers.is_empty())
    {
        if !out.iter().any(|o| o.controllers == m.controllers) {
            out.push(m.clone());
        }
    }
    out
}

/// The cgroup2 mount, preferring one of the whole hierarchy (root `/`).
pub fn cgroup2_mount(mounts: &[CgroupMount]) -> Option<CgroupMount> {
    let mut v2 = mounts.iter().filter(|m| m.fstype == "cgroup2");
    let first = v2.clone().next()?;
    Some(v2.find(|m| m.root == "/").unwrap_or(first).clone())
}

/// Moves this process into the v1 cgroup it is already in. Nothing changes, but the
/// write takes the kernel's cgroup attach lock, and the first taking after a quiet spell
/// waits for an RCU grace period (7 to 9 ms measured here). Done early, on a spare
/// thread, that wait overlaps the rest of create instead of delaying `add_process`,
/// which then finds the lock's fast path.
pub fn warm_attach_lock() -> PluginResult<()> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| PluginError::os("read /proc/self/cgroup", e))?;
    let hierarchies = v1_hierarchies(&read_mounts()?);
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(mount) = hierarchies
            .iter()
            .find(|m| m.root == "/" && !m.read_only && m.controllers.join(",") == controllers)
        else {
            continue;
        };
        let procs = mount
            .mount_point
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        return std::fs::write(&procs, std::process::id().to_string())
            .map_err(|e| PluginError::os(format!("write to {}", procs.display()), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
99 1 0:32 / /mnt/mem\\040copy ro,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn translation_parses_v1_hierarchies() {
        let mounts = parse_mountinfo(HYBRID);
        let v1 = v1_hierarchies(&mounts);
        let names: Vec<String> = v1.iter().map(|m| m.controllers.join(",")).collect();
        assert_eq!(names, ["cpu,cpuacct", "cpuset", "memory", "name=systemd"]);
        assert_eq!(
            v1[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        // The duplicate memory mount with an escaped space is parsed but not preferred.
        assert_eq!(
            mounts.last().unwrap().mount_point,
            PathBuf::from("/mnt/mem copy")
        );
        assert!(mounts.last().unwrap().read_only);
    }

    #[test]
    fn translation_finds_cgroup2() {
        let mounts = parse_mountinfo(HYBRID);
        let v2 = cgroup2_mount(&mounts).unwrap();
        assert_eq!(v2.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(!v2.read_only);
        assert!(cgroup2_mount(&parse_mountinfo("31 23 0:28 / /x rw - tmpfs tmpfs rw")).is_none());
    }
}
