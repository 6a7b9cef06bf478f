//! Loading and checking a bundle's config.json (parsed by `oci-spec`).

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

/// The largest config.json accepted.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// HOST_NAME_MAX of Linux: the longest hostname or domainname the kernel takes.
const HOST_NAME_MAX: usize = 64;

/// A bundle whose config was read and checked.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub path: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `<bundle>/config.json` and checks what the runtime relies on, with errors that
    /// name the file, field, line and column where there is one.
    pub fn load(bundle: &Path) -> Result<Bundle> {
        let path = std::fs::canonicalize(bundle)
            .map_err(|e| Error::invalid(format!("bundle {}: {e}", bundle.display())))?;
        if !path.is_dir() {
            return Err(Error::invalid(format!(
                "bundle {} is not a directory",
                path.display()
            )));
        }
        // The OCI state reports the bundle as a JSON string.
        if path.to_str().is_none() {
            return Err(Error::invalid(format!(
                "bundle path {} is not valid UTF-8 (the OCI state reports it as a string)",
                path.display()
            )));
        }
        let config_path = path.join("config.json");
        // A config is a few kilobytes; a huge one would be copied into every state write.
        if let Ok(meta) = std::fs::metadata(&config_path) {
            if meta.len() > MAX_CONFIG_BYTES {
                return Err(Error::invalid(format!(
                    "{} is {} bytes: tong accepts at most {MAX_CONFIG_BYTES} (8 MiB)",
                    config_path.display(),
                    meta.len()
                )));
            }
        }
        let bytes = std::fs::read(&config_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::invalid(format!("bundle {} has no config.json", path.display()))
            } else {
                Error::invalid(format!("cannot read {}: {e}", config_path.display()))
            }
        })?;
        Bundle::from_config(path, &bytes)
    }

    /// Parses and checks config.json's bytes for the bundle directory `path` (absolute).
    pub fn from_config(path: PathBuf, bytes: &[u8]) -> Result<Bundle> {
        let config_path = path.join("config.json");
        let mut spec = parse(bytes).map_err(|e| {
            // A clearer message for what the security module can name (an unknown
            // capability or seccomp action) than serde's list of variants.
            let clearer = serde_json::from_slice(bytes)
                .ok()
                .and_then(|v| crate::security::diagnose(&v));
            Error::invalid(format!(
                "invalid {}: {}",
                config_path.display(),
                clearer.unwrap_or(e)
            ))
        })?;
        let rootfs = check(&spec, &path)
            .map_err(|e| Error::invalid(format!("{}: {e}", config_path.display())))?;
        crate::userns::fill_default_maps(&mut spec);
        Ok(Bundle { path, spec, rootfs })
    }
}

/// Parses config JSON; serde's message carries the line and column.
pub fn parse(bytes: &[u8]) -> Result<Spec, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Checks a parsed config against what tong needs, returning the rootfs path.
fn check(spec: &Spec, bundle: &Path) -> Result<PathBuf, String> {
    check_version(spec.version())?;
    let root = spec
        .root()
        .as_ref()
        .ok_or("no root: root.path is required")?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(format!(
            "root.path {} does not exist or is not a directory",
            rootfs.display()
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or("no process: process.args is required")?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err("process.args is empty".into()),
    }
    if !Path::new(process.cwd()).is_absolute() {
        return Err(format!(
            "process.cwd {} is not an absolute path",
            process.cwd().display()
        ));
    }
    // (uid_t)-1 means "leave unchanged" to setresuid: the process would stay root.
    let user = process.user();
    let ids = [
        ("process.user.uid", user.uid()),
        ("process.user.gid", user.gid()),
    ];
    let extra = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| ("process.user.additionalGids", *g));
    if let Some((what, id)) = ids.into_iter().chain(extra).find(|(_, id)| *id == u32::MAX) {
        return Err(format!(
            "{what} {id} is not a valid id (it means \"unchanged\" to the kernel)"
        ));
    }
    for (what, name) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if let Some(name) = name.as_ref().filter(|n| n.len() > HOST_NAME_MAX) {
            return Err(format!(
                "{what} is {} bytes long: Linux allows at most {HOST_NAME_MAX}",
                name.len()
            ));
        }
    }
    if let Some(linux) = spec.linux() {
        let mut seen = Vec::new();
        for ns in linux.namespaces().iter().flatten() {
            if seen.contains(&ns.typ()) {
                return Err(format!("linux.namespaces lists {:?} twice", ns.typ()));
            }
            seen.push(ns.typ());
        }
    }
    Ok(rootfs)
}

/// Accepts the 1.x runtime specs: the spec keeps compatibility within a major version.
fn check_version(version: &str) -> Result<(), String> {
    let major = version.split('.').next().unwrap_or("");
    if major == "1" {
        Ok(())
    } else {
        Err(format!(
            "unsupported ociVersion {version:?}: tong supports runtime spec 1.x"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_line_and_column_of_bad_json() {
        let err = parse(b"{\n \"ociVersion\": \"1.0.2\",\n oops }").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn accepts_1x_and_refuses_other_majors() {
        check_version("1.0.2").unwrap();
        check_version("1.2.0").unwrap();
        assert!(check_version("2.0.0")
            .unwrap_err()
            .contains("unsupported ociVersion"));
        assert!(check_version("").is_err());
    }
}
