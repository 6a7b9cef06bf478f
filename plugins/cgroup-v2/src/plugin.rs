//! The cgroup2 backend: one directory in the unified hierarchy per container, with an
//! eBPF device filter attached to it (`tong_cgroup_common::bpf`).

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::unistd::{access, AccessFlags};
use oci_spec::runtime::{LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};
use tong_cgroup_common::devices::Policy;
use tong_cgroup_common::dir::{self, keyed, prefixed, read_opt, read_u64, CgroupDir};
use tong_cgroup_common::{
    bpf, controllers, mounts, path, warn_not_applied, PluginError, PluginResult,
};
use tong_plugin_sdk::wire::{CgroupRequest, CgroupStats, CpuStats, MemoryStats, PidsStats};
use tong_plugin_sdk::{CgroupPlugin, PluginInfo};

use crate::translate::{self, Write};

const PREFIX: &str = "cgroup-v2";

/// The cgroup v2 plugin.
pub struct CgroupV2;

/// What later calls need: the container's directory.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    id: String,
    cgroup: CgroupDir,
}

fn parse_state(state: &[u8]) -> PluginResult<State> {
    serde_json::from_slice(state)
        .map_err(|e| PluginError::invalid(format!("invalid state JSON: {e}")))
}

fn parse_resources(value: Option<serde_json::Value>) -> PluginResult<LinuxResources> {
    value.map_or_else(
        || Ok(LinuxResources::default()),
        |v| {
            serde_json::from_value(v)
                .map_err(|e| PluginError::invalid(format!("invalid linux.resources: {e}")))
        },
    )
}

fn mount() -> PluginResult<mounts::CgroupMount> {
    mounts::cgroup2_mount(&mounts::read_mounts()?).ok_or_else(|| {
        PluginError::unsupported("no cgroup2 hierarchy is mounted (see /proc/self/mountinfo)")
    })
}

/// Why [`translate::not_applied`]'s fields are warned about.
const NOT_IN_CGROUP2: &str = "cgroup v2 has no such setting";

/// `memory.checkBeforeUpdate`: refuses a new memory.max below what the container uses
/// now (runc's check); the kernel would instead reclaim, or OOM-kill, to get there.
fn check_memory_usage(cg: &CgroupDir, writes: &[Write]) -> PluginResult<()> {
    let new = writes
        .iter()
        .find(|w| w.file == "memory.max")
        .and_then(|w| w.value.parse::<u64>().ok());
    let used = read_u64(&cg.file("memory.current"));
    if let (Some(new), Some(used)) = (new, used) {
        if new < used {
            return Err(PluginError::invalid(format!(
                "memory.limit = {new} is below the container's current usage of {used} bytes (memory.checkBeforeUpdate)"
            )));
        }
    }
    Ok(())
}

/// Delegates the controllers `writes` need down to `cg`, then writes them.
fn apply(cg: &CgroupDir, writes: &[Write]) -> PluginResult<()> {
    let needed = translate::controllers(writes);
    controllers::check_available(&cg.mount, &needed)?;
    controllers::enable(&cg.mount, &cg.dir, &needed)?;
    for w in writes {
        dir::write(&cg.file(&w.file), &w.value)?;
    }
    Ok(())
}

fn create(req: &[u8]) -> PluginResult<Vec<u8>> {
    let req: CgroupRequest = serde_json::from_slice(req)?;
    let res = parse_resources(req.resources)?;
    let writes = translate::translate(&res)?;
    let devices = Policy::for_container(res.devices().as_deref())?;
    warn_not_applied(&translate::not_applied(&res), NOT_IN_CGROUP2);
    let rel = path::container_path(&req.id, req.cgroups_path.as_deref())?;
    let mount = mount()?;
    // Refuse before any mkdir, so nothing is left behind.
    controllers::check_available(&mount.mount_point, &translate::controllers(&writes))?;
    let (cg, existed) = CgroupDir::create_or_reuse("unified", &mount.mount_point, &rel)?;
    let done = (|| {
        if existed && !req.adopt && !cg.procs()?.is_empty() {
            return Err(PluginError::failed(format!(
                "{} already exists and has processes in it",
                cg.dir.display()
            )));
        }
        apply(&cg, &writes)?;
        bpf::set_device_filter(&cg.dir, &devices)
    })();
    if let Err(e) = done {
        // Never remove a cgroup that was there before us.
        if !existed {
            let _ = cg.remove();
        }
        return Err(e);
    }
    Ok(serde_json::to_vec(&State {
        id: req.id,
        cgroup: cg,
    })?)
}

