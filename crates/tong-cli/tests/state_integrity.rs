//! State integrity: a missing, truncated or corrupted state file gives a clear one-line
//! error naming the file and the way out, `list` keeps working, and `delete --force`
//! still removes everything the container made. State directories are private (0700).

mod common;
mod rel;

use std::os::unix::fs::PermissionsExt;

use common::{root_or_skip, unique_id, Tong};
use rel::{assert_gone, marked_bundle, recorded_pid};

/// How a test damages a state file.
fn damages(original: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let len = original.len();
    let mut flipped = original.to_vec();
    flipped[len / 2] = 0xff;
    let mut out = vec![
        ("empty", Vec::new()),
        ("one byte", original[..1].to_vec()),
        ("a quarter", original[..len / 4].to_vec()),
        ("half", original[..len / 2].to_vec()),
        ("all but the last byte", original[..len - 1].to_vec()),
        ("a bad byte in the middle", flipped),
        ("binary garbage", (0..=255u8).cycle().take(4096).collect()),
        ("null", b"null".to_vec()),
        ("an empty object", b"{}".to_vec()),
        (
            "wrong types",
            br#"{"id":7,"phase":"sideways","pid":"x"}"#.to_vec(),
        ),
    ];
    out.push(("zeros", vec![0; len]));
    out
}

#[test]
fn damaged_state_files_give_clear_errors_and_delete_force_cleans_up() {
    if !root_or_skip("damaged_state_files_give_clear_errors_and_delete_force_cleans_up") {
        return;
    }
    let tong = Tong::new();
    let probe_id = unique_id("damage");
    let probe_bundle = marked_bundle(&probe_id);
    tong.ok(&[
        "create",
        "--bundle",
        probe_bundle.path().to_str().unwrap(),
        &probe_id,
    ]);
    let original = std::fs::read(tong.root.path().join(&probe_id).join("state.json")).unwrap();
    tong.ok(&["delete", "--force", &probe_id]);

    let mut cases: Vec<(&str, Option<Vec<u8>>)> = damages(&original)
        .into_iter()
        .map(|(what, data)| (what, Some(data)))
        .collect();
    cases.push(("removed", None));
    for (what, data) in cases {
        let id = unique_id("damage");
        let bundle = marked_bundle(&id);
        tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        tong.ok(&["start", &id]);
        let pid = recorded_pid(&tong, &id);
        assert!(pid.is_some_and(common::process_alive));
        let file = tong.root.path().join(&id).join("state.json");
        // Damage keeps the container's own bytes where the case wants them (a real
        // record of this id, not of the probe).
        let data = data.map(|d| {
            let own = std::fs::read(&file).unwrap();
            if d.len() < original.len() && original.starts_with(&d) {
                own[..d.len().min(own.len())].to_vec()
            } else {
                d
            }
        });
        match &data {
            Some(d) => std::fs::write(&file, d).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }

        let err = tong.fails(&["state", &id]);
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.contains(&file.display().to_string()) && err.contains("delete --force"),
            "{what}: the error names the file and the way out: {err}"
        );
        // Other commands refuse the same way; list skips the container.
        let err = tong.fails(&["kill", &id, "KILL"]);
        assert!(err.contains("state file"), "{what}: {err}");
        let list = tong.ok(&["list", "--format", "json"]);
        assert!(!list.contains(&format!("\"{id}\"")), "{what}: {list}");

        tong.ok(&["delete", "--force", &id]);
        assert_gone(&tong, &id, &bundle, pid);
        println!("ok: state file {what}");
    }
}

#[test]
fn state_directories_are_private() {
    if !root_or_skip("state_directories_are_private") {
        return;
    }
    let tong = Tong::new();
    // A state root tong makes itself.
    let root = tong.root.path().join("fresh-root");
    let id = unique_id("mode");
    let bundle = marked_bundle(&id);
    let on_root = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::tong_bin());
        cmd.arg("--root").arg(&root).args(args);
        let out = rel::run_command(cmd);
        assert!(
            out.status.success(),
            "tong {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    on_root(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root), 0o700, "state root {}", root.display());
    assert_eq!(mode(&root.join(&id)), 0o700, "container state directory");
    assert_eq!(
        mode(&root.join(&id).join("state.json")),
        0o600,
        "state.json"
    );
    on_root(&["delete", "--force", &id]);
    assert!(!root.join(&id).exists());
    common::assert_no_cgroup(&id);
}
