//! What each plugin file said about itself (kind, name, priority) when it was last loaded,
//! kept in a small file under the state root, so that choosing the best plugin of a kind
//! loads only the one chosen instead of every plugin of that kind.
//!
//! An entry counts only while the file is the same one: same device, inode, size, mtime
//! and ctime (a chmod or chown changes ctime, so a file made untrustworthy is loaded, and
//! refused, again). The cache only orders trusted candidates; every plugin actually used
//! still goes through the trust and ABI checks of [`crate::plugins::load`]. It lives in
//! the root directory, which tong keeps 0700, and is written atomically; losing it costs
//! one slower selection.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The cache file's name inside the state root (a file: `list` only reads directories).
pub const CACHE_FILE: &str = ".plugin-cache.json";

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
    /// A cache kept in `dir` (nothing is written when `dir` does not exist), or only in
    /// memory with `None`.
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

    /// Writes the cache back if it changed. Best effort: a failure only costs speed.
    pub fn save(&self) {
        let mut state = self.lock();
        let Some(file) = &self.file else {
            return;
        };
        if !state.dirty || !file.parent().is_some_and(Path::is_dir) {
            return;
        }
        let Ok(data) = serde_json::to_vec(&state.entries) else {
            return;
        };
        // A name of our own, then rename: concurrent writers never interleave.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, data).is_ok() && std::fs::rename(&tmp, file).is_ok() {
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
        if let Some(data) = self.file.as_ref().and_then(|f| std::fs::read(f).ok()) {
            // A damaged cache is as good as none.
            state.entries = serde_json::from_slice(&data).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
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
        let dir = tempfile::tempdir().unwrap();
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
    fn nothing_is_written_without_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-root");
        let plugin = dir.path().join("p.so");
        std::fs::write(&plugin, b"x").unwrap();
        let cache = PriorityCache::new(Some(&missing));
        cache.record(&plugin, 3);
        cache.save();
        assert!(!missing.exists());
        assert_eq!(cache.priority(&plugin), Some(3));
    }
}
