//! Which directory, relative to a hierarchy's root, a container gets.

use std::path::{Component, Path, PathBuf};

use crate::{PluginError, PluginResult};

/// The parent of containers with a relative cgroupsPath. Destroy removes it once empty.
pub const DEFAULT_PARENT: &str = "tong";

/// The container's cgroup, relative to each hierarchy's root (no leading `/`):
/// - absent: `<id>` at the hierarchy's root, as runc and crun place it (no shared
///   parent to create and remove with every container);
/// - absolute (`/a/b`): `a/b`;
/// - systemd form `slice:prefix:name`: `machine.slice/libpod-abc.scope`, as crun/runc
///   convert it when no systemd is managing cgroups;
/// - otherwise relative: `tong/<path>`.
pub fn container_path(id: &str, cgroups_path: Option<&str>) -> PluginResult<PathBuf> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(PluginError::invalid(format!(
            "invalid container id {id:?} for a cgroup name"
        )));
    }
    let rel = match cgroups_path.filter(|p| !p.is_empty()) {
        None => PathBuf::from(id),
        Some(p) if !p.starts_with('/') && p.split(':').count() == 3 => systemd_path(p)?,
        Some(p) if p.starts_with('/') => PathBuf::from(p),
        Some(p) => Path::new(DEFAULT_PARENT).join(p),
    };
    let mut clean = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(PluginError::invalid(format!(
                    "cgroupsPath {:?} must not contain \"..\"",
                    cgroups_path.unwrap_or_default()
                )))
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(PluginError::invalid(format!(
            "cgroupsPath {:?} names the root cgroup; a container needs its own",
            cgroups_path.unwrap_or_default()
        )));
    }
    Ok(clean)
}

/// `slice:prefix:name` to `<expanded slice>/<prefix>-<name>.scope`.
fn systemd_path(spec: &str) -> PluginResult<PathBuf> {
    let mut parts = spec.split(':');
    let (slice, prefix, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if name.is_empty() {
        return Err(PluginError::invalid(format!(
            "cgroupsPath {spec:?}: the systemd form slice:prefix:name needs a name"
        )));
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = expand_slice(slice).map_err(|why| {
        PluginError::invalid(format!("cgroupsPath {spec:?}: slice {slice:?} {why}"))
    })?;
    // A systemd unit suffix, not a file extension.
    #[allow(clippy::case_sensitive_file_extension_comparisons)]
    let is_slice = name.ends_with(".slice");
    let unit = if is_slice {
        name.to_owned()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// systemd's slice nesting: `a-b-c.slice` lives in `a.slice/a-b.slice/a-b-c.slice`.
fn expand_slice(slice: &str) -> Result<PathBuf, &'static str> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err("must end in .slice");
    };
    if slice.contains('/') {
        return Err("must not contain '/'");
    }
    if base == "-" {
        return Ok(PathBuf::new());
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if part.is_empty() {
            return Err("has an empty component");
        }
        path.push(format!("{prefix}{part}.slice"));
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(id: &str, p: Option<&str>) -> String {
        container_path(id, p)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn translation_cgroups_path_forms() {
        assert_eq!(path("abc", None), "abc");
        assert_eq!(path("abc", Some("")), "abc");
        assert_eq!(path("abc", Some("/kubepods/pod1/abc")), "kubepods/pod1/abc");
        assert_eq!(path("abc", Some("mine/abc")), "tong/mine/abc");
        assert_eq!(path("abc", Some("/a/./b/")), "a/b");
        assert_eq!(
            path("abc", Some("machine.slice:libpod:abc")),
            "machine.slice/libpod-abc.scope"
        );
        assert_eq!(
            path("abc", Some("user-1000.slice:podman:xyz")),
            "user.slice/user-1000.slice/podman-xyz.scope"
        );
        assert_eq!(
            path("abc", Some(":crio:abc")),
            "system.slice/crio-abc.scope"
        );
        assert_eq!(path("abc", Some("-.slice::abc")), "abc.scope");
    }

    #[test]
    fn translation_cgroups_path_errors() {
        for (id, p) in [
            ("abc", Some("/a/../b")),
            ("abc", Some("../escape")),
            ("abc", Some("/")),
            ("a/b", None),
            ("", None),
            ("..", None),
            ("abc", Some("machine:libpod:abc")),
            ("abc", Some("machine.slice:libpod:")),
        ] {
            let err = container_path(id, p).unwrap_err();
            assert_eq!(err.status, tong_abi::STATUS_INVALID, "{id} {p:?}: {err}");
        }
        let err = container_path("abc", Some("/a/../b")).unwrap_err();
        assert!(err.message.contains("must not contain \"..\""), "{err}");
    }
}
