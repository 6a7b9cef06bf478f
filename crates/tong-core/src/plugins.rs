//! The plugin host: finds backend plugins, checks that they are trustworthy and speak our
//! ABI, loads them (once per process, never unloaded) and picks one per kind.
//!
//! Discovery order: the directories of `$TONG_PLUGIN_PATH` (or the caller's own list),
//! then the directory of the running binary or library, then
//! `/usr/local/lib/tong/plugins` and `/usr/lib/tong/plugins`. A plugin file is named
//! `libtong_plugin_<kind>_<name>.so`; the first file found for a kind and name wins.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CStr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{FileType, Mode, OFlags, Stat, CWD};

use tong_abi::{
    Bytes, CgroupOps, ChildError, NamespaceOps, NetworkOps, PluginDescriptor, PluginKind,
    RootfsOps, Sink, SpawnRequest, SpawnResult, Status, ABI_MAJOR, ABI_MINOR, ENTRY_SYMBOL,
    STATUS_OK,
};

use crate::error::{Error, Result};
use crate::plugin_cache::PriorityCache;

/// File name prefix of plugins.
pub const FILE_PREFIX: &str = "libtong_plugin_";
/// System directories searched after the caller's and the binary's own.
pub const SYSTEM_DIRS: [&str; 2] = ["/usr/local/lib/tong/plugins", "/usr/lib/tong/plugins"];

/// A plugin file found on the search path, not necessarily loaded.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub kind: PluginKind,
    pub name: String,
    pub path: PathBuf,
}

/// A loaded plugin: its descriptor and table live as long as the process.
#[derive(Debug)]
pub struct Plugin {
    pub kind: PluginKind,
    pub name: String,
    pub version: String,
    pub description: String,
    pub priority: u32,
    pub abi: (u32, u32),
    pub path: PathBuf,
    descriptor: &'static PluginDescriptor,
}

/// Where plugins are looked for.
#[derive(Clone, Debug)]
pub struct PluginHost {
    dirs: Vec<PathBuf>,
    /// The scan of `dirs`, made once per host (a create looks up four kinds).
    scanned: OnceLock<Vec<Candidate>>,
    /// Priorities of plugins loaded before, so selection loads only the plugin it picks.
    priorities: Arc<PriorityCache>,
}

impl PluginHost {
    /// The default search path: `$TONG_PLUGIN_PATH`, the binary's directory, the system
    /// directories.
    pub fn from_env() -> PluginHost {
        let mut dirs: Vec<PathBuf> = std::env::var_os("TONG_PLUGIN_PATH")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        dirs.extend(own_dirs());
        dirs.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
        PluginHost::new(dirs)
    }

    fn new(dirs: Vec<PathBuf>) -> PluginHost {
        PluginHost {
            dirs,
            scanned: OnceLock::new(),
            priorities: Arc::new(PriorityCache::new(None)),
        }
    }

    /// Keeps the priority cache in `dir` (see `plugin_cache::default_dir`), so
    /// later processes load only the plugins they pick; `None` keeps it in memory.
    #[must_use]
    pub fn with_priority_cache(mut self, dir: Option<&Path>) -> PluginHost {
        self.priorities = Arc::new(PriorityCache::new(dir));
        self
    }

    /// An explicit search path (the caller's list, then the system directories).
    pub fn with_dirs(mut dirs: Vec<PathBuf>) -> PluginHost {
        dirs.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
        PluginHost::new(dirs)
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every plugin file on the search path, first occurrence of a kind+name only.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.scanned.get_or_init(|| self.scan()).clone()
    }

