//! Shared helpers of the tong benches (`cargo bench -p tong-benches`).
//!
//! The benches load the plugins the workspace builds (`cargo build --release`), found
//! through `$TONG_PLUGIN_PATH` or beside the bench binary (`target/release`), and create
//! real namespaces, cgroups and containers: they need root and print SKIP otherwise.

use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tong::plugins::{Backend, NamespaceBackend};
use tong_abi::{ChildError, SpawnRequest};

/// Namespace sets of the `clone` bench: each adds to the one before.
pub const NAMESPACE_SETS: [(&str, c_int); 5] = [
    ("none", 0),
    ("pid+mnt+uts+ipc", BASIC),
    ("+net", BASIC | libc::CLONE_NEWNET),
    ("+user", BASIC | libc::CLONE_NEWNET | libc::CLONE_NEWUSER),
    (
        "+cgroup",
        BASIC | libc::CLONE_NEWNET | libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP,
    ),
];
const BASIC: c_int =
    libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;

/// True when running as root; otherwise prints SKIP for `bench`.
pub fn require_root(bench: &str) -> bool {
    tong_testkit::require_root(
        &format!("the {bench} bench"),
        "creates namespaces and cgroups",
    )
}

/// Where the plugin libraries are: the first entry of `$TONG_PLUGIN_PATH`, else the
/// directory above the bench binary (`target/release/deps/..`).
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TONG_PLUGIN_PATH")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return dir;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("bench binary directory");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// Loads the plugin `libtong_plugin_<kind>_<name>.so` of `B`'s kind from [`plugin_dir`].
pub fn plugin<B: Backend>(name: &str) -> B {
    let path = plugin_dir().join(format!("libtong_plugin_{}_{name}.so", B::KIND));
    assert!(
        path.exists(),
        "{} is missing: build the plugins first (cargo build --release --workspace) or set TONG_PLUGIN_PATH",
        path.display()
    );
    tong::plugins::load_backend(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// What the benches' own child does: optionally waits for a byte on `go_fd`, then execs
/// `/bin/true`. Everything is prepared by the parent; the child only makes syscalls.
pub struct ExecChild {
    _path: CString,
    path: *const c_char,
    argv: [*const c_char; 2],
    envp: [*const c_char; 1],
    go_fd: c_int,
}

impl ExecChild {
    fn new(go_fd: c_int) -> ExecChild {
        // The pointers point into the CString's heap buffer, which moves with it.
        let owned = CString::new("/bin/true").expect("no NUL");
        let path = owned.as_ptr();
        ExecChild {
            _path: owned,
            path,
            argv: [path, std::ptr::null()],
            envp: [std::ptr::null()],
            go_fd,
        }
    }
}

unsafe extern "C" fn exec_main(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the parent's ExecChild, alive in our copy of its memory.
    let ctx = unsafe { &*arg.cast::<ExecChild>() };
    if ctx.go_fd >= 0 {
        let mut byte = 0u8;
        // SAFETY: one byte into a local.
        if unsafe { libc::read(ctx.go_fd, std::ptr::from_mut(&mut byte).cast(), 1) } != 1 {
            return 126;
        }
    }
    // SAFETY: NUL-terminated path and arrays built by the parent.
    unsafe { libc::execve(ctx.path, ctx.argv.as_ptr(), ctx.envp.as_ptr()) };
    127
}

unsafe extern "C" fn exec_fail(_arg: *mut c_void, _err: *const ChildError) {}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel just gave us these descriptors.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Waits for EOF on `fd` (every writer closed it: exec'd or exited).
fn wait_eof(fd: RawFd) {
    let mut buf = [0u8; 16];
    loop {
        // SAFETY: reads into a local buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
        {
            return;
        }
    }
}

/// Reaps our child `pid` and returns its wait status.
pub fn reap(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, status into a local.
        let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if r == pid {
            return status;
        }
        assert!(
            std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR),
            "waitpid({pid}): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Creates a process with `ns` in the namespaces `flags` (and `cgroup_fd` for
/// CLONE_INTO_CGROUP, or -1), lets `before_go` act on its pid while it waits (when
/// given), and returns the time from the spawn call until the child has exec'd
/// `/bin/true` (its close-on-exec pipe closes). The child is reaped outside the timing.
pub fn spawn_to_exec(
    ns: NamespaceBackend,
    flags: c_int,
    cgroup_fd: RawFd,
    before_go: Option<&mut dyn FnMut(i32)>,
) -> Duration {
    spawn_joining_to_exec(ns, flags, &[], cgroup_fd, before_go)
}

/// As [`spawn_to_exec`], the child also joining the namespaces `join`.
pub fn spawn_joining_to_exec(
    ns: NamespaceBackend,
    flags: c_int,
    join: &[tong_abi::NamespaceJoin],
    cgroup_fd: RawFd,
    before_go: Option<&mut dyn FnMut(i32)>,
) -> Duration {
    let (exec_rd, exec_wr) = pipe();
    let gate = before_go.is_some().then(pipe);
    let child = ExecChild::new(gate.as_ref().map_or(-1, |(rd, _)| rd.as_raw_fd()));
    let req = SpawnRequest {
        struct_size: std::mem::size_of::<SpawnRequest>(),
        clone_flags: flags as u64,
        join: if join.is_empty() {
            std::ptr::null()
        } else {
            join.as_ptr()
        },
        join_len: join.len(),
        cgroup_fd,
        child_main: exec_main,
        child_arg: std::ptr::from_ref(&child).cast_mut().cast(),
        child_fail: exec_fail,
    };
    let start = Instant::now();
    let spawned = ns.spawn(&req).unwrap_or_else(|e| panic!("spawn: {e}"));
    drop(exec_wr);
    if let (Some(f), Some((rd, wr))) = (before_go, gate) {
        drop(rd);
        f(spawned.pid);
        // SAFETY: one byte from a local to our pipe.
        let n = unsafe { libc::write(wr.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        assert_eq!(n, 1, "go byte");
    }
    wait_eof(exec_rd.as_raw_fd());
    let elapsed = start.elapsed();
    if spawned.pidfd >= 0 {
        // SAFETY: spawn handed us this pidfd.
        drop(unsafe { OwnedFd::from_raw_fd(spawned.pidfd) });
    }
    let status = reap(spawned.pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child did not exec /bin/true (wait status {status:#x})"
    );
    elapsed
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a busybox bundle running `/bin/true` with `ci/make-bundle`.
pub fn make_bundle(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/make-bundle");
    let out = std::process::Command::new(&script)
        .arg(dir)
        .arg("/bin/true")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "make-bundle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Edits a bundle's config.json.
pub fn edit_config(bundle: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config.json"))
            .expect("config.json is JSON");
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("encode"))
        .expect("write config.json");
}

/// A child that blocks in pause() until killed: something to put in a cgroup.
pub struct Sleeper(pub i32);

impl Sleeper {
    pub fn start() -> Sleeper {
        // SAFETY: raw fork (no atfork handlers); the child only calls pause and _exit.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as u64,
                std::ptr::null_mut::<c_void>(),
                std::ptr::null_mut::<c_int>(),
                std::ptr::null_mut::<c_int>(),
                0usize,
            )
        };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            loop {
                // SAFETY: pause has no preconditions; a signal ends us.
                unsafe { libc::pause() };
            }
        }
        Sleeper(pid as i32)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        // SAFETY: kill and reap our own child (it may already be dead: the cgroup's
        // destroy kills it).
        unsafe { libc::kill(self.0, libc::SIGKILL) };
        reap(self.0);
    }
}
