//! Ready-made network namespaces (docs/pools.md).
//!
//! Creating a network namespace costs a clone with `CLONE_NEWNET` plus bringing `lo`
//! up; a pooled one is made beforehand, off the caller's path, and joined with setns.
//! Layout under the state root (a name no container id can take: ids never start
//! with '-'):
//!
//! ```text
//! <root>/-pool/                  0700, flock'd by fill and drain
//!   netns-target                 how many ready namespaces `fill` keeps
//!   netns/making/<name>/ns       being made (only under the lock)
//!   netns/ready/<name>/ns        a fresh namespace, `lo` up, bind-mounted on `ns`
//! <container dir>/pooled-netns/ns  claimed by that container, unmounted once joined
//! ```
//!
//! A take renames one `ready/<name>` directory into the container's directory: rename
//! is atomic, so of two tongs exactly one gets it, and the bind mount moves with its
//! directory (a mount point itself cannot be renamed). A claimed namespace is never
//! returned to the pool: the container's processes are its last users and it goes with
//! them. Only namespaces no process ever entered are ready.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::{Context, Error, Result};
use crate::namespaces::NamespacePlan;

/// The pool's directory under the state root.
pub const POOL_DIR: &str = "-pool";
/// Where a container's claimed namespace is mounted until its init has joined it.
pub const CLAIMED: &str = "pooled-netns";
const TARGET_FILE: &str = "netns-target";

/// What `tong pool status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// Ready network namespaces kept by `fill` (0: the pool is off).
    pub netns_target: u32,
    /// Network namespaces ready to be taken.
    pub netns_ready: u32,
}

/// The pool's target and contents.
pub(crate) fn status(root: &Path) -> Result<PoolStatus> {
    let pool = root.join(POOL_DIR);
    if !pool.exists() {
        return Ok(PoolStatus {
            netns_target: 0,
            netns_ready: 0,
        });
    }
    check_private(&pool)?;
    Ok(PoolStatus {
        netns_target: read_target(&pool),
        netns_ready: count(&pool.join("netns/ready"))?,
    })
}

/// Sets the target to `target` (or keeps the recorded one when `None`) and makes or
/// destroys network namespaces until that many are ready. With `wait == false`, returns at
/// once when another fill holds the pool (a background refill).
pub(crate) fn fill(root: &Path, target: Option<u32>, wait: bool) -> Result<PoolStatus> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::invalid(
            "tong pool fill: only root can keep a pool of network namespaces (they are bind-mounted)",
        ));
    }
    // A background refill never makes a pool a drain removed meanwhile.
    let lock = if wait {
        Locked::open(root)?
    } else {
        Locked::open_existing(root, false).ok().flatten()
    };
    let Some(lock) = lock else {
        return status(root);
    };
    lock.discard_unfinished()?;
    let target = match target {
        Some(n) => {
            write_target(&lock.path, n)?;
            n
        }
        None => read_target(&lock.path),
    };
    let ready = lock.path.join("netns/ready");
    while count(&ready)? < target {
        lock.make_netns()?;
    }
    // A lower target destroys the surplus.
    for entry in entries(&ready)?.iter().skip(target as usize) {
        discard_entry(entry)?;
    }
    status(root)
}

/// Sets the target to 0, destroys every pooled namespace and removes the pool.
pub(crate) fn drain(root: &Path) -> Result<PoolStatus> {
    if let Some(lock) = Locked::open_existing(root, true)? {
        lock.discard_unfinished()?;
        for entry in entries(&lock.path.join("netns/ready"))? {
            discard_entry(&entry)?;
        }
        for dir in ["netns/making", "netns/ready", "netns"] {
            remove_dir(&lock.path.join(dir))?;
        }
        remove_file(&lock.path.join(TARGET_FILE))?;
        remove_file(&lock.path.join(format!("{TARGET_FILE}.tmp")))?;
        remove_dir(&lock.path)?;
    }
    status(root)
}
/// A network namespace claimed by a container, mounted in its directory until the
/// container's init has joined it.
pub(crate) struct Claim {
    inode: u64,
    container: PathBuf,
}

impl Claim {
    /// Waits until `pid` is in the claimed namespace (the namespace plugin's child joins
    /// it with setns right after clone: a network backend or a hook acting on
    /// `/proc/PID/ns/net` before that would act on tong's namespace), then releases the
    /// mount: the namespace now lives as long as the container's processes. If `pid`
    /// dies first, returns at once: the caller then reports why it died.
    pub(crate) fn wait_joined(self, pid: i32) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let ns = format!("/proc/{pid}/ns/net");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::metadata(&ns) {
                Ok(m) if m.ino() == self.inode => break,
                Ok(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_micros(20));
                }
                Ok(_) => {
                    return Err(Error::Internal(format!(
                        "process {pid} did not join its pooled network namespace"
                    )))
                }
                Err(_) => break,
            }
        }
        release_claimed(&self.container)
    }
}

