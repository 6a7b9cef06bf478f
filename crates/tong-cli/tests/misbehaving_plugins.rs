//! Misbehaving plugins: a plugin that panics, returns an error or broken JSON at any
//! operation, or hangs. tong names the plugin, the operation and the reason in one
//! line, undoes what create made, never crashes, and a hung call ends tong through the
//! watchdog (exit 124) after TONG_PLUGIN_TIMEOUT, leaving the cleanup to delete --force.
//!
//! The plugin is tests/plugins/misbehave (built by `cargo build --workspace`), copied
//! here as a cgroup and as a network plugin.

mod common;
mod rel;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{root_or_skip, unique_id, Bundle, Tong};
use rel::{assert_gone, marked_bundle, recorded_pid, run_with};

/// A plugin directory holding the misbehaving library as `cgroup=misbehave` and
/// `net=misbehave`.
fn plugin_dir() -> tempfile::TempDir {
    let built = common::tong_bin().with_file_name("libtong_test_misbehave.so");
    assert!(
        built.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (ci/test does)",
        built.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("tong-it-misbehave-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for kind in ["cgroup", "net"] {
        let file = dir
            .path()
            .join(format!("libtong_plugin_{kind}_misbehave.so"));
        std::fs::copy(&built, &file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn tong_with(dir: &Path) -> Tong {
    let mut tong = Tong::new();
    tong.env
        .push(("TONG_PLUGIN_PATH".into(), dir.display().to_string()));
    tong
}

fn create_args<'a>(kind: &'a str, bundle: &'a Bundle, id: &'a str) -> Vec<&'a str> {
    let backend = if kind == "cgroup" {
        "cgroup=misbehave"
    } else {
        "net=misbehave"
    };
    vec![
        "create",
        "--backend",
        backend,
        "--bundle",
        bundle.path().to_str().unwrap(),
        id,
    ]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// A failed command: exit 1 (not a signal, not a crash), one line naming `expected`.
fn failed_cleanly(out: &Output, what: &str, expected: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {} {err}", out.status);
    assert!(
        err.contains(expected),
        "{what}: expected {expected:?} in: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
}

const CREATE_OPS: [(&str, &str); 4] = [
    ("cgroup", "create"),
    ("cgroup", "clone_target"),
    ("cgroup", "add_process"),
    ("net", "setup"),
];

#[test]
fn a_failing_create_step_is_named_and_undone() {
    if !root_or_skip("a_failing_create_step_is_named_and_undone") {
        return;
    }
    let dir = plugin_dir();
    let tong = tong_with(dir.path());
    for (kind, op) in CREATE_OPS {
        for how in ["panic", "error", "badjson"] {
            if how == "badjson" && !matches!(op, "create" | "setup") {
                continue; // only these two return JSON
            }
            let id = unique_id("misbehave");
            let bundle = marked_bundle(&id);
            let out = run_with(
                &tong,
                &create_args(kind, &bundle, &id),
                &[("TONG_TEST_MISBEHAVE", &format!("{op}:{how}"))],
            );
            let expected = match how {
                "panic" => format!(
                    "{kind}=misbehave {op}: plugin panicked: misbehave: {op} panics on purpose"
                ),
                "error" => format!("{kind}=misbehave {op}: misbehave: {op} refused on purpose"),
                _ => format!("{kind}=misbehave returned invalid state JSON"),
            };
            failed_cleanly(&out, &format!("{kind} {op} {how}"), &expected);
            assert_gone(&tong, &id, &bundle, None);
            println!("ok: {kind} {op} {how}: {}", stderr(&out));
        }
    }
}

#[test]
fn a_failing_teardown_is_named_the_rest_still_undone_and_a_retry_finishes() {
    if !root_or_skip("a_failing_teardown_is_named_the_rest_still_undone_and_a_retry_finishes") {
        return;
    }
    let dir = plugin_dir();
    let tong = tong_with(dir.path());
    for (kind, op) in [("cgroup", "destroy"), ("net", "teardown")] {
        for how in ["panic", "error"] {
            let id = unique_id("teardown");
            let bundle = marked_bundle(&id);
            tong.ok(&create_args(kind, &bundle, &id));
            tong.ok(&["start", &id]);
            let pid = recorded_pid(&tong, &id);
            let out = run_with(
                &tong,
                &["delete", "--force", &id],
                &[("TONG_TEST_MISBEHAVE", &format!("{op}:{how}"))],
            );
            failed_cleanly(
                &out,
                &format!("{kind} {op} {how}"),
                &format!("{kind}=misbehave {op}: "),
            );
            // Teardown went on past the failure: the process is gone already; the
            // record stays so the failed step can be retried.
            assert!(!pid.is_some_and(common::process_alive), "{kind} {op} {how}");
            assert!(tong.root.path().join(&id).exists());
            tong.ok(&["delete", "--force", &id]);
            assert_gone(&tong, &id, &bundle, pid);
            println!("ok: {kind} {op} {how}: {}", stderr(&out));
        }
    }
}

#[test]
fn failing_queries_are_named_and_leave_the_container_alone() {
    if !root_or_skip("failing_queries_are_named_and_leave_the_container_alone") {
        return;
    }
    let dir = plugin_dir();
    let tong = tong_with(dir.path());
    let id = unique_id("queries");
    let bundle = marked_bundle(&id);
    tong.ok(&create_args("cgroup", &bundle, &id));
    tong.ok(&["start", &id]);
    let cases: [(&[&str], &str, &[&str]); 4] = [
        (
            &["events", "--stats", "ID"],
            "stats",
            &["panic", "error", "badjson"],
        ),
        (&["ps", "ID"], "pids", &["panic", "error"]),
        (&["pause", "ID"], "set_frozen", &["panic", "error"]),
        (
            &["kill", "--all", "ID", "CONT"],
            "pids",
            &["panic", "error"],
        ),
    ];
    for (args, op, hows) in cases {
        for how in hows {
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "ID" { id.as_str() } else { a })
                .collect();
            let out = run_with(
                &tong,
                &args,
                &[("TONG_TEST_MISBEHAVE", &format!("{op}:{how}"))],
            );
            let expected = if *how == "badjson" {
                format!("cgroup=misbehave {op} returned invalid JSON")
            } else {
                format!("cgroup=misbehave {op}: ")
            };
            failed_cleanly(&out, &format!("{args:?} {how}"), &expected);
            assert_eq!(tong.state(&id)["status"], "running", "{args:?} {how}");
            println!("ok: {args:?} with {op}:{how}: {}", stderr(&out));
        }
    }
    let pid = recorded_pid(&tong, &id);
    tong.ok(&["delete", "--force", &id]);
    assert_gone(&tong, &id, &bundle, pid);
}

#[test]
fn a_panicking_probe_is_reported_not_fatal() {
    if !root_or_skip("a_panicking_probe_is_reported_not_fatal") {
        return;
    }
    let dir = plugin_dir();
    let tong = tong_with(dir.path());
    let env = [("TONG_TEST_MISBEHAVE", "probe:panic")];
    let out = run_with(&tong, &["plugins", "--format", "json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .iter()
        .find(|r| r["kind"] == "cgroup" && r["name"] == "misbehave")
        .expect("listed");
    assert!(
        row.to_string().contains("probe panics on purpose"),
        "the reason is shown: {row}"
    );
    let id = unique_id("probe");
    let bundle = marked_bundle(&id);
    let out = run_with(&tong, &create_args("cgroup", &bundle, &id), &env);
    failed_cleanly(&out, "probe panic", "plugin cgroup=misbehave");
    assert!(
        stderr(&out).contains("cannot work here: plugin panicked"),
        "{}",
        stderr(&out)
    );
    assert_gone(&tong, &id, &bundle, None);
    // Probing skips it: a create that does not name it works.
    let out = run_with(
        &tong,
        &["create", "--bundle", bundle.path().to_str().unwrap(), &id],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = recorded_pid(&tong, &id);
    tong.ok(&["delete", "--force", &id]);
    assert_gone(&tong, &id, &bundle, pid);
}

/// A hung call cannot be cancelled: the watchdog names it and ends tong (exit 124);
/// delete --force then undoes what was made.
#[test]
fn a_hanging_plugin_ends_tong_by_the_watchdog_and_delete_force_cleans_up() {
    if !root_or_skip("a_hanging_plugin_ends_tong_by_the_watchdog_and_delete_force_cleans_up") {
        return;
    }
    let dir = plugin_dir();
    let tong = tong_with(dir.path());
    for (kind, op) in [
        ("net", "setup"),
        ("cgroup", "create"),
        ("cgroup", "add_process"),
    ] {
        let id = unique_id("hang");
        let bundle = marked_bundle(&id);
        let out = run_with(
            &tong,
            &create_args(kind, &bundle, &id),
            &[
                ("TONG_TEST_MISBEHAVE", &format!("{op}:hang")),
                ("TONG_PLUGIN_TIMEOUT", "1"),
            ],
        );
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(124),
            "{kind} {op}: {} {err}",
            out.status
        );
        assert!(
            err.contains(&format!(
                "plugin {kind}=misbehave {op} did not return within 1s"
            )),
            "{err}"
        );
        assert!(err.contains("delete --force"), "{err}");
        let pid = recorded_pid(&tong, &id);
        tong.ok(&["delete", "--force", &id]);
        assert_gone(&tong, &id, &bundle, pid);
        println!("ok: {kind} {op} hang: {err}");
    }
    // A hang during delete: the same, then a second delete --force finishes.
    let id = unique_id("hang");
    let bundle = marked_bundle(&id);
    tong.ok(&create_args("net", &bundle, &id));
    let pid = recorded_pid(&tong, &id);
    let out = run_with(
        &tong,
        &["delete", "--force", &id],
        &[
            ("TONG_TEST_MISBEHAVE", "teardown:hang"),
            ("TONG_PLUGIN_TIMEOUT", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    tong.ok(&["delete", "--force", &id]);
    assert_gone(&tong, &id, &bundle, pid);
}