/// Writes cgroup.freeze and waits for cgroup.events to agree.
fn freeze(cg: &CgroupDir, frozen: bool) -> PluginResult<()> {
    let want = u64::from(frozen);
    let file = cg.file("cgroup.freeze");
    if !file.exists() {
        return Err(PluginError::unsupported(format!(
            "{} does not exist (the kernel has no cgroup2 freezer, or the cgroup is gone)",
            file.display()
        )));
    }
    dir::write(&file, &want.to_string())?;
    let events = cg.file("cgroup.events");
    let waited = dir::wait_until(
        &format!("\"frozen {want}\" in {}", events.display()),
        || Ok(keyed(&dir::read(&events)?, "frozen") == Some(want)),
    );
    if waited.is_err() && frozen {
        // Do not leave it half frozen.
        let _ = dir::write(&file, "0");
    }
    waited
}

fn destroy(state: &[u8]) -> PluginResult<()> {
    let State { cgroup: cg, .. } = parse_state(state)?;
    // Fast path: gone processes, one rmdir.
    if cg.try_remove()? {
        return Ok(());
    }
    if cg.exists() {
        // Thawed tasks die at once; frozen ones would wait.
        if cg.file("cgroup.freeze").exists() {
            let _ = dir::write(&cg.file("cgroup.freeze"), "0");
        }
        let kill_file = cg.file("cgroup.kill");
        let has_kill = kill_file.exists();
        dir::wait_until(
            &format!("the processes of {} to exit", cg.dir.display()),
            || {
                let pids = cg.procs()?;
                if pids.is_empty() {
                    return Ok(true);
                }
                if has_kill {
                    dir::write(&kill_file, "1")?;
                } else {
                    dir::kill_all(&pids)?;
                }
                Ok(false)
            },
        )?;
    }
    cg.remove()
}

fn stats(cg: &CgroupDir) -> CgroupStats {
    let f = |name: &str| cg.file(name);
    let memory = read_u64(&f("memory.current")).map(|usage| MemoryStats {
        usage,
        max_usage: read_u64(&f("memory.peak")),
        limit: read_u64(&f("memory.max")),
    });
    let cpu = read_opt(&f("cpu.stat")).and_then(|text| {
        Some(CpuStats {
            usage_total: keyed(&text, "usage_usec")? * 1000,
            usage_user: keyed(&text, "user_usec").unwrap_or(0) * 1000,
            usage_kernel: keyed(&text, "system_usec").unwrap_or(0) * 1000,
        })
    });
    let pids = read_u64(&f("pids.current")).map(|current| PidsStats {
        current,
        limit: read_u64(&f("pids.max")),
    });
    // io.stat lines: "8:0 rbytes=1 wbytes=2 rios=3 ..."
    let blkio = read_opt(&f("io.stat"))
        .filter(|t| !t.is_empty())
        .map(|text| {
            let devices: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let (major, minor) = words.next()?.split_once(':')?;
                    let mut obj = serde_json::Map::new();
                    obj.insert("major".into(), major.parse::<u64>().ok()?.into());
                    obj.insert("minor".into(), minor.parse::<u64>().ok()?.into());
                    for kv in words {
                        if let Some((k, v)) = kv.split_once('=') {
                            obj.insert(k.into(), v.parse::<u64>().ok()?.into());
                        }
                    }
                    Some(obj.into())
                })
                .collect();
            serde_json::json!({ "devices": devices })
        });
    CgroupStats {
        memory,
        cpu,
        pids,
        blkio,
    }
}

impl PluginInfo for CgroupV2 {
    const NAME: &'static CStr = c"v2";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr =
        c"cgroup v2 (unified hierarchy): limits, freeze and kill through cgroupfs; offers CLONE_INTO_CGROUP";
    const PRIORITY: u32 = 10;

