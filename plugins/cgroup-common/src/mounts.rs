//! Cgroup mount discovery from `/proc/self/mountinfo` (never hard-coded paths).

use std::collections::HashMap;
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

/// One mountinfo line: what the visibility walk needs, and the cgroup mount if it is one.
struct Entry<'a> {
    id: u64,
    parent: u64,
    /// As mountinfo spells it (escaped): enough to compare, and no allocation.
    mount_point: &'a str,
    cgroup: Option<CgroupMount>,
}

/// Whether `path` is `dir` or below it.
fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || dir.ends_with('/'))
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    // id parent maj:min root mount-point mount-opts [optional...] - fstype source super-opts
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    if left.len() < 6 || right.len() < 3 {
        return None;
    }
    let mount_point = left[4];
    let fstype = right[0];
    let cgroup = (fstype == "cgroup" || fstype == "cgroup2").then(|| CgroupMount {
        mount_point: PathBuf::from(unescape(mount_point)),
        root: unescape(left[3]),
        fstype: fstype.to_owned(),
        controllers: if fstype == "cgroup" {
            right[2]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        },
        read_only: left[5].split(',').any(|o| o == "ro"),
    });
    Some(Entry {
        id: left[0].parse().ok()?,
        parent: left[1].parse().ok()?,
        mount_point,
        cgroup,
    })
}

/// Which entries a path lookup from the process's root can reach. mountinfo also lists
/// hidden mounts: one covered by a later mount on the same point (its child with the
/// same mount point), one under a directory that a later sibling covers, and everything
/// below those. `root` is the id of the mount holding the process's root directory;
/// lookups never descend into mounts stacked on it (`mount --rbind / /` leaves its
/// caller in the old tree), and it may be unlisted (a chroot below a mount point).
/// Without it, the last mount stacked on the namespace's `/` is taken (where setns(2)
/// puts a process).
fn visible(entries: &[Entry], root: Option<u64>) -> Vec<bool> {
    let index: HashMap<u64, usize> = entries.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut children: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.parent != e.id {
            children.entry(e.parent).or_default().push(i);
        }
    }
    // The last mount stacked on `i`'s own mount point, or `i`.
    let top_of = |mut i: usize| {
        while let Some(&above) = children.get(&entries[i].id).and_then(|kids| {
            kids.iter()
                .rev()
                .find(|&&c| entries[c].mount_point == entries[i].mount_point)
        }) {
            i = above;
        }
        i
    };
    let unlisted_parent = |e: &&Entry| !index.contains_key(&e.parent);
    let root = root.or_else(|| {
        let slash = entries
            .iter()
            .position(|e| e.mount_point == "/" && unlisted_parent(&e));
        match slash {
            Some(i) => Some(entries[top_of(i)].id),
            None => entries.iter().find(unlisted_parent).map(|e| e.parent),
        }
    });
    let mut seen = vec![false; entries.len()];
    let Some(root) = root else {
        return seen;
    };
    if let Some(&i) = index.get(&root) {
        seen[i] = true;
    }
    // Walk down from the root, entering on each point only what a lookup reaches.
    let mut todo = vec![(root, "/")];
    while let Some((parent, parent_point)) = todo.pop() {
        let kids: Vec<usize> = children
            .get(&parent)
            .into_iter()
            .flatten()
            .copied()
            // Mounts stacked on the parent's own point are not below it.
            .filter(|&c| entries[c].mount_point != parent_point)
            .collect();
        for (n, &c) in kids.iter().enumerate() {
            let point = &entries[c].mount_point;
            if kids[n + 1..]
                .iter()
                .any(|&s| under(point, entries[s].mount_point))
            {
                continue;
            }
            let top = top_of(c);
            seen[top] = true;
            todo.push((entries[top].id, entries[top].mount_point));
        }
    }
    seen
}

/// The cgroup and cgroup2 mounts in mountinfo `text` that a lookup from the process's
/// root (the mount with id `root`; see [`visible`]) reaches, in file order.
pub fn parse_mountinfo(text: &str, root: Option<u64>) -> Vec<CgroupMount> {
    let entries: Vec<Entry> = text.lines().filter_map(parse_line).collect();
    let seen = visible(&entries, root);
    entries
        .into_iter()
        .zip(seen)
        .filter_map(|(e, seen)| e.cgroup.filter(|_| seen))
        .collect()
}

/// The id of the mount holding this process's root directory (`None` before Linux 5.8).
fn root_mount_id() -> Option<u64> {
    // SAFETY: statx is plain data; an all-zero value is valid and the kernel fills it.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated literal and `st` outlives the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c"/".as_ptr(),
            0,
            libc::STATX_MNT_ID,
            &raw mut st,
        )
    };
    (rc == 0 && st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id)
}

