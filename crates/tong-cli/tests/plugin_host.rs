//! The plugin host through the CLI: discovery order, trust refusal, ABI mismatch, probe
//! failure, selection by flag, annotation and probing, and a plugin written in C.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{config, root_or_skip, unique_id, Bundle, Tong};
use serde_json::{json, Value};

/// Compiles the C test plugin into `dir` as `libtong_plugin_net_<file_name>.so`, against
/// the generated include/tong_plugin.h.
fn build_c_plugin(dir: &Path, file_name: &str, defines: &[&str]) -> PathBuf {
    let out = dir.join(format!("libtong_plugin_net_{file_name}.so"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = manifest.join("tests/plugins/c_net_plugin.c");
    let status = Command::new("cc")
        .args([
            "-std=c11", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
        ])
        .arg(format!("-I{}", manifest.join("../../include").display()))
        .arg("-o")
        .arg(&out)
        .args(defines)
        .arg(&src)
        .status()
        .expect("cc (the C compiler) is needed for the C plugin tests");
    assert!(status.success(), "compiling {}", src.display());
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    out
}

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tong-it-plugins-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn with_plugin_path(dir: &Path) -> Tong {
    let mut tong = Tong::new();
    tong.env
        .push(("TONG_PLUGIN_PATH".into(), dir.display().to_string()));
    tong
}

/// `run` of `bundle` as `id` with the C test plugin as the network backend.
fn run_with_ctest<'a>(bundle: &'a Bundle, id: &'a str) -> [&'a str; 6] {
    let bundle = bundle.path().to_str().unwrap();
    ["run", "--backend", "net=ctest", "--bundle", bundle, id]
}

fn plugins_json(tong: &Tong) -> Vec<Value> {
    serde_json::from_str(&tong.ok(&["plugins", "--format", "json"])).unwrap()
}

fn find<'a>(rows: &'a [Value], kind: &str, name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("{kind}={name} not listed: {rows:?}"))
}

#[test]
fn lists_the_built_plugins_with_their_probes() {
    let tong = Tong::new();
    let rows = plugins_json(&tong);
    for (kind, name) in [
        ("ns", "clone3"),
        ("cgroup", "v1"),
        ("cgroup", "v2"),
        ("rootfs", "pivot"),
        ("net", "none"),
    ] {
        let row = find(&rows, kind, name);
        assert_eq!(
            row["abi"],
            format!("{}.{}", tong_abi::ABI_MAJOR, tong_abi::ABI_MINOR)
        );
        assert!(std::path::Path::new(row["path"].as_str().unwrap())
            .extension()
            .is_some_and(|e| e == "so"));
        assert!(row["probe"].is_string());
    }
    let table = tong.ok(&["plugins"]);
    assert!(
        table.contains("KIND") && table.contains("clone3"),
        "{table}"
    );
}

