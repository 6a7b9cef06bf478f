//! What can still be read from a corrupt or truncated state file, so that
//! `delete --force` undoes the container anyway. tong replaces `state.json` atomically,
//! so damage comes from outside (a full disk, an editor, a bad copy); the record's field
//! order (process and backends first) keeps the useful part at the front.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::state::{BackendRecord, Phase, Record};

/// Files larger than this are not worth repairing (a record is a few kilobytes).
const MAX_REPAIR: usize = 1 << 20;
/// Candidate cut points tried, from the end of the readable prefix backwards.
const MAX_ATTEMPTS: usize = 4096;

/// A record made of whatever fields of `data` are still readable; the rest defaults
/// (no process, no backends).
pub fn record(id: &str, data: &[u8]) -> Record {
    let value = readable_prefix(data).unwrap_or(Value::Null);
    let field = |key: &str| value.get(key).cloned();
    let backends = value
        .get("backends")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(kind, b)| Some((kind.clone(), parse::<BackendRecord>(b.clone())?)))
                .collect()
        })
        .unwrap_or_default();
    Record {
        id: id.to_string(),
        phase: field("phase").and_then(parse).unwrap_or(Phase::Creating),
        pid: field("pid").and_then(parse).unwrap_or(0),
        pid_start: field("pidStart").and_then(parse).unwrap_or(0),
        backends,
        bundle: field("bundle").and_then(parse).unwrap_or_else(PathBuf::new),
        oci_version: String::new(),
        rootfs: field("rootfs").and_then(parse).unwrap_or_else(PathBuf::new),
        created: String::new(),
        paused: false,
        owner: 0,
        annotations: std::collections::BTreeMap::new(),
        // Hooks from a damaged record are not run.
        hooks: None,
    }
}

fn parse<T: DeserializeOwned>(v: Value) -> Option<T> {
    serde_json::from_value(v).ok()
}

/// The longest prefix of `data` (up to its first error) that parses as JSON once its
/// open strings, arrays and objects are closed.
pub fn readable_prefix(data: &[u8]) -> Option<Value> {
    let err = match serde_json::from_slice::<Value>(data) {
        Ok(v) => return Some(v),
        Err(e) => e,
    };
    let end = byte_offset(data, err.line(), err.column()).min(data.len().min(MAX_REPAIR));
    let data = &data[..end];
    // Forward scan: after each byte that may end a value, the closers still owed.
    let mut closers: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut candidates: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, &b) in data.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                candidates.push((i + 1, closers.clone()));
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => closers.push(b'}'),
            b'[' => closers.push(b']'),
            b'}' | b']' => {
                if closers.pop() != Some(b) {
                    break;
                }
                candidates.push((i + 1, closers.clone()));
            }
            b'0'..=b'9' | b'e' | b'l' => candidates.push((i + 1, closers.clone())),
            _ => {}
        }
    }
    for (cut, owed) in candidates.iter().rev().take(MAX_ATTEMPTS) {
        let mut text = data[..*cut].to_vec();
        text.extend(owed.iter().rev());
        if let Ok(v) = serde_json::from_slice::<Value>(&text) {
            return Some(v);
        }
    }
    None
}

/// Byte offset of serde_json's (1-based line, column) position.
fn byte_offset(data: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = data
        .split_inclusive(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    (line_start + column).min(data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"id":"c","phase":"running","pid":4242,"pidStart":99,"backends":{"cgroup":{"name":"v1","path":"/p/cg.so","state":{"id":"c","cgroups":[{"dir":"/a"},{"dir":"/b"}]}},"ns":{"name":"clone3","path":"/p/ns.so"}},"bundle":"/b","ociVersion":"1.0.2"}"#;

    #[test]
    fn reads_a_whole_record() {
        let r = record("c", FULL.as_bytes());
        assert_eq!((r.pid, r.pid_start, r.phase), (4242, 99, Phase::Running));
        assert_eq!(r.backends.len(), 2);
        assert_eq!(r.bundle, PathBuf::from("/b"));
    }

    #[test]
    fn reads_what_survives_every_truncation() {
        for cut in 0..FULL.len() {
            let r = record("c", &FULL.as_bytes()[..cut]);
            let pid_complete = FULL[..cut].contains(r#""pid":4242,"#);
            if pid_complete {
                assert_eq!(r.pid, 4242, "cut at {cut}");
            }
            if FULL[..cut].contains(r#""ns":{"name":"clone3","path":"/p/ns.so"}"#) {
                assert_eq!(r.backends.len(), 2, "cut at {cut}");
            }
            assert_eq!(r.id, "c");
        }
    }

    #[test]
    fn stops_at_garbage() {
        let mut data = FULL.as_bytes().to_vec();
        let at = FULL.find("\"bundle\"").unwrap();
        data[at] = 0xff;
        let r = record("c", &data);
        assert_eq!(r.pid, 4242);
        assert_eq!(r.backends.len(), 2);
        assert_eq!(r.bundle, PathBuf::new());
        // Garbage before anything useful: an empty record, not a panic.
        let r = record("c", b"\x00\x01garbage{\"pid\":5}");
        assert_eq!(r.pid, 0);
    }
}
