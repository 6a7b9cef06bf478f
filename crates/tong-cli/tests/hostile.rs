//! Hostile configs: huge values, negative limits, absurd mounts, non-UTF-8 bytes, deep
//! nesting, a 100 MB config. Each is refused with one clear line that names the
//! problem, and leaves nothing on the host (state directory, cgroup, mount, process).
//! A few hostile-looking configs are valid and must run contained instead.

mod common;
mod rel;

use std::os::unix::ffi::OsStrExt;

use common::{config, root_or_skip, unique_id, Tong};
use serde_json::{json, Value};

fn with(mut cfg: Value, change: impl FnOnce(&mut Value)) -> Value {
    change(&mut cfg);
    cfg
}

fn resources(r: Value) -> Value {
    with(config(&["sleep", "30"]), |c| c["linux"]["resources"] = r)
}

fn mount(m: Value) -> Value {
    with(config(&["sleep", "30"]), |c| {
        c["mounts"].as_array_mut().unwrap().push(m);
    })
}

/// A config's JSON text with `extra` spliced in as the last member.
fn spliced(cfg: &Value, extra: &[u8]) -> Vec<u8> {
    let mut text = serde_json::to_vec(cfg).unwrap();
    text.pop(); // the closing brace
    text.extend_from_slice(b",");
    text.extend_from_slice(extra);
    text.extend_from_slice(b"}");
    text
}