    fn scan(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<Candidate> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    parse_file_name(&e.file_name().to_string_lossy()).map(|(k, n)| (k, n, e.path()))
                })
                .map(|(kind, name, path)| Candidate { kind, name, path })
                .collect();
            found.sort_by(|a, b| a.path.cmp(&b.path));
            for c in found {
                if !out.iter().any(|o| o.kind == c.kind && o.name == c.name) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Loads the plugin of `B`'s kind named `name` and checks that its probe passes.
    pub fn select_named<B: Backend>(&self, name: &str) -> Result<B> {
        let kind = B::KIND;
        let candidate = self
            .candidates()
            .into_iter()
            .find(|c| c.kind == kind && c.name == name)
            .ok_or_else(|| {
                Error::Plugin(format!(
                    "no {kind} plugin named {name:?} (looked for {FILE_PREFIX}{kind}_{name}.so in {})",
                    self.dirs_display()
                ))
            })?;
        let plugin: B = load_typed(&candidate)?;
        plugin.probe().map_err(|why| {
            Error::Plugin(format!(
                "plugin {kind}={name} ({}) cannot work here: {why}",
                plugin.path.display()
            ))
        })?;
        Ok(plugin)
    }

    /// Picks the usable plugin of `B`'s kind with the highest priority. Priorities come
    /// from the cache where the file is unchanged since it was last loaded, so in the
    /// common case only the plugin picked is loaded.
    pub fn select_best<B: Backend>(&self) -> Result<B> {
        let kind = B::KIND;
        let mut ranked: Vec<(u32, Candidate)> = Vec::new();
        for c in self.candidates().into_iter().filter(|c| c.kind == kind) {
            let priority = if let Some(p) = self.priorities.priority(&c.path) {
                p
            } else {
                let plugin: B = load_typed(&c)?;
                self.priorities.record(&c.path, plugin.priority);
                plugin.priority
            };
            ranked.push((priority, c));
        }
        // Stable: equal priorities keep the search-path order.
        ranked.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
        let mut reasons = Vec::new();
        let mut picked = None;
        for (_, candidate) in ranked {
            let plugin: B = load_typed(&candidate)?;
            match plugin.probe() {
                Ok(()) => {
                    picked = Some(plugin);
                    break;
                }
                Err(why) => reasons.push(format!("{kind}={}: {why}", plugin.name)),
            }
        }
        self.priorities.save();
        if let Some(plugin) = picked {
            return Ok(plugin);
        }
        if reasons.is_empty() {
            Err(Error::Plugin(format!(
                "no {kind} plugin found in {}",
                self.dirs_display()
            )))
        } else {
            Err(Error::Plugin(format!(
                "no usable {kind} plugin: {}",
                reasons.join("; ")
            )))
        }
    }

    /// Loads a plugin by the path recorded in a container's state, checking its kind and
    /// name.
    pub fn load_recorded<B: Backend>(&self, name: &str, path: &Path) -> Result<B> {
        let kind = B::KIND;
        let plugin = match load(path) {
            Ok(p) => p,
            // The file moved (reinstall): look it up by name.
            Err(_) if !path.exists() => return self.select_named(name),
            Err(e) => return Err(e),
        };
        if plugin.kind != kind || plugin.name != name {
            return Err(Error::Plugin(format!(
                "plugin {} is {}={}, the container was made with {kind}={name}",
                path.display(),
                plugin.kind,
                plugin.name
            )));
        }
        typed(plugin)
    }

    fn dirs_display(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Loads a plugin file found on the search path: its descriptor must say the kind and
/// the name its file name says, or a lookup by name would find a different plugin than
/// the one it asked for (and a container recorded with one name could not be found again).
pub fn load_candidate(candidate: &Candidate) -> Result<&'static Plugin> {
    let plugin = load(&candidate.path)?;
    if plugin.kind != candidate.kind || plugin.name != candidate.name {
        return Err(Error::Plugin(format!(
            "plugin {} calls itself {}={:?}, but its file name says {}={:?}",
            candidate.path.display(),
            plugin.kind,
            plugin.name,
            candidate.kind,
            candidate.name
        )));
    }
    Ok(plugin)
}

/// [`load_candidate`] as a backend of kind `B::KIND`.
fn load_typed<B: Backend>(candidate: &Candidate) -> Result<B> {
    typed(load_candidate(candidate)?)
}

/// The directories beside the running binary (and `../lib/tong/plugins` for an install
/// under a prefix).
fn own_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = own_library_dir() {
        out.push(dir);
    }
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        if let Some(dir) = exe.parent() {
            out.push(dir.to_path_buf());
            if let Some(prefix) = dir.parent() {
                out.push(prefix.join("lib/tong/plugins"));
            }
        }
    }
    out.dedup();
    out
}

