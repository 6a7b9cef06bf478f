//! The cgroup v1 backend: one directory per mounted v1 hierarchy, plus, on a hybrid host,
//! one in the cgroup2 hierarchy (as runc does; it carries `unified` entries and, when
//! hugetlb is only offered there, the hugepage limits).

use std::ffi::CStr;
use std::os::fd::OwnedFd;

use nix::unistd::{access, AccessFlags};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use tong_cgroup_common::devices::Policy;
use tong_cgroup_common::dir::{self, keyed, prefixed, read_opt, read_u64, CgroupDir};
use tong_cgroup_common::mounts::{self, CgroupMount};
use tong_cgroup_common::{bpf, controllers, path, PluginError, PluginResult};
use tong_plugin_sdk::wire::{CgroupRequest, CgroupStats, CpuStats, MemoryStats, PidsStats};
use tong_plugin_sdk::{CgroupPlugin, PluginInfo};

use crate::translate::{self, Write, UNIFIED};

const PREFIX: &str = "cgroup-v1";

/// Controllers without which v1 is not worth choosing.
const REQUIRED: [&str; 3] = ["memory", "cpu", "pids"];

/// The cgroup v1 plugin.
pub struct CgroupV1;

/// What later calls need: the container's directory in every hierarchy.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    id: String,
    cgroups: Vec<CgroupDir>,
}

impl State {
    /// The directory of the hierarchy holding `controller` (`unified` for cgroup2).
    fn find(&self, controller: &str) -> Option<&CgroupDir> {
        self.cgroups
            .iter()
            .find(|c| c.hierarchy == controller || c.hierarchy.split(',').any(|h| h == controller))
    }
}

fn parse_state(state: &[u8]) -> PluginResult<State> {
    serde_json::from_slice(state)
        .map_err(|e| PluginError::invalid(format!("invalid state JSON: {e}")))
}

/// The v1 hierarchies and, on a hybrid host, the cgroup2 mount.
fn hierarchies() -> PluginResult<(Vec<CgroupMount>, Option<CgroupMount>)> {
    let all = mounts::read_mounts()?;
    let v1 = mounts::v1_hierarchies(&all);
    if v1.is_empty() {
        return Err(PluginError::unsupported(
            "no cgroup v1 hierarchy is mounted (this host uses cgroup v2 only, or none at all).",
        ));
    }
    Ok((v1, mounts::cgroup2_mount(&all)))
}

/// Where each write goes. hugetlb goes to the hybrid cgroup2 directory when it is not a
/// v1 controller here (its files are then `hugetlb.<size>.max`, "max" for unlimited).
fn route(state: &State, wr: &Write) -> PluginResult<(std::path::PathBuf, String)> {
    if let Some(cg) = state.find(wr.controller) {
        return Ok((cg.file(&wr.file), wr.value.clone()));
    }
    if wr.controller == "hugetlb" {
        if let Some(cg) = state.find(UNIFIED) {
            let file = wr.file.replace(".limit_in_bytes", ".max");
            let value = if wr.value == "-1" {
                "max".to_owned()
            } else {
                wr.value.clone()
            };
            return Ok((cg.file(&file), value));
        }
    }
    let mounted: Vec<&str> = state.cgroups.iter().map(|c| c.hierarchy.as_str()).collect();
    Err(PluginError::unsupported(format!(
        "linux.resources needs the {:?} controller, which is not mounted here (mounted: {})",
        wr.controller,
        mounted.join(" ")
    )))
}

/// The cgroup2 controllers the writes need in the hybrid directory.
fn unified_controllers(state: &State, writes: &[Write]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for wr in writes {
        let c = match wr.controller {
            UNIFIED => wr.file.split('.').next().unwrap_or_default(),
            "hugetlb" if state.find("hugetlb").is_none() => "hugetlb",
            _ => continue,
        };
        if c != "cgroup" && !out.iter().any(|o| o == c) {
            out.push(c.to_owned());
        }
    }
    out
}

/// Checks every write has somewhere to go, before anything is created.
fn check(state: &State, writes: &[Write]) -> PluginResult<()> {
    for wr in writes {
        route(state, wr)?;
    }
    if let Some(cg) = state.find(UNIFIED) {
        controllers::check_available(&cg.mount, &unified_controllers(state, writes))?;
    }
    Ok(())
}