/// (case, config.json bytes, what the error must say)
fn matrix() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let json = |v: Value| serde_json::to_vec(&v).unwrap();
    let base = config(&["sleep", "30"]);
    let without_process = with(base.clone(), |c| {
        c.as_object_mut().unwrap().remove("process");
    });
    let deep = 100_000;
    let mut cases = vec![
        (
            "memory limit above i64",
            json(resources(json!({"memory": {"limit": u64::MAX}}))),
            "expected i64 at line 1 column",
        ),
        (
            "memory limit of 2^70",
            json(resources(json!({"memory": {"limit": 2f64.powi(70)}}))),
            "expected i64 at line 1 column",
        ),
        (
            "negative memory limit",
            json(resources(json!({"memory": {"limit": -5}}))),
            "memory.limit = -5 is invalid: use -1 for unlimited",
        ),
        (
            "a 1-byte memory limit",
            json(resources(json!({"memory": {"limit": 1}}))),
            "the container process was killed by SIGKILL during setup",
        ),
        (
            "negative pids limit",
            json(resources(json!({"pids": {"limit": -7}}))),
            "pids.limit = -7 is invalid",
        ),
        (
            "pids limit of 2^62",
            json(resources(json!({"pids": {"limit": 1i64 << 62}}))),
            "4611686018427387904",
        ),
        (
            "negative cpu shares",
            json(resources(json!({"cpu": {"shares": -1}}))),
            "expected u64 at line 1 column",
        ),
        (
            "negative cpu quota",
            json(resources(
                json!({"cpu": {"quota": -100, "period": 100_000}}),
            )),
            "cpu.quota = -100 is invalid",
        ),
        (
            "100001 cpus",
            json(resources(json!({"cpu": {"cpus": "0-100000"}}))),
            "cpuset.cpus",
        ),
        (
            "garbage cpus",
            json(resources(json!({"cpu": {"cpus": "abc"}}))),
            "cpuset.cpus",
        ),
        (
            "relative mount destination",
            json(mount(
                json!({"destination": "proc2", "type": "proc", "source": "proc"}),
            )),
            "mount destination \"proc2\" must be an absolute path",
        ),
        (
            "empty mount destination",
            json(mount(
                json!({"destination": "", "type": "tmpfs", "source": "tmpfs"}),
            )),
            "mount destination \"\" must be an absolute path",
        ),
        (
            "unknown filesystem type",
            json(mount(
                json!({"destination": "/x", "type": "nosuchfs", "source": "none"}),
            )),
            "mount nosuchfs on /x: No such device",
        ),
        (
            "missing bind source",
            json(mount(
                json!({"destination": "/x", "type": "bind", "source": "/nonexistent/src", "options": ["bind"]}),
            )),
            "bind source /nonexistent/src: No such file or directory",
        ),
        (
            "unknown mount option",
            json(mount(
                json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["frobnicate"]}),
            )),
            "mount tmpfs on /x: Invalid argument",
        ),
        (
            "5000-byte mount destination",
            json(mount(
                json!({"destination": format!("/{}", "a".repeat(5000)), "type": "tmpfs", "source": "tmpfs"}),
            )),
            "aaaa",
        ),
        (
            "NUL in process.args",
            json(with(base.clone(), |c| {
                c["process"]["args"] = json!(["sl\u{0}eep", "1"]);
            })),
            "process.args contains a NUL byte",
        ),
        (
            "NUL in process.env",
            json(with(base.clone(), |c| {
                c["process"]["env"] = json!(["A=\u{0}"]);
            })),
            "process.env contains a NUL byte",
        ),
        (
            "1000-byte hostname",
            json(with(base.clone(), |c| {
                c["hostname"] = json!("h".repeat(1000));
            })),
            "hostname is 1000 bytes long: Linux allows at most 64",
        ),
        (
            "uid 2^32-1 (\"unchanged\")",
            json(with(base.clone(), |c| {
                c["process"]["user"]["uid"] = json!(u32::MAX);
            })),
            "process.user.uid 4294967295 is not a valid id",
        ),
        (
            "gid 2^32-1 (\"unchanged\")",
            json(with(base.clone(), |c| {
                c["process"]["user"]["gid"] = json!(u32::MAX);
            })),
            "process.user.gid 4294967295 is not a valid id",
        ),
        (
            "uid above 2^32",
            json(with(base.clone(), |c| {
                c["process"]["user"]["uid"] = json!(1u64 << 33);
            })),
            "expected u32 at line 1 column",
        ),
        (
            "cgroupsPath escaping with ..",
            json(with(base.clone(), |c| {
                c["linux"]["cgroupsPath"] = json!("/../../../escape");
            })),
            "must not contain \"..\"",
        ),
        (
            "a file as a namespace to join",
            json(with(base.clone(), |c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "cgroup", "path": "/etc/hostname"}));
            })),
            "setns into the cgroup namespace given in linux.namespaces: Invalid argument",
        ),
        (
            "duplicate namespace",
            json(with(base.clone(), |c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "pid"}));
            })),
            "lists Pid twice",
        ),
        (
            "a lone surrogate escape",
            serde_json::to_vec(&base)
                .unwrap()
                .split(|&b| b == b'\n')
                .next()
                .unwrap()
                .to_vec()
                .into_iter()
                .collect::<Vec<u8>>()
                .pipe_replace(b"\"sleep\"", b"\"\\udcff\""),
            "lone leading surrogate in hex escape at line 1 column",
        ),
        (
            "non-UTF-8 bytes in a string",
            serde_json::to_vec(&base)
                .unwrap()
                .pipe_replace(b"\"sleep\"", b"\"sl\xffeep\""),
            "invalid unicode code point at line 1 column",
        ),
        (
            "100,000 nested arrays where the process goes",
            spliced(
                &without_process,
                &[
                    b"\"process\":".as_slice(),
                    &b"[".repeat(deep),
                    &b"]".repeat(deep),
                ]
                .concat(),
            ),
            "at line 1 column",
        ),
        (
            "nested objects as an annotation value",
            spliced(
                &base,
                &[
                    b"\"annotations\":{\"a\":".as_slice(),
                    &b"{".repeat(200),
                    &b"}".repeat(200),
                    b"}",
                ]
                .concat(),
            ),
            "expected a string at line 1 column",
        ),
        (
            "not JSON at all",
            b"\x7fELF\x02\x01\x01\x00".to_vec(),
            "expected value at line 1 column 1",
        ),
    ];
    // 100 MB: a huge annotation, and the same size of whitespace.
    let big = spliced(
        &base,
        &[
            b"\"annotations\":{\"big\":\"".as_slice(),
            &b"x".repeat(100 << 20),
            b"\"}",
        ]
        .concat(),
    );
    cases.push((
        "a 100 MB annotation",
        big,
        "bytes: tong accepts at most 8388608 (8 MiB)",
    ));
    let mut blank = serde_json::to_vec(&base).unwrap();
    blank.resize(blank.len() + (100 << 20), b' ');
    cases.push((
        "100 MB of whitespace",
        blank,
        "bytes: tong accepts at most 8388608 (8 MiB)",
    ));
    cases
}

