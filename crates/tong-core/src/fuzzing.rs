//! Entry points of the fuzz targets (`fuzz/`, run by `ci/fuzz`) and of their replay over
//! the saved corpus and crashes (`tests/fuzz_regressions.rs`). Each takes any bytes; it
//! panics only when a property the engine relies on breaks.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;
use tong_abi::PluginKind;

use crate::config::Bundle;
use crate::namespaces::NamespacePlan;
use crate::state::{BackendRecord, Phase, Record};

/// config.json: parsed and checked as `create` does (against a real, empty bundle);
/// an accepted config also passes the process checks made before any clone.
pub fn config(data: &[u8]) {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUNDLE.get_or_init(|| {
        // One fixed, empty bundle shared by every run (only read): nothing piles up in /tmp.
        let dir = std::env::temp_dir().join("tong-fuzz-bundle");
        std::fs::create_dir_all(dir.join("rootfs")).expect("fuzz bundle");
        dir
    });
    let Ok(bundle) = Bundle::from_config(dir.clone(), data) else {
        return;
    };
    let plan = NamespacePlan::from_spec(&bundle.spec);
    let _ = plan.has(libc::CLONE_NEWNET);
    if let Some(process) = bundle.spec.process() {
        let _ = crate::launch::check_process(process);
    }
}

/// The process JSON of `exec --process FILE`.
pub fn exec_process(data: &[u8]) {
    if let Ok(process) = serde_json::from_slice::<oci_spec::runtime::Process>(data) {
        let _ = crate::launch::check_process(&process);
    }
}

/// What a plugin hands back. State JSON that tong accepts must come back to the plugin
/// with the same meaning after a trip through the state file; pids and stats parse or
/// fail cleanly.
pub fn plugin_json(data: &[u8]) {
    let _ = serde_json::from_slice::<Vec<i32>>(data);
    let _ = serde_json::from_slice::<tong_plugin_sdk::wire::CgroupStats>(data);
    let Ok(state) = crate::runtime::plugin_state(PluginKind::Cgroup, "fuzz", data) else {
        return;
    };
    let mut record = sample_record();
    record.backends.insert(
        PluginKind::Cgroup.as_str().to_string(),
        BackendRecord {
            name: "fuzz".into(),
            path: PathBuf::from("/fuzz.so"),
            state: Some(state.clone()),
            request: None,
        },
    );
    let text = serde_json::to_vec(&record).expect("a record with accepted plugin state encodes");
    let back: Record = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("a record with accepted plugin state does not read back: {e}"));
    let handed_back = back
        .backend_state(PluginKind::Cgroup)
        .expect("plugin state kept");
    let again: Value = serde_json::from_slice(&handed_back).expect("handed-back state parses");
    assert_eq!(
        again, state,
        "plugin state changed on its way through the state file"
    );
}

/// A state file: read strictly (a record, which then writes and reads back the same),
/// and salvaged (whatever is readable of damaged bytes).
pub fn state_file(data: &[u8]) {
    if let Ok(record) = serde_json::from_slice::<Record>(data) {
        let text = serde_json::to_vec(&record).expect("a record read encodes");
        let back: Record = serde_json::from_slice(&text)
            .unwrap_or_else(|e| panic!("a record written does not read back: {e}"));
        assert_eq!(
            serde_json::to_value(&back).ok(),
            serde_json::to_value(&record).ok()
        );
    }
    let salvaged = crate::salvage::record("fuzz", data);
    assert_eq!(salvaged.id, "fuzz");
}

fn sample_record() -> Record {
    Record {
        id: "fuzz".into(),
        phase: Phase::Created,
        pid: 1,
        pid_start: 1,
        backends: std::collections::BTreeMap::new(),
        bundle: PathBuf::from("/bundle"),
        oci_version: "1.0.2".into(),
        rootfs: PathBuf::from("/bundle/rootfs"),
        created: String::new(),
        paused: false,
        owner: 0,
        annotations: std::collections::BTreeMap::new(),
        hooks: None,
    }
}
