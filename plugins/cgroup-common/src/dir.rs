//! Creating, reading, writing and removing cgroup directories.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::path::DEFAULT_PARENT;
use crate::{PluginError, PluginResult};

/// How long to wait for a freeze, a thaw or an emptied cgroup.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A container's directory in one hierarchy, as kept in the plugin's state JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// The hierarchy: its v1 controllers (`cpu,cpuacct`, `name=systemd`) or `unified`.
    pub hierarchy: String,
    /// The hierarchy's mount point.
    pub mount: PathBuf,
    /// The container's directory.
    pub dir: PathBuf,
    /// Parents to remove once empty, deepest first: the ones create made, plus the
    /// default `tong` parent.
    #[serde(default)]
    pub prune: Vec<PathBuf>,
}

impl CgroupDir {
    /// `mkdir -p mount/rel`, recording which parents it made. A concurrent destroy may
    /// remove an empty shared parent between two mkdirs (ENOENT): start over a few times.
    pub fn create(hierarchy: &str, mount: &Path, rel: &Path) -> PluginResult<CgroupDir> {
        Self::create_or_reuse(hierarchy, mount, rel).map(|(cg, _)| cg)
    }

    /// Like [`CgroupDir::create`], also telling whether the container's own directory was
    /// there already (the caller then checks it is not in use; no extra lookup needed).
    pub fn create_or_reuse(
        hierarchy: &str,
        mount: &Path,
        rel: &Path,
    ) -> PluginResult<(CgroupDir, bool)> {
        let dir = mount.join(rel);
        let mut created: Vec<PathBuf> = Vec::new();
        let mut attempts = 0;
        'retry: loop {
            let mut cur = mount.to_path_buf();
            for part in rel.components() {
                cur.push(part);
                match std::fs::create_dir(&cur) {
                    Ok(()) => {
                        if !created.contains(&cur) {
                            created.push(cur.clone());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) if e.kind() == ErrorKind::NotFound && attempts < 5 => {
                        attempts += 1;
                        std::thread::sleep(Duration::from_millis(1));
                        continue 'retry;
                    }
                    Err(e) => {
                        // Best effort: the mkdir error is the one to report.
                        for p in created.iter().rev() {
                            let _ = rmdir_retry(p);
                        }
                        return Err(PluginError::os(format!("mkdir {}", cur.display()), e));
                    }
                }
            }
            break;
        }
        let existed = !created.contains(&dir);
        Ok((
            CgroupDir::with_prune(hierarchy, mount, &dir, &created),
            existed,
        ))
    }

    fn with_prune(hierarchy: &str, mount: &Path, dir: &Path, created: &[PathBuf]) -> CgroupDir {
        let mut prune: Vec<PathBuf> = created
            .iter()
            .filter(|p| p.as_path() != dir)
            .cloned()
            .collect();
        let default_parent = mount.join(DEFAULT_PARENT);
        if dir.starts_with(&default_parent)
            && dir != default_parent
            && !prune.contains(&default_parent)
        {
            prune.push(default_parent);
        }
        // Deepest first.
        prune.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        CgroupDir {
            hierarchy: hierarchy.to_owned(),
            mount: mount.to_path_buf(),
            dir: dir.to_path_buf(),
            prune,
        }
    }

    /// The path of one of the directory's files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the container's directory exists.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The pids in the directory and its sub-cgroups.
    pub fn procs(&self) -> PluginResult<Vec<i32>> {
        let mut pids = Vec::new();
        collect_procs(&self.dir, &mut pids)?;
        Ok(pids)
    }

    /// Removes the directory (sub-cgroups first) and then the parents in `prune` that
    /// are empty. The processes must be gone. Succeeds when already removed.
    pub fn remove(&self) -> PluginResult<()> {
        remove_tree(&self.dir)?;
        self.prune_parents();
        Ok(())
    }

    /// One `rmdir`: the fast path of destroy for a container whose processes are gone.
    /// False when the kernel says the cgroup is busy (processes or child cgroups in it).
    pub fn try_remove(&self) -> PluginResult<bool> {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(false),
            Err(e) => return Err(PluginError::os(format!("rmdir {}", self.dir.display()), e)),
        }
        self.prune_parents();
        Ok(true)
    }

    fn prune_parents(&self) {
        for parent in &self.prune {
            // Busy or gone: another container still uses it, or someone removed it.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) -> PluginResult<()> {
    let text = match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(PluginError::os(
                format!("read {}", dir.join("cgroup.procs").display()),
                e,
            ))
        }
    };
    pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for sub in subdirs(dir)? {
        collect_procs(&sub, pids)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> PluginResult<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(PluginError::os(
                format!("read directory {}", dir.display()),
                e,
            ))
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

fn remove_tree(dir: &Path) -> PluginResult<()> {
    // Most cgroups have no children: one rmdir, no directory listing.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    for sub in subdirs(dir)? {
        remove_tree(&sub)?;
    }
    rmdir_retry(dir)
}

