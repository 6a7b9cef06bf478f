//! The rootfs conformance suite, run through the `tong` binary against every rootfs
//! backend (pivot, chroot, overlay): mounts with the right flags seen from inside
//! (`/proc/self/mountinfo`), masked and read-only paths, a read-only root, devices,
//! propagation with host-side shared binds, and symlink escape attempts. Then the
//! overlay backend's own promises (one rootfs, many containers, a pristine bundle, no
//! layer left after delete) and `--no-pivot`. After every test no mount of the test
//! is left on the host.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use common::{config, root_or_skip, tong_bin, unique_id, Bundle, Tong};
use serde_json::{json, Value};

const BACKENDS: [&str; 3] = ["pivot", "chroot", "overlay"];

/// Root and every rootfs plugin built; otherwise says why the test skips (or fails,
/// when a plugin is missing: the suite must not pass by testing nothing).
fn ready(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    for b in BACKENDS {
        let so = tong_bin().with_file_name(format!("libtong_plugin_rootfs_{b}.so"));
        assert!(
            so.exists(),
            "{} is missing: cargo build --workspace first",
            so.display()
        );
    }
    true
}

/// A state root and a rootfs of the test's own, or `None` when the test skips.
fn start(test: &str) -> Option<(Tong, OwnRootfs)> {
    ready(test).then(|| (Tong::new(), OwnRootfs::new()))
}

/// A busybox rootfs of the test's own, in a temp dir (removed on drop), that the test
/// may plant files and symlinks in.
struct OwnRootfs {
    dir: tempfile::TempDir,
}