/// When tong-core is inside a shared library (libtong.so), the directory holding it and
/// its `tong/plugins` subdirectory come first.
fn own_library_dir() -> Option<PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = own_library_dir as *const c_void;
    // SAFETY: dladdr only reads the address and fills the struct we own.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so the struct is initialised.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic linker.
    let file = PathBuf::from(
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned(),
    );
    let is_library = file
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("libtong.so"));
    if is_library {
        file.parent().map(|d| d.join("tong/plugins"))
    } else {
        None
    }
}

/// `libtong_plugin_cgroup_v1.so` → (cgroup, "v1").
pub fn parse_file_name(file: &str) -> Option<(PluginKind, String)> {
    let rest = file.strip_prefix(FILE_PREFIX)?.strip_suffix(".so")?;
    let (kind, name) = rest.split_once('_')?;
    let kind = PluginKind::parse(kind)?;
    (!name.is_empty()).then(|| (kind, name.to_string()))
}

/// Why a directory on the way to a plugin, or the plugin itself, is not to be trusted, or
/// `None`. Anything others could change would run as the caller (often root), so every
/// step must be owned by root or the caller and not writable by group or others, as a
/// setuid program checks its paths. One exception for ancestors: a root-owned sticky
/// directory (`/tmp`, `/dev/shm`) lets only an entry's owner rename or remove the entry,
/// and the entry below it is checked in turn; the plugin's own directory has no exception.
fn distrust(st: &Stat, euid: u32, sticky_allowed: bool) -> Option<String> {
    if st.st_uid != 0 && st.st_uid != euid {
        return Some(format!(
            "it is owned by uid {}, neither root nor the caller",
            st.st_uid
        ));
    }
    let mode = st.st_mode & 0o7777;
    let sticky_root_dir = sticky_allowed && st.st_uid == 0 && mode & libc::S_ISVTX != 0;
    if mode & 0o022 != 0 && !sticky_root_dir {
        return Some(format!("it is writable by group or others (mode {mode:o})"));
    }
    None
}

fn plugin_os_error(path: &Path, e: rustix::io::Errno) -> Error {
    Error::Plugin(format!(
        "plugin {}: {}",
        path.display(),
        std::io::Error::from(e)
    ))
}

/// Directories already checked from `/` down, by path, held open: the plugins of one
/// directory are opened relative to it instead of walking the chain again for each.
type CheckedDirs = HashMap<PathBuf, OwnedFd>;

/// Opens the plugin at the absolute `path` for loading, checking every directory from `/`
/// down and then the file itself. Each step is opened relative to the one checked before
/// it, without following symbolic links, so the chain checked is the chain used: a
/// directory swapped after its check is never walked, and the file loaded (through
/// `/proc/self/fd`) is the one whose owner and mode were read.
pub fn open_trusted(path: &Path) -> Result<OwnedFd> {
    open_checked(path, &mut CheckedDirs::new()).map(|(file, _)| file)
}