#[test]
fn a_plugin_written_in_c_runs_a_container() {
    if !root_or_skip("a_plugin_written_in_c_runs_a_container") {
        return;
    }
    let dir = plugin_dir();
    build_c_plugin(dir.path(), "ctest", &[]);
    let tong = with_plugin_path(dir.path());
    let bundle = Bundle::new(&config(&["sleep", "30"]));
    let id = unique_id("cplugin");
    tong.ok(&[
        "create",
        "--backend",
        "net=ctest",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(tong.state(&id)["backends"]["net"], "ctest");
    let record: Value = serde_json::from_slice(
        &std::fs::read(tong.root.path().join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        record["backends"]["net"]["state"],
        json!({"writtenIn": "C"})
    );
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn the_plugin_path_comes_before_the_binary_directory() {
    let dir = plugin_dir();
    build_c_plugin(
        dir.path(),
        "none",
        &["-DNAME=\"none\"", "-DVERSION=\"9.9-c\""],
    );
    let first = find(&plugins_json(&with_plugin_path(dir.path())), "net", "none").clone();
    assert_eq!(first["version"], "9.9-c");
    assert!(first["path"]
        .as_str()
        .unwrap()
        .starts_with(&dir.path().display().to_string()));
    let default = find(&plugins_json(&Tong::new()), "net", "none").clone();
    assert_eq!(default["version"], "0.1.0");
}

#[test]
fn untrusted_plugins_are_refused_by_name() {
    if !root_or_skip("untrusted_plugins_are_refused_by_name") {
        return;
    }
    let bundle = Bundle::new(&config(&["true"]));
    // A directory others can write.
    let open_dir = plugin_dir();
    build_c_plugin(open_dir.path(), "ctest", &[]);
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let tong = with_plugin_path(open_dir.path());
    let row = find(&plugins_json(&tong), "net", "ctest").clone();
    assert!(
        row["probe"]
            .as_str()
            .unwrap()
            .contains("writable by group or others"),
        "{row}"
    );
    let id = unique_id("trust");
    let err = tong.fails(&run_with_ctest(&bundle, &id));
    assert!(
        err.contains("refusing plugin directory")
            && err.contains(&open_dir.path().display().to_string()),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);

    // A group-writable file in a good directory.
    let dir = plugin_dir();
    let file = build_c_plugin(dir.path(), "ctest", &[]);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o775)).unwrap();
    let tong = with_plugin_path(dir.path());
    let err = tong.fails(&run_with_ctest(&bundle, &id));
    assert!(
        err.contains("refusing plugin") && err.contains(&file.display().to_string()),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_plugin_reached_through_a_symbolic_link_is_checked_where_it_lives() {
    if !root_or_skip("a_plugin_reached_through_a_symbolic_link_is_checked_where_it_lives") {
        return;
    }
    let bundle = Bundle::new(&config(&["true"]));
    // A good directory, named through a link (as /lib names /usr/lib): the plugin loads
    // and runs a container, and is listed under the link's target.
    let dir = plugin_dir();
    build_c_plugin(dir.path(), "ctest", &[]);
    let links = plugin_dir();
    let link = links.path().join("plugins");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let tong = with_plugin_path(&link);
    let row = find(&plugins_json(&tong), "net", "ctest").clone();
    assert_eq!(row["probe"], "ok", "{row}");
    let id = unique_id("trust");
    tong.ok(&run_with_ctest(&bundle, &id));
    tong.assert_clean(&id, Some(&bundle), None);

    // The same link to a directory others can write: the target's check refuses it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = tong.fails(&run_with_ctest(&bundle, &id));
    assert!(
        err.contains("refusing plugin directory")
            && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_plugin_of_another_abi_is_refused_with_both_versions() {
    if !root_or_skip("a_plugin_of_another_abi_is_refused_with_both_versions") {
        return;
    }
    let dir = plugin_dir();
    let file = build_c_plugin(
        dir.path(),
        "badabi",
        &["-DNAME=\"badabi\"", "-DABI_MAJOR=2"],
    );
    let tong = with_plugin_path(dir.path());
    let bundle = Bundle::new(&config(&["true"]));
    let id = unique_id("abi");
    let err = tong.fails(&[
        "run",
        "--backend",
        "net=badabi",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains("built for plugin ABI 2.0")
            && err.contains(&format!(
                "this tong speaks {}.{}",
                tong_abi::ABI_MAJOR,
                tong_abi::ABI_MINOR
            )),
        "{err}"
    );
    assert!(err.contains(&file.display().to_string()), "{err}");
    tong.assert_clean(&id, Some(&bundle), None);
}

/// A file found by the name asked for must hold the plugin of that name: one calling
/// itself otherwise (a renamed copy) is refused, naming both, before anything is made.
#[test]
fn a_plugin_whose_name_differs_from_its_file_name_is_refused() {
    if !root_or_skip("a_plugin_whose_name_differs_from_its_file_name_is_refused") {
        return;
    }
    let dir = plugin_dir();
    let file = build_c_plugin(dir.path(), "alias", &["-DNAME=\"ctest\""]);
    let tong = with_plugin_path(dir.path());
    let bundle = Bundle::new(&config(&["true"]));
    let id = unique_id("alias");
    let err = tong.fails(&[
        "run",
        "--backend",
        "net=alias",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains(&format!(
            "plugin {} calls itself net=\"ctest\", but its file name says net=\"alias\"",
            file.display()
        )),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);
    // `tong plugins` lists the file as unusable, for the same reason.
    let row = find(&plugins_json(&tong), "net", "alias").clone();
    assert_eq!(row["usable"], false, "{row}");
    assert!(
        row["probe"].as_str().unwrap().contains("calls itself"),
        "{row}"
    );
}

#[test]
fn a_failing_probe_is_reported_when_chosen_and_skipped_when_probing() {
    if !root_or_skip("a_failing_probe_is_reported_when_chosen_and_skipped_when_probing") {
        return;
    }
    let dir = plugin_dir();
    // Higher priority than net=none, but unusable: probing must pass over it.
    build_c_plugin(
        dir.path(),
        "noprobe",
        &["-DNAME=\"noprobe\"", "-DPROBE_FAILS", "-DPRIORITY=99"],
    );
    let tong = with_plugin_path(dir.path());
    let bundle = Bundle::new(&config(&["sleep", "30"]));
    let id = unique_id("probe");
    let err = tong.fails(&[
        "run",
        "--backend",
        "net=noprobe",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains("cannot work here") && err.contains("lacks the frobnicator"),
        "{err}"
    );
    tong.assert_clean(&id, Some(&bundle), None);

    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(tong.state(&id)["backends"]["net"], "none");
    tong.ok(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
}

#[test]
fn a_plugin_failing_mid_create_leaves_nothing() {
    if !root_or_skip("a_plugin_failing_mid_create_leaves_nothing") {
        return;
    }
    let dir = plugin_dir();
    build_c_plugin(
        dir.path(),
        "failsetup",
        &["-DNAME=\"failsetup\"", "-DSETUP_FAILS"],
    );
    let tong = with_plugin_path(dir.path());
    let bundle = Bundle::new(&config(&["sleep", "30"]));
    let id = unique_id("midfail");
    let err = tong.fails(&[
        "create",
        "--backend",
        "net=failsetup",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains("net=failsetup setup: test plugin: setup refused on purpose"),
        "{err}"
    );
    // The cgroup was made and the process cloned before the network step: all undone.
    tong.assert_clean(&id, Some(&bundle), None);
    let left: Vec<_> = std::fs::read_dir(tong.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the state root: {left:?}");
}

#[test]
fn selection_by_flag_annotation_and_probing() {
    if !root_or_skip("selection_by_flag_annotation_and_probing") {
        return;
    }
    let tong = Tong::new();
    let check = |cfg: &Value, flags: &[&str], expected: &str| {
        let bundle = Bundle::new(cfg);
        let id = unique_id("select");
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--bundle", bundle.path().to_str().unwrap(), &id]);
        tong.ok(&args);
        assert_eq!(tong.state(&id)["backends"]["cgroup"], expected, "{flags:?}");
        tong.ok(&["delete", "--force", &id]);
        tong.assert_clean(&id, Some(&bundle), None);
    };
    let plain = config(&["true"]);
    // Probing: v1 wins on this hybrid host (v2 holds only hugetlb here).
    check(&plain, &[], "v1");
    check(&plain, &["--backend", "cgroup=v2"], "v2");
    let mut annotated = plain.clone();
    annotated["annotations"] = json!({"tong.backend.cgroup": "v2"});
    check(&annotated, &[], "v2");
    // The flag beats the annotation.
    check(&annotated, &["--backend", "cgroup=v1"], "v1");
}

/// The plugin files a live process has mapped.
fn mapped_plugins(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut names: Vec<String> = maps
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter(|f| f.starts_with("libtong_plugin_"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn probing_loads_only_the_chosen_plugins_once_their_priorities_are_known() {
    if !root_or_skip("probing_loads_only_the_chosen_plugins_once_their_priorities_are_known") {
        return;
    }
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["sleep", "30"]));
    let b = bundle.path().to_str().unwrap();
    // The first selection loads every candidate to learn its priority and caches it.
    let first = unique_id("cache");
    tong.ok(&["create", "--bundle", b, &first]);
    tong.ok(&["delete", "--force", &first]);
    assert!(Path::new("/run/tong-plugin-cache/priorities.json").is_file());

    // A foreground `run` stays alive while the container sleeps: read what it mapped.
    let id = unique_id("cache");
    let mut run = tong
        .command(&["run", "--bundle", b, &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut mapped = Vec::new();
    for _ in 0..200 {
        let state = tong.run(&["state", &id]);
        if state.status.success()
            && serde_json::from_slice::<Value>(&state.stdout).unwrap()["status"] == "running"
        {
            mapped = mapped_plugins(run.id());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tong.ok(&["kill", &id, "KILL"]);
    run.wait().unwrap();
    tong.run(&["delete", "--force", &id]);
    tong.assert_clean(&id, Some(&bundle), None);
    assert_eq!(
        mapped,
        [
            "libtong_plugin_cgroup_v1.so",
            "libtong_plugin_net_none.so",
            "libtong_plugin_ns_clone3.so",
            "libtong_plugin_rootfs_pivot.so",
        ],
        "a run after the first should load one plugin per kind"
    );
}

#[test]
fn unknown_plugins_and_bad_backend_flags_are_errors() {
    let tong = Tong::new();
    let bundle = Bundle::new(&config(&["true"]));
    let b = bundle.path().to_str().unwrap();
    let err = tong.fails(&["run", "--backend", "cgroup=nope", "--bundle", b, "x"]);
    assert!(err.contains("no cgroup plugin named \"nope\""), "{err}");
    let err = tong.fails(&["run", "--backend", "gpu=x", "--bundle", b, "x"]);
    assert!(err.contains("unknown kind"), "{err}");
    let err = tong.fails(&["run", "--backend", "cgroup", "--bundle", b, "x"]);
    assert!(err.contains("KIND=NAME"), "{err}");
    assert_eq!(
        std::fs::read_dir(tong.root.path()).map_or(0, Iterator::count),
        0
    );
}