/// For a config that creates a network namespace (and no user namespace: the pooled
/// one belongs to tong's, where the container could not administer it), claims a ready
/// one for the container whose directory is `container`: the namespace to join, and
/// the claim to wait on. `None` when the pool is off or empty.
pub(crate) fn take_netns(
    namespaces: &NamespacePlan,
    container: &Path,
) -> Result<Option<(File, Claim)>> {
    if !namespaces.creates(CloneFlags::CLONE_NEWNET.bits())
        || namespaces.has(CloneFlags::CLONE_NEWUSER.bits())
    {
        return Ok(None);
    }
    let Some(root) = container.parent() else {
        return Ok(None);
    };
    let pool = root.join(POOL_DIR);
    let ready = pool.join("netns/ready");
    let names = match std::fs::read_dir(&ready) {
        Ok(names) => names,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::os(format!("cannot read {}", ready.display()), e)),
    };
    // A namespace planted by someone else would be joined by the container.
    check_private(&pool)?;
    let claimed = container.join(CLAIMED);
    for name in names.filter_map(std::result::Result::ok) {
        match std::fs::rename(name.path(), &claimed) {
            Ok(()) => {}
            // Another tong took it first.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::os(
                    format!("cannot claim {}", name.path().display()),
                    e,
                ))
            }
        }
        match open_netns(&claimed.join("ns")) {
            Ok((file, inode)) => {
                let claim = Claim {
                    inode,
                    container: container.to_path_buf(),
                };
                return Ok(Some((file, claim)));
            }
            // Not a mounted namespace: never join it, try the next one.
            Err(_) => release_claimed(container)?,
        }
    }
    Ok(None)
}

/// Unmounts and removes the namespace a container claimed, if any: once its init has
/// joined, the namespace lives as long as the container's processes.
pub(crate) fn release_claimed(container: &Path) -> Result<()> {
    let claimed = container.join(CLAIMED);
    if claimed.exists() {
        discard_entry(&claimed)?;
    }
    Ok(())
}

/// Opens a bind-mounted network namespace, refusing any other file; returns it with
/// its inode (which `/proc/PID/ns/net` shows for its members).
fn open_netns(path: &Path) -> Result<(File, u64)> {
    use std::os::unix::fs::MetadataExt;
    let file = File::options()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .context(|| format!("cannot open {}", path.display()))?;
    let fs = nix::sys::statfs::fstatfs(&file).context(|| format!("statfs {}", path.display()))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC
        || namespace_type(&file) != CloneFlags::CLONE_NEWNET.bits()
    {
        return Err(Error::invalid(format!(
            "{} is not a network namespace",
            path.display()
        )));
    }
    let inode = file
        .metadata()
        .context(|| format!("stat {}", path.display()))?
        .ino();
    Ok((file, inode))
}

/// The `CLONE_NEW*` type of a namespace file (NS_GET_NSTYPE), or -1. A raw ioctl:
/// neither nix nor rustix wraps it.
fn namespace_type(file: &File) -> i32 {
    /// `_IO(0xb7, 0x3)` from linux/nsfs.h.
    const NS_GET_NSTYPE: libc::Ioctl = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor's namespace.
    unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) }
}

/// The pool directory, flock'd: fill and drain run one at a time.
struct Locked {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Locked {
    /// Creates the pool if needed and locks it.
    fn open(root: &Path) -> Result<Option<Locked>> {
        let path = root.join(POOL_DIR);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in [
            root.to_path_buf(),
            path.join("netns/making"),
            path.join("netns/ready"),
        ] {
            builder
                .create(&dir)
                .context(|| format!("cannot create {}", dir.display()))?;
        }
        Self::lock(path, true)
    }

    /// Locks the pool if there is one; `None` if not, or if busy and `!wait`.
    fn open_existing(root: &Path, wait: bool) -> Result<Option<Locked>> {
        let path = root.join(POOL_DIR);
        if !path.exists() {
            return Ok(None);
        }
        Self::lock(path, wait)
    }

