//! Escapes through the host binary (issue 12, class 1; docs/security.md, "Escapes: the
//! host binary"): a container process must never be able to open tong's binary for
//! writing. Each test performs the attack against a copy of tong (and its plugins) in a
//! temporary directory, and checks the copy's bytes afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A copy of tong and its plugins, and the state root to run it on.
struct TongCopy {
    dir: tempfile::TempDir,
}

impl TongCopy {
    fn new() -> TongCopy {
        let dir = tempfile::Builder::new()
            .prefix("tong-it-copy-")
            .tempdir()
            .unwrap();
        let built = tong_bin();
        std::fs::copy(&built, dir.path().join("tong")).unwrap();
        for entry in std::fs::read_dir(built.parent().unwrap()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("libtong_plugin_") && path.extension().is_some_and(|e| e == "so") {
                std::fs::copy(&path, dir.path().join(&name)).unwrap();
            }
        }
        TongCopy { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("tong")
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(self.bin()).unwrap()
    }

    fn command(&self, root: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin());
        cmd.env_remove("TONG_PLUGIN_PATH")
            .arg("--root")
            .arg(root)
            .args(args);
        cmd
    }
}

/// The dynamic loader path written in `binary` (PT_INTERP).
fn interpreter_of(binary: &Path) -> String {
    let bytes = std::fs::read(binary).unwrap();
    for candidate in ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"] {
        if bytes
            .windows(candidate.len())
            .any(|w| w == candidate.as_bytes())
        {
            return candidate.to_string();
        }
    }
    panic!("no known dynamic loader path in {}", binary.display());
}

