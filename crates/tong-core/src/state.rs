//! The state store: one private directory per container under the state root, holding
//! `state.json` (written atomically), the start fifo and whatever plugins keep there.
//! Every command takes the container's lock (an exclusive flock on its directory) before
//! it reads or changes the container.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use rustix::fs::{renameat_with, RenameFlags, CWD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tong_abi::PluginKind;

use crate::error::{Context, Error, Result};
use crate::private_dir::check_private;

/// Name of the record file in a container's directory.
pub const RECORD_FILE: &str = "state.json";
/// The previous record, reused for the next write (see `ContainerDir::write`).
const SPARE_FILE: &str = ".state.json.spare";
/// Name of the fifo a created container waits on until `start`.
pub const FIFO_FILE: &str = "exec.fifo";

/// How far the lifecycle got, as last written by tong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `create` is under way (or died half-way).
    Creating,
    /// The process waits for `start`.
    Created,
    /// `start` released the process.
    Running,
}

/// One backend a container uses: which plugin, and the state it returned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendRecord {
    pub name: String,
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// The request a create step is about to send, recorded before the step runs, so a
    /// crash between the step and the recording of its state can still be undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
}

/// What tong keeps about a container between commands.
///
/// Field order is the order on disk: what teardown needs (process, backends) comes
/// first, so a truncated file still tells `delete --force` what to undo (see salvage.rs).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    pub phase: Phase,
    /// The container's init as the host sees it; 0 before it exists.
    #[serde(default)]
    pub pid: i32,
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22), so a reused
    /// pid is never mistaken for the container.
    #[serde(default)]
    pub pid_start: u64,
    /// Backends by kind (`ns`, `cgroup`, `rootfs`, `net`).
    #[serde(default)]
    pub backends: BTreeMap<String, BackendRecord>,
    pub bundle: PathBuf,
    pub oci_version: String,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub paused: bool,
    pub owner: u32,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The config's `hooks`, for `start` (poststart) and `delete` (poststop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Value>,
}

impl Record {
    /// The backend record of a kind, if the container used one.
    pub fn backend(&self, kind: PluginKind) -> Option<&BackendRecord> {
        self.backends.get(kind.as_str())
    }

    /// Plugin state of a kind as bytes, for handing back to the plugin.
    pub fn backend_state(&self, kind: PluginKind) -> Option<Vec<u8>> {
        let state = self.backend(kind)?.state.as_ref()?;
        serde_json::to_vec(state).ok()
    }
}

/// The state root, `/run/tong` by default.
#[derive(Clone, Debug)]
pub struct StateStore {
    root: PathBuf,
}

impl StateStore {
    pub fn new(root: impl Into<PathBuf>) -> StateStore {
        StateStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Refuses a root someone other than the caller could write (see [`check_private`]).
    fn check_root(&self) -> Result<()> {
        let meta = std::fs::metadata(&self.root)
            .context(|| format!("cannot read state root {}", self.root.display()))?;
        check_private("state root", &self.root, &meta)
    }

    /// Makes the directory of a new container, failing if the id is taken.
    pub fn create(&self, id: &str) -> Result<ContainerDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .context(|| format!("cannot create state root {}", self.root.display()))?;
        self.check_root()?;
        let path = self.root.join(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_string()));
            }
            Err(e) => return Err(Error::os(format!("cannot create {}", path.display()), e)),
        }
        ContainerDir::lock(id, path)
    }

    /// Opens and locks an existing container's directory.
    pub fn open(&self, id: &str) -> Result<ContainerDir> {
        match self.check_root() {
            Err(Error::Os { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()));
            }
            other => other?,
        }
        let path = self.root.join(id);
        let dir = ContainerDir::lock(id, path)?;
        // Another command may have deleted it while we waited for the lock.
        if !dir.path.exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(dir)
    }

    /// The ids present, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::os(format!("cannot read {}", self.root.display()), e)),
        };
        self.check_root()?;
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            // The pool's directory: no id starts with '-'.
            .filter(|e| e.file_name() != crate::pool::POOL_DIR)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Reads a container's record without taking its lock (for `list`, which must not
    /// wait behind a slow command).
    pub fn peek(&self, id: &str) -> Result<Record> {
        let dir = self.root.join(id);
        if let Ok(meta) = std::fs::symlink_metadata(&dir) {
            check_private("container directory", &dir, &meta)?;
        }
        read_record(id, &dir)
    }
}

/// A container's directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
    lock: Flock<File>,
}

