//! OCI `linux.resources` to cgroup v1 (controller, file, value) writes. Pure: no file is
//! touched here.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use tong_cgroup_common::{PluginError, PluginResult};

/// The pseudo-controller of `unified` entries: the hybrid host's cgroup2 directory.
pub const UNIFIED: &str = "unified";

/// One cgroup file to write, in the container's directory of `controller`'s hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
    /// The OCI field (`memory.kernelTCP`) of a file some kernels lack, refuse or
    /// ignore: then a warning naming it, not an error.
    pub soft: Option<&'static str>,
}

fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
        soft: None,
    }
}

/// A [`Write`] that only warns, naming `field`, where the kernel lacks or refuses it.
fn memory_soft(file: &str, value: impl ToString, field: &'static str) -> Write {
    Write {
        soft: Some(field),
        ..w("memory", file, value)
    }
}

fn invalid(msg: String) -> PluginError {
    PluginError::invalid(msg)
}

/// v1 files take -1 for unlimited; other negatives are errors.
fn limit(field: &str, v: i64) -> PluginResult<i64> {
    if v < -1 {
        return Err(invalid(format!(
            "{field} = {v} is invalid: use -1 for unlimited or a value >= 0"
        )));
    }
    Ok(v)
}

/// The writes for `res`, in order: one for every field set (docs/resources.md has the
/// table; device rules are in `tong_cgroup_common::devices`), the `soft` ones warning where the kernel lacks them. `memory.checkBeforeUpdate`
/// needs none: the v1 kernel refuses a limit below the usage it cannot reclaim.
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
            let v = limit("pids.limit", pids.limit())?;
            out.push(w(
                "pids",
                "pids.max",
                if v == -1 {
                    "max".to_owned()
                } else {
                    v.to_string()
                },
            ));
        }
    }
    if let Some(bio) = res.block_io() {
        block_io(bio, &mut out)?;
    }
    for h in res.hugepage_limits().iter().flatten() {
        let size = hugepage_size(h.page_size())?;
        let v = limit(&format!("hugepageLimits[{size}].limit"), h.limit())?;
        out.push(w("hugetlb", format!("hugetlb.{size}.limit_in_bytes"), v));
    }
    if let Some(net) = res.network() {
        if let Some(class) = net.class_id() {
            out.push(w("net_cls", "net_cls.classid", class));
        }
        for p in net.priorities().iter().flatten() {
            out.push(w(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    if let Some(rdma) = res.rdma() {
        let mut devices: Vec<_> = rdma.iter().collect();
        devices.sort_by_key(|(name, _)| *name);
        for (device, lim) in devices {
            // Only the limits given; the kernel keeps the others.
            let limits: Vec<String> = [
                ("hca_handle", lim.hca_handles()),
                ("hca_object", lim.hca_objects()),
            ]
            .into_iter()
            .filter_map(|(key, n)| n.map(|n| format!("{key}={n}")))
            .collect();
            if !limits.is_empty() {
                out.push(w(
                    "rdma",
                    "rdma.max",
                    format!("{device} {}", limits.join(" ")),
                ));
            }
        }
    }
    if let Some(unified) = res.unified() {
        let mut entries: Vec<_> = unified.iter().collect();
        entries.sort();
        for (key, value) in entries {
            if key.is_empty() || key.contains('/') || !key.contains('.') || key.starts_with('.') {
                return Err(invalid(format!(
                    "unified key {key:?} is not a cgroup file name (like \"memory.high\")"
                )));
            }
            out.push(w(UNIFIED, key.as_str(), value));
        }
    }
    Ok(out)
}

fn memory(mem: &LinuxMemory, out: &mut Vec<Write>) -> PluginResult<()> {
    let lim = limit("memory.limit", mem.limit().unwrap_or(0))?;
    let mut swap = limit("memory.swap", mem.swap().unwrap_or(0))?;
    // runc: unlimited memory with swap unset means unlimited memory+swap.
    if lim == -1 && swap == 0 {
        swap = -1;
    }
    if swap > 0 && (lim == -1 || (lim > 0 && swap < lim)) {
        return Err(invalid(format!(
            "memory.swap = {swap} must be >= memory.limit = {lim} (swap is memory+swap)"
        )));
    }
    if lim != 0 {
        out.push(w("memory", "memory.limit_in_bytes", lim));
    }
    if swap != 0 {
        out.push(w("memory", "memory.memsw.limit_in_bytes", swap));
    }
    if let Some(r) = mem.reservation().filter(|&r| r != 0) {
        out.push(w(
            "memory",
            "memory.soft_limit_in_bytes",
            limit("memory.reservation", r)?,
        ));
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(invalid(format!(
                "memory.swappiness = {s} is invalid: it must be between 0 and 100"
            )));
        }
        out.push(w("memory", "memory.swappiness", s));
    }
    if mem.disable_oom_killer() == Some(true) {
        out.push(w("memory", "memory.oom_control", 1));
    }
    if let Some(k) = mem.kernel().filter(|&k| k != 0) {
        let v = limit("memory.kernel", k)?;
        out.push(memory_soft(
            "memory.kmem.limit_in_bytes",
            v,
            "memory.kernel",
        ));
    }
    if let Some(k) = mem.kernel_tcp().filter(|&k| k != 0) {
        let v = limit("memory.kernelTCP", k)?;
        out.push(memory_soft(
            "memory.kmem.tcp.limit_in_bytes",
            v,
            "memory.kernelTCP",
        ));
    }
    if let Some(h) = mem.use_hierarchy() {
        out.push(memory_soft(
            "memory.use_hierarchy",
            u8::from(h),
            "memory.useHierarchy",
        ));
    }
    Ok(())
}

/// Puts the limit and memory+swap writes in an order the kernel accepts: it refuses a
/// limit above the current memory+swap limit, and a memory+swap limit below the
/// current limit. `current_memsw` is that file's value now (`None`: unknown/unlimited).
pub fn order_memory(writes: &mut [Write], current_memsw: Option<i64>) {
    let pos = |f: &str| writes.iter().position(|x| x.file == f);
    let (Some(l), Some(s)) = (
        pos("memory.limit_in_bytes"),
        pos("memory.memsw.limit_in_bytes"),
    ) else {
        return;
    };
    let as_bytes = |v: &str| match v.parse::<i64>() {
        Ok(-1) | Err(_) => i64::MAX,
        Ok(n) => n,
    };
    let new_limit = as_bytes(&writes[l].value);
    let raising = current_memsw.is_some_and(|cur| new_limit > cur);
    // Raising: memory+swap must go up first.
    if raising == (l < s) {
        writes.swap(l, s);
    }
}

fn cpu(cpu: &LinuxCpu, out: &mut Vec<Write>) -> PluginResult<()> {
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        out.push(w("cpu", "cpu.shares", shares));
    }
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    if period != 0 {
        if !(1000..=1_000_000).contains(&period) {
            return Err(invalid(format!(
                "cpu.period = {period} is invalid: it must be between 1000 and 1000000 microseconds"
            )));
        }
        out.push(w("cpu", "cpu.cfs_period_us", period));
    }
    if quota != 0 {
        if quota < -1 || (0..1000).contains(&quota) {
            return Err(invalid(format!(
                "cpu.quota = {quota} is invalid: use -1 for unlimited or at least 1000 microseconds"
            )));
        }
        out.push(w("cpu", "cpu.cfs_quota_us", quota));
    }
    if let Some(burst) = cpu.burst() {
        out.push(w("cpu", "cpu.cfs_burst_us", burst));
    }
    // Period first: the runtime must fit in it (runc's order).
    if let Some(rt_period) = cpu.realtime_period().filter(|&p| p != 0) {
        out.push(w("cpu", "cpu.rt_period_us", rt_period));
    }
    if let Some(rt_runtime) = cpu.realtime_runtime().filter(|&r| r != 0) {
        out.push(w("cpu", "cpu.rt_runtime_us", rt_runtime));
    }
    if let Some(idle) = cpu.idle() {
        out.push(w("cpu", "cpu.idle", idle));
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset", "cpuset.mems", mems));
    }
    Ok(())
}

fn block_io(bio: &LinuxBlockIo, out: &mut Vec<Write>) -> PluginResult<()> {
    for (field, file, weight) in [
        ("blockIO.weight", "blkio.weight", bio.weight()),
        ("blockIO.leafWeight", "blkio.leaf_weight", bio.leaf_weight()),
    ] {
        if let Some(weight) = weight.filter(|&x| x != 0) {
            if !(10..=1000).contains(&weight) {
                return Err(invalid(format!(
                    "{field} = {weight} is invalid: it must be between 10 and 1000"
                )));
            }
            out.push(w("blkio", file, weight));
        }
    }
    for d in bio.weight_device().iter().flatten() {
        for (file, weight) in [
            ("blkio.weight_device", d.weight()),
            ("blkio.leaf_weight_device", d.leaf_weight()),
        ] {
            if let Some(weight) = weight {
                out.push(w(
                    "blkio",
                    file,
                    format!("{}:{} {weight}", d.major(), d.minor()),
                ));
            }
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            bio.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            bio.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            bio.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            bio.throttle_write_iops_device(),
        ),
    ];
    for (file, devs) in throttles {
        for d in devs.iter().flatten() {
            out.push(w(
                "blkio",
                file,
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            ));
        }
    }
    Ok(())
}

/// Checks an OCI page size (`2MB`, `1GB`, `64KB`); the kernel spells it the same way.
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

#[cfg(test)]
#[allow(clippy::unreadable_literal)] // kernel values, written as the files show them
mod tests {
    use super::*;
    use serde_json::json;

    fn tr(v: serde_json::Value) -> PluginResult<Vec<(String, String, String)>> {
        let res: LinuxResources = serde_json::from_value(v).unwrap();
        translate(&res).map(|ws| {
            ws.into_iter()
                .map(|w| (w.controller.to_owned(), w.file, w.value))
                .collect()
        })
    }

    fn triples(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        list.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
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
            "kernel": 1000, "kernelTCP": 2000, "swappiness": 10, "disableOOMKiller": true,
            "useHierarchy": true, "checkBeforeUpdate": true}}),
        )
        .unwrap();
        assert_eq!(
            got,
            triples(&[
                ("memory", "memory.limit_in_bytes", "104857600"),
                ("memory", "memory.memsw.limit_in_bytes", "209715200"),
                ("memory", "memory.soft_limit_in_bytes", "52428800"),
                ("memory", "memory.swappiness", "10"),
                ("memory", "memory.oom_control", "1"),
                ("memory", "memory.kmem.limit_in_bytes", "1000"),
                ("memory", "memory.kmem.tcp.limit_in_bytes", "2000"),
                ("memory", "memory.use_hierarchy", "1"),
            ])
        );
        // The kmem files and use_hierarchy only warn where the kernel lacks them.
        let res = serde_json::from_value(
            json!({"memory": {"limit": 4096, "kernel": 1, "kernelTCP": 2, "useHierarchy": false}}),
        )
        .unwrap();
        let soft: Vec<_> = translate(&res).unwrap().iter().map(|w| w.soft).collect();
        assert_eq!(
            soft,
            [
                None,
                Some("memory.kernel"),
                Some("memory.kernelTCP"),
                Some("memory.useHierarchy")
            ]
        );
        assert_eq!(
            tr(json!({"memory": {"limit": -1}})).unwrap(),
            triples(&[
                ("memory", "memory.limit_in_bytes", "-1"),
                ("memory", "memory.memsw.limit_in_bytes", "-1")
            ])
        );
    }

    #[test]
    fn translation_memory_errors() {
        assert!(err(json!({"memory": {"limit": -2}})).contains("memory.limit = -2"));
        assert!(
            err(json!({"memory": {"limit": 100, "swap": 50}})).contains("must be >= memory.limit")
        );
        assert!(
            err(json!({"memory": {"limit": -1, "swap": 50}})).contains("must be >= memory.limit")
        );
        assert!(err(json!({"memory": {"swap": -4}})).contains("memory.swap = -4"));
        assert!(err(json!({"memory": {"swappiness": 101}})).contains("memory.swappiness = 101"));
    }

    #[test]
    fn translation_memory_write_order() {
        let mut ws = translate(
            &serde_json::from_value(json!({"memory": {"limit": 200, "swap": 400}})).unwrap(),
        )
        .unwrap();
        let files = |ws: &[Write]| ws.iter().map(|w| w.file.clone()).collect::<Vec<_>>();
        // Lowering (or a fresh cgroup: memsw is unlimited): limit first.
        order_memory(&mut ws, Some(i64::MAX));
        assert_eq!(
            files(&ws),
            ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        );
        // Raising above the current memory+swap: memsw first.
        order_memory(&mut ws, Some(100));
        assert_eq!(
            files(&ws),
            ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
        );
        order_memory(&mut ws, None);
        assert_eq!(
            files(&ws),
            ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        );
    }

    #[test]
    fn translation_cpu() {
        let got = tr(json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0",
            "realtimeRuntime": 5, "realtimePeriod": 10, "burst": 1000, "idle": 0}}))
        .unwrap();
        assert_eq!(
            got,
            triples(&[
                ("cpu", "cpu.shares", "512"),
                ("cpu", "cpu.cfs_period_us", "100000"),
                ("cpu", "cpu.cfs_quota_us", "50000"),
                ("cpu", "cpu.cfs_burst_us", "1000"),
                ("cpu", "cpu.rt_period_us", "10"),
                ("cpu", "cpu.rt_runtime_us", "5"),
                ("cpu", "cpu.idle", "0"),
                ("cpuset", "cpuset.cpus", "0-1"),
                ("cpuset", "cpuset.mems", "0"),
            ])
        );
        assert_eq!(
            tr(json!({"cpu": {"quota": -1}})).unwrap(),
            triples(&[("cpu", "cpu.cfs_quota_us", "-1")])
        );
        assert!(err(json!({"cpu": {"quota": -3}})).contains("cpu.quota = -3"));
        assert!(err(json!({"cpu": {"quota": 999}})).contains("at least 1000"));
        assert!(err(json!({"cpu": {"period": 99}})).contains("cpu.period = 99"));
    }

    #[test]
    fn translation_pids_blkio_hugetlb() {
        assert_eq!(
            tr(json!({"pids": {"limit": 5}})).unwrap(),
            triples(&[("pids", "pids.max", "5")])
        );
        assert_eq!(
            tr(json!({"pids": {"limit": -1}})).unwrap(),
            triples(&[("pids", "pids.max", "max")])
        );
        assert!(tr(json!({"pids": {"limit": 0}})).unwrap().is_empty());
        assert!(err(json!({"pids": {"limit": -2}})).contains("pids.limit = -2"));
        assert_eq!(
            tr(json!({"blockIO": {"weight": 500, "leafWeight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 700, "leafWeight": 200}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]}}))
            .unwrap(),
            triples(&[
                ("blkio", "blkio.weight", "500"),
                ("blkio", "blkio.leaf_weight", "300"),
                ("blkio", "blkio.weight_device", "8:0 700"),
                ("blkio", "blkio.leaf_weight_device", "8:0 200"),
                ("blkio", "blkio.throttle.read_bps_device", "8:0 1048576"),
                ("blkio", "blkio.throttle.write_iops_device", "8:16 100"),
            ])
        );
        assert!(err(json!({"blockIO": {"weight": 1001}})).contains("blockIO.weight = 1001"));
        assert!(err(json!({"blockIO": {"leafWeight": 5}})).contains("blockIO.leafWeight = 5"));
        assert_eq!(
            tr(json!({"rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}, "none": {}}}))
                .unwrap(),
            triples(&[
                ("rdma", "rdma.max", "mlx4_0 hca_handle=2 hca_object=2000"),
                ("rdma", "rdma.max", "mlx5_1 hca_handle=3"),
            ])
        );
        assert_eq!(
            tr(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}]})).unwrap(),
            triples(&[
                ("hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
                ("hugetlb", "hugetlb.1GB.limit_in_bytes", "-1"),
            ])
        );
        assert!(
            err(json!({"hugepageLimits": [{"pageSize": "huge", "limit": 1}]}))
                .contains("pageSize \"huge\"")
        );
    }

    #[test]
    fn translation_network_unified() {
        let got = tr(
            json!({"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3}],
           "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
           "unified": {"hugetlb.2MB.max": "max"}}),
        )
        .unwrap();
        // Device rules are applied apart (tong_cgroup_common::devices).
        assert_eq!(
            got,
            triples(&[
                ("net_cls", "net_cls.classid", "1048577"),
                ("net_prio", "net_prio.ifpriomap", "eth0 5"),
                ("unified", "hugetlb.2MB.max", "max"),
            ])
        );
        assert!(err(json!({"unified": {"a/b.c": "1"}})).contains("not a cgroup file name"));
    }

    #[test]
    fn translation_controllers_needed() {
        let ws = translate(
            &serde_json::from_value(json!({"memory": {"limit": 1}, "cpu": {"cpus": "0", "shares": 100}, "pids": {"limit": 3}}))
                .unwrap(),
        )
        .unwrap();
        let controllers: Vec<&str> = ws.iter().map(|w| w.controller).collect();
        assert_eq!(controllers, ["memory", "cpu", "cpuset", "pids"]);
        assert!(translate(&LinuxResources::default()).unwrap().is_empty());
    }
}