impl OwnRootfs {
    fn new() -> OwnRootfs {
        let dir = tempfile::Builder::new()
            .prefix("tong-it-rootfs-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("rootfs");
        for sub in ["bin", "etc", "tmp", "proc", "dev", "sys"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let shared = common::rootfs();
        std::fs::copy(shared.join("bin/busybox"), root.join("bin/busybox")).unwrap();
        for e in std::fs::read_dir(shared.join("bin")).unwrap().flatten() {
            if e.file_name() != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(e.file_name()))
                    .unwrap();
            }
        }
        std::fs::copy(shared.join("etc/passwd"), root.join("etc/passwd")).unwrap();
        OwnRootfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A host directory beside the rootfs (outside it).
    fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Every file, directory and symlink under `dir` with its type, mode, size and mtime:
/// equal snapshots mean nothing was written.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            out.insert(
                e.path(),
                format!(
                    "{:o} {} {}",
                    m.mode(),
                    m.len(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000
                ),
            );
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Host mounts a test makes; detached in reverse order on drop, failure or not.
#[derive(Default)]
struct HostMounts(Vec<PathBuf>);

impl HostMounts {
    fn mount(&mut self, src: &str, target: &Path, fstype: Option<&str>, flags: libc::c_ulong) {
        let c = |s: &str| CString::new(s).unwrap();
        let (src, tgt) = (c(src), c(target.to_str().unwrap()));
        let fstype = fstype.map(c);
        // SAFETY: NUL-terminated strings alive for the call; data is null.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                tgt.as_ptr(),
                fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                flags,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        );
        if flags & (libc::MS_SHARED | libc::MS_PRIVATE | libc::MS_SLAVE) == 0 {
            self.0.push(target.to_path_buf());
        }
    }

    /// A shared bind of `dir` onto itself.
    fn shared_bind(&mut self, dir: &Path) {
        self.mount(dir.to_str().unwrap(), dir, None, libc::MS_BIND);
        self.mount("none", dir, None, libc::MS_SHARED);
    }

    fn tmpfs(&mut self, dir: &Path) {
        self.mount("tong-it", dir, Some("tmpfs"), 0);
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let c = CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Asserts that no host mount point lies under any of `dirs`.
fn assert_no_host_mount_under(dirs: &[&Path]) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in info.lines() {
        let mp = line.split(' ').nth(4).unwrap_or("");
        for d in dirs {
            assert!(
                !Path::new(mp).starts_with(d),
                "mount left on the host: {line}"
            );
        }
    }
}

/// One line of mountinfo.
#[derive(Debug, Clone)]
struct MountLine {
    /// The path inside the filesystem that is mounted (`/ID` for a cgroup bind).
    root: String,
    point: String,
    opts: Vec<String>,
    fstype: String,
    super_opts: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(MountLine {
                root: (*left.get(3)?).to_string(),
                point: (*left.get(4)?).to_string(),
                opts: left.get(5)?.split(',').map(String::from).collect(),
                fstype: (*right.first()?).to_string(),
                super_opts: right
                    .get(2)
                    .map(|s| s.split(',').map(String::from).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// What the container reported: its mountinfo and named yes/no probes.
struct Report {
    mounts: Vec<MountLine>,
    probes: BTreeMap<String, bool>,
    raw: String,
}

impl Report {
    fn parse(out: &str) -> Report {
        let info = out
            .split("== mountinfo\n")
            .nth(1)
            .and_then(|s| s.split("== end\n").next())
            .unwrap_or("");
        let probes = out
            .lines()
            .filter_map(|l| l.strip_prefix("PROBE "))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v == "yes"))
            .collect();
        Report {
            mounts: parse_mountinfo(info),
            probes,
            raw: out.to_string(),
        }
    }

    /// The topmost mount at `point`.
    fn at(&self, point: &str) -> &MountLine {
        self.mounts
            .iter()
            .rev()
            .find(|m| m.point == point)
            .unwrap_or_else(|| panic!("nothing mounted on {point} in:\n{}", self.raw))
    }

    /// Asserts that `probe` failed with `message` (e.g. "Read-only file system").
    fn refused(&self, probe: &str, message: &str) {
        self.expect(probe, false);
        let prefix = format!("ERR {probe} ");
        let err = self
            .raw
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or("");
        assert!(
            err.contains(message),
            "probe {probe}: {err:?} lacks {message:?}"
        );
    }

    fn expect(&self, probe: &str, want: bool) {
        match self.probes.get(probe) {
            Some(&got) => assert_eq!(
                got, want,
                "probe {probe}: got {got}, want {want}\n{}",
                self.raw
            ),
            None => panic!("probe {probe} did not run:\n{}", self.raw),
        }
    }

    /// Asserts per-mount options (`ro`, `nosuid`...) and superblock options.
    fn flags(&self, point: &str, opts: &[&str], super_opts: &[&str]) {
        let m = self.at(point);
        for o in opts {
            assert!(m.opts.iter().any(|x| x == o), "{point} lacks {o}: {m:?}");
        }
        for o in super_opts {
            assert!(
                m.super_opts.iter().any(|x| x == o),
                "{point} lacks superblock option {o}: {m:?}"
            );
        }
    }
}

/// Shell helpers the container scripts start with: `p NAME 'CMD'` prints
/// `PROBE NAME yes|no`, and for a failure also `ERR NAME <first line of stderr>`.
const PROBE_FN: &str = "p() { if sh -c \"$2\" >/dev/null 2>&1; then echo \"PROBE $1 yes\"; \
                        else echo \"PROBE $1 no\"; \
                        echo \"ERR $1 $(sh -c \"$2\" 2>&1 >/dev/null | head -n 1)\"; fi; }; ";

const DUMP_MOUNTINFO: &str = "echo '== mountinfo'; cat /proc/self/mountinfo; echo '== end'; ";

/// Runs `config` with `backend` to completion; returns its stdout and id. Afterwards
/// nothing of the container is left (state, cgroup, mounts).
fn run_to_end(tong: &Tong, backend: &str, cfg: &Value, test: &str) -> (String, String) {
    let bundle = Bundle::new(cfg);
    let id = unique_id(test);
    let backend_arg = format!("rootfs={backend}");
    let out = tong.run(&[
        "run",
        "--backend",
        &backend_arg,
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{backend}: tong run failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    tong.assert_clean(&id, Some(&bundle), None);
    (stdout, id)
}

/// The full mount set of a `runc spec` config plus mqueue and cgroup.
fn base_mounts() -> Vec<Value> {
    let mut m = config(&["true"])["mounts"].as_array().unwrap().clone();
    m.push(
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                  "options": ["nosuid", "noexec", "nodev"]}),
    );
    m.push(
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                  "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    m
}

fn mounts_masks_devices(backend: &str) {
    let test = format!("{backend}_mounts_masks_devices");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    let root = own.path();
    std::fs::write(root.join("etc/secret-file"), "secret").unwrap();
    std::fs::create_dir_all(root.join("etc/secret-dir")).unwrap();
    std::fs::write(root.join("etc/secret-dir/key"), "secret").unwrap();
    std::fs::create_dir_all(root.join("etc/secret-dir2")).unwrap();
    std::fs::write(root.join("etc/secret-dir2/key"), "secret").unwrap();
    std::fs::create_dir_all(root.join("etc/ro-dir")).unwrap();
    let ro_src = own.host_dir("ro-src");
    std::fs::write(ro_src.join("hello"), "from the host").unwrap();
    // A host dir with a submount, bound with ro (the top only) and rro (all of it).
    let tree = own.host_dir("tree");
    std::fs::create_dir(tree.join("sub")).unwrap();
    let mut host = HostMounts::default();
    host.tmpfs(&tree.join("sub"));

    let script = format!(
        "{PROBE_FN}{DUMP_MOUNTINFO}\
         p devnull 'echo x > /dev/null'; \
         p urandom '[ \"$(head -c 16 /dev/urandom | wc -c)\" -eq 16 ]'; \
         p zero '[ \"$(head -c 8 /dev/zero | wc -c)\" -eq 8 ]'; \
         p full 'echo x > /dev/full'; \
         p mynull 'echo x > /dev/mynull && [ -c /dev/mynull ]'; \
         p tty-node '[ -c /dev/tty ]'; \
         p ptmx '[ \"$(readlink /dev/ptmx)\" = pts/ptmx ] && [ -c /dev/pts/ptmx ]'; \
         p fd '[ \"$(readlink /dev/fd)\" = /proc/self/fd ] && ls /dev/fd/'; \
         p stdio '[ \"$(readlink /dev/stdin)\" = /proc/self/fd/0 ] && [ \"$(readlink /dev/stdout)\" = /proc/self/fd/1 ] && [ \"$(readlink /dev/stderr)\" = /proc/self/fd/2 ]'; \
         p masked-file-empty '[ -c /etc/secret-file ] && [ -z \"$(cat /etc/secret-file)\" ]'; \
         p masked-file-stays-empty 'echo x > /etc/secret-file; [ ! -s /etc/secret-file ]'; \
         p masked-dir-empty '[ -d /etc/secret-dir ] && [ -z \"$(ls -A /etc/secret-dir)\" ]'; \
         p masked-dir-write 'echo x > /etc/secret-dir/new'; \
         p masked-dir2-empty '[ -d /etc/secret-dir2 ] && [ -z \"$(ls -A /etc/secret-dir2)\" ]'; \
         p masked-dir2-write 'echo x > /etc/secret-dir2/new'; \
         p kcore-empty '[ ! -s /proc/kcore ]'; \
         p ro-dir-write 'echo x > /etc/ro-dir/new'; \
         p proc-sys-write 'echo tong > /proc/sys/kernel/hostname'; \
         p ro-bind-read 'grep -q \"from the host\" /mnt/ro-bind/hello'; \
         p ro-bind-write 'echo x > /mnt/ro-bind/new'; \
         p rro-sub-write 'echo x > /mnt/rro/sub/new'; \
         p ro-sub-write 'echo x > /mnt/ro/sub/new'; \
         p root-write 'echo x > /written-by-container'; \
         p shm-write 'echo x > /dev/shm/x'; \
         p tmp-mode '[ \"$(stat -c %a /mnt/tmp)\" = 700 ]'; \
         p shm-mode '[ \"$(stat -c %a /dev/shm)\" = 1777 ]'; \
         p cgroup-own 'for d in /sys/fs/cgroup/*/; do grep -qx 1 $d/cgroup.procs || exit 1; done'; \
         p cgroup-not-host '[ ! -d /sys/fs/cgroup/memory/tong ] && [ ! -d /sys/fs/cgroup/pids/tong ]'; \
         p cgroup-write 'mkdir /sys/fs/cgroup/pids/sub'; \
         p cgroup-dir '[ -d /sys/fs/cgroup ]'"
    );
    let mut cfg = config(&["sh", "-c", &script]);
    cfg["root"]["path"] = json!(root);
    let mut mounts = base_mounts();
    mounts.extend([
        json!({"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["size=1m", "mode=700", "noatime", "nodev"]}),
        json!({"destination": "/mnt/ro-bind", "type": "bind", "source": ro_src,
               "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}),
        json!({"destination": "/mnt/ro", "type": "bind", "source": tree,
               "options": ["rbind", "ro"]}),
        json!({"destination": "/mnt/rro", "type": "bind", "source": tree,
               "options": ["rbind", "rro"]}),
    ]);
    cfg["mounts"] = json!(mounts);
    cfg["linux"]["maskedPaths"] = json!([
        "/proc/kcore",
        "/proc/nonexistent",
        "/etc/secret-file",
        "/etc/secret-dir",
        "/etc/secret-dir2"
    ]);
    cfg["linux"]["readonlyPaths"] = json!(["/proc/sys", "/etc/ro-dir", "/nonexistent"]);
    cfg["linux"]["devices"] = json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                                       "fileMode": 0o666, "uid": 0, "gid": 0}]);
    let before = snapshot(&root);
    let (out, id) = run_to_end(&tong, backend, &cfg, &test);
    let r = Report::parse(&out);

    // Flags, read from inside.
    r.flags("/", &["rw"], &[]);
    assert_eq!(r.at("/proc").fstype, "proc");
    r.flags("/dev", &["nosuid"], &["mode=755", "size=65536k"]);
    assert_eq!(r.at("/dev").fstype, "tmpfs");
    r.flags(
        "/dev/pts",
        &["nosuid", "noexec"],
        &["mode=620", "ptmxmode=666", "gid=5"],
    );
    assert_eq!(r.at("/dev/pts").fstype, "devpts");
    // (tmpfs does not list mode=1777, its default: the shm-mode probe checks it.)
    r.flags("/dev/shm", &["nosuid", "nodev", "noexec"], &["size=65536k"]);
    r.flags("/dev/mqueue", &["nosuid", "nodev", "noexec"], &[]);
    assert_eq!(r.at("/dev/mqueue").fstype, "mqueue");
    r.flags("/sys", &["ro", "nosuid", "nodev", "noexec"], &[]);
    assert_eq!(r.at("/sys").fstype, "sysfs");
    r.flags("/sys/fs/cgroup", &["ro"], &[]);
    // Each hierarchy shows the container's own cgroup (/ID by default, as runc and crun), read-only.
    let cgroups: Vec<_> = r
        .mounts
        .iter()
        .filter(|m| m.point.starts_with("/sys/fs/cgroup/"))
        .collect();
    assert!(
        !cgroups.is_empty(),
        "no cgroup hierarchy inside:\n{}",
        r.raw
    );
    for m in cgroups {
        assert!(m.fstype.starts_with("cgroup"), "{m:?}");
        assert_eq!(m.root, format!("/{id}"), "{m:?}");
        assert!(m.opts.iter().any(|o| o == "ro"), "{m:?}");
    }
    r.flags(
        "/mnt/tmp",
        &["noatime", "nodev"],
        &["size=1024k", "mode=700"],
    );
    r.flags("/mnt/ro-bind", &["ro", "nosuid", "nodev", "noexec"], &[]);
    r.flags("/mnt/ro", &["ro"], &[]);
    r.flags("/mnt/ro/sub", &["rw"], &[]);
    r.flags("/mnt/rro", &["ro"], &[]);
    r.flags("/mnt/rro/sub", &["ro"], &[]);
    r.flags("/proc/sys", &["ro"], &[]);
    r.flags("/etc/ro-dir", &["ro"], &[]);
    // Masked directories: an empty read-only tmpfs each, shown as runc shows them
    // (the second is a bind of the first's: same flags and options).
    for dir in ["/etc/secret-dir", "/etc/secret-dir2"] {
        r.flags(dir, &["ro"], &["ro"]);
        assert_eq!(r.at(dir).fstype, "tmpfs");
        assert_eq!(r.at(dir).root, "/");
    }
    // No host mount is visible: every mount point is the root, a configured
    // destination, a masked or read-only path, or below one of them.
    let allowed = [
        "/",
        "/proc",
        "/dev",
        "/sys",
        "/mnt/tmp",
        "/mnt/ro-bind",
        "/mnt/ro",
        "/mnt/rro",
        "/etc/secret-file",
        "/etc/secret-dir",
        "/etc/secret-dir2",
        "/etc/ro-dir",
    ];
    for m in &r.mounts {
        assert!(
            allowed
                .iter()
                .any(|a| *a == m.point || Path::new(&m.point).starts_with(a) && *a != "/"),
            "{backend}: unexpected mount {} inside the container",
            m.point
        );
    }

    for probe in [
        "devnull",
        "urandom",
        "zero",
        "mynull",
        "tty-node",
        "ptmx",
        "fd",
        "stdio",
        "masked-file-empty",
        "masked-file-stays-empty",
        "masked-dir-empty",
        "masked-dir2-empty",
        "kcore-empty",
        "ro-bind-read",
        "ro-sub-write",
        "root-write",
        "shm-write",
        "tmp-mode",
        "shm-mode",
        "cgroup-dir",
        "cgroup-own",
        "cgroup-not-host",
    ] {
        r.expect(probe, true);
    }
    r.refused("full", "No space left on device");
    for probe in [
        "masked-dir-write",
        "masked-dir2-write",
        "ro-dir-write",
        "proc-sys-write",
        "ro-bind-write",
        "rro-sub-write",
    ] {
        r.refused(probe, "Read-only file system");
    }

    // Masking hid the image's files without changing them.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/secret-file")).unwrap(),
        "secret"
    );
    assert!(root.join("etc/secret-dir/key").exists());
    assert!(root.join("etc/secret-dir2/key").exists());
    // Writes to / went to the image, except with overlay (its own layer, now gone).
    assert_eq!(
        root.join("written-by-container").exists(),
        backend != "overlay",
        "{backend}: write to / landed in the wrong place"
    );
    assert!(!ro_src.join("new").exists());
    if backend == "overlay" {
        // Mount points, the masked file's writes, everything went to the layer.
        assert_eq!(
            before,
            snapshot(&root),
            "overlay: the bundle's rootfs changed"
        );
    }
    drop(host);
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

/// With runc's default capabilities (no CAP_SYS_ADMIN), masked and read-only paths can
/// be neither remounted writable nor unmounted, and stay empty or read-only.
fn masks_resist_remount(backend: &str) {
    let test = format!("{backend}_masks_resist_remount");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    let root = own.path();
    for dir in ["etc/secret-dir", "etc/secret-dir2"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join("key"), "secret").unwrap();
    }
    std::fs::write(root.join("etc/secret-file"), "secret").unwrap();
    let script = format!(
        "{PROBE_FN}{DUMP_MOUNTINFO}\
         p masked-remount 'mount -o remount,rw /etc/secret-dir'; \
         p masked2-remount 'mount -o remount,rw /etc/secret-dir2'; \
         p masked-umount 'umount /etc/secret-dir2'; \
         p masked-file-umount 'umount /etc/secret-file'; \
         p ro-remount 'mount -o remount,rw /proc/sys'; \
         p ro-umount 'umount /proc/sys'; \
         p masked-empty '[ -z \"$(ls -A /etc/secret-dir)$(ls -A /etc/secret-dir2)\" ] && [ ! -s /etc/secret-file ]'; \
         p masked2-write 'echo x > /etc/secret-dir2/new'; \
         p proc-sys-write 'echo tong > /proc/sys/kernel/hostname'"
    );
    let mut cfg = config(&["sh", "-c", &script]);
    cfg["root"]["path"] = json!(root);
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    cfg["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    cfg["linux"]["maskedPaths"] =
        json!(["/etc/secret-dir", "/etc/secret-file", "/etc/secret-dir2"]);
    cfg["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    let (out, _) = run_to_end(&tong, backend, &cfg, &test);
    let r = Report::parse(&out);
    for probe in [
        "masked-remount",
        "masked2-remount",
        "masked-umount",
        "masked-file-umount",
        "ro-remount",
        "ro-umount",
    ] {
        r.expect(probe, false);
    }
    r.expect("masked-empty", true);
    r.refused("masked2-write", "Read-only file system");
    r.refused("proc-sys-write", "Read-only file system");
    assert!(root.join("etc/secret-dir2/key").exists());
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

fn readonly_root(backend: &str) {
    let test = format!("{backend}_readonly_root");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    let script = format!(
        "{PROBE_FN}{DUMP_MOUNTINFO}\
         p root-write 'echo x > /new-file'; \
         p tmp-write 'echo x > /tmp/new-file'; \
         p shm-write 'echo x > /dev/shm/x'; \
         p devnull 'echo x > /dev/null'"
    );
    let mut cfg = config(&["sh", "-c", &script]);
    cfg["root"] = json!({"path": own.path(), "readonly": true});
    let before = snapshot(&own.path());
    let (out, _) = run_to_end(&tong, backend, &cfg, &test);
    let r = Report::parse(&out);
    r.flags("/", &["ro"], &[]);
    r.refused("root-write", "Read-only file system");
    r.refused("tmp-write", "Read-only file system");
    r.expect("shm-write", true);
    r.expect("devnull", true);
    assert!(!own.path().join("new-file").exists());
    if backend == "overlay" {
        assert_eq!(before, snapshot(&own.path()), "overlay: the bundle changed");
    }
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

fn propagation(backend: &str) {
    let test = format!("{backend}_propagation");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    // A shared host directory, bound into the container as rslave and as rprivate.
    let shared = own.host_dir("shared");
    let mut host = HostMounts::default();
    host.shared_bind(&shared);
    std::fs::create_dir(shared.join("later")).unwrap();

    let mut cfg = config(&["sleep", "60"]);
    cfg["root"]["path"] = json!(own.path());
    let mut mounts = base_mounts();
    mounts.extend([
        json!({"destination": "/mnt/slave", "type": "bind", "source": shared,
               "options": ["rbind", "rslave"]}),
        json!({"destination": "/mnt/private", "type": "bind", "source": shared,
               "options": ["rbind", "rprivate"]}),
    ]);
    cfg["mounts"] = json!(mounts);
    let bundle = Bundle::new(&cfg);
    let id = unique_id(&test);
    let backend_arg = format!("rootfs={backend}");
    tong.ok(&[
        "run",
        "-d",
        "--backend",
        &backend_arg,
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);

    // Mounted on the host after the container started: a slave sees it, private not.
    host.tmpfs(&shared.join("later"));
    let info = tong.ok(&["exec", &id, "cat", "/proc/self/mountinfo"]);
    let mounts = parse_mountinfo(&info);
    let has = |p: &str| mounts.iter().any(|m| m.point == p);
    assert!(has("/mnt/slave"), "{backend}: no /mnt/slave:\n{info}");
    assert!(
        has("/mnt/slave/later"),
        "{backend}: rslave bind did not receive the host mount:\n{info}"
    );
    assert!(
        !has("/mnt/private/later"),
        "{backend}: rprivate bind received the host mount:\n{info}"
    );
    // And nothing the container mounts goes back to the host.
    tong.ok(&["exec", &id, "mount", "-t", "tmpfs", "inner", "/mnt/slave"]);
    let host_info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_info.contains(" inner "),
        "{backend}: a container mount reached the host"
    );

    let pid = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), Some(pid));
    drop(host);
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

/// `linux.rootfsPropagation: rshared`: the container's `/` is shared (with a peer group
/// of its own), and nothing the container or tong mounts reaches the host.
fn shared_root_propagation(backend: &str) {
    let test = format!("{backend}_shared_root_propagation");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    let host_roots = |text: &str| {
        text.lines()
            .filter(|l| l.split(' ').nth(4) == Some("/"))
            .count()
    };
    let before = host_roots(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let script = format!(
        "{DUMP_MOUNTINFO} mkdir -p /tmp/m && mount -t tmpfs inner-shared /tmp/m && echo MOUNTED"
    );
    let mut cfg = config(&["sh", "-c", &script]);
    cfg["root"]["path"] = json!(own.path());
    cfg["linux"]["rootfsPropagation"] = json!("rshared");
    let (out, _) = run_to_end(&tong, backend, &cfg, &test);
    assert!(out.contains("MOUNTED"), "{out}");
    let info = out.split("== mountinfo\n").nth(1).unwrap_or("");
    let root = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or("");
    assert!(
        root.contains(" shared:"),
        "{backend}: / is not shared: {root}"
    );
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        before,
        host_roots(&host),
        "{backend}: a mount reached the host's /"
    );
    assert!(
        !host.contains("inner-shared"),
        "{backend}: a container mount reached the host"
    );
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

/// `tong run` must fail naming `expect`; the host dir `untouched` stays empty and no
/// mount is left.
fn escape_fails(
    backend: &str,
    tong: &Tong,
    own: &OwnRootfs,
    cfg: &Value,
    expect: &str,
    untouched: &Path,
) {
    let bundle = Bundle::new(cfg);
    let id = unique_id(&format!("{backend}-escape"));
    let backend_arg = format!("rootfs={backend}");
    let err = tong.fails(&[
        "run",
        "--backend",
        &backend_arg,
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains(expect),
        "{backend}: expected {expect:?} in: {err}"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
    let left: Vec<_> = std::fs::read_dir(untouched)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "{backend}: {} was written: {left:?}",
        untouched.display()
    );
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path(), Path::new("/etc")]);
}

/// A relative symlink target climbing far above any root, then naming `target`.
fn dotdot_chain_to(target: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(20),
        target.strip_prefix("/").unwrap().display()
    )
}

fn symlink_escapes(backend: &str) {
    let test = format!("{backend}_symlink_escapes");
    if !ready(&test) {
        return;
    }
    let tong = Tong::new();
    let etc_before = snapshot(Path::new("/etc"));

    // /proc -> /: proc would cover the container's whole root (or, followed on the
    // host, the host's).
    let own = OwnRootfs::new();
    let probe = own.host_dir("untouched");
    std::fs::remove_dir(own.path().join("proc")).unwrap();
    std::os::unix::fs::symlink("/", own.path().join("proc")).unwrap();
    let mut cfg = config(&["true"]);
    cfg["root"]["path"] = json!(own.path());
    escape_fails(
        backend,
        &tong,
        &own,
        &cfg,
        "mount /proc: the destination is or passes through a symlink",
        &probe,
    );
    assert!(std::fs::symlink_metadata(own.path().join("proc"))
        .unwrap()
        .is_symlink());

    // /dev -> /etc: device nodes would be made in /etc.
    let own = OwnRootfs::new();
    let probe = own.host_dir("untouched");
    std::fs::remove_dir(own.path().join("dev")).unwrap();
    std::os::unix::fs::symlink("/etc", own.path().join("dev")).unwrap();
    cfg["root"]["path"] = json!(own.path());
    escape_fails(
        backend,
        &tong,
        &own,
        &cfg,
        "mount /dev: the destination is or passes through a symlink",
        &probe,
    );

    // A ../../ chain naming a host directory: resolved inside the rootfs it names
    // nothing, and tong refuses to guess.
    let own = OwnRootfs::new();
    let target = own.host_dir("target");
    let chain = dotdot_chain_to(&target);
    std::os::unix::fs::symlink(&chain, own.path().join("mnt")).unwrap();
    cfg["root"]["path"] = json!(own.path());
    let mut mounts = base_mounts();
    mounts.push(json!({"destination": "/mnt/sub", "type": "tmpfs", "source": "tmpfs"}));
    cfg["mounts"] = json!(mounts);
    escape_fails(
        backend,
        &tong,
        &own,
        &cfg,
        "mount /mnt/sub: open (a dangling symlink is in the way) in the rootfs",
        &target,
    );

    // A device path through a ../../ chain: same refusal, nothing created outside.
    let own = OwnRootfs::new();
    let target = own.host_dir("target");
    let chain = dotdot_chain_to(&target);
    cfg["root"]["path"] = json!(own.path());
    // /dev is a fresh tmpfs, so plant the chain one level down, in a bind.
    let devsrc = own.host_dir("devsrc");
    std::os::unix::fs::symlink(&chain, devsrc.join("up")).unwrap();
    let mut mounts = base_mounts();
    mounts.push(
        json!({"destination": "/dev/bound", "type": "bind", "source": devsrc, "options": ["bind"]}),
    );
    cfg["mounts"] = json!(mounts);
    cfg["linux"]["devices"] =
        json!([{"path": "/dev/bound/up/evil", "type": "c", "major": 1, "minor": 3}]);
    escape_fails(
        backend,
        &tong,
        &own,
        &cfg,
        "create device /dev/bound/up/evil",
        &target,
    );

    assert_eq!(
        etc_before,
        snapshot(Path::new("/etc")),
        "{backend}: the host's /etc changed"
    );
}

/// `tmpcopyup`: the tmpfs on /data starts with what the image had there (data, modes,
/// owners, symlinks as symlinks, hostile ones included, never followed), takes the
/// writes, and the image is unchanged afterwards. A tmpfs without it starts empty.
fn tmpcopyup(backend: &str) {
    use std::os::unix::fs::{chown, lchown, symlink, PermissionsExt};
    let test = format!("{backend}_tmpcopyup");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    let root = own.path();
    let host = own.host_dir("hostside");
    std::fs::write(host.join("host-secret"), "host").unwrap();
    let data = root.join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    std::fs::write(data.join("file"), "image file\n").unwrap();
    mode(&data.join("file"), 0o640);
    chown(data.join("file"), Some(1234), Some(5678)).unwrap();
    std::fs::write(data.join("sub/inner"), "inner\n").unwrap();
    mode(&data.join("sub/inner"), 0o600);
    chown(data.join("sub/inner"), Some(1000), Some(1000)).unwrap();
    mode(&data.join("sub"), 0o750);
    chown(data.join("sub"), Some(1000), Some(1001)).unwrap();
    mode(&data, 0o751);
    chown(&data, Some(2000), Some(2001)).unwrap();
    symlink("sub/inner", data.join("link")).unwrap();
    lchown(data.join("link"), Some(3000), Some(3001)).unwrap();
    // Hostile links: followed by the copy, they would bring the host's files in.
    let chain = dotdot_chain_to(&host);
    symlink("/", data.join("to-root")).unwrap();
    symlink(&chain, data.join("up")).unwrap();
    symlink(&host, data.join("abs-host")).unwrap();
    std::fs::create_dir_all(root.join("plain")).unwrap();
    std::fs::write(root.join("plain/hidden"), "x").unwrap();

    let script = format!(
        "{PROBE_FN}{DUMP_MOUNTINFO}\
         for f in /data /data/file /data/sub /data/sub/inner /data/link; do \
           echo \"STAT $f $(stat -c '%a %u %g' $f)\"; done; \
         echo \"CAT $(cat /data/file) $(cat /data/link)\"; \
         for l in link to-root up abs-host; do echo \"LINK $l $(readlink /data/$l)\"; done; \
         p abs-host-is-link 'test -L /data/abs-host'; \
         p host-file-copied 'test -e /data/abs-host/host-secret || test -e /data/up/host-secret'; \
         echo \"PLAIN [$(ls -A /plain)]\"; \
         p write 'echo new > /data/new && rm /data/file /data/link && rm -r /data/sub'; \
         echo \"AFTER $(ls -A /data | tr '\\n' ' ')\""
    );
    let mut cfg = config(&["sh", "-c", &script]);
    cfg["root"]["path"] = json!(root);
    let mut mounts = base_mounts();
    mounts.extend([
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "tmpcopyup"]}),
        json!({"destination": "/plain", "type": "tmpfs", "source": "tmpfs"}),
    ]);
    cfg["mounts"] = json!(mounts);
    let before = snapshot(&root);
    let (out, _) = run_to_end(&tong, backend, &cfg, &test);
    let r = Report::parse(&out);
    assert_eq!(r.at("/data").fstype, "tmpfs", "{out}");
    r.flags("/data", &["nosuid", "nodev"], &[]);
    for line in [
        "STAT /data 751 2000 2001",
        "STAT /data/file 640 1234 5678",
        "STAT /data/sub 750 1000 1001",
        "STAT /data/sub/inner 600 1000 1000",
        "STAT /data/link 777 3000 3001",
        "CAT image file inner",
        "LINK link sub/inner",
        "LINK to-root /",
        &format!("LINK up {chain}"),
        &format!("LINK abs-host {}", host.display()),
        "PLAIN []",
        "AFTER abs-host new to-root up ",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "{backend}: no line {line:?} in:\n{out}"
        );
    }
    r.expect("abs-host-is-link", true);
    r.expect("host-file-copied", false);
    r.expect("write", true);
    // The writes went to the tmpfs: the image and the host are as they were.
    assert_eq!(
        before,
        snapshot(&root),
        "{backend}: the bundle's rootfs changed"
    );
    let host_names: Vec<_> = std::fs::read_dir(&host)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        host_names,
        ["host-secret"],
        "{backend}: the host dir changed"
    );
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);

    // A copy that does not fit fails naming the mount and the file, and leaves nothing.
    std::fs::write(data.join("big"), vec![1u8; 256 * 1024]).unwrap();
    let mut mounts = base_mounts();
    mounts.push(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                       "options": ["tmpcopyup", "size=64k"]}),
    );
    cfg["mounts"] = json!(mounts);
    escape_fails(
        backend,
        &tong,
        &own,
        &cfg,
        "tmpcopyup on /data: copy the data of /data/big: No space left on device",
        &own.host_dir("untouched"),
    );
}