fn apply(state: &State, writes: &[Write]) -> PluginResult<()> {
    check(state, writes)?;
    if let Some(cg) = state.find(UNIFIED) {
        controllers::enable(&cg.mount, &cg.dir, &unified_controllers(state, writes))?;
    }
    let mut writes = writes.to_vec();
    if let Some(mem) = state.find("memory") {
        let current =
            dir::read_opt(&mem.file("memory.memsw.limit_in_bytes")).and_then(|v| v.parse().ok());
        translate::order_memory(&mut writes, current);
    }
    for wr in &writes {
        let (mut file, value) = route(state, wr)?;
        // Without CFQ the kernel offers the weights as blkio.bfq.* (runc does the same).
        if wr.controller == "blkio" && wr.file.starts_with("blkio.weight") && !file.exists() {
            file.set_file_name(wr.file.replace("blkio.", "blkio.bfq."));
        }
        match wr.soft {
            Some(field) => dir::write_or_warn(&file, &value, field)?,
            None => dir::write(&file, &value)?,
        }
    }
    Ok(())
}

/// Where device rules go: the v1 devices hierarchy, or, on a hybrid host without one,
/// an eBPF filter on the cgroup2 directory. A container with no device control at all
/// could open every device it can mknod: refused.
fn device_cgroup(state: &State) -> PluginResult<&CgroupDir> {
    state
        .find("devices")
        .or_else(|| state.find(UNIFIED))
        .ok_or_else(|| {
            PluginError::unsupported(
                "the devices controller is not mounted as cgroup v1 and there is no cgroup2 hierarchy for a device filter: refusing a container with access to every device",
            )
        })
}

/// Makes `policy` the container's device rules. In v1 only the difference to what the
/// cgroup holds is written (a deny-all first on a new cgroup), so a live update never
/// leaves a running container without its devices; then the result is read back.
fn apply_devices(state: &State, policy: &Policy) -> PluginResult<()> {
    let cg = device_cgroup(state)?;
    if cg.hierarchy == UNIFIED {
        return bpf::set_device_filter(&cg.dir, policy);
    }
    let list = cg.file("devices.list");
    let current = Policy::from_v1_list(&dir::read(&list)?)?;
    for rule in current.transition(policy) {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        dir::write(&cg.file(file), &rule.to_string())?;
    }
    // A deny-list's exceptions do not show in devices.list: only its mode is checked.
    let now = Policy::from_v1_list(&dir::read(&list)?)?;
    if now.default_allow != policy.default_allow || (!policy.default_allow && now != *policy) {
        return Err(PluginError::failed(format!(
            "{} does not hold the device rules just written",
            list.display()
        )));
    }
    Ok(())
}

/// An empty cpuset refuses tasks: give each level without cpus/mems its parent's.
fn init_cpuset(cg: &CgroupDir) -> PluginResult<()> {
    let Ok(rel) = cg.dir.strip_prefix(&cg.mount) else {
        return Ok(());
    };
    let mut cur = cg.mount.clone();
    for part in rel.components() {
        let parent = cur.clone();
        cur.push(part);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if dir::read(&cur.join(file))?.is_empty() {
                dir::write(&cur.join(file), &dir::read(&parent.join(file))?)?;
            }
        }
    }
    Ok(())
}

fn create(req: &[u8]) -> PluginResult<Vec<u8>> {
    let req: CgroupRequest = serde_json::from_slice(req)?;
    let res: LinuxResources = match req.resources {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| PluginError::invalid(format!("invalid linux.resources: {e}")))?,
        None => LinuxResources::default(),
    };
    let writes = translate::translate(&res)?;
    let devices = Policy::for_container(res.devices().as_deref())?;
    let rel = path::container_path(&req.id, req.cgroups_path.as_deref())?;
    let (v1, v2) = hierarchies()?;

    // Refuse what cannot be applied before any mkdir, so nothing is left behind.
    let planned = State {
        id: req.id.clone(),
        cgroups: v1
            .iter()
            .map(|m| (m.controllers.join(","), m))
            .chain(v2.iter().map(|m| (UNIFIED.to_owned(), m)))
            .map(|(h, m)| CgroupDir {
                hierarchy: h,
                mount: m.mount_point.clone(),
                dir: m.mount_point.join(&rel),
                prune: Vec::new(),
            })
            .collect(),
    };
    check(&planned, &writes)?;
    device_cgroup(&planned)?;
    // delete --force of a container whose record is damaged adopts its cgroup, busy or not.
    let adopt = req.adopt;

    let mut state = State {
        id: req.id,
        cgroups: Vec::new(),
    };
    let mut ours = Vec::new();
    let done = (|| {
        for p in &planned.cgroups {
            let (cg, existed) = CgroupDir::create_or_reuse(&p.hierarchy, &p.mount, &rel)?;
            let busy = existed && !adopt && !cg.procs()?.is_empty();
            ours.push(!existed);
            state.cgroups.push(cg);
            if busy {
                return Err(PluginError::failed(format!(
                    "{} already exists and has processes in it",
                    p.dir.display()
                )));
            }
        }
        if let Some(cs) = state.find("cpuset") {
            init_cpuset(cs)?;
        }
        apply(&state, &writes)?;
        apply_devices(&state, &devices)
    })();
    if let Err(e) = done {
        // Never remove a cgroup that was there before us.
        for (cg, _) in state.cgroups.iter().zip(&ours).filter(|(_, &ours)| ours) {
            let _ = cg.remove();
        }
        return Err(e);
    }
    Ok(serde_json::to_vec(&state)?)
}

