//! The workspace's `rust-version` is its real minimum as far as the dependencies go:
//! no package cargo builds for this host (normal, build and dev dependencies, at the
//! versions in Cargo.lock) declares a newer one. Our own code's use of the standard
//! library is checked by clippy's `incompatible_msrv` lint, which reads the same
//! `rust-version` (`cargo clippy -- -D warnings` in `.ci/run`). Language features and a
//! real build with that toolchain are not checked here (docs/testing.md).

use std::process::Command;

use serde_json::Value;

/// "1.85" or "1.85.0" as (1, 85, 0).
fn version(text: &str) -> (u32, u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn host_triple() -> String {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_string()
}

#[test]
fn no_dependency_needs_a_newer_rust_than_the_workspace_declares() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&Value> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let packages = meta["packages"].as_array().unwrap();
    let ours = version(env!("CARGO_PKG_RUST_VERSION"));
    // Every member inherits the workspace's value.
    for p in packages.iter().filter(|p| members.contains(&&p["id"])) {
        assert_eq!(
            p["rust_version"].as_str().map(version),
            Some(ours),
            "{} does not declare the workspace's rust-version",
            p["name"]
        );
    }
    // Only what the resolve for this host reaches (not e.g. Windows-only crates).
    let resolved: Vec<&Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    let newer: Vec<String> = packages
        .iter()
        .filter(|p| resolved.contains(&&p["id"]))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > ours).then(|| {
                format!(
                    "{} {} needs {needs}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                )
            })
        })
        .collect();
    assert!(
        newer.is_empty(),
        "rust-version {} is below what these dependencies declare: {newer:?}",
        env!("CARGO_PKG_RUST_VERSION")
    );
}