/// Runs `script` with sh in a new mount namespace of its own whose `/` is then made
/// rshared there (new peer groups, none shared with the host's): containers without a
/// mount namespace mount in it, and it goes away with the script. Returns stdout, and
/// stderr for messages.
fn in_private_mount_ns(script: &str) -> (String, String) {
    let out = common::run_with_files(std::process::Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("mount --make-rshared / && {script}"),
    ]));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A line of mountinfo without what differs between runs: mount ids and peer group
/// numbers (`shared:12` -> `shared`).
fn mountinfo_shape(line: &str) -> String {
    line.split(' ')
        .skip(4)
        .map(|f| f.split(':').next().unwrap_or(f))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A run's output with its mountinfo lines (those of more than six fields) in
/// [`mountinfo_shape`].
fn output_shape(out: &str) -> String {
    out.lines()
        .map(|l| {
            if l.split(' ').count() > 6 {
                mountinfo_shape(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `out` without the `== others N` lines (counts of mounts that other tests running
/// on the host may change between two runs).
fn strip_counts(out: &str) -> String {
    out.lines()
        .filter(|l| !l.starts_with("== others"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The command line running `bundle` as `id` under runc (state in `runc_root`), or
/// `None` (and a SKIP line) when runc is not installed.
fn runc_command(test: &str, runc_root: &Path, bundle: &Bundle, id: &str) -> Option<String> {
    tong_testkit::require_tool(test, &["/usr/sbin/runc"], "runc")?;
    Some(format!(
        "/usr/sbin/runc --root {} run --bundle {} {id}",
        runc_root.display(),
        bundle.path().display()
    ))
}

fn tong_command(tong: &Tong, backend: &str, bundle: &Bundle, id: &str) -> String {
    format!(
        "{} --root {} run --backend rootfs={backend} --bundle {} {id}",
        tong_bin().display(),
        tong.root.path().display(),
        bundle.path().display()
    )
}

/// `linux.rootfsPropagation`, every value: the container's `/` in its mountinfo has the
/// propagation runc gives it for the same bundle, runc running beside tong in the same
/// kind of private mount namespace (with an rshared `/`, so slave and shared show).
fn root_propagation_values(backend: &str) {
    let test = format!("{backend}_root_propagation_values");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    let runc_root = tempfile::tempdir().unwrap();
    let script = "awk '$5 == \"/\"' /proc/self/mountinfo";
    for value in [
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "unbindable",
        "runbindable",
    ] {
        let mut cfg = config(&["sh", "-c", script]);
        cfg["root"]["path"] = json!(own.path());
        cfg["linux"]["rootfsPropagation"] = json!(value);
        let bundle = Bundle::new(&cfg);
        let id = unique_id(&test);
        let Some(runc) = runc_command(&test, runc_root.path(), &bundle, &id) else {
            return;
        };
        let propagation = |out: &str| {
            let line = out.lines().next().unwrap_or_default();
            let shape = mountinfo_shape(line);
            shape.split(' ').nth(2).unwrap_or("(no / line)").to_string()
        };
        let (runc_out, runc_err) = in_private_mount_ns(&runc);
        let (tong_out, tong_err) = in_private_mount_ns(&tong_command(&tong, backend, &bundle, &id));
        let got = propagation(&tong_out);
        let by_runc = propagation(&runc_out);
        // runc 1.1 (Debian 12) cannot do shared (runc#1755: it makes the root's parent
        // private after applying it) nor unbindable (the bind of the rootfs fails); runc
        // 1.3 applies the value to the new root after pivot_root, as tong does.
        let expected = match value.trim_start_matches('r') {
            "shared" => "shared",
            "unbindable" => "unbindable",
            // A fresh overlay mount has no master to be a slave of.
            "slave" if backend == "overlay" => "-",
            _ => by_runc.as_str(),
        };
        println!("{backend} {value}: tong {got}, runc {by_runc} {runc_err}");
        assert_eq!(
            got, expected,
            "{backend} rootfsPropagation {value}: tong gives {tong_out:?} ({tong_err}), runc {runc_out:?} ({runc_err})"
        );
        if value.ends_with("slave") || value.ends_with("private") {
            assert_eq!(runc_err, "", "runc failed on {value}");
        }
        tong.assert_clean(&id, Some(&bundle), None);
    }
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

/// No mount namespace in `linux.namespaces` (and then none at all): the container runs
/// in its caller's, as with runc. What the process sees (its root, its mountinfo, its
/// hostname) and what the caller's namespace holds afterwards equal runc's on the same
/// bundle; the overlay backend refuses clearly. Each runtime runs in a private mount
/// namespace of its own, never in the host's.
fn no_mount_namespace(backend: &str) {
    let test = format!("{backend}_no_mount_namespace");
    let Some((tong, own)) = start(&test) else {
        return;
    };
    let runc_root = tempfile::tempdir().unwrap();
    let rootfs = own.path().display().to_string();
    let script = "echo '== root'; ls /; echo '== hostname'; hostname; \
                  echo '== mountinfo'; cat /proc/self/mountinfo";
    for namespaces in [
        json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]),
        json!([]),
    ] {
        let mut cfg = config(&["sh", "-c", script]);
        cfg["root"]["path"] = json!(own.path());
        if namespaces.as_array().unwrap().is_empty() {
            // Without a UTS namespace neither runtime may set a hostname.
            cfg.as_object_mut().unwrap().remove("hostname");
        }
        cfg["linux"]["namespaces"] = namespaces.clone();
        let bundle = Bundle::new(&cfg);
        let id = unique_id(&test);
        let Some(runc) = runc_command(&test, runc_root.path(), &bundle, &id) else {
            return;
        };
        // The caller's mounts of the rootfs afterwards, in the shape runc leaves them,
        // and the count of its other mounts before and after (nothing else is left).
        let others = format!("grep -vc ' {rootfs}' /proc/self/mountinfo");
        let around = |cmd: &str| {
            format!(
                "echo \"== others $({others})\"; {cmd}; echo '== caller'; \
                 grep ' {rootfs}' /proc/self/mountinfo; echo \"== others $({others})\""
            )
        };
        let (tong_out, tong_err) =
            in_private_mount_ns(&around(&tong_command(&tong, backend, &bundle, &id)));
        if backend == "overlay" {
            assert!(
                tong_err.contains("the overlay rootfs backend needs a mount namespace"),
                "{tong_err}"
            );
            assert!(!tong_out.contains("== root"), "{tong_out}");
        } else {
            let (runc_out, runc_err) = in_private_mount_ns(&around(&runc));
            // Fewer is possible: a directory another test removes on the host takes
            // the copy of a mount on it out of this namespace too.
            let counts: Vec<u32> = tong_out
                .lines()
                .filter_map(|l| l.strip_prefix("== others "))
                .map(|n| n.parse().unwrap())
                .collect();
            assert!(
                counts.len() == 2 && counts[1] <= counts[0],
                "{backend}: tong left other mounts in the caller's namespace: {tong_out}"
            );
            assert!(
                runc_out.contains("== caller"),
                "runc: {runc_out} {runc_err}"
            );
            assert!(
                tong_out.contains(&format!("{rootfs}/proc")),
                "{backend}: {tong_out} {tong_err}"
            );
            assert_eq!(
                output_shape(&strip_counts(&tong_out)),
                output_shape(&strip_counts(&runc_out)),
                "{backend} {namespaces}: tong ({tong_err}) and runc ({runc_err}) differ"
            );
        }
        tong.assert_clean(&id, Some(&bundle), None);
    }
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

/// maskedPaths without a mount namespace would mask the caller's own paths: refused
/// before anything is made, as runc does.
#[test]
fn no_mount_namespace_refuses_masked_paths() {
    let Some((tong, own)) = start("no_mount_namespace_refuses_masked_paths") else {
        return;
    };
    let mut cfg = config(&["true"]);
    cfg["root"]["path"] = json!(own.path());
    cfg["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}]);
    cfg["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    let bundle = Bundle::new(&cfg);
    let id = unique_id("no_mount_namespace_refuses_masked_paths");
    let (_, err) = in_private_mount_ns(&tong_command(&tong, "pivot", &bundle, &id));
    assert!(
        err.contains("linux.maskedPaths and linux.readonlyPaths need a mount namespace"),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

/// A mount namespace given by path is joined, and the container is built in it as in a
/// new one (runc does the same: the rootfs setup and pivot_root happen in the joined
/// namespace). The namespace belongs to a process of the test's own private namespace.
#[test]
fn joined_mount_namespace() {
    let test = "joined_mount_namespace";
    let Some((tong, own)) = start(test) else {
        return;
    };
    let runc_root = tempfile::tempdir().unwrap();
    let script = "echo '== root'; ls /; echo '== mountinfo'; cat /proc/self/mountinfo";
    let mut cfg = config(&["sh", "-c", script]);
    cfg["root"]["path"] = json!(own.path());
    cfg["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "uts"}, {"type": "ipc"},
        {"type": "mount", "path": "/HOLDER"}
    ]);
    let bundle = Bundle::new(&cfg);
    let config = bundle.path().join("config.json");
    let template = bundle.path().join("config.template");
    std::fs::rename(&config, &template).unwrap();
    let id = unique_id(test);
    let Some(runc) = runc_command(test, runc_root.path(), &bundle, &id) else {
        return;
    };
    // The holder: a sleeping process in a mount namespace of its own; its path goes
    // into the config once the process runs sleep (its namespace is set up by then).
    let joined = |cmd: &str| {
        in_private_mount_ns(&format!(
            "unshare --mount --propagation private sleep 60 & holder=$!; \
             while [ \"$(cat /proc/$holder/comm)\" != sleep ]; do sleep 0.01; done; \
             sed \"s|/HOLDER|/proc/$holder/ns/mnt|\" {} > {} && {cmd}; kill $holder",
            template.display(),
            config.display()
        ))
    };
    let (tong_out, tong_err) = joined(&tong_command(&tong, "pivot", &bundle, &id));
    let (runc_out, runc_err) = joined(&runc);
    assert!(tong_out.contains("== mountinfo"), "{tong_out} {tong_err}");
    assert_eq!(
        output_shape(&tong_out),
        output_shape(&runc_out),
        "tong ({tong_err}) and runc ({runc_err}) differ"
    );
    tong.assert_clean(&id, Some(&bundle), None);
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
}

macro_rules! conformance {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                #[test]
                fn mounts_masks_devices() {
                    super::mounts_masks_devices(stringify!($backend));
                }
                #[test]
                fn masks_resist_remount() {
                    super::masks_resist_remount(stringify!($backend));
                }

                #[test]
                fn readonly_root() {
                    super::readonly_root(stringify!($backend));
                }
                #[test]
                fn propagation() {
                    super::propagation(stringify!($backend));
                }
                #[test]
                fn shared_root_propagation() {
                    super::shared_root_propagation(stringify!($backend));
                }
                #[test]
                fn symlink_escapes() {
                    super::symlink_escapes(stringify!($backend));
                }
                #[test]
                fn tmpcopyup() {
                    super::tmpcopyup(stringify!($backend));
                }
                #[test]
                fn root_propagation_values() {
                    super::root_propagation_values(stringify!($backend));
                }
                #[test]
                fn no_mount_namespace() {
                    super::no_mount_namespace(stringify!($backend));
                }
            }
        )*
    };
}

conformance!(pivot, chroot, overlay);

/// The backend recorded in a container's state.
fn recorded_rootfs_backend(tong: &Tong, id: &str) -> String {
    let record: Value = serde_json::from_slice(
        &std::fs::read(tong.root.path().join(id).join("state.json")).unwrap(),
    )
    .unwrap();
    record["backends"]["rootfs"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn overlay_two_containers_share_one_rootfs() {
    if !ready("overlay_two_containers_share_one_rootfs") {
        return;
    }
    let tong = Tong::new();
    let own = OwnRootfs::new();
    std::fs::write(own.path().join("etc/motd"), "from root.path\n").unwrap();
    // A further read-only layer below root.path: its files show unless root.path has
    // the same name.
    let layer = own.host_dir("layer2");
    std::fs::create_dir(layer.join("etc")).unwrap();
    std::fs::write(layer.join("etc/motd"), "from layer2\n").unwrap();
    std::fs::write(layer.join("etc/layer2-only"), "layer2\n").unwrap();
    let before = snapshot(own.dir.path());

    let mut cfg = config(&["sleep", "60"]);
    cfg["root"]["path"] = json!(own.path());
    cfg["annotations"] = json!({"tong.rootfs.overlay.lowerdirs": layer});
    let bundle = Bundle::new(&cfg);
    let ids = [unique_id("overlay-a"), unique_id("overlay-b")];
    let mut pids = Vec::new();
    for id in &ids {
        tong.ok(&[
            "run",
            "-d",
            "--backend",
            "rootfs=overlay",
            "--bundle",
            bundle.path().to_str().unwrap(),
            id,
        ]);
        assert_eq!(recorded_rootfs_backend(&tong, id), "overlay");
        pids.push(tong.state(id)["pid"].as_i64().unwrap() as i32);
    }
    for id in &ids {
        tong.ok(&[
            "exec",
            id,
            "sh",
            "-c",
            &format!("echo {id} > /etc/written; mkdir /newdir"),
        ]);
    }
    for (id, pid) in ids.iter().zip(&pids) {
        let seen = tong.ok(&[
            "exec",
            id,
            "cat",
            "/etc/written",
            "/etc/motd",
            "/etc/layer2-only",
        ]);
        assert_eq!(seen, format!("{id}\nfrom root.path\nlayer2\n"));
        // The container's root is an overlay whose upper layer is in its state dir,
        // mounted only in its own mount namespace.
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root = parse_mountinfo(&info)
            .into_iter()
            .find(|m| m.point == "/")
            .unwrap();
        assert_eq!(root.fstype, "overlay");
        let upper = tong.root.path().join(id).join("rootfs-overlay/upper");
        assert!(
            root.super_opts
                .iter()
                .any(|o| *o == format!("upperdir={}", upper.display())),
            "{root:?}"
        );
        assert_eq!(
            std::fs::read_to_string(upper.join("etc/written")).unwrap(),
            format!("{id}\n")
        );
    }
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
    assert_eq!(
        before,
        snapshot(own.dir.path()),
        "the bundle's layers changed"
    );

    for (id, pid) in ids.iter().zip(&pids) {
        tong.ok(&["delete", "--force", id]);
        tong.assert_clean(id, Some(&bundle), Some(*pid));
    }
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
    assert_eq!(
        before,
        snapshot(own.dir.path()),
        "the bundle's layers changed"
    );
}

#[test]
fn overlay_failed_create_leaves_no_layer() {
    if !ready("overlay_failed_create_leaves_no_layer") {
        return;
    }
    let tong = Tong::new();
    let own = OwnRootfs::new();
    let mut cfg = config(&["true"]);
    cfg["root"]["path"] = json!(own.path());
    cfg["annotations"] = json!({"tong.rootfs.overlay.lowerdirs": "/nonexistent/layer"});
    let bundle = Bundle::new(&cfg);
    let id = unique_id("overlay-bad");
    let err = tong.fails(&[
        "create",
        "--backend",
        "rootfs=overlay",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("/nonexistent/layer"), "{err}");
    tong.assert_clean(&id, Some(&bundle), None);

    // A mount that fails in the child (after the layer exists) is undone too.
    cfg["annotations"] = json!({});
    cfg["mounts"] = json!([{"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                            "options": ["size=bogus"]}]);
    let bundle = Bundle::new(&cfg);
    let err = tong.fails(&[
        "create",
        "--backend",
        "rootfs=overlay",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("mount tmpfs on /scratch"), "{err}");
    tong.assert_clean(&id, Some(&bundle), None);
    assert_no_host_mount_under(&[own.dir.path(), tong.root.path()]);
    assert_eq!(
        std::fs::read_dir(own.path()).unwrap().count(),
        6,
        "the rootfs gained entries"
    );
}

#[test]
fn no_pivot_selects_chroot_unless_a_backend_is_chosen() {
    if !ready("no_pivot_selects_chroot_unless_a_backend_is_chosen") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["sleep", "60"]);
    let cases: [(&[&str], Option<&str>, &str); 4] = [
        (&[], None, "pivot"),
        (&["--no-pivot"], None, "chroot"),
        (
            &["--no-pivot", "--backend", "rootfs=overlay"],
            None,
            "overlay",
        ),
        (&["--no-pivot"], Some("pivot"), "pivot"),
    ];
    for (flags, annotation, want) in cases {
        cfg["annotations"] = annotation.map_or(json!({}), |a| json!({"tong.backend.rootfs": a}));
        let bundle = Bundle::new(&cfg);
        let id = unique_id("nopivot");
        let mut args = vec!["create", "--bundle", bundle.path().to_str().unwrap()];
        args.extend_from_slice(flags);
        args.push(&id);
        tong.ok(&args);
        assert_eq!(
            recorded_rootfs_backend(&tong, &id),
            want,
            "{flags:?} {annotation:?}"
        );
        let pid = tong.state(&id)["pid"].as_i64().unwrap() as i32;
        tong.ok(&["delete", "--force", &id]);
        tong.assert_clean(&id, Some(&bundle), Some(pid));
    }
}

/// With a cgroup namespace, fresh cgroup mounts show the namespace's root, which is the
/// container's own cgroup: on cgroup2 the child is cloned into it, on v1 (and this
/// hybrid host) it makes the namespace itself once the runtime has moved it there.
#[test]
fn cgroup_namespace_mounts_show_only_the_containers_cgroup() {
    if !ready("cgroup_namespace_mounts_show_only_the_containers_cgroup") {
        return;
    }
    let tong = Tong::new();
    let v2_only = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    // Every hierarchy's path is "/" inside, and the pids (or cgroup2) mount lists only
    // the container's own process.
    let procs = if v2_only {
        "/sys/fs/cgroup/cgroup.procs"
    } else {
        "/sys/fs/cgroup/pids/cgroup.procs"
    };
    let script = format!("grep -v ':/$' /proc/self/cgroup; echo ==; cat {procs}");
    let mut cfg = config(&["sh", "-c", &script]);
    let mut mounts = base_mounts();
    mounts.retain(|m| m["destination"] != "/dev/mqueue");
    cfg["mounts"] = json!(mounts);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    let (out, _) = run_to_end(&tong, "pivot", &cfg, "cgroupns");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["==", "1"],
        "{out}"
    );
}

/// Filesystem data (`mode=755,size=1k`) on a bind mount: the kernel ignores it for
/// MS_BIND, runc accepts it, and so does tong; the mount is there with the same flags
/// under both.
#[test]
fn filesystem_data_on_a_bind_mount_is_ignored_as_runc_does() {
    let test = "filesystem_data_on_a_bind_mount_is_ignored_as_runc_does";
    if !root_or_skip(test) {
        return;
    }
    let source = tempfile::tempdir().unwrap();
    let mut cfg = config(&["grep", " /run ", "/proc/self/mountinfo"]);
    cfg["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/run", "type": "bind", "source": source.path(),
        "options": ["rbind", "mode=755", "size=1k", "ro", "nosuid"]
    }));
    let bundle = Bundle::new(&cfg);
    // The mount point and its per-mount flags (the rest names ids and the source).
    let flags = |out: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                format!("{} {}", f[4], f[5])
            })
            .collect()
    };
    let Some(runc) = common::runc_run(test, bundle.path()) else {
        return;
    };
    assert!(
        runc.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&runc.stderr)
    );
    let tong = Tong::new();
    let id = unique_id("bind-data");
    let ours = tong.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(
        ours.status.success(),
        "tong: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(flags(&ours.stdout), flags(&runc.stdout));
    assert_eq!(flags(&ours.stdout), ["/run ro,nosuid,relatime"]);
    tong.assert_clean(&id, Some(&bundle), None);
}