fn freezer(state: &State) -> PluginResult<&CgroupDir> {
    state.find("freezer").ok_or_else(|| {
        PluginError::unsupported("the freezer controller is not mounted as cgroup v1")
    })
}

/// Writes freezer.state and waits until the kernel reports it done.
fn freeze(state: &State, frozen: bool) -> PluginResult<()> {
    let file = freezer(state)?.file("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    dir::write(&file, want)?;
    let mut polls = 0u32;
    let waited = dir::wait_until(&format!("{} to say {want}", file.display()), || {
        polls += 1;
        let now = dir::read(&file)?;
        // A task racing a fork can leave it FREEZING; asking again moves it on.
        if now == "FREEZING" && polls % 100 == 0 {
            dir::write(&file, want)?;
        }
        Ok(now == want)
    });
    if waited.is_err() && frozen {
        let _ = dir::write(&file, "THAWED");
    }
    waited
}

/// Pids in every hierarchy (a task may sit in some only, after a partial add).
fn all_pids(state: &State) -> PluginResult<Vec<i32>> {
    let mut pids = Vec::new();
    for cg in &state.cgroups {
        for pid in cg.procs()? {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    Ok(pids)
}

fn destroy(state: &[u8]) -> PluginResult<()> {
    let mut state = parse_state(state)?;
    // Fast path: a cgroup whose processes are gone goes with one rmdir. Only the busy
    // ones (processes or child cgroups left) need the kill loop below.
    let mut busy = Vec::new();
    for cg in std::mem::take(&mut state.cgroups) {
        if !cg.try_remove()? {
            busy.push(cg);
        }
    }
    if busy.is_empty() {
        return Ok(());
    }
    state.cgroups = busy;
    // SIGKILL to a frozen task stays pending until it thaws: kill, then thaw, repeat.
    dir::wait_until(
        &format!("the processes of container {} to exit", state.id),
        || {
            let pids = all_pids(&state)?;
            if pids.is_empty() {
                return Ok(true);
            }
            dir::kill_all(&pids)?;
            if let Some(f) = state.find("freezer").filter(|f| f.exists()) {
                if dir::read_opt(&f.file("freezer.state")).is_some_and(|s| s != "THAWED") {
                    dir::write(&f.file("freezer.state"), "THAWED")?;
                }
            }
            Ok(false)
        },
    )?;
    let mut first_err = None;
    for cg in &state.cgroups {
        if let Err(e) = cg.remove() {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn stats(state: &State) -> CgroupStats {
    let file = |c: &str, f: &str| state.find(c).map(|cg| cg.file(f));
    let num = |c: &str, f: &str| file(c, f).and_then(|p| read_u64(&p));
    let memory = num("memory", "memory.usage_in_bytes").map(|usage| MemoryStats {
        usage,
        max_usage: num("memory", "memory.max_usage_in_bytes"),
        limit: num("memory", "memory.limit_in_bytes"),
    });
    let cpu = num("cpuacct", "cpuacct.usage").map(|usage_total| {
        let split = num("cpuacct", "cpuacct.usage_user").zip(num("cpuacct", "cpuacct.usage_sys"));
        let (user, kernel) = split.unwrap_or_else(|| {
            // Older kernels: only cpuacct.stat, in clock ticks.
            let text = file("cpuacct", "cpuacct.stat")
                .and_then(|p| read_opt(&p))
                .unwrap_or_default();
            let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .filter(|&h| h > 0)
                .unwrap_or(100) as u64;
            let ns = |k| keyed(&text, k).unwrap_or(0) * (1_000_000_000 / hz);
            (ns("user"), ns("system"))
        });
        CpuStats {
            usage_total,
            usage_user: user,
            usage_kernel: kernel,
        }
    });
    let pids = num("pids", "pids.current").map(|current| PidsStats {
        current,
        limit: num("pids", "pids.max"),
    });
    // Lines: "8:0 Read 4096"; the last one is "Total N".
    let blkio = file("blkio", "blkio.throttle.io_service_bytes_recursive")
        .and_then(|p| read_opt(&p))
        .map(|text| {
            let entries: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let (major, minor) = words.next()?.split_once(':')?;
                    Some(serde_json::json!({
                        "major": major.parse::<u64>().ok()?,
                        "minor": minor.parse::<u64>().ok()?,
                        "op": words.next()?,
                        "value": words.next()?.parse::<u64>().ok()?,
                    }))
                })
                .collect();
            serde_json::json!({ "ioServiceBytesRecursive": entries })
        });
    CgroupStats {
        memory,
        cpu,
        pids,
        blkio,
    }
}

impl PluginInfo for CgroupV1 {
    const NAME: &'static CStr = c"v1";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"cgroup v1 (one hierarchy per controller, plus cgroup2 on hybrid hosts): limits, freezer, kill through cgroupfs";
    const PRIORITY: u32 = 20;

    fn probe() -> PluginResult<()> {
        let (v1, _) = hierarchies()?;
        let has = |c: &str| v1.iter().find(|m| m.controllers.iter().any(|x| x == c));
        let missing: Vec<&str> = REQUIRED.into_iter().filter(|c| has(c).is_none()).collect();
        if !missing.is_empty() {
            return Err(PluginError::unsupported(format!(
                "the {} controller(s) are not mounted as cgroup v1 hierarchies.",
                missing.join(", ")
            )));
        }
        for c in REQUIRED {
            let m = has(c).expect("checked above");
            if m.read_only || access(&m.mount_point, AccessFlags::W_OK).is_err() {
                return Err(PluginError::unsupported(format!(
                    "the cgroup v1 {c} hierarchy at {} is not writable by this process.",
                    m.mount_point.display()
                )));
            }
        }
        Ok(())
    }
}

impl CgroupPlugin for CgroupV1 {
    fn warm_up() -> PluginResult<()> {
        prefixed(PREFIX, tong_cgroup_common::mounts::warm_attach_lock())
    }

    fn create(req: &[u8]) -> PluginResult<Vec<u8>> {
        prefixed(PREFIX, create(req))
    }

    /// CLONE_INTO_CGROUP only places a child in a cgroup2 cgroup; v1 needs add_process.
    fn clone_target(state: &[u8]) -> PluginResult<Option<OwnedFd>> {
        prefixed(PREFIX, parse_state(state).map(|_| None))
    }

    fn add_process(state: &[u8], pid: i32) -> PluginResult<()> {
        prefixed(
            PREFIX,
            (|| {
                if pid <= 0 {
                    return Err(PluginError::invalid(format!("invalid pid {pid}")));
                }
                for cg in &parse_state(state)?.cgroups {
                    dir::write(&cg.file("cgroup.procs"), &pid.to_string())?;
                }
                Ok(())
            })(),
        )
    }

    fn update(state: &[u8], resources: &[u8]) -> PluginResult<()> {
        prefixed(
            PREFIX,
            (|| {
                let state = parse_state(state)?;
                let res: LinuxResources = serde_json::from_slice(resources)
                    .map_err(|e| PluginError::invalid(format!("invalid linux.resources: {e}")))?;
                let writes = translate::translate(&res)?;
                let devices = Policy::for_update(res.devices().as_deref())?;
                apply(&state, &writes)?;
                devices.map_or(Ok(()), |policy| apply_devices(&state, &policy))
            })(),
        )
    }

    fn set_frozen(state: &[u8], frozen: bool) -> PluginResult<()> {
        prefixed(PREFIX, parse_state(state).and_then(|s| freeze(&s, frozen)))
    }

    fn stats(state: &[u8]) -> PluginResult<Vec<u8>> {
        prefixed(
            PREFIX,
            (|| Ok(serde_json::to_vec(&stats(&parse_state(state)?))?))(),
        )
    }

    fn pids(state: &[u8]) -> PluginResult<Vec<i32>> {
        prefixed(
            PREFIX,
            (|| {
                let state = parse_state(state)?;
                let cg = state
                    .find("pids")
                    .or_else(|| state.find("freezer"))
                    .or_else(|| state.cgroups.first())
                    .ok_or_else(|| PluginError::invalid("state lists no cgroup"))?;
                cg.procs()
            })(),
        )
    }

    fn destroy(state: &[u8]) -> PluginResult<()> {
        prefixed(PREFIX, destroy(state))
    }
}

/// For tests: the container's directories.
#[cfg(test)]
pub(crate) fn dirs_of(state: &[u8]) -> Vec<(String, std::path::PathBuf)> {
    parse_state(state)
        .unwrap()
        .cgroups
        .into_iter()
        .map(|c| (c.hierarchy, c.dir))
        .collect()
}
