//! `tong update`: new cgroup limits for a running container, as `linux.resources` JSON
//! (`--resources FILE`, `-` for stdin, as podman passes them) and/or runc's flags, which
//! override the file's values.

use std::io::Read;
use std::path::PathBuf;

use serde_json::{json, Map, Value};
use tong::Error;

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Container id.
    pub id: String,
    /// A JSON file with an OCI linux.resources object; `-` reads stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g; -1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory soft limit in bytes.
    #[arg(long, allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Maximum number of processes (-1 or 0: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// CPU time in microseconds per --cpu-period (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    cpu_period: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    cpu_shares: Option<u64>,
    /// CPUs the container may use (e.g. 0-1).
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (e.g. 0).
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    blkio_weight: Option<u16>,
}

/// The `linux.resources` document to apply.
pub fn resources(args: &UpdateArgs) -> Result<Value, Error> {
    let doc = match &args.resources {
        Some(path) => read_resources(path)?,
        None => Value::Object(Map::new()),
    };
    let Value::Object(mut doc) = doc else {
        return Err(Error::invalid(
            "--resources: expected a JSON object (OCI linux.resources)",
        ));
    };
    let mut set = |section: &str, key: &str, value: Value| {
        let entry = doc
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(key.to_string(), value);
        }
    };
    if let Some(v) = &args.memory {
        set("memory", "limit", json!(bytes("--memory", v)?));
    }
    if let Some(v) = &args.memory_reservation {
        set(
            "memory",
            "reservation",
            json!(bytes("--memory-reservation", v)?),
        );
    }
    if let Some(v) = &args.memory_swap {
        set("memory", "swap", json!(bytes("--memory-swap", v)?));
    }
    if let Some(v) = args.pids_limit {
        set("pids", "limit", json!(if v == 0 { -1 } else { v }));
    }
    if let Some(v) = args.cpu_quota {
        set("cpu", "quota", json!(v));
    }
    if let Some(v) = args.cpu_period {
        set("cpu", "period", json!(v));
    }
    if let Some(v) = args.cpu_shares {
        set("cpu", "shares", json!(v));
    }
    if let Some(v) = &args.cpuset_cpus {
        set("cpu", "cpus", json!(v));
    }
    if let Some(v) = &args.cpuset_mems {
        set("cpu", "mems", json!(v));
    }
    if let Some(v) = args.blkio_weight {
        set("blockIO", "weight", json!(v));
    }
    if doc.is_empty() {
        return Err(Error::invalid(
            "update: nothing to change (give --resources FILE or a limit flag such as --memory)",
        ));
    }
    Ok(Value::Object(doc))
}

fn read_resources(path: &std::path::Path) -> Result<Value, Error> {
    let mut text = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut text).map(drop)
    } else {
        std::fs::read(path).map(|b| text = b)
    };
    read.map_err(|e| Error::invalid(format!("--resources {}: {e}", path.display())))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::invalid(format!("--resources {}: invalid JSON: {e}", path.display())))
}

/// Parses a byte count with an optional binary suffix (k, m, g, t; b ignored), or -1.
fn bytes(flag: &str, text: &str) -> Result<i64, Error> {
    let bad = || {
        Error::invalid(format!(
            "{flag} {text:?}: expected bytes, e.g. 64m, 1g or -1"
        ))
    };
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_suffixes() {
        assert_eq!(bytes("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(bytes("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(bytes("--memory", "4096").unwrap(), 4096);
        assert_eq!(bytes("--memory", "-1").unwrap(), -1);
        assert!(bytes("--memory", "lots")
            .unwrap_err()
            .to_string()
            .contains("--memory"));
    }
}