/// rmdir, tolerating a missing directory; EBUSY right after the last task left is
/// retried for a while.
fn rmdir_retry(dir: &Path) -> PluginResult<()> {
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < WAIT_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(PluginError::os(format!("rmdir {}", dir.display()), e)),
        }
    }
}

fn write_raw(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    // No O_CREAT: a missing cgroup file is an error, not a file to make.
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
}

/// Writes `value` to a cgroup file; the error names both.
pub fn write(path: &Path, value: &str) -> PluginResult<()> {
    write_raw(path, value)
        .map_err(|e| PluginError::os(format!("write {value} to {}", path.display()), e))
}

/// What v1 memory files read when unlimited (PAGE_COUNTER_MAX pages).
const V1_UNLIMITED: &str = "9223372036854771712";

/// Writes a setting that some kernels lack, refuse or ignore (`memory.kmem.*`,
/// `memory.use_hierarchy`): each of those is a warning naming the OCI `field`
/// (`linux.resources.<field>`), as crun does, instead of failing the container.
pub fn write_or_warn(path: &Path, value: &str, field: &str) -> PluginResult<()> {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    let not_applied = |why: String| {
        crate::warn(&format!(
            "linux.resources.{field} = {value} is not applied: {why}"
        ));
    };
    match write_raw(path, value) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            not_applied(format!("this kernel has no {file}"));
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
            not_applied(format!("the kernel refuses it for {file} ({e})"));
        }
        Err(e) => {
            return Err(PluginError::os(
                format!("write {value} to {}", path.display()),
                e,
            ))
        }
        // Linux 6.x accepts memory.kmem.limit_in_bytes and keeps it unlimited.
        Ok(())
            if value != "-1"
                && value != V1_UNLIMITED
                && read_opt(path).as_deref() == Some(V1_UNLIMITED) =>
        {
            not_applied(format!("the kernel accepts {file} but ignores it"));
        }
        Ok(()) => {}
    }
    Ok(())
}

/// Reads a cgroup file, trimmed.
pub fn read(path: &Path) -> PluginResult<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| PluginError::os(format!("read {}", path.display()), e))
}

/// Reads a cgroup file that may be absent (stats).
pub fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Reads a number, `None` when absent or not a number (`max`).
pub fn read_u64(path: &Path) -> Option<u64> {
    read_opt(path)?.parse().ok()
}

/// The value of `key` in a flat keyed file (`key value` lines: cgroup.events, cpu.stat).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// SIGKILLs each pid; ones already gone are fine.
pub fn kill_all(pids: &[i32]) -> PluginResult<()> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(PluginError::os(format!("kill -9 {pid}"), e)),
        }
    }
    Ok(())
}

/// Polls `done` every millisecond until it says yes, for at most [`WAIT_TIMEOUT`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> PluginResult<bool>) -> PluginResult<()> {
    let start = Instant::now();
    loop {
        if done()? {
            return Ok(());
        }
        if start.elapsed() > WAIT_TIMEOUT {
            return Err(PluginError::failed(format!(
                "timed out after {}s waiting for {what}",
                WAIT_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Adds `prefix: ` to an error's message.
pub fn prefixed<T>(prefix: &str, r: PluginResult<T>) -> PluginResult<T> {
    r.map_err(|mut e| {
        e.message = format!("{prefix}: {}", e.message);
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_prune_list() {
        let m = Path::new("/cg/memory");
        let created = [m.join("tong"), m.join("tong/a"), m.join("tong/a/b")];
        let d = CgroupDir::with_prune("memory", m, &m.join("tong/a/b"), &created);
        assert_eq!(d.prune, [m.join("tong/a"), m.join("tong")]);
        // The default parent is pruned even when another container made it.
        let d = CgroupDir::with_prune("memory", m, &m.join("tong/x"), &[m.join("tong/x")]);
        assert_eq!(d.prune, [m.join("tong")]);
        // Nothing outside what we made or the default parent.
        let d = CgroupDir::with_prune("memory", m, &m.join("k/x"), &[m.join("k/x")]);
        assert!(d.prune.is_empty());
    }

    #[test]
    fn translation_keyed_files() {
        let events = "populated 1\nfrozen 0\n";
        assert_eq!(keyed(events, "frozen"), Some(0));
        assert_eq!(keyed(events, "populated"), Some(1));
        assert_eq!(keyed(events, "missing"), None);
    }

    #[test]
    fn real_create_and_remove_in_tmpdir() {
        // A plain directory tree stands in for a hierarchy: mkdir -p and prune logic.
        let base = std::env::temp_dir().join(format!("tong-cg-common-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let d = CgroupDir::create("test", &base, Path::new("tong/one/two")).unwrap();
        assert!(d.exists());
        assert_eq!(d.prune, [base.join("tong/one"), base.join("tong")]);
        d.remove().unwrap();
        assert!(!base.join("tong").exists());
        d.remove().unwrap(); // idempotent
        std::fs::remove_dir(&base).unwrap();
    }
}
