//! prepare/cleanup on real directories (no mount: the overlay is mounted by the child;
//! the end-to-end tests in crates/tong-cli/tests/rootfs.rs run containers on it).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::json;

use super::*;

/// A temp dir with `bundle/rootfs`, `bundle/layer2` and `state/`; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tong-overlay-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["bundle/rootfs", "bundle/layer2", "state"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::set_permissions(
            dir.join("bundle/rootfs"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        Scratch(dir)
    }

    fn request(&self, annotation: Option<&str>) -> Vec<u8> {
        let mut req = json!({
            "id": "x",
            "bundle": self.0.join("bundle"),
            "stateDir": self.0.join("state"),
            "rootfs": self.0.join("bundle/rootfs"),
        });
        if let Some(a) = annotation {
            req["annotations"] = json!({ LOWERDIRS_ANNOTATION: a });
        }
        serde_json::to_vec(&req).unwrap()
    }

    fn layer(&self) -> PathBuf {
        self.0.join("state").join(LAYER_DIR)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn overlay_data(plan: &Plan) -> String {
    match &plan.root_mount {
        RootMount::Overlay { data } => data.to_string_lossy().into_owned(),
        RootMount::Bind => panic!("not an overlay plan"),
    }
}

#[test]
fn prepare_makes_a_layer_and_cleanup_removes_it() {
    let s = Scratch::new("layer");
    let (plan, state) = OverlayRootfs::prepare(&s.request(Some("layer2"))).unwrap();
    let layer = s.layer();
    assert_eq!(plan.enter, Enter::Pivot);
    assert_eq!(
        plan.rootfs.to_bytes(),
        layer.join("merged").as_os_str().as_encoded_bytes()
    );
    let data = overlay_data(&plan);
    assert_eq!(
        data,
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            s.0.join("bundle/rootfs").display(),
            s.0.join("bundle/layer2").display(),
            layer.join("upper").display(),
            layer.join("work").display()
        )
    );
    for sub in ["upper", "work", "merged"] {
        assert!(layer.join(sub).is_dir(), "{sub} missing");
    }
    // The merged root shows the upper's mode: it copies root.path's.
    let mode = std::fs::metadata(layer.join("upper"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o751);
    let st: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(st["layer"], layer.display().to_string());

    // A second prepare for the same state dir refuses to reuse the layer.
    let e = OverlayRootfs::prepare(&s.request(None))
        .unwrap_err()
        .message;
    assert!(e.contains("already exists"), "{e}");

    OverlayRootfs::cleanup(&state).unwrap();
    assert!(!layer.exists());
    OverlayRootfs::cleanup(&state).unwrap();
    OverlayRootfs::cleanup(b"{}").unwrap();
    // The bundle is untouched.
    assert_eq!(
        std::fs::read_dir(s.0.join("bundle/rootfs"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn bad_layers_are_refused_and_leave_nothing() {
    let s = Scratch::new("bad");
    for (annotation, want) in [
        ("layer2::layer2", "empty entry"),
        ("missing-layer", "missing-layer"),
        ("/", "not a directory other than /"),
    ] {
        let e = OverlayRootfs::prepare(&s.request(Some(annotation)))
            .unwrap_err()
            .message;
        assert!(e.contains(want), "{annotation}: {e}");
        assert!(!s.layer().exists(), "{annotation}: layer left behind");
    }
    std::fs::create_dir(s.0.join("bundle/a,b")).unwrap();
    let e = OverlayRootfs::prepare(&s.request(Some("a,b")))
        .unwrap_err()
        .message;
    assert!(e.contains("cannot carry"), "{e}");
    assert!(!s.layer().exists());

    let mut req: serde_json::Value = serde_json::from_slice(&s.request(None)).unwrap();
    req["userNamespace"] = json!(true);
    let e = OverlayRootfs::prepare(&serde_json::to_vec(&req).unwrap())
        .unwrap_err()
        .message;
    assert!(e.contains("does not support user namespaces"), "{e}");
    assert!(!s.layer().exists());

    req["userNamespace"] = json!(false);
    req["stateDir"] = json!("relative/state");
    let e = OverlayRootfs::prepare(&serde_json::to_vec(&req).unwrap())
        .unwrap_err()
        .message;
    assert!(e.contains("state directory"), "{e}");
}

#[test]
fn cleanup_refuses_a_foreign_directory() {
    let e = OverlayRootfs::cleanup(br#"{"layer":"/etc"}"#)
        .unwrap_err()
        .message;
    assert!(e.contains("not a rootfs-overlay directory"), "{e}");
    assert!(std::path::Path::new("/etc").exists());
}

#[test]
fn exported_table_reports_errors_and_state() {
    let s = Scratch::new("table");
    let state = tong_rootfs_common::testing::check_exported_table(
        crate::tong_plugin_entry,
        c"overlay",
        10,
        &s.request(None),
    );
    assert!(String::from_utf8_lossy(&state).contains(LAYER_DIR));
    assert!(!s.layer().exists(), "cleanup left the layer");
}
