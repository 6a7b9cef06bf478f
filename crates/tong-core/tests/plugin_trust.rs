//! The plugin host in a long-lived process (a libtong caller): a plugin directory checked
//! once is held open for later loads, and checked again at each: one that became
//! writable by others since is refused, as the first walk would have refused it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The directory the workspace's plugins were built into (beside this test's `deps/`).
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[test]
fn a_plugin_directory_that_became_writable_is_refused_on_the_next_load() {
    let test = "a_plugin_directory_that_became_writable_is_refused_on_the_next_load";
    let built = build_dir();
    let names = ["libtong_plugin_ns_fork.so", "libtong_plugin_ns_clone3.so"];
    let present = names.iter().all(|n| built.join(n).is_file());
    if !tong_testkit::require(
        test,
        present,
        format_args!(
            "the namespace plugins are not built in {} (cargo build --workspace)",
            built.display()
        ),
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("tong-plugin-trust-")
        .tempdir()
        .unwrap();
    let set_mode =
        |mode| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    set_mode(0o755);
    for name in names {
        let to = dir.path().join(name);
        std::fs::copy(built.join(name), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let first = tong::plugins::load(&dir.path().join(names[0]));
    assert!(first.is_ok(), "{:?}", first.err());

    set_mode(0o777);
    let Err(err) = tong::plugins::load(&dir.path().join(names[1])) else {
        panic!("a plugin in a directory others can write loaded");
    };
    let message = err.to_string();
    assert!(
        message.contains("refusing plugin directory")
            && message.contains("writable by group or others"),
        "{message}"
    );

    // Made safe again, the directory is walked and trusted anew.
    set_mode(0o755);
    let again = tong::plugins::load(&dir.path().join(names[1]));
    assert!(again.is_ok(), "{:?}", again.err());
}