/// As `open_trusted`, with the directories checked before; also returns the file's stat.
fn open_checked(path: &Path, checked: &mut CheckedDirs) -> Result<(OwnedFd, Stat)> {
    let euid = nix::unistd::geteuid().as_raw();
    let refuse = |what: &str, p: &Path, why: String| {
        Error::Plugin(format!("refusing {what} {}: {why}", p.display()))
    };
    let io_error = |what: &str, p: &Path, e: rustix::io::Errno| {
        if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
            refuse(what, p, "it is a symbolic link or not a directory".into())
        } else {
            Error::Plugin(format!(
                "{what} {}: {}",
                p.display(),
                std::io::Error::from(e)
            ))
        }
    };
    let (Some(file_name), Some(parent)) = (path.file_name(), path.parent()) else {
        return Err(Error::Plugin(format!(
            "plugin path {} is not a file path",
            path.display()
        )));
    };
    if !path.is_absolute() {
        return Err(Error::Plugin(format!(
            "plugin path {} is not absolute",
            path.display()
        )));
    }
    // A directory checked before is held open, so nothing above it can swap it; only
    // its own owner and mode can have changed since, and they are checked again.
    if let Some(dir) = checked.get(parent) {
        let st = rustix::fs::fstat(dir).map_err(|e| io_error("plugin directory", parent, e))?;
        if let Some(why) = distrust(&st, euid, false) {
            checked.remove(parent);
            return Err(refuse("plugin directory", parent, why));
        }
    } else {
        let dirs: Vec<&Path> = parent.ancestors().collect();
        let mut dir: Option<OwnedFd> = None;
        // From `/` down to the plugin's own directory.
        for (depth, dir_path) in dirs.iter().rev().enumerate() {
            let name = dir_path.file_name().map_or(Path::new("/"), Path::new);
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let at = dir.as_ref().map_or(CWD, AsFd::as_fd);
            let next = rustix::fs::openat(at, name, flags, Mode::empty())
                .map_err(|e| io_error("plugin directory", dir_path, e))?;
            let st =
                rustix::fs::fstat(&next).map_err(|e| io_error("plugin directory", dir_path, e))?;
            let own_dir = depth + 1 == dirs.len();
            if let Some(why) = distrust(&st, euid, !own_dir) {
                return Err(refuse("plugin directory", dir_path, why));
            }
            dir = Some(next);
        }
        // An absolute path has at least `/` above it, so the walk opened something.
        let Some(dir) = dir else {
            return Err(Error::Plugin(format!(
                "plugin path {} has no directory",
                path.display()
            )));
        };
        checked.insert(parent.to_path_buf(), dir);
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file =
        rustix::fs::openat(&checked[parent], file_name, flags, Mode::empty()).map_err(|e| {
            if e == rustix::io::Errno::LOOP {
                refuse("plugin", path, "it is a symbolic link".into())
            } else {
                plugin_os_error(path, e)
            }
        })?;
    let st = rustix::fs::fstat(&file).map_err(|e| plugin_os_error(path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(refuse("plugin", path, "it is not a regular file".into()));
    }
    if let Some(why) = distrust(&st, euid, false) {
        return Err(refuse("plugin", path, why));
    }
    Ok((file, st))
}

/// The plugins loaded in this process (a library is opened once and never closed), by
/// the path a caller gave and by file, and the directories checked on the way.
#[derive(Default)]
struct Registry {
    by_path: HashMap<PathBuf, &'static Plugin>,
    by_file: HashMap<(u64, u64), &'static Plugin>,
    checked: CheckedDirs,
}

fn registry() -> &'static Mutex<Registry> {
    static LOADED: OnceLock<Mutex<Registry>> = OnceLock::new();
    LOADED.get_or_init(Mutex::default)
}

/// Loads (or returns the already loaded) plugin at `path`, after the trust and ABI checks.
pub fn load(path: &Path) -> Result<&'static Plugin> {
    let mut loaded = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Known by the name the caller gave: no path resolution on every call into an
    // already loaded plugin.
    if let Some(p) = loaded.by_path.get(path) {
        return Ok(p);
    }
    let given = path.to_path_buf();
    // The path as given, when its walk succeeds; else (a symbolic link on the way, such
    // as /lib on merged-/usr systems) the walk of its canonical form, whose errors are
    // the ones reported.
    let (path, (file, st)) = match open_checked(path, &mut loaded.checked) {
        Ok(opened) => (given.clone(), opened),
        Err(first) => {
            let canonical = std::fs::canonicalize(path)
                .map_err(|e| Error::Plugin(format!("plugin {}: {e}", path.display())))?;
            if canonical == path {
                return Err(first);
            }
            let opened = open_checked(&canonical, &mut loaded.checked)?;
            (canonical, opened)
        }
    };
    let identity = (st.st_dev, st.st_ino);
    // The same library under another name: one copy, one set of globals.
    if let Some(&p) = loaded.by_file.get(&identity) {
        loaded.by_path.insert(given, p);
        return Ok(p);
    }
    let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: loading a library runs its initialisers; the open file passed the trust
    // checks (it and every directory above it owned by root or us, not writable by
    // others), which is the most a host can check.
    let lib = unsafe { libloading::Library::new(&by_fd) }
        .map_err(|e| Error::Plugin(format!("cannot load plugin {}: {e}", path.display())))?;
    // The descriptor stays open for the life of the process, as the library does: the
    // dynamic linker knows the library by the name `/proc/self/fd/N` and would hand it
    // back for a later plugin opened at a reused N.
    let _ = file.into_raw_fd();
    // Never unloaded (never dropped, so never dlclose'd): descriptors and function
    // tables point into the library. Not boxed and leaked: leak checkers would report it.
    let lib = std::mem::ManuallyDrop::new(lib);
    // SAFETY: the symbol is declared with the type every plugin exports (tong_abi::EntryFn).
    let entry = unsafe { lib.get::<tong_abi::EntryFn>(ENTRY_SYMBOL.as_bytes()) }.map_err(|_| {
        Error::Plugin(format!(
            "{} is not a tong plugin: no {ENTRY_SYMBOL} symbol",
            path.display()
        ))
    })?;
    // SAFETY: calling the plugin's entry point with our major, as the ABI defines.
    let desc = unsafe { entry(ABI_MAJOR) };
    if desc.is_null() {
        return Err(Error::Plugin(format!(
            "plugin {} does not support plugin ABI {ABI_MAJOR}.{ABI_MINOR}",
            path.display()
        )));
    }
    // SAFETY: a non-null descriptor is static data in the (never unloaded) library.
    let desc: &'static PluginDescriptor = unsafe { &*desc };
    let plugin = describe(desc, &path)?;
    hand_over_warning_sink(desc);
    let plugin: &'static Plugin = Box::leak(Box::new(plugin));
    loaded.by_file.insert(identity, plugin);
    loaded.by_path.insert(given, plugin);
    loaded.by_path.insert(path, plugin);
    Ok(plugin)
}

