//! A container's OCI state as `state`, `list` and the hooks show it: the status computed
//! from the record and the process, the owner's name, the annotations shown.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tong_abi::PluginKind;

use crate::host::Host;
use crate::options::{ContainerState, Status};
use crate::state::{self, Phase, Record};

/// The live status, from the record and the process.
pub(crate) fn status_of(host: &dyn Host, record: &Record, dir: &Path) -> Status {
    let alive = record.pid > 0 && host.is_alive(record.pid, record.pid_start);
    match record.phase {
        Phase::Creating if alive => Status::Creating,
        _ if !alive => Status::Stopped,
        Phase::Created if dir.join(state::FIFO_FILE).exists() => Status::Created,
        _ if record.paused => Status::Paused,
        _ => Status::Running,
    }
}

/// The user name of a uid, or the number when it has none.
pub(crate) fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// The OCI state of the container recorded in `record` (its directory `dir`).
pub(crate) fn oci_state(
    host: &dyn Host,
    record: &Record,
    dir: &Path,
    owner: String,
) -> ContainerState {
    state_as(record, status_of(host, record, dir), owner)
}

/// The state JSON given to hooks that run in the runtime's namespaces, with `status`.
pub(crate) fn hook_state(record: &Record, status: Status) -> Vec<u8> {
    state_json(&state_as(record, status, owner_name(record.owner)))
}

/// The state of a hook that runs in the container's namespaces (createContainer,
/// startContainer): its pid is the process's pid as seen in the container (1 in a new
/// pid namespace), as the runtime spec says and runc gives.
pub(crate) fn container_hook_state(record: &Record, status: Status) -> Vec<u8> {
    let mut state = state_as(record, status, owner_name(record.owner));
    state.pid = pid_in_container(record.pid);
    state_json(&state)
}

/// The state with `status`; a stopped container has no pid (0).
fn state_as(record: &Record, status: Status, owner: String) -> ContainerState {
    ContainerState {
        oci_version: record.oci_version.clone(),
        id: record.id.clone(),
        status,
        pid: if status == Status::Stopped {
            0
        } else {
            record.pid
        },
        bundle: record.bundle.clone(),
        rootfs: record.rootfs.clone(),
        created: record.created.clone(),
        owner,
        annotations: shown_annotations(record),
        backends: record
            .backends
            .iter()
            .map(|(k, b)| (k.clone(), b.name.clone()))
            .collect(),
    }
}

/// The config's annotations plus those the network backend reports about what it set
/// up (its state's `annotations` object: address, CNI result...).
fn shown_annotations(record: &Record) -> BTreeMap<String, String> {
    let mut shown = record.annotations.clone();
    let reported = record
        .backend(PluginKind::Network)
        .and_then(|b| b.state.as_ref())
        .and_then(|s| s.get("annotations"))
        .and_then(Value::as_object);
    for (k, v) in reported.into_iter().flatten() {
        if let Some(v) = v.as_str() {
            shown.insert(k.clone(), v.to_string());
        }
    }
    shown
}

/// A hook's state JSON; a stopped container has no pid (omitted, as runc).
fn state_json(state: &ContainerState) -> Vec<u8> {
    let mut value = serde_json::to_value(state).unwrap_or_default();
    if state.pid == 0 {
        if let Some(map) = value.as_object_mut() {
            map.remove("pid");
        }
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `pid` in its innermost pid namespace: the last NSpid of /proc/PID/status.
fn pid_in_container(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            line.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or(pid)
}

#[cfg(test)]
pub(crate) mod tests {
    //! The status rules and the state shown, without root: a fake kernel says which
    //! processes live.

    use std::path::PathBuf;

    use super::*;
    use crate::host::fake::FakeHost;
    use crate::state::BackendRecord;

    pub(crate) fn record(phase: Phase, pid: i32, pid_start: u64, paused: bool) -> Record {
        Record {
            oci_version: "1.0.2".into(),
            id: "t".into(),
            bundle: PathBuf::from("/b"),
            rootfs: PathBuf::from("/b/rootfs"),
            created: String::new(),
            annotations: BTreeMap::new(),
            phase,
            pid,
            pid_start,
            paused,
            owner: 0,
            backends: BTreeMap::new(),
            hooks: None,
        }
    }

    #[test]
    fn status_follows_the_record_and_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::default();
        host.start(42, 7);
        let live = |phase, paused| status_of(&host, &record(phase, 42, 7, paused), dir.path());
        assert_eq!(live(Phase::Creating, false), Status::Creating);
        // Created only while the exec fifo is there (start removes it).
        assert_eq!(live(Phase::Created, false), Status::Running);
        std::fs::write(dir.path().join(state::FIFO_FILE), b"").unwrap();
        assert_eq!(live(Phase::Created, false), Status::Created);
        assert_eq!(live(Phase::Running, false), Status::Running);
        assert_eq!(live(Phase::Running, true), Status::Paused);
        // The pid with another start time is a recycled pid: not the container.
        let recycled = record(Phase::Running, 42, 8, false);
        assert_eq!(status_of(&host, &recycled, dir.path()), Status::Stopped);
        // A process that is gone is stopped, whatever the record says.
        for phase in [Phase::Creating, Phase::Created, Phase::Running] {
            let gone = record(phase, 43, 7, true);
            assert_eq!(status_of(&host, &gone, dir.path()), Status::Stopped);
        }
        // No process yet: never asks the kernel about pid 0.
        host.start(0, 0);
        let unborn = record(Phase::Creating, 0, 0, false);
        assert_eq!(status_of(&host, &unborn, dir.path()), Status::Stopped);
    }

    #[test]
    fn the_kernel_says_a_reaped_child_is_gone_and_we_live() {
        // The real seam on real processes: this test process, and a child reaped.
        let host = crate::host::Kernel;
        let me = std::process::id() as i32;
        let start = state::process_start_time(me).unwrap();
        assert!(host.is_alive(me, start));
        assert!(!host.is_alive(me, start + 1));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!host.is_alive(pid, 1));
    }

    #[test]
    fn a_stopped_container_shows_no_pid_and_the_networks_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::default();
        let mut rec = record(Phase::Running, 42, 7, false);
        rec.annotations.insert("a".into(), "config".into());
        rec.backends.insert(
            "net".into(),
            BackendRecord {
                name: "bridge".into(),
                path: PathBuf::from("/p"),
                state: Some(serde_json::json!({"annotations": {"ip": "10.0.0.2", "n": 1}})),
                request: None,
            },
        );
        let state = oci_state(&host, &rec, dir.path(), "root".into());
        assert_eq!((state.status, state.pid), (Status::Stopped, 0));
        assert_eq!(state.backends["net"], "bridge");
        // String values only.
        let shown: Vec<_> = state.annotations.iter().collect();
        assert_eq!(
            shown,
            [
                (&"a".to_string(), &"config".to_string()),
                (&"ip".into(), &"10.0.0.2".into())
            ]
        );
        let json: Value = serde_json::from_slice(&state_json(&state)).unwrap();
        assert!(json.get("pid").is_none(), "{json}");
        assert_eq!(json["status"], "stopped");

        host.start(42, 7);
        let state = oci_state(&host, &rec, dir.path(), "root".into());
        assert_eq!((state.status, state.pid), (Status::Running, 42));
        let json: Value = serde_json::from_slice(&hook_state(&rec, Status::Creating)).unwrap();
        assert_eq!(
            (json["status"].as_str(), json["pid"].as_i64()),
            (Some("creating"), Some(42))
        );
    }
}