    fn probe() -> PluginResult<()> {
        let m = mount()?;
        if m.read_only {
            return Err(PluginError::unsupported(format!(
                "the cgroup2 hierarchy at {} is mounted read-only.",
                m.mount_point.display()
            )));
        }
        access(&m.mount_point, AccessFlags::W_OK).map_err(|e| {
            PluginError::unsupported(format!(
                "the cgroup2 hierarchy at {} is not writable by this process: {e}.",
                m.mount_point.display()
            ))
        })
    }
}

impl CgroupPlugin for CgroupV2 {
    fn create(req: &[u8]) -> PluginResult<Vec<u8>> {
        prefixed(PREFIX, create(req))
    }

    fn clone_target(state: &[u8]) -> PluginResult<Option<OwnedFd>> {
        prefixed(
            PREFIX,
            (|| {
                let cg = parse_state(state)?.cgroup;
                // std opens with O_CLOEXEC; O_DIRECTORY makes sure it is the cgroup dir.
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(&cg.dir)
                    .map_err(|e| PluginError::os(format!("open {}", cg.dir.display()), e))?;
                Ok(Some(OwnedFd::from(file)))
            })(),
        )
    }

    fn add_process(state: &[u8], pid: i32) -> PluginResult<()> {
        prefixed(
            PREFIX,
            (|| {
                if pid <= 0 {
                    return Err(PluginError::invalid(format!("invalid pid {pid}")));
                }
                let cg = parse_state(state)?.cgroup;
                dir::write(&cg.file("cgroup.procs"), &pid.to_string())
            })(),
        )
    }

    fn update(state: &[u8], resources: &[u8]) -> PluginResult<()> {
        prefixed(
            PREFIX,
            (|| {
                let cg = parse_state(state)?.cgroup;
                let res: LinuxResources = serde_json::from_slice(resources)
                    .map_err(|e| PluginError::invalid(format!("invalid linux.resources: {e}")))?;
                let writes = translate::translate(&res)?;
                let devices = Policy::for_update(res.devices().as_deref())?;
                warn_not_applied(&translate::not_applied(&res), NOT_IN_CGROUP2);
                if res
                    .memory()
                    .as_ref()
                    .and_then(LinuxMemory::check_before_update)
                    == Some(true)
                {
                    check_memory_usage(&cg, &writes)?;
                }
                apply(&cg, &writes)?;
                devices.map_or(Ok(()), |policy| bpf::set_device_filter(&cg.dir, &policy))
            })(),
        )
    }

    fn set_frozen(state: &[u8], frozen: bool) -> PluginResult<()> {
        prefixed(
            PREFIX,
            parse_state(state).and_then(|s| freeze(&s.cgroup, frozen)),
        )
    }

    fn stats(state: &[u8]) -> PluginResult<Vec<u8>> {
        prefixed(
            PREFIX,
            (|| Ok(serde_json::to_vec(&stats(&parse_state(state)?.cgroup))?))(),
        )
    }

    fn pids(state: &[u8]) -> PluginResult<Vec<i32>> {
        prefixed(PREFIX, parse_state(state).and_then(|s| s.cgroup.procs()))
    }

    fn destroy(state: &[u8]) -> PluginResult<()> {
        prefixed(PREFIX, destroy(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_check_before_update_compares_with_memory_current() {
        let tmp = std::env::temp_dir().join(format!("tong-v2-check-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("memory.current"), "5000\n").unwrap();
        let cg = CgroupDir {
            hierarchy: "unified".to_owned(),
            mount: tmp.clone(),
            dir: tmp.clone(),
            prune: Vec::new(),
        };
        let max = |v: &str| {
            vec![Write {
                file: "memory.max".to_owned(),
                value: v.to_owned(),
            }]
        };
        let err = check_memory_usage(&cg, &max("4096")).unwrap_err();
        assert!(
            err.message
                .contains("below the container's current usage of 5000"),
            "{}",
            err.message
        );
        assert!(check_memory_usage(&cg, &max("5000")).is_ok());
        assert!(check_memory_usage(&cg, &max("max")).is_ok());
        assert!(check_memory_usage(&cg, &[]).is_ok());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