trait PipeReplace {
    fn pipe_replace(self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl PipeReplace for Vec<u8> {
    /// Replaces the first occurrence of `from`.
    fn pipe_replace(self, from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = self
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern in config");
        [&self[..at], to, &self[at + from.len()..]].concat()
    }
}

#[test]
fn every_hostile_config_gets_one_clear_line_and_leaves_nothing() {
    if !root_or_skip("every_hostile_config_gets_one_clear_line_and_leaves_nothing") {
        return;
    }
    let tong = Tong::new();
    let mut failures = Vec::new();
    for (case, bytes, expected) in matrix() {
        let id = unique_id("hostile");
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(bundle.path().join("config.json"), &bytes).unwrap();
        let out = tong.run(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let shown: String = err.chars().take(200).collect();
        if out.status.success() {
            failures.push(format!("{case}: accepted"));
        } else if !err.contains(expected) || err.lines().count() != 1 || !err.starts_with("tong: ")
        {
            failures.push(format!(
                "{case}: expected one line with {expected:?}, got: {shown}"
            ));
        } else {
            println!("ok: {case}: {shown}");
        }
        assert_eq!(
            out.status.code(),
            Some(1),
            "{case}: exit status {}",
            out.status
        );
        assert!(
            !tong.root.path().join(&id).exists(),
            "{case}: state directory left"
        );
        common::assert_no_cgroup(&id);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mountinfo.contains(&common::rootfs().display().to_string()),
            "{case}: mount left"
        );
        assert!(
            rel::processes_with_arg(&id).is_empty(),
            "{case}: process left"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Hostile-looking but valid: they run, contained, and leave nothing.
#[test]
fn hostile_but_valid_configs_run_contained() {
    if !root_or_skip("hostile_but_valid_configs_run_contained") {
        return;
    }
    let tong = Tong::new();
    let escape = format!("/tmp/tong-hostile-escape-{}", std::process::id());
    let deep = 100_000;
    let base = config(&["sh", "-c", "touch /x/escaped"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // `..` in a destination resolves inside the rootfs, never onto the host.
        (
            "a mount destination climbing out with ..",
            serde_json::to_vec(&with(base.clone(), |c| {
                c["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": format!("/../../../../..{escape}/../../x"),
                    "type": "tmpfs", "source": "tmpfs"}));
            }))
            .unwrap(),
        ),
        // Unknown properties are ignored, however deep (no stack overflow).
        (
            "100,000 nested arrays in an unknown property",
            spliced(&with(base.clone(), |c| {
                c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs"}));
            }), &[b"\"x-unknown\":".as_slice(), &b"[".repeat(deep), &b"]".repeat(deep)].concat()),
        ),
        // 3,000 mounts.
        (
            "3,000 tmpfs mounts",
            serde_json::to_vec(&with(base.clone(), |c| {
                let m = c["mounts"].as_array_mut().unwrap();
                m.push(json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs"}));
                for i in 0..3000 {
                    m.push(json!({"destination": format!("/tmp/m{i}"), "type": "tmpfs", "source": "tmpfs"}));
                }
            }))
            .unwrap(),
        ),
    ];
    for (case, bytes) in cases {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(bundle.path().join("config.json"), &bytes).unwrap();
        let id = unique_id("contained");
        let out = tong.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !std::path::Path::new(&escape).exists(),
            "{case}: escaped to the host"
        );
        assert!(!tong.root.path().join(&id).exists(), "{case}: state left");
        common::assert_no_cgroup(&id);
        println!("ok: {case}");
    }
}

/// A bundle path that is not UTF-8 cannot be reported in the OCI state (a JSON
/// string): refused up front with one clear line, nothing made.
#[test]
fn a_non_utf8_bundle_path_is_refused_clearly() {
    if !root_or_skip("a_non_utf8_bundle_path_is_refused_clearly") {
        return;
    }
    let tong = Tong::new();
    let parent = tempfile::tempdir().unwrap();
    let bundle = parent
        .path()
        .join(std::ffi::OsStr::from_bytes(b"bundle-\xff\xfe"));
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&config(&["true"])).unwrap(),
    )
    .unwrap();
    let id = unique_id("nonutf8");
    let mut cmd = tong.command(&["run", "--bundle"]);
    cmd.arg(&bundle).arg(&id);
    let out = rel::run_command(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not valid UTF-8"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!tong.root.path().join(&id).exists());
    common::assert_no_cgroup(&id);
}