/// The sink every plugin's warnings come through (ABI 1.2): into the engine's log.
struct WarningSink(Sink);

// SAFETY: the sink has no context (null ctx) and its function is thread-safe.
unsafe impl Sync for WarningSink {}

static WARNING_SINK: WarningSink = WarningSink(Sink {
    ctx: std::ptr::null_mut(),
    write: Some(plugin_warning),
});

/// A plugin's warning, to the log of the engine call this thread is making (stderr on a
/// thread of the plugin's own).
unsafe extern "C" fn plugin_warning(_ctx: *mut c_void, data: *const u8, len: usize) {
    if data.is_null() {
        return;
    }
    // SAFETY: the plugin's bytes, readable for this call (the Sink contract).
    let bytes = unsafe { std::slice::from_raw_parts(data, len) };
    // No unwind may cross back into the plugin.
    let _ = std::panic::catch_unwind(|| {
        crate::log::warn(format_args!("{}", String::from_utf8_lossy(bytes)));
    });
}

/// Gives a 1.2 plugin the warning sink; an older one keeps writing to stderr itself.
fn hand_over_warning_sink(desc: &'static PluginDescriptor) {
    let covers = std::mem::offset_of!(PluginDescriptor, set_warning_sink)
        + std::mem::size_of::<Option<unsafe extern "C" fn(*const Sink)>>();
    if desc.struct_size < covers {
        return;
    }
    if let Some(set) = desc.set_warning_sink {
        // SAFETY: the plugin's own function, called as ABI 1.2 defines, with a static sink.
        unsafe { set(&raw const WARNING_SINK.0) };
    }
}

/// Checks a descriptor's versions and sizes and reads its strings.
fn describe(desc: &'static PluginDescriptor, path: &Path) -> Result<Plugin> {
    if desc.abi_major != ABI_MAJOR {
        return Err(Error::Plugin(format!(
            "plugin {} was built for plugin ABI {}.{}, this tong speaks {ABI_MAJOR}.{ABI_MINOR}",
            path.display(),
            desc.abi_major,
            desc.abi_minor
        )));
    }
    if desc.struct_size < tong_abi::DESCRIPTOR_SIZE_1_0 || desc.ops.is_null() || desc.name.is_null()
    {
        return Err(Error::Plugin(format!(
            "plugin {} has a malformed descriptor",
            path.display()
        )));
    }
    let kind = PluginKind::from_raw(desc.kind).ok_or_else(|| {
        Error::Plugin(format!(
            "plugin {} has unknown kind {}",
            path.display(),
            desc.kind
        ))
    })?;
    // SAFETY: ops is non-null and every table starts with its struct_size.
    let ops_size = unsafe { *desc.ops.cast::<usize>() };
    let needed = match kind {
        PluginKind::Namespace => std::mem::size_of::<NamespaceOps>(),
        // A 1.0 plugin has no warm_up; callers check before using it.
        PluginKind::Cgroup => tong_abi::CGROUP_OPS_SIZE_1_0,
        PluginKind::Rootfs => std::mem::size_of::<RootfsOps>(),
        PluginKind::Network => std::mem::size_of::<NetworkOps>(),
    };
    if ops_size < needed {
        return Err(Error::Plugin(format!(
            "plugin {} has a {kind} table of {ops_size} bytes, ABI {ABI_MAJOR}.0 needs {needed}",
            path.display()
        )));
    }
    let text = |p: *const std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: descriptor strings are static and NUL-terminated.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    Ok(Plugin {
        kind,
        name: text(desc.name),
        version: text(desc.version),
        description: text(desc.description),
        priority: desc.priority,
        abi: (desc.abi_major, desc.abi_minor),
        path: path.to_path_buf(),
        descriptor: desc,
    })
}

