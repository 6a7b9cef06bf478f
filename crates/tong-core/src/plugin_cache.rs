//! What each plugin file said about itself (kind, name, priority) when it was last loaded,
//! kept in a small file, so that choosing the best plugin of a kind loads only the one
//! chosen instead of every plugin of that kind.
//!
//! An entry counts only while the file is the same one: same device, inode, size, mtime
//! and ctime (a chmod or chown changes ctime, so a file made untrustworthy is loaded, and
//! refused, again). The cache only orders trusted candidates; every plugin actually used
//! still goes through the trust and ABI checks of [`crate::plugins::load`].
//!
//! Where it lives ([`default_dir`]): a directory of its own, `/run/tong-plugin-cache` for
//! root and `$XDG_RUNTIME_DIR/tong-plugin-cache` for other users (no file at all
//! without one), never the state root: an engine owns that root and expects to find
//! only container directories there, as runc leaves it. The directory is used only
//! while it is the caller's, not a symbolic link, and closed to group and others
//! (0700), and the file only while it is the caller's and writable by nobody else, so
//! no one else can forge what decides the backends. It is written atomically; losing it
//! costs one slower selection.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The cache file's name inside its directory.
pub const CACHE_FILE: &str = "priorities.json";

/// The caller's cache directory: `/run/tong-plugin-cache` for root,
/// `$XDG_RUNTIME_DIR/tong-plugin-cache` for other users, none without either.
pub fn default_dir() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/run/tong-plugin-cache"));
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")?;
    let runtime = Path::new(&runtime);
    runtime
        .is_absolute()
        .then(|| runtime.join("tong-plugin-cache"))
}

/// Whether `meta` is the caller's and closed to everyone else (`others_mask`: the mode
/// bits group and others must not have).
fn private(meta: &std::fs::Metadata, others_mask: u32) -> bool {
    meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & others_mask == 0
}

/// Whether the cache directory may be used: an existing directory, not a symbolic link,
/// the caller's, 0700. Made (0700) when missing and its parent exists.
fn usable_dir(dir: &Path) -> bool {
    if let Err(e) = std::fs::symlink_metadata(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return false;
        }
        // Another process may make it at the same time: checked below either way.
        let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    }
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && private(&m, 0o077))
}

/// The cache file's contents, if the file is the caller's and nobody else may write it.
fn read_private(file: &Path) -> Option<Vec<u8>> {
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(file)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || !private(&meta, 0o022) {
        return None;
    }
    let mut data = Vec::new();
    f.read_to_end(&mut data).ok()?;
    Some(data)
}

/// The identity of a plugin file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    file: FileId,
    priority: u32,
}

/// Plugin priorities by path, read from and written back to one file.
#[derive(Debug)]
pub struct PriorityCache {
    file: Option<PathBuf>,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    loaded: bool,
    dirty: bool,
    entries: BTreeMap<PathBuf, Entry>,
}

impl PriorityCache {
    /// A cache kept in `dir` (made 0700 if missing; neither read nor written unless it
    /// is the caller's private directory), or only in memory with `None`.
    pub fn new(dir: Option<&Path>) -> PriorityCache {
        PriorityCache {
            file: dir.map(|d| d.join(CACHE_FILE)),
            state: Mutex::default(),
        }
    }

    /// The priority `path` had when last loaded, if the file is still the same.
    pub fn priority(&self, path: &Path) -> Option<u32> {
        let mut state = self.lock();
        self.read_once(&mut state);
        let entry = state.entries.get(path)?;
        (FileId::of(path)? == entry.file).then_some(entry.priority)
    }

    /// Remembers what a freshly loaded plugin said.
    pub fn record(&self, path: &Path, priority: u32) {
        let Some(file) = FileId::of(path) else {
            return;
        };
        let mut state = self.lock();
        self.read_once(&mut state);
        state
            .entries
            .insert(path.to_path_buf(), Entry { file, priority });
        state.dirty = true;
    }

