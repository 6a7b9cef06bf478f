//! `tong events`: cgroup statistics in runc's event shape, so tools written for
//! `runc events` read tong's unchanged:
//! `{"type":"stats","id":ID,"data":{"cpu":{"usage":{...}},"memory":{"usage":{...}},
//! "pids":{...},"blkio":{...}}}`. The cgroup plugins report [`tong_plugin_sdk::wire::CgroupStats`]
//! (what the C API returns as is); this is only the translation.

use serde_json::{json, Map, Value};
use tong_plugin_sdk::wire::CgroupStats;

/// The `runc events` object for one stats sample.
pub fn stats_event(id: &str, stats: &Value) -> Value {
    json!({"type": "stats", "id": id, "data": runc_stats(stats)})
}

/// runc's `types.Stats` from the plugins' statistics (fields runc omits when zero are
/// omitted the same way).
pub fn runc_stats(stats: &Value) -> Value {
    let stats: CgroupStats = serde_json::from_value(stats.clone()).unwrap_or_default();
    let mut data = Map::new();
    if let Some(cpu) = &stats.cpu {
        let mut usage = Map::new();
        if cpu.usage_total != 0 {
            usage.insert("total".into(), json!(cpu.usage_total));
        }
        usage.insert("kernel".into(), json!(cpu.usage_kernel));
        usage.insert("user".into(), json!(cpu.usage_user));
        data.insert("cpu".into(), json!({"usage": usage, "throttling": {}}));
    }
    if let Some(mem) = &stats.memory {
        let mut usage = Map::new();
        usage.insert("limit".into(), json!(mem.limit.unwrap_or(0)));
        if mem.usage != 0 {
            usage.insert("usage".into(), json!(mem.usage));
        }
        if let Some(max) = mem.max_usage.filter(|m| *m != 0) {
            usage.insert("max".into(), json!(max));
        }
        usage.insert("failcnt".into(), json!(0));
        data.insert("memory".into(), json!({"usage": usage}));
    }
    if let Some(pids) = &stats.pids {
        let mut p = Map::new();
        if pids.current != 0 {
            p.insert("current".into(), json!(pids.current));
        }
        if let Some(limit) = pids.limit.filter(|l| *l != 0) {
            p.insert("limit".into(), json!(limit));
        }
        data.insert("pids".into(), Value::Object(p));
    }
    data.insert(
        "blkio".into(),
        stats.blkio.clone().unwrap_or_else(|| json!({})),
    );
    data.insert("hugetlb".into(), json!({}));
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_shape() {
        let raw = json!({
            "memory": {"usage": 4096, "max_usage": 8192, "limit": 1_048_576},
            "cpu": {"usage_total": 10, "usage_user": 6, "usage_kernel": 4},
            "pids": {"current": 2, "limit": 20}
        });
        let e = stats_event("web", &raw);
        assert_eq!(e["type"], "stats");
        assert_eq!(e["id"], "web");
        assert_eq!(e["data"]["memory"]["usage"]["usage"], 4096);
        assert_eq!(e["data"]["memory"]["usage"]["max"], 8192);
        assert_eq!(e["data"]["memory"]["usage"]["limit"], 1_048_576);
        assert_eq!(e["data"]["cpu"]["usage"]["total"], 10);
        assert_eq!(e["data"]["cpu"]["usage"]["user"], 6);
        assert_eq!(e["data"]["cpu"]["usage"]["kernel"], 4);
        assert_eq!(e["data"]["pids"]["current"], 2);
        assert_eq!(e["data"]["pids"]["limit"], 20);
        // No pids limit: omitted, as runc's omitempty does.
        let e = stats_event("web", &json!({"pids": {"current": 1}}));
        assert!(e["data"]["pids"].get("limit").is_none());
    }
}
