//! OCI `linux.resources` to cgroup2 (file, value) pairs. Pure: no file is touched here.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use tong_cgroup_common::{PluginError, PluginResult};

/// One cgroup file to write, in the container's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub file: String,
    pub value: String,
}

fn w(file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        file: file.into(),
        value: value.to_string(),
    }
}

fn invalid(msg: String) -> PluginError {
    PluginError::invalid(msg)
}

/// -1 is "max"; other negatives are errors; `None` stays unset.
fn limit(field: &str, v: i64) -> PluginResult<String> {
    match v {
        -1 => Ok("max".to_owned()),
        v if v < 0 => Err(invalid(format!(
            "{field} = {v} is invalid: use -1 for unlimited or a value >= 0"
        ))),
        v => Ok(v.to_string()),
    }
}

/// The files to write for `res`, in order. Device rules (`devices`) are an eBPF program
/// on cgroup2 (`tong_cgroup_common::bpf`), not files; the fields cgroup2 has no file for
/// are listed by [`not_applied`] (the plugin warns about each).
pub fn translate(res: &LinuxResources) -> PluginResult<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(mem) = res.memory() {
        memory(mem, &mut out)?;
    }
    if let Some(cpu) = res.cpu() {
        self::cpu(cpu, &mut out)?;
    }
    if let Some(pids) = res.pids() {
        // 0 means unset (runc); -1 unlimited.
        if pids.limit() != 0 {
            out.push(w("pids.max", limit("pids.limit", pids.limit())?));
        }
    }
    if let Some(bio) = res.block_io() {
        block_io(bio, &mut out)?;
    }
    for h in res.hugepage_limits().iter().flatten() {
        let size = hugepage_size(h.page_size())?;
        let value = limit(&format!("hugepageLimits[{size}].limit"), h.limit())?;
        out.push(w(format!("hugetlb.{size}.max"), value));
    }
    if let Some(rdma) = res.rdma() {
        let mut devices: Vec<_> = rdma.iter().collect();
        devices.sort_by_key(|(name, _)| *name);
        for (device, lim) in devices {
            let max = |n: Option<u32>| n.map_or_else(|| "max".to_owned(), |n| n.to_string());
            if lim.hca_handles().is_some() || lim.hca_objects().is_some() {
                out.push(w(
                    "rdma.max",
                    format!(
                        "{device} hca_handle={} hca_object={}",
                        max(lim.hca_handles()),
                        max(lim.hca_objects())
                    ),
                ));
            }
        }
    }
    if let Some(unified) = res.unified() {
        // Sorted so the order of writes does not depend on hashing.
        let mut entries: Vec<_> = unified.iter().collect();
        entries.sort();
        for (key, value) in entries {
            if key.is_empty() || key.contains('/') || !key.contains('.') || key.starts_with('.') {
                return Err(invalid(format!(
                    "unified key {key:?} is not a cgroup file name (like \"memory.high\")"
                )));
            }
            out.push(w(key.as_str(), value));
        }
    }
    Ok(out)
}

/// The fields of `res` set to something cgroup2 has no file for (as `linux.resources.`
/// suffixes). `useHierarchy: true` and `disableOOMKiller: false` are what cgroup2
/// always does, so they are not listed.
pub fn not_applied(res: &LinuxResources) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut note = |set: bool, field| {
        if set {
            out.push(field);
        }
    };
    if let Some(mem) = res.memory() {
        note(mem.kernel().is_some_and(|k| k != 0), "memory.kernel");
        note(mem.kernel_tcp().is_some_and(|k| k != 0), "memory.kernelTCP");
        note(mem.swappiness().is_some(), "memory.swappiness");
        note(
            mem.disable_oom_killer() == Some(true),
            "memory.disableOOMKiller",
        );
        note(mem.use_hierarchy() == Some(false), "memory.useHierarchy");
    }
    if let Some(cpu) = res.cpu() {
        note(
            cpu.realtime_runtime().is_some_and(|r| r != 0),
            "cpu.realtimeRuntime",
        );
        note(
            cpu.realtime_period().is_some_and(|p| p != 0),
            "cpu.realtimePeriod",
        );
    }
    if let Some(bio) = res.block_io() {
        let device_leaf = bio
            .weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some());
        note(
            bio.leaf_weight().is_some_and(|w| w != 0) || device_leaf,
            "blockIO.leafWeight",
        );
    }
    if let Some(net) = res.network() {
        note(net.class_id().is_some(), "network.classID");
        note(
            net.priorities().as_ref().is_some_and(|p| !p.is_empty()),
            "network.priorities",
        );
    }
    out
}