impl ContainerDir {
    fn lock(id: &str, path: PathBuf) -> Result<ContainerDir> {
        // Not through a symbolic link, and checked on the descriptor that is then used.
        let lock = File::options()
            .read(true)
            .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NotFound(id.to_string())
                } else if e.raw_os_error() == Some(Errno::ELOOP as i32) {
                    Error::invalid(format!(
                        "refusing container directory {}: it is a symbolic link",
                        path.display()
                    ))
                } else {
                    Error::os(format!("cannot open {}", path.display()), e)
                }
            })?;
        let meta = lock
            .metadata()
            .context(|| format!("cannot read {}", path.display()))?;
        check_private("container directory", &path, &meta)?;
        let lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::os(format!("cannot lock {}", path.display()), e))?;
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            lock,
        })
    }

    /// The lock's fd, which a child process must close so it does not hold the lock.
    pub fn lock_fd(&self) -> i32 {
        self.lock.as_raw_fd()
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(FIFO_FILE)
    }

    pub fn read(&self) -> Result<Record> {
        read_record(&self.id, &self.path)
    }

    /// Replaces the record atomically: the new record is written to a spare file, which
    /// is then swapped with `state.json`, so readers see the old record or the new one.
    pub fn write(&self, record: &Record) -> Result<()> {
        let spare = self.path.join(SPARE_FILE);
        let data = serde_json::to_vec(record)
            .map_err(|e| Error::Internal(format!("cannot encode state: {e}")))?;
        // The spare file is the previous record's, overwritten in place: no new inode
        // per write (ext4 scans for a free one past recently deleted ones), and no
        // truncation to zero (ext4 then writes the file back on close).
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&spare)
            .context(|| format!("cannot write {}", spare.display()))?;
        file.write_all(&data)
            .and_then(|()| file.set_len(data.len() as u64))
            .context(|| format!("cannot write {}", spare.display()))?;
        drop(file);
        let target = self.path.join(RECORD_FILE);
        let replace_failed = |e| Error::os(format!("cannot replace {}", target.display()), e);
        // Swapped in, not renamed over: on ext4, renaming over a file also starts the
        // writeback of the new one (auto_da_alloc); an exchange does not, and leaves the
        // old record as the next spare.
        match renameat_with(CWD, &spare, CWD, &target, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(()),
            // The first record, or a filesystem (or kernel) without exchange.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                std::fs::rename(&spare, &target).map_err(replace_failed)
            }
            Err(e) => Err(replace_failed(e.into())),
        }
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        // A pooled network namespace still mounted here (create cut short) is busy.
        crate::pool::release_claimed(&self.path)?;
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::os(
                format!("cannot remove {}", self.path.display()),
                e,
            )),
        }
    }
}

fn read_record(id: &str, dir: &Path) -> Result<Record> {
    let path = dir.join(RECORD_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.exists() {
                return Err(Error::InvalidState(format!(
                    "container {id:?} has no state file {}: use delete --force to remove it",
                    path.display()
                )));
            }
            return Err(Error::NotFound(id.to_string()));
        }
        Err(e) => return Err(Error::os(format!("cannot read {}", path.display()), e)),
    };
    serde_json::from_slice(&data).map_err(|e| {
        Error::InvalidState(format!(
            "container {id:?} has a corrupt state file {}: {e}; use delete --force to remove it",
            path.display()
        ))
    })
}

/// What /proc says of a process: whether it lives, and its start time.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    // One read into a stack buffer (a stat line is a few hundred bytes; the command name
    // is at most 64): read_to_string probes a size-0 proc file with many small reads,
    // and `list` does this once per container.
    let mut buf = [0u8; 4096];
    let n =
        std::io::Read::read(&mut File::open(format!("/proc/{pid}/stat")).ok()?, &mut buf).ok()?;
    let stat = std::str::from_utf8(&buf[..n]).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // starttime is field 22 of the whole line, the 20th after the state.
    fields.nth(18)?.parse().ok()
}

/// Whether the recorded process still runs (same pid, same start time, not a zombie).
pub fn is_alive(pid: i32, start: u64) -> bool {
    process_start_time(pid).is_some_and(|s| s == start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_start_time() {
        let me = std::process::id() as i32;
        let start = process_start_time(me).expect("own stat");
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
        assert!(!is_alive(0, 0));
    }

    fn record(id: &str, annotation: &str) -> Record {
        Record {
            id: id.into(),
            phase: Phase::Creating,
            pid: 0,
            pid_start: 0,
            backends: BTreeMap::new(),
            bundle: "/b".into(),
            oci_version: "1.0.2".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-12-04T00:00:00Z".into(),
            paused: false,
            owner: 0,
            annotations: BTreeMap::from([("a".to_string(), annotation.to_string())]),
            hooks: None,
        }
    }

    #[test]
    fn each_write_replaces_the_whole_record_through_one_spare_file() {
        let root = tempfile::tempdir().unwrap();
        let store = StateStore::new(root.path());
        let dir = store.create("c").unwrap();
        // A long record, then shorter ones: no tail of the longer one may survive.
        for value in ["x".repeat(4000), "short".into(), "s".into()] {
            dir.write(&record("c", &value)).unwrap();
            assert_eq!(dir.read().unwrap().annotations["a"], value);
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [SPARE_FILE, RECORD_FILE]);
        // The spare holds the previous record, whole.
        let spare: Record =
            serde_json::from_slice(&std::fs::read(dir.path.join(SPARE_FILE)).unwrap()).unwrap();
        assert_eq!(spare.annotations["a"], "short");
        dir.remove().unwrap();
        assert!(!root.path().join("c").exists());
    }
}