/// Collects a plugin's status and error message into a `Result`.
fn call(plugin: &Plugin, what: &str, f: impl FnOnce(*const Sink) -> Status) -> Result<()> {
    let mut msg = Vec::new();
    let sink = Sink::for_vec(&mut msg);
    let watch = crate::watchdog::arm(|| format!("{}={} {what}", plugin.kind, plugin.name));
    let status = f(&raw const sink);
    drop(watch);
    if status == STATUS_OK {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&msg);
        let msg = if msg.is_empty() {
            format!("failed with status {status}")
        } else {
            msg.into_owned()
        };
        Err(Error::Plugin(format!(
            "{}={} {what}: {msg}",
            plugin.kind, plugin.name
        )))
    }
}

/// Like [`call`] for calls that write bytes to an output sink.
fn call_out(
    plugin: &Plugin,
    what: &str,
    f: impl FnOnce(*const Sink, *const Sink) -> Status,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let out_sink = Sink::for_vec(&mut out);
    call(plugin, what, |err| f(&raw const out_sink, err))?;
    Ok(out)
}

impl Plugin {
    /// Runs the plugin's probe; the error is its reason.
    pub fn probe(&self) -> std::result::Result<(), String> {
        let Some(probe) = self.descriptor.probe else {
            return Ok(());
        };
        let mut reason = Vec::new();
        let sink = Sink::for_vec(&mut reason);
        let watch = crate::watchdog::arm(|| format!("{}={} probe", self.kind, self.name));
        // SAFETY: probe is the plugin's function, given a live sink.
        let status = unsafe { probe(&raw const sink) };
        drop(watch);
        if status == STATUS_OK {
            Ok(())
        } else if reason.is_empty() {
            Err(format!("probe failed with status {status}"))
        } else {
            Err(String::from_utf8_lossy(&reason).into_owned())
        }
    }
}

/// A loaded plugin whose kind is known at compile time: one handle type per kind, so a
/// cgroup operation on a rootfs plugin does not compile. Handles are made only by the
/// host's selection functions (and [`load_backend`]), which check the descriptor's kind.
pub trait Backend: sealed::Wrap + Copy + std::ops::Deref<Target = Plugin> {
    /// The kind of plugin this handle drives.
    const KIND: PluginKind;
}

mod sealed {
    /// Outside this module no handle can be made from an unchecked plugin.
    pub trait Wrap {
        /// Wraps a plugin whose kind was checked to be the handle's.
        fn wrap(plugin: &'static super::Plugin) -> Self;
    }
}

/// Wraps `plugin` in the handle of its kind, refusing another kind.
fn typed<B: Backend>(plugin: &'static Plugin) -> Result<B> {
    if plugin.kind == B::KIND {
        Ok(B::wrap(plugin))
    } else {
        Err(Error::Plugin(format!(
            "plugin {} says it is a {} plugin, not {}",
            plugin.path.display(),
            plugin.kind,
            B::KIND
        )))
    }
}

/// Loads the plugin at `path` (see [`load`]) as a backend of kind `B::KIND`.
pub fn load_backend<B: Backend>(path: &Path) -> Result<B> {
    typed(load(path)?)
}

macro_rules! backend {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $ops:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name(&'static Plugin);

        impl sealed::Wrap for $name {
            fn wrap(plugin: &'static Plugin) -> Self {
                $name(plugin)
            }
        }

        impl Backend for $name {
            const KIND: PluginKind = $kind;
        }

        impl std::ops::Deref for $name {
            type Target = Plugin;
            fn deref(&self) -> &Plugin {
                self.0
            }
        }

        impl $name {
            /// The plugin behind the handle.
            pub fn plugin(self) -> &'static Plugin {
                self.0
            }

            /// The kind's table. A pointer, not a reference: a table from an older minor
            /// is shorter than the type. `describe` checked it covers every 1.0 field;
            /// later fields are read only after a `struct_size` check (see
            /// `CgroupBackend::warm_up`). It is static data of a never-unloaded library,
            /// of this kind (checked when the handle was made).
            fn ops(self) -> *const $ops {
                self.0.descriptor.ops.cast::<$ops>()
            }
        }
    };
}

