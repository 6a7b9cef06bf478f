//! Undoing a container: what `delete` does, and what a failed `create` does to itself.
//! Everything the record says exists is undone (the process, network, cgroup, rootfs),
//! also what a create killed half-way made but could not record.

use tong_abi::PluginKind;
use tong_plugin_sdk::wire;

use crate::backend_record::{cgroup_request, recorded_plugin, to_json};
use crate::error::Result;
use crate::host::Host;
use crate::plugins::{CgroupBackend, NetworkBackend, PluginHost, RootfsBackend};
use crate::state::{self, ContainerDir, Record};
use crate::{fault, salvage};

/// Undoes everything a record says exists: the process, network, cgroup, rootfs.
/// Keeps going after a failure and reports the first.
pub(crate) fn teardown(plugins: &PluginHost, host: &dyn Host, record: &Record) -> Result<()> {
    let mut first_error = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    };
    if record.pid > 0 {
        note(host.kill_and_reap(record.pid, record.pid_start));
    }
    fault::point("teardown:init-killed", record.pid);
    for kind in [PluginKind::Network, PluginKind::Cgroup, PluginKind::Rootfs] {
        let Some(backend) = record.backend(kind) else {
            continue;
        };
        let state = match (&backend.state, &backend.request) {
            (Some(state), _) => serde_json::to_vec(state).unwrap_or_default(),
            // Create may have made the cgroup and died before recording its state:
            // creating it again adopts the existing (empty) cgroup and returns the
            // state to destroy it with. A failed create leaves nothing to undo.
            (None, Some(req)) if kind == PluginKind::Cgroup => {
                match recorded_plugin::<CgroupBackend>(plugins, record)
                    .and_then(|p| p.create(&serde_json::to_vec(req).unwrap_or_default()))
                {
                    Ok(state) => state,
                    Err(_) => continue,
                }
            }
            // Setup may have run in part and died before recording its state: the
            // backend undoes it from the request (net-bridge and net-cni can). A
            // backend that cannot parse a request has nothing to say here.
            (None, Some(req)) if kind == PluginKind::Network => {
                let req = serde_json::to_vec(req).unwrap_or_default();
                let _ = recorded_plugin::<NetworkBackend>(plugins, record)
                    .and_then(|p| p.teardown(&req));
                continue;
            }
            _ => continue,
        };
        note(match kind {
            PluginKind::Network => {
                recorded_plugin::<NetworkBackend>(plugins, record).and_then(|p| p.teardown(&state))
            }
            PluginKind::Cgroup => {
                recorded_plugin::<CgroupBackend>(plugins, record).and_then(|p| p.destroy(&state))
            }
            _ => recorded_plugin::<RootfsBackend>(plugins, record).and_then(|p| p.cleanup(&state)),
        });
        fault::point(
            match kind {
                PluginKind::Network => "teardown:net-undone",
                PluginKind::Cgroup => "teardown:cgroup-undone",
                _ => "teardown:rootfs-undone",
            },
            record.pid,
        );
    }
    first_error.map_or(Ok(()), Err)
}

/// Teardown from a missing, corrupt or truncated record: what can still be read of it,
/// then the cgroup found again by adopting it (the salvaged cgroup state may be cut
/// short), with the cgroup path of the bundle's config when it is still there.
pub(crate) fn teardown_salvaged(
    plugins: &PluginHost,
    host: &dyn Host,
    dir: &ContainerDir,
) -> Result<()> {
    let data = std::fs::read(dir.path.join(state::RECORD_FILE)).unwrap_or_default();
    let mut record = salvage::record(&dir.id, &data);
    // Best effort with what survived (a salvaged plugin state may be cut short and
    // refused); the cgroup, which holds every process, is adopted below instead.
    if let Some(b) = record.backends.get_mut(PluginKind::Cgroup.as_str()) {
        b.state = None;
        b.request = None;
    }
    let _ = teardown(plugins, host, &record);
    let spec = std::fs::read(record.bundle.join("config.json"))
        .ok()
        .and_then(|bytes| crate::config::parse(&bytes).ok());
    let mut request = wire::CgroupRequest {
        id: dir.id.clone(),
        cgroups_path: None,
        resources: None,
        adopt: true,
    };
    if let Some(spec) = spec {
        request.cgroups_path = cgroup_request(&dir.id, &spec)?.cgroups_path;
    }
    let cgroup: CgroupBackend = match record.backend(PluginKind::Cgroup) {
        Some(b) => plugins.load_recorded(&b.name, &b.path)?,
        None => plugins.select_best()?,
    };
    // Creating the cgroup again adopts it (an existing cgroup with no process left is
    // reused), which gives the state to destroy it with.
    let state = cgroup.create(&to_json(&request)?)?;
    cgroup.destroy(&state)
}