/// The cgroup mounts this process can reach in its mount namespace.
pub fn read_mounts() -> PluginResult<Vec<CgroupMount>> {
    let text = read_proc_file("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text, root_mount_id()))
}

/// A /proc file read whole. Its size reads as 0, so `read_to_string` would start from a
/// 32-byte buffer and double it, one read(2) each (a dozen for a typical mountinfo).
fn read_proc_file(path: &str) -> PluginResult<String> {
    use std::io::Read;
    let mut text = String::with_capacity(16 * 1024);
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| PluginError::os(format_args!("read {path}"), e))?;
    Ok(text)
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
    let own = read_proc_file("/proc/self/cgroup")?;
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
        let mounts = parse_mountinfo(HYBRID, None);
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
        let mounts = parse_mountinfo(HYBRID, None);
        let v2 = cgroup2_mount(&mounts).unwrap();
        assert_eq!(v2.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(!v2.read_only);
        assert!(cgroup2_mount(&parse_mountinfo(
            "31 23 0:28 / /x rw - tmpfs tmpfs rw",
            None
        ))
        .is_none());
    }

    /// This host's namespace after `mount --rbind / /`: every mount twice, the copy
    /// stacked on `/` (68) holding the second. The unified lines are added per test.
    const STACKED: &str = "\
47 46 254:0 / / rw,relatime - ext4 /dev/vda rw
49 47 0:21 / /proc rw,relatime - proc proc rw
50 47 0:22 / /sys rw,relatime - sysfs sysfs rw
51 50 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
52 51 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
55 51 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
59 51 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
62 47 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw
65 62 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
66 65 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
68 47 254:0 / / rw,relatime - ext4 /dev/vda rw
70 68 0:21 / /proc rw,relatime - proc proc rw
71 68 0:22 / /sys rw,relatime - sysfs sysfs rw
72 71 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
73 72 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
76 72 0:32 / /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
80 72 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
";
    const OLD_UNIFIED: &str =
        "61 51 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    const NEW_UNIFIED: &str =
        "82 72 0:38 / /sys/fs/cgroup/unified ro,relatime - cgroup2 cgroup2 rw\n";

    /// (controllers or "cgroup2", read-only) of what is taken: the stacked copy is the
    /// one mounted read-only in the fixture.
    fn taken(text: &str, root: Option<u64>) -> Vec<(String, bool)> {
        let mounts = parse_mountinfo(text, root);
        assert_eq!(
            v1_hierarchies(&mounts).len(),
            mounts.iter().filter(|m| m.fstype == "cgroup").count(),
            "each hierarchy once: {mounts:?}"
        );
        mounts
            .iter()
            .map(|m| {
                let name = if m.fstype == "cgroup2" {
                    "cgroup2".to_owned()
                } else {
                    m.controllers.join(",")
                };
                (name, m.read_only)
            })
            .collect()
    }

    fn names(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(n, ro)| ((*n).to_owned(), *ro)).collect()
    }

    #[test]
    fn translation_stacked_root_takes_the_tree_the_process_sees() {
        let both = format!("{STACKED}{OLD_UNIFIED}{NEW_UNIFIED}");
        // The caller of `mount --rbind / /` keeps its root in the old tree (47).
        assert_eq!(
            taken(&both, Some(47)),
            names(&[
                ("cpu", false),
                ("memory", false),
                ("pids", false),
                ("cgroup2", false)
            ])
        );
        // A process that entered the namespace later sits on the stacked copy (68),
        // which is also the default without a root id.
        let stacked = names(&[
            ("cpu", false),
            ("memory", true),
            ("pids", false),
            ("cgroup2", true),
        ]);
        assert_eq!(taken(&both, Some(68)), stacked);
        assert_eq!(taken(&both, None), stacked);
    }

    #[test]
    fn translation_unmounted_visible_unified_is_not_taken_from_the_hidden_copy() {
        // The caller unmounted its own unified (61): the stacked copy's is out of reach.
        let text = format!("{STACKED}{NEW_UNIFIED}");
        assert!(cgroup2_mount(&parse_mountinfo(&text, Some(47))).is_none());
        assert!(cgroup2_mount(&parse_mountinfo(&text, Some(68))).is_some());
        // A process on the stacked copy unmounted its unified (82): the old is hidden.
        let text = format!("{STACKED}{OLD_UNIFIED}");
        assert!(cgroup2_mount(&parse_mountinfo(&text, Some(68))).is_none());
        assert!(cgroup2_mount(&parse_mountinfo(&text, None)).is_none());
        assert!(cgroup2_mount(&parse_mountinfo(&text, Some(47))).is_some());
    }

    #[test]
    fn translation_mount_over_a_parent_directory_hides_what_is_below() {
        assert!(under("/sys/fs", "/sys") && under("/sys", "/sys") && under("/x", "/"));
        assert!(!under("/sysfs", "/sys") && !under("/", "/sys"));
        // A later tmpfs on /sys/fs (a sibling of /sys/fs/cgroup under /sys) hides it all.
        let text = format!("{STACKED}{OLD_UNIFIED}90 50 0:40 / /sys/fs rw - tmpfs tmpfs rw\n");
        assert!(taken(&text, Some(47)).is_empty());
        // One mounted before /sys/fs/cgroup is under it, not over it.
        let text = STACKED.replacen(
            "51 50 0:28",
            "90 50 0:40 / /sys/fs rw - tmpfs tmpfs rw\n51 90 0:28",
            1,
        );
        assert_eq!(taken(&text, Some(47)).len(), 3);
    }

    #[test]
    fn translation_listed_order_and_unlisted_root() {
        // This host: / (27) listed after its children, its own parent (1) unlisted.
        let host = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let want = names(&[("memory", false), ("cgroup2", false)]);
        assert_eq!(taken(host, Some(27)), want);
        assert_eq!(taken(host, None), want);
        // In a chroot below a mount point, the root's mount is not listed.
        let chroot = host.replace("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n", "");
        assert_eq!(taken(&chroot, Some(27)), want);
        assert_eq!(taken(&chroot, None), want);
    }
}
