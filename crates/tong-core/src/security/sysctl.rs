//! `linux.sysctl`: only sysctls that belong to a namespace the container has, as runc
//! allows (ipc: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*; net: net.*;
//! uts: kernel.hostname, kernel.domainname). The child writes them right after the
//! parent's go-ahead, through the host's /proc (still mounted in its fresh mount
//! namespace): /proc/sys resolves to the namespaces of the writing process.

use std::collections::HashMap;
use std::ffi::CString;

use nix::sched::CloneFlags;

use super::invalid;
use crate::error::Result;
use crate::namespaces::NamespacePlan;

/// One sysctl to write, as C strings for the child.
#[derive(Debug)]
pub struct Sysctl {
    pub(crate) key: CString,
    pub(crate) path: CString,
    pub(crate) value: CString,
}

const IPC_KEYS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The namespace a sysctl belongs to, or None when it is global.
fn namespace_of(key: &str) -> Option<(i32, &'static str)> {
    if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        Some((CloneFlags::CLONE_NEWIPC.bits(), "ipc"))
    } else if key.starts_with("net.") {
        Some((CloneFlags::CLONE_NEWNET.bits(), "network"))
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some((CloneFlags::CLONE_NEWUTS.bits(), "uts"))
    } else {
        None
    }
}

/// Checks every key and prepares the writes, in key order.
pub fn plan<S: std::hash::BuildHasher>(
    sysctls: Option<&HashMap<String, String, S>>,
    namespaces: &NamespacePlan,
) -> Result<Vec<Sysctl>> {
    let mut keys: Vec<(&String, &String)> = sysctls.into_iter().flatten().collect();
    keys.sort();
    let mut out = Vec::new();
    for (key, value) in keys {
        let field = format!("linux.sysctl {key:?}");
        let parts: Vec<&str> = key.split(['.', '/']).collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == ".." || *p == "." || p.contains('\0'))
        {
            return Err(invalid(&field, "not a valid sysctl name"));
        }
        let normal = parts.join(".");
        match namespace_of(&normal) {
            None => {
                return Err(invalid(
                    &field,
                    "not a namespaced sysctl: it would change the host (allowed: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*, kernel.hostname, kernel.domainname)",
                ))
            }
            Some((flag, ns)) if !namespaces.has(flag) => {
                return Err(invalid(
                    &field,
                    format!("belongs to the {ns} namespace, which the config does not give the container"),
                ))
            }
            Some(_) => {}
        }
        let text = |s: String| CString::new(s).map_err(|_| invalid(&field, "contains a NUL byte"));
        out.push(Sysctl {
            key: text(normal)?,
            path: text(format!("/proc/sys/{}", parts.join("/")))?,
            value: text(value.clone())?,
        });
    }
    Ok(out)
}