backend!(
    /// A namespace plugin: creates the container process.
    NamespaceBackend,
    PluginKind::Namespace,
    NamespaceOps
);
backend!(
    /// A cgroup plugin: creates, limits, freezes and destroys the container's cgroup.
    CgroupBackend,
    PluginKind::Cgroup,
    CgroupOps
);
backend!(
    /// A rootfs plugin: builds the container's root filesystem.
    RootfsBackend,
    PluginKind::Rootfs,
    RootfsOps
);
backend!(
    /// A network plugin: sets up the container's network.
    NetworkBackend,
    PluginKind::Network,
    NetworkOps
);

impl NamespaceBackend {
    /// Creates the container process.
    pub fn spawn(self, req: &SpawnRequest) -> Result<SpawnResult> {
        let ops = self.ops();
        let mut out = SpawnResult {
            pid: -1,
            pidfd: -1,
            in_cgroup: 0,
        };
        // SAFETY: the request and result are live; the plugin follows the ABI.
        call(&self, "spawn", |err| unsafe {
            ((*ops).spawn)(req, &raw mut out, err)
        })?;
        Ok(out)
    }
}

impl CgroupBackend {
    /// Creates the cgroup; returns its state.
    pub fn create(self, req: &[u8]) -> Result<Vec<u8>> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sinks are live for the call.
        call_out(&self, "create", |out, err| unsafe {
            ((*ops).create)(Bytes::from_slice(req), out, err)
        })
    }

    /// A cgroup2 directory fd for CLONE_INTO_CGROUP, if the backend has one.
    pub fn clone_target(self, state: &[u8]) -> Result<Option<OwnedFd>> {
        let ops = self.ops();
        let mut fd: c_int = -1;
        // SAFETY: borrowed bytes, fd slot and sink are live for the call.
        call(&self, "clone_target", |err| unsafe {
            ((*ops).clone_target)(Bytes::from_slice(state), &raw mut fd, err)
        })?;
        // SAFETY: on success the plugin hands us ownership of fd (or -1).
        Ok((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Moves a process in.
    pub fn add_process(self, state: &[u8], pid: i32) -> Result<()> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sink are live for the call.
        call(&self, "add_process", |err| unsafe {
            ((*ops).add_process)(Bytes::from_slice(state), pid, err)
        })
    }

    /// Applies new resources.
    pub fn update(self, state: &[u8], resources: &[u8]) -> Result<()> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sink are live for the call.
        call(&self, "update", |err| unsafe {
            ((*ops).update)(Bytes::from_slice(state), Bytes::from_slice(resources), err)
        })
    }

    /// Freezes or thaws.
    pub fn set_frozen(self, state: &[u8], frozen: bool) -> Result<()> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sink are live for the call.
        call(&self, "set_frozen", |err| unsafe {
            ((*ops).set_frozen)(Bytes::from_slice(state), u32::from(frozen), err)
        })
    }

    /// Statistics JSON.
    pub fn stats(self, state: &[u8]) -> Result<Vec<u8>> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sinks are live for the call.
        call_out(&self, "stats", |out, err| unsafe {
            ((*ops).stats)(Bytes::from_slice(state), out, err)
        })
    }

    /// The pids inside.
    pub fn pids(self, state: &[u8]) -> Result<Vec<i32>> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sinks are live for the call.
        let out = call_out(&self, "pids", |out, err| unsafe {
            ((*ops).pids)(Bytes::from_slice(state), out, err)
        })?;
        serde_json::from_slice(&out).map_err(|e| {
            Error::Plugin(format!(
                "cgroup={} pids returned invalid JSON: {e}",
                self.name
            ))
        })
    }

    /// ABI 1.1: starts slow kernel work early; absent in 1.0 plugins.
    pub fn warm_up(self) -> Result<()> {
        let ops = self.ops();
        // SAFETY: every table starts with its struct_size; warm_up is read only when the
        // table is long enough to hold it.
        let warm_up = unsafe {
            if (*ops).struct_size < std::mem::size_of::<CgroupOps>() {
                return Ok(());
            }
            (*ops).warm_up
        };
        let Some(warm_up) = warm_up else {
            return Ok(());
        };
        // SAFETY: the table covers warm_up (checked above); the sink is live for the call.
        call(&self, "warm_up", |err| unsafe { warm_up(err) })
    }

    /// Kills everything inside and removes the cgroup.
    pub fn destroy(self, state: &[u8]) -> Result<()> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sink are live for the call.
        call(&self, "destroy", |err| unsafe {
            ((*ops).destroy)(Bytes::from_slice(state), err)
        })
    }
}