    /// Writes the cache back if it changed, without entries for files that are gone or
    /// changed (so it does not grow with every removed plugin directory). Best effort:
    /// a failure only costs speed.
    pub fn save(&self) {
        let mut state = self.lock();
        let Some(file) = &self.file else {
            return;
        };
        if !state.dirty || !file.parent().is_some_and(usable_dir) {
            return;
        }
        state
            .entries
            .retain(|path, entry| FileId::of(path) == Some(entry.file));
        let Ok(data) = serde_json::to_vec(&state.entries) else {
            return;
        };
        // A name of our own, then rename: concurrent writers never interleave.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &data));
        if written.is_ok() && std::fs::rename(&tmp, file).is_ok() {
            state.dirty = false;
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_once(&self, state: &mut CacheState) {
        if state.loaded {
            return;
        }
        state.loaded = true;
        let data = self
            .file
            .as_ref()
            .filter(|f| f.parent().is_some_and(usable_dir))
            .and_then(|f| read_private(f));
        if let Some(data) = data {
            // A damaged cache is as good as none.
            state.entries = serde_json::from_slice(&data).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache directory as tong makes it: 0700.
    fn private_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        dir
    }

    #[test]
    fn remembers_until_the_file_changes() {
        let dir = private_tempdir();
        let plugin = dir.path().join("libtong_plugin_net_x.so");
        std::fs::write(&plugin, b"one").unwrap();

        let cache = PriorityCache::new(Some(dir.path()));
        assert_eq!(cache.priority(&plugin), None);
        cache.record(&plugin, 7);
        cache.save();
        assert!(dir.path().join(CACHE_FILE).is_file());

        // A new process reads what the last one wrote.
        let again = PriorityCache::new(Some(dir.path()));
        assert_eq!(again.priority(&plugin), Some(7));

        // Rewritten (size and times change): no longer trusted.
        std::fs::write(&plugin, b"longer contents").unwrap();
        assert_eq!(again.priority(&plugin), None);
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let dir = private_tempdir();
        std::fs::write(dir.path().join(CACHE_FILE), b"{not json").unwrap();
        let plugin = dir.path().join("p.so");
        std::fs::write(&plugin, b"x").unwrap();
        let cache = PriorityCache::new(Some(dir.path()));
        assert_eq!(cache.priority(&plugin), None);
        cache.record(&plugin, 1);
        cache.save();
        assert_eq!(
            PriorityCache::new(Some(dir.path())).priority(&plugin),
            Some(1)
        );
    }

    #[test]
    fn a_cache_others_could_write_is_neither_read_nor_written() {
        let dir = private_tempdir();
        let plugin = dir.path().join("p.so");
        std::fs::write(&plugin, b"x").unwrap();
        let cache = PriorityCache::new(Some(dir.path()));
        cache.record(&plugin, 5);
        cache.save();
        let file = dir.path().join(CACHE_FILE);
        let set_mode = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        };
        // The file writable by others, or the directory open to them: ignored.
        set_mode(&file, 0o666);
        assert_eq!(PriorityCache::new(Some(dir.path())).priority(&plugin), None);
        set_mode(&file, 0o600);
        set_mode(dir.path(), 0o755);
        let ignored = PriorityCache::new(Some(dir.path()));
        assert_eq!(ignored.priority(&plugin), None);
        ignored.record(&plugin, 9);
        ignored.save();
        set_mode(dir.path(), 0o700);
        assert_eq!(
            PriorityCache::new(Some(dir.path())).priority(&plugin),
            Some(5)
        );
        // A symbolic link to a private directory is not the directory.
        let link = dir.path().with_extension("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert_eq!(PriorityCache::new(Some(&link)).priority(&plugin), None);
        std::fs::remove_file(&link).unwrap();
        // Another user's file (only root can make one to test with).
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            assert_eq!(PriorityCache::new(Some(dir.path())).priority(&plugin), None);
        }
    }

    #[test]
    fn entries_of_removed_files_are_dropped() {
        let dir = private_tempdir();
        let (gone, kept) = (dir.path().join("gone.so"), dir.path().join("kept.so"));
        std::fs::write(&gone, b"x").unwrap();
        std::fs::write(&kept, b"y").unwrap();
        let cache = PriorityCache::new(Some(dir.path()));
        cache.record(&gone, 1);
        cache.record(&kept, 2);
        std::fs::remove_file(&gone).unwrap();
        cache.save();
        let data = std::fs::read_to_string(dir.path().join(CACHE_FILE)).unwrap();
        assert!(
            !data.contains("gone.so") && data.contains("kept.so"),
            "{data}"
        );
    }

    #[test]
    fn nothing_is_written_without_a_directory() {
        let dir = private_tempdir();
        let missing = dir.path().join("no-such-parent/cache");
        let plugin = dir.path().join("p.so");
        std::fs::write(&plugin, b"x").unwrap();
        let cache = PriorityCache::new(Some(&missing));
        cache.record(&plugin, 3);
        cache.save();
        assert!(!missing.exists());
        assert_eq!(cache.priority(&plugin), Some(3));
    }
}