    fn lock(path: PathBuf, wait: bool) -> Result<Option<Locked>> {
        check_private(&path)?;
        let lock = File::options()
            .read(true)
            .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
            .open(&path)
            .context(|| format!("cannot open {}", path.display()))?;
        let how = if wait {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockExclusiveNonblock
        };
        let lock = match Flock::lock(lock, how) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(Error::os(format!("cannot lock {}", path.display()), e)),
        };
        // A drain may have removed the directory while we waited.
        if !path.join("netns/ready").exists() {
            return Err(Error::InvalidState(format!(
                "{} was drained meanwhile",
                path.display()
            )));
        }
        Ok(Some(Locked { path, _lock: lock }))
    }

    /// Destroys what a fill that crashed left half made (only a fill makes entries, and
    /// it holds the lock, so anything there is abandoned).
    fn discard_unfinished(&self) -> Result<()> {
        for entry in entries(&self.path.join("netns/making"))? {
            discard_entry(&entry)?;
        }
        Ok(())
    }

    /// Makes one fresh namespace with `lo` up and publishes it as ready.
    fn make_netns(&self) -> Result<()> {
        let name = unique_name();
        let making = self.path.join("netns/making").join(&name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&making)
            .context(|| format!("cannot create {}", making.display()))?;
        let target = making.join("ns");
        File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .context(|| format!("cannot create {}", target.display()))?;
        // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own
        // makes the namespace, brings lo up and pins it, then ends.
        let pin = target.clone();
        std::thread::spawn(move || new_pinned_netns(&pin))
            .join()
            .map_err(|_| Error::Internal("pool: netns thread panicked".into()))??;
        crate::fault::point("pool:netns-mounted", 0);
        let ready = self.path.join("netns/ready").join(&name);
        std::fs::rename(&making, &ready).context(|| format!("cannot publish {}", ready.display()))
    }
}

/// On a thread of its own: a new network namespace, `lo` up, bind-mounted on `target`.
fn new_pinned_netns(target: &Path) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context(|| "unshare(CLONE_NEWNET)".to_string())?;
    loopback_up()?;
    // The type is ignored for a bind mount; named, not NULL, for checkers such as
    // valgrind that read it whatever the flags.
    mount(
        Some("/proc/thread-self/ns/net"),
        target,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| {
        format!(
            "cannot bind-mount a network namespace on {}",
            target.display()
        )
    })
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context(|| "socket for lo".to_string())?;
    tong_sys::interface_up(sock.as_fd(), c"lo").map_err(|(step, errno)| {
        let what = match step {
            tong_sys::InterfaceStep::GetFlags => "SIOCGIFFLAGS lo",
            tong_sys::InterfaceStep::SetFlags => "SIOCSIFFLAGS lo",
        };
        Error::os(what, std::io::Error::from_raw_os_error(errno))
    })
}

/// Unmounts (if mounted) and removes an entry directory `<dir>/ns`.
fn discard_entry(dir: &Path) -> Result<()> {
    let ns = dir.join("ns");
    match umount2(&ns, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a fill that died before its mount).
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(Error::os(
                format!("cannot unmount {}", ns.display()),
                std::io::Error::from(e),
            ))
        }
    }
    remove_file(&ns)?;
    remove_dir(dir)
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::os(format!("cannot read {}", dir.display()), e)),
    }
}

fn count(dir: &Path) -> Result<u32> {
    Ok(u32::try_from(entries(dir)?.len()).unwrap_or(u32::MAX))
}

fn read_target(pool: &Path) -> u32 {
    std::fs::read_to_string(pool.join(TARGET_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_target(pool: &Path, n: u32) -> Result<()> {
    let path = pool.join(TARGET_FILE);
    let tmp = pool.join(format!("{TARGET_FILE}.tmp"));
    std::fs::write(&tmp, format!("{n}\n")).context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).context(|| format!("cannot write {}", path.display()))
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(Error::os(format!("cannot remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(Error::os(format!("cannot remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

fn check_private(pool: &Path) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(pool).context(|| format!("cannot read {}", pool.display()))?;
    crate::private_dir::check_private("pool directory", pool, &meta)
}

/// Unique among entries: pid, time and a counter.
fn unique_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts `exe pool fill` detached (its own session, no stdio) when the pool keeps a
/// target and is below it: the refill after the caller's container is running. The
/// helper gives up at once if another fill holds the pool.
pub fn refill_in_background(root: &Path, exe: &Path) {
    let pool = root.join(POOL_DIR);
    let target = read_target(&pool);
    if target == 0 || count(&pool.join("netns/ready")).unwrap_or(0) >= target {
        return;
    }
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .args(["pool", "fill", "--background"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let _ = cmd.spawn();
}