/// A root filesystem whose `/bin/evil` is `#!/proc/self/exe` and whose dynamic loader,
/// at tong's interpreter path, is the attacker's program.
fn evil_rootfs(dir: &Path, tong: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let status = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let loader = root.join(interpreter_of(tong).trim_start_matches('/'));
    std::fs::create_dir_all(loader.parent().unwrap()).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/escapes_loader.c");
    let out = Command::new("cc")
        .args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
            "-O1",
            "-o",
        ])
        .arg(&loader)
        .arg(source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evil = root.join("bin/evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    let status = Command::new("chmod")
        .arg("755")
        .arg(&evil)
        .status()
        .unwrap();
    assert!(status.success());
    root
}

/// Waits as long as the attacker's child tries, then checks the binary.
fn assert_unchanged(copy: &TongCopy, before: &[u8], how: &str) {
    std::thread::sleep(std::time::Duration::from_secs(6));
    let after = copy.bytes();
    assert!(
        after == before,
        "{how}: the container wrote to the host's tong binary ({} -> {} bytes)",
        before.len(),
        after.len()
    );
}

#[test]
fn proc_self_exe_script_cannot_write_the_host_binary() {
    if !root_or_skip("proc_self_exe_script_cannot_write_the_host_binary") {
        return;
    }
    let copy = TongCopy::new();
    let root = evil_rootfs(copy.dir.path(), &copy.bin());
    let state = copy.dir.path().join("state");
    let before = copy.bytes();

    // As the container's entrypoint.
    let mut spec = config(&["/bin/evil"]);
    spec["root"]["path"] = root.to_str().unwrap().into();
    let bundle = Bundle::new(&spec);
    let id = unique_id("exe-entry");
    let out = run_with_files(
        copy.command(
            &state,
            &["run", "--bundle", bundle.path().to_str().unwrap(), &id],
        )
        .stdin(std::process::Stdio::null()),
    );
    let _ = copy.command(&state, &["delete", "--force", &id]).status();
    println!(
        "entrypoint run: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_unchanged(&copy, &before, "entrypoint #!/proc/self/exe");

    // Through `tong exec` into a running container.
    let mut spec = config(&["sleep", "30"]);
    spec["root"]["path"] = root.to_str().unwrap().into();
    let bundle = Bundle::new(&spec);
    let id = unique_id("exe-exec");
    let out = run_with_files(&mut copy.command(
        &state,
        &[
            "run",
            "-d",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_with_files(
        copy.command(&state, &["exec", &id, "/bin/evil"])
            .stdin(std::process::Stdio::null()),
    );
    println!(
        "exec: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_unchanged(&copy, &before, "tong exec of a #!/proc/self/exe script");
    let status = copy
        .command(&state, &["delete", "--force", &id])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn neighbour_in_the_pid_namespace_cannot_write_the_host_binary() {
    if !root_or_skip("neighbour_in_the_pid_namespace_cannot_write_the_host_binary") {
        return;
    }
    let copy = TongCopy::new();
    let state = copy.dir.path().join("state");
    let before = copy.bytes();
    let mut waiting_spec = config(&["sleep", "30"]);
    with_default_capabilities(&mut waiting_spec);
    let waiting = Bundle::new(&waiting_spec);
    let a = unique_id("exe-waiting");
    let out = run_with_files(&mut copy.command(
        &state,
        &["create", "--bundle", waiting.path().to_str().unwrap(), &a],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = String::from_utf8(
        copy.command(&state, &["state", &a])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pid: serde_json::Value = serde_json::from_str(&pid).unwrap();
    let pid = pid["pid"].as_i64().unwrap();

    // B shares A's pid namespace (as a pod does), keeps /proc/1/exe open, and appends
    // through it once A's init has exec'd.
    let mut spec = config(&[
        "sh",
        "-c",
        "exec 9</proc/1/exe || exit 1; for i in $(seq 200); do \
         echo PWNED >> /proc/self/fd/9 2>/dev/null && exit; usleep 25000; done",
    ]);
    spec["linux"]["namespaces"] = serde_json::json!([
        {"type": "pid", "path": format!("/proc/{pid}/ns/pid")},
        {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}
    ]);
    with_default_capabilities(&mut spec);
    let neighbour = Bundle::new(&spec);
    let b = unique_id("exe-neighbour");
    let out = run_with_files(&mut copy.command(
        &state,
        &[
            "run",
            "-d",
            "--bundle",
            neighbour.path().to_str().unwrap(),
            &b,
        ],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = run_with_files(&mut copy.command(&state, &["start", &a]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_unchanged(&copy, &before, "a neighbour through /proc/1/exe");
    for id in [&b, &a] {
        let status = copy
            .command(&state, &["delete", "--force", id])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// runc spec's default capabilities. Both containers have them: without CAP_SYS_PTRACE,
/// /proc/<pid>/exe of a process needs the opener's permitted set to cover the target's.
fn with_default_capabilities(spec: &mut serde_json::Value) {
    let caps = serde_json::json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    spec["process"]["capabilities"] = serde_json::json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
}

#[test]
fn waiting_init_holds_no_namespace_descriptors() {
    if !root_or_skip("waiting_init_holds_no_namespace_descriptors") {
        return;
    }
    let tong = Tong::new();
    let holder = Bundle::new(&config(&["sleep", "30"]));
    let h = unique_id("exe-holder");
    tong.run_detached(&holder, &h);
    let holder_pid = tong.state(&h)["pid"].as_i64().unwrap();
    let mut spec = config(&["true"]);
    spec["linux"]["namespaces"] = serde_json::json!([
        {"type": "pid", "path": format!("/proc/{holder_pid}/ns/pid")},
        {"type": "network", "path": format!("/proc/{holder_pid}/ns/net")},
        {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}
    ]);
    let bundle = Bundle::new(&spec);
    let w = unique_id("exe-waiting");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &w]);
    let pid = tong.state(&w)["pid"].as_i64().unwrap();
    let mut held = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let link = std::fs::read_link(entry.unwrap().path()).unwrap();
        held.push(link.to_string_lossy().into_owned());
    }
    let namespaces: Vec<&String> = held.iter().filter(|l| l.contains(":[40")).collect();
    assert!(
        namespaces
            .iter()
            .all(|l| !l.starts_with("pid:") && !l.starts_with("net:")),
        "the waiting init holds namespace descriptors: {held:?}"
    );
    tong.ok(&["delete", "--force", &w]);
    tong.ok(&["delete", "--force", &h]);
}