fn memory(mem: &LinuxMemory, out: &mut Vec<Write>) -> PluginResult<()> {
    let lim = mem.limit().unwrap_or(0);
    if lim != 0 {
        out.push(w("memory.max", limit("memory.limit", lim)?));
    }
    if let Some(r) = mem.reservation().filter(|&r| r != 0) {
        out.push(w("memory.low", limit("memory.reservation", r)?));
    }
    if let Some(swap) = swap_v2(mem.swap().unwrap_or(0), lim)? {
        out.push(w("memory.swap.max", limit("memory.swap", swap)?));
    }
    Ok(())
}

/// OCI's swap is memory+swap (the v1 meaning); cgroup2 limits swap alone. runc's
/// conversion: `swap - limit`, with -1 for unlimited and 0 for unset; swap equal to
/// the limit means no swap (`0`).
fn swap_v2(swap: i64, lim: i64) -> PluginResult<Option<i64>> {
    if lim == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    if swap == 0 {
        return Ok(None);
    }
    if swap == -1 {
        return Ok(Some(-1));
    }
    if swap < -1 {
        return Err(invalid(format!(
            "memory.swap = {swap} is invalid: use -1 for unlimited or a value >= 0"
        )));
    }
    if lim == 0 || lim == -1 {
        return Err(invalid(format!(
            "memory.swap = {swap} needs a memory.limit (swap is memory+swap)"
        )));
    }
    if lim < 0 {
        return Err(invalid(format!("memory.limit = {lim} is invalid")));
    }
    if swap < lim {
        return Err(invalid(format!(
            "memory.swap = {swap} must be >= memory.limit = {lim} (swap is memory+swap)"
        )));
    }
    Ok(Some(swap - lim))
}

/// runc's conversion of v1 shares (2..=262144) to cgroup2 weight (1..=10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn cpu(cpu: &LinuxCpu, out: &mut Vec<Write>) -> PluginResult<()> {
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        out.push(w("cpu.weight", shares_to_weight(shares)));
    }
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    if period != 0 && !(1000..=1_000_000).contains(&period) {
        return Err(invalid(format!(
            "cpu.period = {period} is invalid: it must be between 1000 and 1000000 microseconds"
        )));
    }
    if quota < -1 || (0..1000).contains(&quota) && quota != 0 {
        return Err(invalid(format!(
            "cpu.quota = {quota} is invalid: use -1 for unlimited or at least 1000 microseconds"
        )));
    }
    if quota != 0 || period != 0 {
        let q = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_owned()
        };
        // Without a period the kernel keeps the current one (100ms when new).
        let value = if period == 0 {
            q
        } else {
            format!("{q} {period}")
        };
        out.push(w("cpu.max", value));
    }
    if let Some(burst) = cpu.burst() {
        out.push(w("cpu.max.burst", burst));
    }
    if let Some(idle) = cpu.idle() {
        out.push(w("cpu.idle", idle));
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset.cpus", cpus));
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset.mems", mems));
    }
    Ok(())
}

/// runc's conversion of blkio weight (10..=1000) to io.weight (1..=10000).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    1 + (u64::from(weight).saturating_sub(10) * 9999) / 990
}

fn block_io(bio: &LinuxBlockIo, out: &mut Vec<Write>) -> PluginResult<()> {
    if let Some(weight) = bio.weight().filter(|&x| x != 0) {
        if !(10..=1000).contains(&weight) {
            return Err(invalid(format!(
                "blockIO.weight = {weight} is invalid: it must be between 10 and 1000"
            )));
        }
        out.push(w("io.weight", blkio_to_io_weight(weight)));
    }
    for d in bio.weight_device().iter().flatten() {
        if let Some(weight) = d.weight() {
            out.push(w(
                "io.weight",
                format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(weight)),
            ));
        }
    }
    let throttles = [
        ("rbps", bio.throttle_read_bps_device()),
        ("wbps", bio.throttle_write_bps_device()),
        ("riops", bio.throttle_read_iops_device()),
        ("wiops", bio.throttle_write_iops_device()),
    ];
    for (key, devs) in throttles {
        for d in devs.iter().flatten() {
            // 0 removes the limit.
            let rate = if d.rate() == 0 {
                "max".to_owned()
            } else {
                d.rate().to_string()
            };
            out.push(w(
                "io.max",
                format!("{}:{} {key}={rate}", d.major(), d.minor()),
            ));
        }
    }
    Ok(())
}

