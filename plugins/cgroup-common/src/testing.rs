//! Helpers for the plugins' real-kernel tests (root, real cgroupfs, real processes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::PluginResult;

/// A container id no other test (or test run) uses.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Destroys the cgroup when dropped, so a failed assertion leaks nothing.
pub struct DestroyGuard {
    pub state: Vec<u8>,
    pub destroy: fn(&[u8]) -> PluginResult<()>,
}

impl Drop for DestroyGuard {
    fn drop(&mut self) {
        if let Err(e) = (self.destroy)(&self.state) {
            eprintln!("cleanup: destroy failed: {e}");
        }
    }
}

/// A child we started; killed (by its pid) and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// A shell that, once [`ChildGuard::start`]ed, execs a loop spinning on the CPU (so
    /// freezing shows in its utime). The exec after joining the cgroup gives it fresh
    /// memory charged to that cgroup.
    pub fn busy() -> ChildGuard {
        ChildGuard(
            Command::new("/bin/sh")
                .args(["-c", "read go; exec /bin/sh -c 'while :; do :; done'"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn busy loop"),
        )
    }

    /// Lets a [`ChildGuard::busy`] child go on.
    pub fn start(&mut self) {
        use std::io::Write as _;
        let mut stdin = self.0.stdin.take().expect("started once");
        stdin.write_all(b"go\n").expect("write to child");
        // Wait for the exec, so the caller sees the loop.
        let pid = self.pid();
        for _ in 0..5000 {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.windows(5).any(|w| w == b"while") {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("child {pid} did not exec its loop");
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime (clock ticks) of a process, from /proc/PID/stat.
pub fn utime(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the ")" that ends comm: state is the first, utime the 12th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    rest.split(' ')
        .nth(11)
        .expect("utime")
        .parse()
        .expect("utime number")
}

/// Whether a process makes no progress on the CPU for 300 ms.
pub fn is_stopped(pid: i32) -> bool {
    let before = utime(pid);
    std::thread::sleep(Duration::from_millis(300));
    utime(pid) == before
}

/// Every directory named `name` under the given roots (the hierarchies' mount points).
pub fn find_dirs_named(roots: &[PathBuf], name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                if e.file_name() == name {
                    found.push(p.clone());
                }
                walk(&p, name, found);
            }
        }
    }
    let mut found = Vec::new();
    for r in roots {
        walk(r, name, &mut found);
    }
    found
}

/// Mount points of every cgroup hierarchy.
pub fn all_cgroup_roots() -> Vec<PathBuf> {
    crate::mounts::read_mounts()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.mount_point)
        .collect()
}