impl RootfsBackend {
    /// Plans the root filesystem; returns the plan and the state.
    pub fn prepare(self, req: &[u8]) -> Result<(RootfsPlan, Vec<u8>)> {
        let ops = self.ops();
        let mut plan: *mut c_void = std::ptr::null_mut();
        // SAFETY: borrowed bytes, plan slot and sinks are live for the call.
        let state = call_out(&self, "prepare", |out, err| unsafe {
            ((*ops).prepare)(Bytes::from_slice(req), &raw mut plan, out, err)
        })?;
        Ok((RootfsPlan { rootfs: self, plan }, state))
    }

    /// Undoes host-side work.
    pub fn cleanup(self, state: &[u8]) -> Result<()> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sink are live for the call.
        call(&self, "cleanup", |err| unsafe {
            ((*ops).cleanup)(Bytes::from_slice(state), err)
        })
    }
}

impl NetworkBackend {
    /// Configures the container's network; returns its state.
    pub fn setup(self, req: &[u8]) -> Result<Vec<u8>> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sinks are live for the call.
        call_out(&self, "setup", |out, err| unsafe {
            ((*ops).setup)(Bytes::from_slice(req), out, err)
        })
    }

    /// Undoes setup.
    pub fn teardown(self, state: &[u8]) -> Result<()> {
        let ops = self.ops();
        // SAFETY: borrowed bytes and sink are live for the call.
        call(&self, "teardown", |err| unsafe {
            ((*ops).teardown)(Bytes::from_slice(state), err)
        })
    }
}

/// A rootfs plan owned by the host; released when dropped (in the parent).
pub struct RootfsPlan {
    rootfs: RootfsBackend,
    plan: *mut c_void,
}

impl RootfsPlan {
    /// The child-side entry and its argument, for the child context.
    pub fn child_entry(
        &self,
    ) -> (
        unsafe extern "C" fn(*mut c_void, *mut ChildError) -> Status,
        *mut c_void,
    ) {
        // SAFETY: the table covers every 1.0 field (checked when the plugin was loaded).
        (unsafe { (*self.rootfs.ops()).child_setup }, self.plan)
    }

    /// The plugin that made the plan.
    pub fn plugin(&self) -> RootfsBackend {
        self.rootfs
    }
}

impl Drop for RootfsPlan {
    fn drop(&mut self) {
        // SAFETY: plan came from this plugin's prepare and is released exactly once; the
        // table covers every 1.0 field.
        unsafe { ((*self.rootfs.ops()).release)(self.plan) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plugin_file_names() {
        assert_eq!(
            parse_file_name("libtong_plugin_cgroup_v1.so"),
            Some((PluginKind::Cgroup, "v1".to_string()))
        );
        assert_eq!(
            parse_file_name("libtong_plugin_ns_clone3.so"),
            Some((PluginKind::Namespace, "clone3".to_string()))
        );
        assert_eq!(parse_file_name("libtong_plugin_net_.so"), None);
        assert_eq!(parse_file_name("libtong_plugin_gpu_x.so"), None);
        assert_eq!(parse_file_name("libtong.so"), None);
    }
}
