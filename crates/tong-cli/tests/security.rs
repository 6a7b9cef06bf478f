//! Process security from config.json, observed from inside the container and from the
//! host: capabilities, seccomp, rlimits, oomScoreAdj, sysctls, credentials, descriptors,
//! user namespaces; and bad input, each a clear error that leaves nothing behind.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{config, root_or_skip, run_with_files, unique_id, Bundle, Tong};
use serde_json::{json, Value};

/// What a `tong run` printed, and whether it succeeded.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cfg` to completion with `tong run` (plus `extra` flags) and checks the host is
/// clean afterwards, whatever happened.
fn run_with(tong: &Tong, cfg: &Value, extra: &[&str]) -> Ran {
    let bundle = Bundle::new(cfg);
    let id = unique_id("sec");
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--bundle", bundle.path().to_str().unwrap(), &id]);
    let out = tong.run(&args);
    tong.assert_clean(&id, Some(&bundle), None);
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` with its output in files (a container may inherit the descriptors).
fn captured(cmd: &mut std::process::Command) -> Ran {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out_file.reopen().unwrap())
        .stderr(err_file.reopen().unwrap())
        .status()
        .unwrap();
    Ran {
        ok: status.success(),
        stdout: std::fs::read_to_string(out_file.path()).unwrap(),
        stderr: std::fs::read_to_string(err_file.path()).unwrap(),
    }
}

/// Starts `cfg` in the background (`run -d`); returns its bundle and id.
fn start_detached(tong: &Tong, cfg: &Value, name: &str) -> (Bundle, String) {
    let bundle = Bundle::new(cfg);
    let id = unique_id(name);
    tong.run_detached(&bundle, &id);
    (bundle, id)
}

fn run(cfg: &Value) -> Ran {
    run_with(&Tong::new(), cfg, &[])
}

/// Runs `cfg` and returns its output, asserting success.
fn output(cfg: &Value) -> String {
    let ran = run(cfg);
    assert!(ran.ok, "container failed: {}{}", ran.stdout, ran.stderr);
    ran.stdout
}

/// Asserts `create` fails with `expected` on one line and leaves nothing behind.
fn refused(cfg: &Value, expected: &str) {
    refused_with(cfg, &[], expected);
}

/// As [`refused`], with more flags for `create`.
fn refused_with(cfg: &Value, flags: &[&str], expected: &str) {
    let tong = Tong::new();
    let bundle = Bundle::new(cfg);
    let id = unique_id("bad");
    let mut args = vec!["create"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--bundle", bundle.path().to_str().unwrap(), &id]);
    let err = tong.fails(&args);
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

/// A value of `field` in /proc/self/status as printed by the container.
fn status_field<'a>(text: &'a str, field: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} not in: {text}"))
        .trim()
}

fn all_sets(caps: &[&str]) -> Value {
    json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []})
}

#[test]
fn net_raw_decides_whether_a_raw_socket_opens() {
    if !root_or_skip("net_raw_decides_whether_a_raw_socket_opens") {
        return;
    }
    // busybox ping needs a raw ICMP socket: unprivileged ICMP sockets are off in a new
    // network namespace (net.ipv4.ping_group_range = "1 0").
    let script = "grep ^Cap /proc/self/status; ping -c 1 -W 2 127.0.0.1 && echo RAW-OK";
    let mut with = config(&["sh", "-c", script]);
    with["process"]["capabilities"] = all_sets(&["CAP_NET_RAW", "CAP_KILL"]);
    let out = output(&with);
    assert!(out.contains("RAW-OK"), "{out}");
    let mask = format!("{:016x}", (1u64 << 13) | (1u64 << 5));
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&out, set), mask, "{set}: {out}");
    }
    assert_eq!(status_field(&out, "CapInh"), "0000000000000000");

    let mut without = config(&["sh", "-c", script]);
    without["process"]["capabilities"] = all_sets(&["CAP_KILL"]);
    let ran = run(&without);
    assert!(!ran.stdout.contains("RAW-OK"), "{}", ran.stdout);
    assert!(
        ran.stderr.contains("ermission denied") || ran.stderr.contains("Operation not permitted"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        status_field(&ran.stdout, "CapEff"),
        format!("{:016x}", 1u64 << 5)
    );
}

/// The five capability masks of `/proc/self/status` as printed by `cat`.
fn cap_masks(status: &str) -> Vec<String> {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .map(|f| format!("{f}: {}", status_field(status, f)))
        .to_vec()
}

/// `runc spec` or `crun spec` output made runnable: no terminal, busybox's cat of
/// /proc/self/status, the shared busybox root.
fn peer_spec(runtime: &str) -> Option<Value> {
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(common::peer_runtime(runtime)?)
        .arg("spec")
        .current_dir(dir.path())
        .status()
        .ok()?;
    assert!(made.success(), "{runtime} spec failed");
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["cat", "/proc/self/status"]);
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["root"] = json!({"path": common::rootfs(), "readonly": true});
    Some(spec)
}

/// runc's default spec (and crun's, with an empty inheritable set) lists ambient
/// capabilities that are not inheritable: the kernel cannot raise them, and runc runs
/// the bundle without them. tong runs such bundles too, and every capability mask the
/// process sees equals runc's, for those specs and for variants of their sets.
#[test]
fn capability_masks_equal_runcs_for_runc_and_crun_default_specs() {
    let test = "capability_masks_equal_runcs_for_runc_and_crun_default_specs";
    if !root_or_skip(test) {
        return;
    }
    let Some(runc_spec) = peer_spec("runc") else {
        tong_testkit::skip(test, "runc is not installed (apt-get install runc)");
        return;
    };
    let mut cases = vec![("runc spec", runc_spec.clone())];
    match peer_spec("crun") {
        Some(spec) => cases.push(("crun spec", spec)),
        None => println!("{test}: crun is not installed; its spec is not compared"),
    }
    let default = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let sets = |inheritable: &[&str], ambient: &[&str]| {
        let mut sets = all_sets(&default);
        sets["inheritable"] = json!(inheritable);
        sets["ambient"] = json!(ambient);
        sets
    };
    let variant = |name: &'static str, uid: u32, caps: Value| {
        let mut spec = runc_spec.clone();
        spec["process"]["user"] = json!({"uid": uid, "gid": uid});
        spec["process"]["capabilities"] = caps;
        (name, spec)
    };
    cases.extend([
        variant("ambient partly inheritable", 0, sets(&["CAP_KILL"], &default)),
        variant("ambient inheritable", 0, sets(&default, &default)),
        variant("non-root, ambient inheritable", 1000, sets(&default, &default)),
        variant("non-root, ambient partly inheritable", 1000, sets(&["CAP_KILL"], &default)),
        variant("non-root, ambient not inheritable", 1000, sets(&[], &default)),
        variant("empty sets", 0, json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []})),
        variant("non-root, no ambient", 1000, sets(&default, &[])),
    ]);
    let tong = Tong::new();
    for (name, spec) in cases {
        let bundle = Bundle::new(&spec);
        let Some(reference) = common::runc_run(test, bundle.path()) else {
            return;
        };
        let reference_out = String::from_utf8_lossy(&reference.stdout).into_owned();
        assert!(
            reference.status.success(),
            "{name}: runc failed: {}",
            String::from_utf8_lossy(&reference.stderr)
        );
        let log = tempfile::NamedTempFile::new().unwrap();
        let log_flags = [
            "--log",
            log.path().to_str().unwrap(),
            "--log-format",
            "json",
        ];
        let ours = run_with(&tong, &spec, &log_flags);
        assert!(ours.ok, "{name}: tong failed: {}", ours.stderr);
        assert_eq!(
            cap_masks(&ours.stdout),
            cap_masks(&reference_out),
            "{name}: tong's masks (left) differ from runc's (right)"
        );
        // The skipped ambient capabilities are named in one warning.
        let caps = &spec["process"]["capabilities"];
        let listed =
            |set: &str| -> Vec<Value> { caps[set].as_array().cloned().unwrap_or_default() };
        let skips = listed("ambient")
            .iter()
            .any(|c| !listed("inheritable").contains(c) || !listed("permitted").contains(c));
        assert_eq!(
            ours.stderr.matches("not raised").count(),
            usize::from(skips),
            "{name}: {}",
            ours.stderr
        );
        // The same warning in the --log file, as runc's logrus line.
        let logged = std::fs::read_to_string(log.path()).unwrap();
        let warnings = logged
            .lines()
            .filter(|l| {
                let line: Value = serde_json::from_str(l).unwrap();
                line["level"] == "warning" && line["msg"].as_str().unwrap().contains("not raised")
            })
            .count();
        assert_eq!(warnings, usize::from(skips), "{name}: {logged}");
        println!("{name}: {:?}", cap_masks(&ours.stdout));
    }
}

#[test]
fn a_non_root_user_keeps_ambient_capabilities() {
    if !root_or_skip("a_non_root_user_keeps_ambient_capabilities") {
        return;
    }
    let mut cfg = config(&[
        "sh",
        "-c",
        "grep -E '^(Cap|Uid|Gid|Groups|NoNewPrivs)' /proc/self/status; umask",
    ]);
    cfg["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000], "umask": 63});
    cfg["process"]["noNewPrivileges"] = json!(true);
    cfg["process"]["capabilities"] = json!({
        "bounding": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "effective": ["CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    let out = output(&cfg);
    let bind = format!("{:016x}", 1u64 << 10);
    // execve of a file without capabilities keeps exactly the ambient set.
    for set in ["CapEff", "CapPrm", "CapAmb", "CapInh"] {
        assert_eq!(status_field(&out, set), bind, "{set}: {out}");
    }
    assert_eq!(
        status_field(&out, "CapBnd"),
        format!("{:016x}", (1u64 << 10) | 1)
    );
    assert!(
        status_field(&out, "Uid").starts_with("1000\t1000\t1000"),
        "{out}"
    );
    assert!(
        status_field(&out, "Gid").starts_with("1000\t1000\t1000"),
        "{out}"
    );
    assert_eq!(status_field(&out, "Groups"), "2000 3000");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    assert_eq!(out.lines().last().unwrap().trim(), "0077");
}

#[test]
fn seccomp_rule_makes_mkdir_fail_with_the_configured_errno() {
    if !root_or_skip("seccomp_rule_makes_mkdir_fail_with_the_configured_errno") {
        return;
    }
    let mut cfg = config(&[
        "sh",
        "-c",
        "mkdir /tmp/blocked; echo mkdir=$?; touch /tmp/allowed && echo touch=ok; grep ^Seccomp: /proc/self/status",
    ]);
    cfg["process"]["noNewPrivileges"] = json!(true);
    cfg["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 122}]
    });
    let ran = run(&cfg);
    assert!(ran.ok, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("mkdir=1"), "{}", ran.stdout);
    // errno 122 is EDQUOT.
    assert!(ran.stderr.contains("quota exceeded"), "{}", ran.stderr);
    assert!(ran.stdout.contains("touch=ok"), "{}", ran.stdout);
    assert_eq!(status_field(&ran.stdout, "Seccomp"), "2");
}

#[test]
fn seccomp_argument_conditions_without_no_new_privileges() {
    if !root_or_skip("seccomp_argument_conditions_without_no_new_privileges") {
        return;
    }
    // Without noNewPrivileges the filter goes in while the process still has
    // CAP_SYS_ADMIN; then kill(pid, SIGUSR1) is refused and kill(pid, 0) is not.
    let mut cfg = config(&[
        "sh",
        "-c",
        "trap '' USR1; kill -USR1 $$; echo usr1=$?; kill -0 $$; echo zero=$?",
    ]);
    cfg["process"]["noNewPrivileges"] = json!(false);
    cfg["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                      "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]}]
    });
    let out = output(&cfg);
    assert!(out.contains("usr1=1"), "{out}");
    assert!(out.contains("zero=0"), "{out}");
}

#[test]
fn rlimits_and_oom_score_adj_are_visible_inside() {
    if !root_or_skip("rlimits_and_oom_score_adj_are_visible_inside") {
        return;
    }
    let mut cfg = config(&[
        "sh",
        "-c",
        "cat /proc/self/limits; echo oom=$(cat /proc/self/oom_score_adj)",
    ]);
    cfg["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    cfg["process"]["oomScoreAdj"] = json!(500);
    let out = output(&cfg);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(line("Max open files").contains("1000 2000 files"), "{out}");
    assert!(line("Max core file size").contains("0 0 bytes"), "{out}");
    assert!(out.contains("oom=500"), "{out}");
}

/// [`refused`], with tong run by `setpriv` without CAP_SYS_RESOURCE (out of its bounding
/// and inheritable sets, so root does not get it back at exec), whether or not this host
/// gives root that capability.
fn refused_without_sys_resource(cfg: &Value, expected: &str) {
    let tong = Tong::new();
    let bundle = Bundle::new(cfg);
    let id = unique_id("bad");
    let inner = tong.command(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--bounding-set",
        "-sys_resource",
        "--inh-caps",
        "-sys_resource",
        "--",
    ])
    .arg(inner.get_program())
    .args(inner.get_args());
    let out = run_with_files(&mut cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "tong without CAP_SYS_RESOURCE accepted it: {err}"
    );
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one-line error expected: {err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_hard_limit_above_tongs_own_is_refused_with_the_reason() {
    let test = "a_hard_limit_above_tongs_own_is_refused_with_the_reason";
    if !root_or_skip(test)
        || tong_testkit::require_tool(test, &["/usr/bin/setpriv"], "util-linux").is_none()
    {
        return;
    }
    // Refused whatever tong's capabilities: the kernel would refuse it too.
    let mut cfg = config(&["true"]);
    cfg["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 2000, "hard": 1000}]);
    refused(
        &cfg,
        "RLIMIT_NOFILE: soft limit 2000 is above hard limit 1000",
    );
    let own = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard: u64 = own
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap();
    let mut cfg = config(&["true"]);
    cfg["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1}]);
    refused_without_sys_resource(
        &cfg,
        &format!("process.rlimits RLIMIT_NOFILE: hard limit {} is above the current hard limit {hard}, and raising a hard limit needs CAP_SYS_RESOURCE", hard + 1),
    );
    // Lowering oom_score_adj below tong's own needs CAP_SYS_RESOURCE too: found when
    // written, after the container process exists, and undone.
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        own > -1000,
        "the test runs with oom_score_adj {own}: nothing to lower"
    );
    let mut cfg = config(&["true"]);
    cfg["process"]["oomScoreAdj"] = json!(-1000);
    refused_without_sys_resource(&cfg, "process.oomScoreAdj: cannot write -1000 to /proc/");
    refused_without_sys_resource(&cfg, "needs CAP_SYS_RESOURCE, which tong does not have");
}

#[test]
fn namespaced_sysctls_hostname_and_domainname_are_applied() {
    if !root_or_skip("namespaced_sysctls_hostname_and_domainname_are_applied") {
        return;
    }
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut cfg = config(&[
        "sh",
        "-c",
        "echo shmmax=$(cat /proc/sys/kernel/shmmax) fwd=$(cat /proc/sys/net/ipv4/ip_forward) host=$(hostname) domain=$(cat /proc/sys/kernel/domainname)",
    ]);
    cfg["hostname"] = json!("box");
    cfg["domainname"] = json!("tong.example");
    cfg["linux"]["sysctl"] = json!({"kernel.shmmax": "123456789", "net.ipv4.ip_forward": "1"});
    let out = output(&cfg);
    assert!(
        out.contains("shmmax=123456789 fwd=1 host=box domain=tong.example"),
        "{out}"
    );
    // The host's own values did not move.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
}

#[test]
fn sysctls_outside_the_containers_namespaces_are_refused() {
    if !root_or_skip("sysctls_outside_the_containers_namespaces_are_refused") {
        return;
    }
    let mut cfg = config(&["true"]);
    cfg["linux"]["sysctl"] = json!({"kernel.panic": "1"});
    refused(
        &cfg,
        "linux.sysctl \"kernel.panic\": not a namespaced sysctl",
    );
    let mut cfg = config(&["true"]);
    cfg["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    cfg.as_object_mut().unwrap().remove("hostname");
    cfg["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    refused(
        &cfg,
        "linux.sysctl \"net.ipv4.ip_forward\": belongs to the network namespace, which the config does not give the container",
    );
}

/// The descriptors of the container's shell, as `N -> target` lines, without the one
/// `ls` opens on the directory itself.
const LIST_FDS: &str = "ls -l /proc/self/fd | sed -n 's/.* \\([0-9]*\\) -> \\(.*\\)/\\1 \\2/p' | grep -v ' /proc/[0-9]*/fd$'";

fn fd_numbers(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn no_descriptor_of_the_caller_or_tong_leaks_in() {
    if !root_or_skip("no_descriptor_of_the_caller_or_tong_leaks_in") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("opened-by-the-test")).unwrap();
    // Inheritable, as a careless caller's descriptor would be, and numbered above the
    // 3..6 the preserve-fds test running beside this one counts on.
    // SAFETY: F_DUPFD makes a new descriptor (without FD_CLOEXEC) of one we own.
    let leaky = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_DUPFD, 200) };
    assert!(leaky >= 200);
    let out = output(&config(&["sh", "-c", LIST_FDS]));
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(leaky) };
    assert_eq!(fd_numbers(&out), vec![0, 1, 2], "{out}");
    assert!(!out.contains("opened-by-the-test"), "{out}");
}

/// Runs tong through a shell that opens files on 3, 4 and 5 first, with `env` set.
fn run_with_open_fds(env: &str, flags: &str) -> Ran {
    let tong = Tong::new();
    let files = tempfile::tempdir().unwrap();
    let bundle = Bundle::new(&config(&[
        "sh",
        "-c",
        &format!("{LIST_FDS}; env | grep ^LISTEN_ | sort"),
    ]));
    let id = unique_id("fds");
    for name in ["fd3-file", "fd4-file", "fd5-file"] {
        std::fs::write(files.path().join(name), name).unwrap();
    }
    let script = format!(
        "cd {} && exec 3<fd3-file 4<fd4-file 5<fd5-file && {env} exec {} --root {} run {flags} --bundle {} {id}",
        files.path().display(),
        common::tong_bin().display(),
        tong.root.path().display(),
        bundle.path().display()
    );
    let ran = captured(std::process::Command::new("sh").args(["-c", &script]));
    tong.assert_clean(&id, Some(&bundle), None);
    ran
}

#[test]
fn preserve_fds_passes_exactly_the_asked_descriptors() {
    if !root_or_skip("preserve_fds_passes_exactly_the_asked_descriptors") {
        return;
    }
    let Ran {
        ok,
        stdout: out,
        stderr: err,
    } = run_with_open_fds("", "--preserve-fds 2");
    assert!(ok, "{err}");
    assert_eq!(fd_numbers(&out), vec![0, 1, 2, 3, 4], "{out}");
    let target = |fd: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{fd} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(target("3").ends_with("/fd3-file"), "{out}");
    assert!(target("4").ends_with("/fd4-file"), "{out}");
    assert!(!out.contains("fd5-file"), "{out}");
    assert!(!out.contains("LISTEN_"), "{out}");

    // LISTEN_FDS for this very process: those first, then the preserved ones.
    let Ran {
        ok,
        stdout: out,
        stderr: err,
    } = run_with_open_fds("LISTEN_PID=$$ LISTEN_FDS=1", "--preserve-fds 1");
    assert!(ok, "{err}");
    assert_eq!(fd_numbers(&out), vec![0, 1, 2, 3, 4], "{out}");
    assert!(
        out.contains("LISTEN_FDS=1") && out.contains("LISTEN_PID=1"),
        "{out}"
    );

    // LISTEN_PID of another process: not ours, ignored.
    let Ran {
        ok,
        stdout: out,
        stderr: err,
    } = run_with_open_fds("LISTEN_PID=1 LISTEN_FDS=2", "");
    assert!(ok, "{err}");
    assert_eq!(fd_numbers(&out), vec![0, 1, 2], "{out}");

    let Ran {
        ok, stderr: err, ..
    } = run_with_open_fds("", "--preserve-fds 5");
    assert!(!ok);
    assert!(
        err.contains("--preserve-fds 5") && err.contains("descriptor 6 is not open"),
        "{err}"
    );
}

#[test]
fn exec_preserve_fds_passes_exactly_the_asked_descriptors() {
    if !root_or_skip("exec_preserve_fds_passes_exactly_the_asked_descriptors") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "100"]));
    let id = unique_id("exec-fds");
    tong.run_detached(&bundle, &id);
    let files = tempfile::tempdir().unwrap();
    for name in ["fd3-file", "fd4-file", "fd5-file"] {
        std::fs::write(files.path().join(name), name).unwrap();
    }
    let exec = |n: u32| {
        let script = format!(
            "cd {} && exec 3<fd3-file 4<fd4-file 5<fd5-file && exec {} --root {} exec --preserve-fds {n} {id} sh -c \"$0\"",
            files.path().display(),
            common::tong_bin().display(),
            tong.root.path().display(),
        );
        captured(std::process::Command::new("sh").args(["-c", &script, LIST_FDS]))
    };
    let Ran {
        ok,
        stdout: out,
        stderr: err,
    } = exec(2);
    assert!(ok, "{err}");
    assert_eq!(fd_numbers(&out), vec![0, 1, 2, 3, 4], "{out}");
    assert!(out.contains("3 ") && out.contains("/fd3-file"), "{out}");
    assert!(
        out.contains("/fd4-file") && !out.contains("fd5-file"),
        "{out}"
    );
    let Ran {
        ok,
        stdout: out,
        stderr: err,
    } = exec(0);
    assert!(ok, "{err}");
    assert_eq!(fd_numbers(&out), vec![0, 1, 2], "{out}");
    let Ran {
        ok, stderr: err, ..
    } = exec(5);
    assert!(!ok);
    assert!(
        err.contains("--preserve-fds 5") && err.contains("descriptor 6 is not open"),
        "{err}"
    );
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

/// Through the library: a file and a pipe passed as `extra_fds` with their targets
/// swapped over their own numbers (the pipe's write end becomes descriptor F, where the
/// file is open in this process, and the file becomes W), the rest of the list a
/// descriptor of /dev/null. The container reads the file from W and writes the pipe on
/// F; it has exactly 0 .. 2 + the list's length, nothing of the test's or tong's.
#[test]
fn extra_fds_through_the_library_overlap_and_nothing_else_leaks() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    if !root_or_skip("extra_fds_through_the_library_overlap_and_nothing_else_leaks") {
        return;
    }
    let tong = Tong::new();
    let plugins = tong::plugins::PluginHost::with_dirs(vec![common::tong_bin()
        .parent()
        .unwrap()
        .to_path_buf()]);
    let rt = tong::Runtime::new(tong.root.path(), plugins);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("passed-file"), "from the file\n").unwrap();
    let file = std::fs::File::open(dir.path().join("passed-file")).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let (mut reader, writer) = pipe();
    // An inheritable descriptor the test does not pass: it must stay out.
    let marker = std::fs::File::create(dir.path().join("not-passed")).unwrap();
    // SAFETY: F_DUPFD makes a new descriptor (without FD_CLOEXEC) of one we own.
    let leaky = unsafe { libc::fcntl(marker.as_raw_fd(), libc::F_DUPFD, 3) };
    assert!(leaky >= 3);

    let (f, w) = (file.as_raw_fd(), writer.as_raw_fd());
    let len = (f.max(w) - 2) as usize;
    let mut extra = vec![null.as_raw_fd(); len];
    extra[(f - 3) as usize] = w;
    extra[(w - 3) as usize] = f;
    // (ls complains on stderr about its own directory's descriptor, gone when it looks.)
    let script = format!("{{ cat <&{w}; {LIST_FDS}; }} >&{f} 2>/dev/null");
    let bundle = Bundle::new(&config(&["sh", "-c", &script]));
    let id = unique_id("extra-fds");
    let opts = tong::CreateOptions {
        extra_fds: extra.clone(),
        ..Default::default()
    };
    let code = rt.run(&id, bundle.path(), &opts, false, false);
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(leaky) };
    drop(writer);
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    assert_eq!(code.unwrap(), 0, "{out}");
    tong.assert_clean(&id, Some(&bundle), None);
    assert!(out.starts_with("from the file\n"), "{out}");
    let mut fds = fd_numbers(&out);
    fds.sort_unstable(); // ls sorts 10 before 2
    let want: Vec<u32> = (0..3 + len as u32).collect();
    assert_eq!(fds, want, "{out}");
    let target = |fd: i32| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{fd} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(target(f).starts_with("pipe:"), "{out}");
    assert!(target(w).ends_with("/passed-file"), "{out}");
    assert!(!out.contains("not-passed"), "{out}");

    // exec takes them too; a bad list is a clear error and leaves nothing behind.
    let bundle = Bundle::new(&config(&["sleep", "1000"]));
    let id = unique_id("extra-fds-exec");
    rt.run(
        &id,
        bundle.path(),
        &tong::CreateOptions::default(),
        true,
        false,
    )
    .unwrap();
    let (mut reader, writer) = pipe();
    let process: oci_spec::runtime::Process = serde_json::from_value(json!({
        "args": ["sh", "-c", format!("echo exec >&3; {LIST_FDS} >&3 2>/dev/null")],
        "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}
    }))
    .unwrap();
    let opts = tong::ExecOptions {
        extra_fds: vec![writer.as_raw_fd()],
        ..Default::default()
    };
    let code = rt.exec(&id, &process, &opts);
    drop(writer);
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    assert_eq!(code.unwrap(), 0, "{out}");
    assert!(out.starts_with("exec\n"), "{out}");
    assert_eq!(fd_numbers(&out), vec![0, 1, 2, 3], "{out}");
    let opts = tong::ExecOptions {
        extra_fds: vec![null.as_raw_fd(), 1_000_000],
        ..Default::default()
    };
    let e = rt.exec(&id, &process, &opts).unwrap_err().to_string();
    assert!(
        e.contains("extra_fds[1] (1000000, to be descriptor 4) is not an open descriptor"),
        "{e}"
    );
    rt.delete(&id, true).unwrap();
    tong.assert_clean(&id, Some(&bundle), None);

    for (extra, want) in [
        (
            vec![-1],
            "extra_fds[0] (-1, to be descriptor 3) is negative",
        ),
        (vec![null.as_raw_fd(); 1001], "at most 1000"),
    ] {
        let opts = tong::CreateOptions {
            extra_fds: extra,
            ..Default::default()
        };
        let id = unique_id("extra-fds-bad");
        let e = rt.create(&id, bundle.path(), &opts).unwrap_err();
        assert!(matches!(e, tong::Error::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        tong.assert_clean(&id, Some(&bundle), None);
    }
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (r.into(), w.into())
}

fn userns_config(args: &[&str], host_base: u32) -> Value {
    let mut cfg = config(args);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": host_base, "size": 65536}]);
    cfg
}

#[test]
fn uid_mapped_root_owns_its_files_as_the_mapped_host_uid() {
    if !root_or_skip("uid_mapped_root_owns_its_files_as_the_mapped_host_uid") {
        return;
    }
    let base = 100_000;
    let data = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(data.path(), Some(base), Some(base)).unwrap();
    let mut cfg = userns_config(
        &["sh", "-c", "id -u; touch /run/made-inside && stat -c '%u:%g' /run/made-inside; cat /proc/self/uid_map; cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_forward"],
        base,
    );
    // Namespaced sysctls work from inside a user namespace too (the kernel hands the
    // namespace's root the ipc and net sysctl files).
    cfg["linux"]["sysctl"] = json!({"kernel.shmmni": "1234", "net.ipv4.ip_forward": "1"});
    cfg["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/run", "type": "bind", "source": data.path(), "options": ["rbind", "rw"]}));
    // Both namespace backends: clone3 creates the user namespace with the process,
    // fork unshares it in an intermediate process; the maps must be in place either way.
    for backend in ["ns=clone3", "ns=fork"] {
        let _ = std::fs::remove_file(data.path().join("made-inside"));
        let ran = run_with(&Tong::new(), &cfg, &["--backend", backend]);
        assert!(ran.ok, "{backend}: {}{}", ran.stdout, ran.stderr);
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(lines[0], "0", "{backend}: {}", ran.stdout);
        assert_eq!(lines[1], "0:0", "{backend}: {}", ran.stdout);
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["0", "100000", "65536"]
        );
        assert_eq!(lines[3..], ["1234", "1"], "{backend}: {}", ran.stdout);
        let meta = std::fs::metadata(data.path().join("made-inside")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (base, base), "{backend}");
    }
}

#[test]
fn invalid_mappings_are_refused_and_undone() {
    if !root_or_skip("invalid_mappings_are_refused_and_undone") {
        return;
    }
    let mut cfg = userns_config(&["true"], 100_000);
    cfg["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": 100_000, "size": 1000},
        {"containerID": 500, "hostID": 300_000, "size": 10}
    ]);
    refused(
        &cfg,
        "invalid linux.uidMappings: container ids of entries 0 and 1 overlap",
    );
    // A missing map is filled in as crun does (`crun spec --rootless` gives none): for
    // root, the ids map onto themselves up to the process's user.
    let mut cfg = userns_config(
        &["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map"],
        100_000,
    );
    cfg["linux"]["gidMappings"] = json!([]);
    cfg["process"]["user"] = json!({"uid": 0, "gid": 7});
    let maps: Vec<Vec<String>> = output(&cfg)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(
        maps,
        [["0", "100000", "65536"], ["0", "0", "8"]],
        "the given uid map and the default gid map"
    );
    let mut cfg = config(&["true"]);
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    refused(&cfg, "the config creates no user namespace");
}

/// The unprivileged user the rootless tests run tong as (nobody).
const ROOTLESS_UID: u32 = 65534;

/// A config a non-root user can run: a user namespace mapping only that user, no
/// network namespace, no /sys, and devpts without gid=5 (as `runc spec --rootless`).
fn rootless_config(args: &[&str]) -> Value {
    let user = ROOTLESS_UID;
    let mut cfg = config(args);
    cfg["linux"]["namespaces"] = json!([{"type": "user"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": user, "size": 1}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": user, "size": 1}]);
    // The kernel mounts sysfs only for the user namespace owning the current network
    // namespace: the host's here (a test adding a network namespace adds /sys back).
    let mounts = cfg["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/sys");
    // gid 5 (tty) has no mapping, so devpts cannot use it.
    for m in mounts.iter_mut().filter(|m| m["destination"] == "/dev/pts") {
        m["options"] = json!([
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620"
        ]);
    }
    cfg
}

/// Runs tong as ROOTLESS_UID, with no supplementary groups and no capabilities.
fn as_user(tong: &Tong, args: &[&str]) -> Ran {
    let user = ROOTLESS_UID;
    captured(
        std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(common::tong_bin())
            .arg("--root")
            .arg(tong.root.path())
            .args(args),
    )
}

#[test]
fn a_non_root_user_runs_a_user_namespace_container_without_cgroups() {
    if !root_or_skip("a_non_root_user_runs_a_user_namespace_container_without_cgroups") {
        return;
    }
    if tong_testkit::require_tool(
        "a_non_root_user_runs_a_user_namespace_container_without_cgroups",
        &["/usr/bin/setpriv"],
        "util-linux",
    )
    .is_none()
    {
        return;
    }
    let user = ROOTLESS_UID;
    let tong = Tong::new();
    std::os::unix::fs::chown(tong.root.path(), Some(user), Some(user)).unwrap();
    let mut cfg = rootless_config(&["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"]);
    cfg["linux"]["resources"] = json!({"pids": {"limit": 50}});
    let bundle = Bundle::new(&cfg);
    std::os::unix::fs::chown(bundle.path(), Some(user), Some(user)).unwrap();
    let id = unique_id("rootless");
    let as_user = |args: &[&str]| as_user(&tong, args);
    let ran = as_user(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let (out, err) = (&ran.stdout, &ran.stderr);
    assert!(ran.ok, "rootless run failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", &user.to_string(), "1"]
    );
    assert_eq!(lines[2], "tong-test");
    assert!(
        err.contains("warning: running without root and without a cgroup"),
        "expected the cgroup warning: {err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);

    // In the background, then a process exec'd into it, also without root or cgroup.
    cfg["process"]["args"] = json!(["sleep", "30"]);
    let bundle = Bundle::new(&cfg);
    std::os::unix::fs::chown(bundle.path(), Some(user), Some(user)).unwrap();
    let ran = as_user(&[
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(ran.ok, "rootless run -d failed: {}", ran.stderr);
    let ran = as_user(&["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert!(ran.ok, "rootless exec failed: {}", ran.stderr);
    assert_eq!(ran.stdout.lines().next(), Some("0"), "{}", ran.stdout);
    let ran = as_user(&["delete", "--force", &id]);
    assert!(ran.ok, "rootless delete failed: {}", ran.stderr);
    tong.assert_clean(&id, Some(&bundle), None);

    // Without a user namespace a non-root user gets a clear refusal, and nothing.
    let plain = Bundle::new(&config(&["true"]));
    std::os::unix::fs::chown(plain.path(), Some(user), Some(user)).unwrap();
    let ran = as_user(&["create", "--bundle", plain.path().to_str().unwrap(), &id]);
    assert!(!ran.ok);
    assert!(
        ran.stderr
            .contains("tong runs as a non-root user: the config needs a new user namespace"),
        "{}",
        ran.stderr
    );
    tong.assert_clean(&id, Some(&plain), None);
}

/// The processes whose network namespace is the one `link` (`net:[INODE]`) names.
fn holders_of_netns(link: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == link)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_non_root_user_gets_a_network_namespace_with_loopback_up() {
    if !root_or_skip("a_non_root_user_gets_a_network_namespace_with_loopback_up") {
        return;
    }
    if tong_testkit::require_tool(
        "a_non_root_user_gets_a_network_namespace_with_loopback_up",
        &["/usr/bin/setpriv"],
        "util-linux",
    )
    .is_none()
    {
        return;
    }
    let user = ROOTLESS_UID;
    let tong = Tong::new();
    std::os::unix::fs::chown(tong.root.path(), Some(user), Some(user)).unwrap();
    // The namespace, its interfaces, lo's flags (0x9: IFF_UP | IFF_LOOPBACK), then a TCP
    // echo over 127.0.0.1: a busybox nc server, a client retrying until it listens.
    let script = "readlink /proc/self/ns/net; ls /sys/class/net; cat /sys/class/net/lo/flags; \
        nc -l -p 7000 -e echo tcp-over-lo & \
        for i in $(seq 50); do nc 127.0.0.1 7000 </dev/null && break; sleep 0.1; done; wait";
    let mut cfg = rootless_config(&["sh", "-c", script]);
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network"}));
    // With its own network namespace the container may mount sysfs.
    cfg["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/sys", "type": "sysfs",
        "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}));
    let bundle = Bundle::new(&cfg);
    std::os::unix::fs::chown(bundle.path(), Some(user), Some(user)).unwrap();
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let host_netns = host_netns.to_string_lossy();
    // Both namespace backends (clone3 creates the namespaces with the process, fork
    // unshares them in an intermediate); the default net=none, and by name.
    for backend in [
        &["--backend", "ns=clone3"][..],
        &["--backend", "ns=fork", "--backend", "net=none"],
    ] {
        let id = unique_id("rootless-net");
        let mut args = vec!["run"];
        args.extend(backend);
        args.extend(["--bundle", bundle.path().to_str().unwrap(), &id]);
        let ran = as_user(&tong, &args);
        assert!(ran.ok, "{backend:?}: rootless run failed: {}", ran.stderr);
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(
            lines[1..],
            ["lo", "0x9", "tcp-over-lo"],
            "{backend:?}: {}",
            ran.stdout
        );
        let netns = lines[0];
        assert!(netns.starts_with("net:["), "{backend:?}: {netns}");
        assert_ne!(
            netns, host_netns,
            "{backend:?}: the host's network namespace"
        );
        tong.assert_clean(&id, Some(&bundle), None);
        // Nothing holds the container's namespace any more: no process of it, no helper.
        assert_eq!(holders_of_netns(netns), Vec::<String>::new(), "{backend:?}");
    }

    // net=bridge and net=cni make interfaces on the host: refused up front, nothing made.
    for (net, what) in [
        ("net=bridge", "making a bridge and a veth pair on the host"),
        ("net=cni", "running CNI plugins"),
    ] {
        let id = unique_id("rootless-net");
        let ran = as_user(
            &tong,
            &[
                "create",
                "--backend",
                net,
                "--bundle",
                bundle.path().to_str().unwrap(),
                &id,
            ],
        );
        assert!(!ran.ok, "{net}: rootless create succeeded");
        assert!(
            ran.stderr.contains(&format!("tong: {net} setup: {what}"))
                && ran.stderr.contains(
                    "needs root: tong runs without CAP_NET_ADMIN and CAP_SYS_ADMIN (a rootless container can use net=none, the default)"
                ),
            "{net}: {}",
            ran.stderr
        );
        tong.assert_clean(&id, Some(&bundle), None);
        let left: Vec<_> = std::fs::read_dir(tong.root.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "{net}: left under the root: {left:?}");
    }
}

#[test]
fn bad_security_input_is_a_clear_error_and_leaves_nothing() {
    if !root_or_skip("bad_security_input_is_a_clear_error_and_leaves_nothing") {
        return;
    }
    let mut cfg = config(&["true"]);
    cfg["process"]["capabilities"] = all_sets(&["CAP_CHOWN", "CAP_BOGUS"]);
    refused(
        &cfg,
        "process.capabilities.bounding: unknown capability \"CAP_BOGUS\"",
    );

    let mut cfg = config(&["true"]);
    cfg["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]});
    refused(
        &cfg,
        "linux.seccomp.syscalls[0].action: unknown seccomp action \"SCMP_ACT_EXPLODE\"",
    );

    let mut cfg = config(&["true"]);
    cfg["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdir_please"], "action": "SCMP_ACT_ERRNO"}]});
    refused(
        &cfg,
        "linux.seccomp.syscalls[0].names: unknown system call \"mkdir_please\"",
    );

    let mut cfg = config(&["true"]);
    cfg["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOTIFY"});
    refused(&cfg, "SCMP_ACT_NOTIFY needs a seccomp agent");

    if !Path::new("/sys/kernel/security/apparmor").exists() {
        let mut cfg = config(&["true"]);
        cfg["process"]["apparmorProfile"] = json!("docker-default");
        refused(&cfg, "process.apparmorProfile: profile \"docker-default\" cannot be applied: AppArmor is not enabled on this host");
    }
    if !Path::new("/sys/fs/selinux/enforce").exists() {
        let mut cfg = config(&["true"]);
        cfg["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
        refused(&cfg, "SELinux is not enabled on this host");
    }
    let mut cfg = config(&["true"]);
    cfg["process"]["oomScoreAdj"] = json!(2000);
    refused(&cfg, "process.oomScoreAdj: 2000 is out of range");
}

#[test]
fn features_report_security_truthfully() {
    let out = Tong::new().ok(&["features"]);
    let f: Value = serde_json::from_str(&out).unwrap();
    let linux = &f["linux"];
    let caps: Vec<&str> = linux["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(caps.contains(&"CAP_NET_RAW") && caps.contains(&"CAP_SYS_ADMIN"));
    let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        caps.len(),
        last + 1,
        "one name per capability of this kernel"
    );
    assert_eq!(linux["seccomp"]["enabled"], true);
    let actions = linux["seccomp"]["actions"].as_array().unwrap();
    assert!(actions.contains(&json!("SCMP_ACT_ERRNO")));
    assert!(
        !actions.contains(&json!("SCMP_ACT_NOTIFY")),
        "no seccomp agent support"
    );
    assert!(linux["seccomp"]["archs"]
        .as_array()
        .unwrap()
        .contains(&json!("SCMP_ARCH_X86_64")));
    assert!(linux["seccomp"]["operators"]
        .as_array()
        .unwrap()
        .contains(&json!("SCMP_CMP_MASKED_EQ")));
    assert_eq!(
        linux["apparmor"]["enabled"],
        Path::new("/sys/kernel/security/apparmor").exists()
    );
    assert_eq!(
        linux["selinux"]["enabled"],
        Path::new("/sys/fs/selinux/enforce").exists()
    );
    assert!(linux["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("user")));
}

#[test]
fn exec_gets_the_containers_seccomp_and_its_process_capabilities() {
    if !root_or_skip("exec_gets_the_containers_seccomp_and_its_process_capabilities") {
        return;
    }
    let tong = Tong::new();
    let mut cfg = config(&["sleep", "30"]);
    cfg["process"]["noNewPrivileges"] = json!(true);
    cfg["process"]["capabilities"] = all_sets(&["CAP_KILL"]);
    cfg["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 122}]
    });
    let (bundle, id) = start_detached(&tong, &cfg, "exec-sec");
    let out = tong.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mkdir /tmp/x; echo mkdir=$?; grep -E '^(CapEff|Seccomp):' /proc/self/status",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("mkdir=1"), "{stdout}");
    assert!(stderr.contains("quota exceeded"), "{stderr}");
    assert_eq!(
        status_field(&stdout, "CapEff"),
        format!("{:016x}", 1u64 << 5)
    );
    assert_eq!(status_field(&stdout, "Seccomp"), "2");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

/// What busybox's shell, echo, cat and ls need, and nothing for making directories.
const ALLOWED: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "clone",
    "clone3",
    "close",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fcntl",
    "fstat",
    "futex",
    "getcwd",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getuid",
    "ioctl",
    "lseek",
    "lstat",
    "mmap",
    "mprotect",
    "munmap",
    "newfstatat",
    "open",
    "openat",
    "pipe",
    "pipe2",
    "poll",
    "prctl",
    "pread64",
    "prlimit64",
    "read",
    "readlink",
    "readlinkat",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sendfile",
    "set_robust_list",
    "set_tid_address",
    "setpgid",
    "sigaltstack",
    "stat",
    "statx",
    "uname",
    "vfork",
    "wait4",
    "write",
    "writev",
];

#[test]
fn a_default_deny_profile_still_starts_the_program() {
    if !root_or_skip("a_default_deny_profile_still_starts_the_program") {
        return;
    }
    // Installed last before execve, the filter needs to allow only execve of tong's
    // own calls: everything else on the list is the program's.
    let mut cfg = config(&[
        "sh",
        "-c",
        "echo started; ls / >/dev/null && echo listed; mkdir /tmp/denied",
    ]);
    cfg["process"]["noNewPrivileges"] = json!(true);
    cfg["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ALLOWED, "action": "SCMP_ACT_ALLOW"}]
    });
    let ran = run(&cfg);
    assert!(
        ran.stdout.contains("started") && ran.stdout.contains("listed"),
        "{}{}",
        ran.stdout,
        ran.stderr
    );
    assert!(!ran.ok, "mkdir should fail");
    assert!(
        ran.stderr.contains("Operation not permitted"),
        "{}",
        ran.stderr
    );
}

#[test]
fn unknown_syscall_names_can_be_skipped_by_annotation() {
    if !root_or_skip("unknown_syscall_names_can_be_skipped_by_annotation") {
        return;
    }
    let mut cfg = config(&["sh", "-c", "mkdir /tmp/x; echo mkdir=$?"]);
    cfg["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["a_syscall_from_the_future", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]});
    refused(&cfg, "unknown system call \"a_syscall_from_the_future\"");
    cfg["annotations"] = json!({"tong.seccomp.unknown-syscalls": "ignore"});
    let ran = run(&cfg);
    assert!(ran.ok, "{}", ran.stderr);
    assert!(ran.stdout.contains("mkdir=1"), "{}", ran.stdout);
    assert!(
        ran.stderr
            .contains("skipping system call \"a_syscall_from_the_future\""),
        "{}",
        ran.stderr
    );
}

#[test]
fn joining_a_user_namespace_by_path_uses_its_mapping() {
    if !root_or_skip("joining_a_user_namespace_by_path_uses_its_mapping") {
        return;
    }
    let base = 200_000;
    let tong = Tong::new();
    let (owner, owner_id) = start_detached(
        &tong,
        &userns_config(&["sleep", "30"], base),
        "userns-owner",
    );
    let pid = tong.state(&owner_id)["pid"].as_i64().unwrap();

    let data = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(data.path(), Some(base), Some(base)).unwrap();
    let mut cfg = config(&[
        "sh",
        "-c",
        "id -u; touch /run/joined && stat -c '%u' /run/joined",
    ]);
    cfg["linux"]["namespaces"] = json!([
        {"type": "user", "path": format!("/proc/{pid}/ns/user")},
        {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
    ]);
    cfg["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/run", "type": "bind", "source": data.path(), "options": ["rbind", "rw"]}));
    // Probing picks ns=fork: it joins the user namespace before creating the others,
    // so they belong to it (sethostname and mounts need that).
    for flags in [&[][..], &["--backend", "ns=fork"][..]] {
        let backend = format!("{flags:?}");
        let _ = std::fs::remove_file(data.path().join("joined"));
        let ran = run_with(&tong, &cfg, flags);
        assert!(ran.ok, "{backend}: {}", ran.stderr);
        assert_eq!(
            ran.stdout.lines().collect::<Vec<_>>(),
            ["0", "0"],
            "{backend}"
        );
        let meta = std::fs::metadata(data.path().join("joined")).unwrap();
        assert_eq!(meta.uid(), base, "{backend}");
    }
    refused_with(
        &cfg,
        &["--backend", "ns=clone3"],
        "needs them created after the join: use ns=fork",
    );
    tong.ok(&["delete", "--force", &owner_id]);
    tong.assert_clean(&owner_id, Some(&owner), None);
}

#[test]
fn exec_into_a_user_namespace_container_acts_as_its_mapped_root() {
    if !root_or_skip("exec_into_a_user_namespace_container_acts_as_its_mapped_root") {
        return;
    }
    let base = 300_000;
    let tong = Tong::new();
    let data = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(data.path(), Some(base), Some(base)).unwrap();
    let mut cfg = userns_config(&["sleep", "30"], base);
    cfg["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/run", "type": "bind", "source": data.path(), "options": ["rbind", "rw"]}));
    let (bundle, id) = start_detached(&tong, &cfg, "userns-exec");
    let out = tong.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; touch /run/from-exec && stat -c %u /run/from-exec",
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "0"], "{out}");
    let meta = std::fs::metadata(data.path().join("from-exec")).unwrap();
    assert_eq!(meta.uid(), base);
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn in_init_mode_the_init_is_under_the_filter_too() {
    if !root_or_skip("in_init_mode_the_init_is_under_the_filter_too") {
        return;
    }
    let mut cfg = config(&[
        "sh",
        "-c",
        "echo init=$(cat /proc/1/comm) $(grep ^Seccomp: /proc/1/status); mkdir /tmp/x; echo mkdir=$?",
    ]);
    cfg["process"]["noNewPrivileges"] = json!(true);
    cfg["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 122}]
    });
    let ran = run_with(&Tong::new(), &cfg, &["--init"]);
    assert!(ran.ok, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("init=tong-init Seccomp: 2"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("mkdir=1"), "{}", ran.stdout);
}