/// Checks an OCI page size (`2MB`, `1GB`, `64KB`) and returns it as the kernel spells it.
fn hugepage_size(size: &str) -> PluginResult<String> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !["KB", "MB", "GB"].contains(&unit)
    {
        return Err(invalid(format!(
            "hugepageLimits pageSize {size:?} is invalid: expected a size like \"2MB\" or \"1GB\""
        )));
    }
    Ok(size.to_owned())
}

/// The controllers whose files `writes` touch, in first-use order (`cgroup.*` needs none).
pub fn controllers(writes: &[Write]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for wr in writes {
        let c = wr.file.split('.').next().unwrap_or_default();
        if c != "cgroup" && !out.iter().any(|o| o == c) {
            out.push(c.to_owned());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unreadable_literal)] // kernel values, written as the files show them
mod tests {
    use super::*;
    use serde_json::json;

    fn tr(v: serde_json::Value) -> PluginResult<Vec<(String, String)>> {
        let res: LinuxResources = serde_json::from_value(v).unwrap();
        translate(&res).map(|ws| ws.into_iter().map(|w| (w.file, w.value)).collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    fn err(v: serde_json::Value) -> String {
        let e = tr(v).unwrap_err();
        assert_eq!(e.status, tong_abi::STATUS_INVALID);
        e.message
    }

    #[test]
    fn translation_memory() {
        let got = tr(
            json!({"memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200,
            "kernel": 1000, "swappiness": 10}}),
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("memory.max", "104857600"),
                ("memory.low", "52428800"),
                ("memory.swap.max", "104857600")
            ])
        );
        // Unlimited memory with swap unset means unlimited swap too.
        assert_eq!(
            tr(json!({"memory": {"limit": -1}})).unwrap(),
            pairs(&[("memory.max", "max"), ("memory.swap.max", "max")])
        );
        assert_eq!(
            tr(json!({"memory": {"limit": 100, "swap": -1}})).unwrap(),
            pairs(&[("memory.max", "100"), ("memory.swap.max", "max")])
        );
        assert_eq!(
            tr(json!({"memory": {"limit": 100, "swap": 100}})).unwrap(),
            pairs(&[("memory.max", "100"), ("memory.swap.max", "0")])
        );
    }

    #[test]
    fn translation_memory_errors() {
        assert!(err(json!({"memory": {"limit": -2}})).contains("memory.limit = -2"));
        assert!(
            err(json!({"memory": {"limit": 100, "swap": 50}})).contains("must be >= memory.limit")
        );
        assert!(err(json!({"memory": {"swap": 50}})).contains("needs a memory.limit"));
        assert!(err(json!({"memory": {"limit": 100, "swap": -5}})).contains("memory.swap = -5"));
        assert!(err(json!({"memory": {"reservation": -3}})).contains("memory.reservation = -3"));
    }

    #[test]
    fn translation_cpu() {
        let got = tr(json!({"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0",
            "realtimeRuntime": 5, "realtimePeriod": 10}}))
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("cpu.weight", "39"),
                ("cpu.max", "50000 100000"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0")
            ])
        );
        assert_eq!(
            tr(json!({"cpu": {"quota": -1, "period": 250000}})).unwrap(),
            pairs(&[("cpu.max", "max 250000")])
        );
        assert_eq!(
            tr(json!({"cpu": {"period": 250000}})).unwrap(),
            pairs(&[("cpu.max", "max 250000")])
        );
        assert_eq!(
            tr(json!({"cpu": {"quota": 20000}})).unwrap(),
            pairs(&[("cpu.max", "20000")])
        );
        assert_eq!(
            tr(json!({"cpu": {"burst": 1000, "idle": 1}})).unwrap(),
            pairs(&[("cpu.max.burst", "1000"), ("cpu.idle", "1")])
        );
    }

    #[test]
    fn translation_shares_formula() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(shares_to_weight(1), 1, "clamped, no underflow");
        assert_eq!(shares_to_weight(1 << 40), 10000, "clamped");
    }

    #[test]
    fn translation_cpu_errors() {
        assert!(err(json!({"cpu": {"quota": -5}})).contains("cpu.quota = -5"));
        assert!(err(json!({"cpu": {"quota": 500, "period": 100000}})).contains("at least 1000"));
        assert!(err(json!({"cpu": {"quota": 50000, "period": 10}})).contains("cpu.period = 10"));
    }

    #[test]
    fn translation_pids_io_hugetlb_unified() {
        assert_eq!(
            tr(json!({"pids": {"limit": 5}})).unwrap(),
            pairs(&[("pids.max", "5")])
        );
        assert_eq!(
            tr(json!({"pids": {"limit": -1}})).unwrap(),
            pairs(&[("pids.max", "max")])
        );
        assert!(tr(json!({"pids": {"limit": 0}})).unwrap().is_empty());
        assert!(err(json!({"pids": {"limit": -7}})).contains("pids.limit = -7"));
        assert_eq!(
            tr(json!({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]}}))
            .unwrap(),
            pairs(&[("io.weight", "4950"), ("io.weight", "8:0 10000"), ("io.max", "8:0 rbps=1048576"), ("io.max", "8:16 wiops=max")])
        );
        assert!(err(json!({"blockIO": {"weight": 5}})).contains("blockIO.weight = 5"));
        assert_eq!(
            tr(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}]})).unwrap(),
            pairs(&[("hugetlb.2MB.max", "4194304"), ("hugetlb.1GB.max", "max")])
        );
        assert!(
            err(json!({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}))
                .contains("pageSize \"2M\"")
        );
        assert!(
            err(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": -9}]})).contains("= -9")
        );
        assert_eq!(
            tr(json!({"unified": {"memory.high": "1000000", "cgroup.freeze": "0"}})).unwrap(),
            pairs(&[("cgroup.freeze", "0"), ("memory.high", "1000000")])
        );
        assert!(err(json!({"unified": {"../x.y": "1"}})).contains("not a cgroup file name"));
        assert_eq!(
            tr(json!({"rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}, "none": {}}}))
                .unwrap(),
            pairs(&[
                ("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000"),
                ("rdma.max", "mlx5_1 hca_handle=3 hca_object=max"),
            ])
        );
        assert!(err(json!({"unified": {"nodot": "1"}})).contains("not a cgroup file name"));
    }

    #[test]
    fn translation_lists_what_cgroup2_cannot_apply() {
        let res = |v| serde_json::from_value::<LinuxResources>(v).unwrap();
        let all = res(json!({
            "memory": {"limit": 4096, "kernel": 1, "kernelTCP": 2, "swappiness": 0,
                "disableOOMKiller": true, "useHierarchy": false, "checkBeforeUpdate": true},
            "cpu": {"shares": 2, "realtimeRuntime": 5, "realtimePeriod": 10},
            "blockIO": {"weight": 10, "weightDevice": [{"major": 8, "minor": 0, "leafWeight": 20}]},
            "network": {"classID": 1, "priorities": [{"name": "lo", "priority": 1}]}
        }));
        assert_eq!(
            not_applied(&all),
            [
                "memory.kernel",
                "memory.kernelTCP",
                "memory.swappiness",
                "memory.disableOOMKiller",
                "memory.useHierarchy",
                "cpu.realtimeRuntime",
                "cpu.realtimePeriod",
                "blockIO.leafWeight",
                "network.classID",
                "network.priorities",
            ]
        );
        // What cgroup2 always does, or unset, is nothing to warn about.
        let fine = res(
            json!({"memory": {"limit": 4096, "useHierarchy": true, "disableOOMKiller": false},
            "cpu": {"shares": 2}, "network": {"priorities": []}}),
        );
        assert!(not_applied(&fine).is_empty());
    }

    #[test]
    fn translation_controllers_needed() {
        let writes = translate(
            &serde_json::from_value(json!({"memory": {"limit": 1}, "cpu": {"cpus": "0", "shares": 100},
                "unified": {"cgroup.max.depth": "3", "memory.high": "5"}, "hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(controllers(&writes), ["memory", "cpu", "cpuset", "hugetlb"]);
        assert!(translate(&LinuxResources::default()).unwrap().is_empty());
    }
}
