//! cgroup2 controller delegation: a controller's files appear in a cgroup only when
//! every ancestor lists it in `cgroup.subtree_control`.

use std::path::Path;

use crate::dir::{read, write};
use crate::{PluginError, PluginResult};

/// The controllers a cgroup2 directory offers (`cgroup.controllers`).
pub fn available(dir: &Path) -> PluginResult<Vec<String>> {
    Ok(read(&dir.join("cgroup.controllers"))?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Fails, listing what there is, unless the hierarchy's root offers every controller in
/// `needed`. Run before creating anything, so a refusal leaves nothing behind.
pub fn check_available(mount: &Path, needed: &[String]) -> PluginResult<()> {
    let have = available(mount)?;
    if let Some(missing) = needed.iter().find(|c| !have.contains(c)) {
        let list = if have.is_empty() {
            "none".to_owned()
        } else {
            have.join(" ")
        };
        return Err(PluginError::unsupported(format!(
            "controller {missing:?} is not available in {} (available: {list})",
            mount.display()
        )));
    }
    Ok(())
}

/// Enables `needed` in `cgroup.subtree_control` of every directory from `mount` down to
/// `dir`'s parent, so that `dir` gets their files.
pub fn enable(mount: &Path, dir: &Path, needed: &[String]) -> PluginResult<()> {
    if needed.is_empty() {
        return Ok(());
    }
    let Ok(rel) = dir.strip_prefix(mount) else {
        return Err(PluginError::invalid(format!(
            "{} is not under {}",
            dir.display(),
            mount.display()
        )));
    };
    let mut cur = mount.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let enabled = read(&cur.join("cgroup.subtree_control"))?;
        let missing: Vec<String> = needed
            .iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == c.as_str()))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() {
            write(&cur.join("cgroup.subtree_control"), &missing.join(" "))?;
        }
        if i + 1 < parts.len() {
            cur.push(part);
        }
    }
    Ok(())
}
