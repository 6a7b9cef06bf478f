//! Address management: one JSON file per bridge under the tong root
//! (`<root>/.ipam-<bridge>.json`, address -> owner), changed only under an exclusive
//! flock on a sibling lock file and replaced by rename, so concurrent creates get
//! distinct addresses and a crash never leaves a half-written file.
//!
//! An entry whose container state directory is gone (tong was killed mid-create, or the
//! state was removed by hand) is taken back on the next allocation.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tong_plugin_sdk::{PluginError, PluginResult};

use crate::config::Subnet;

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Owner {
    id: String,
    state_dir: String,
}

pub struct Ipam {
    file: PathBuf,
}

impl Ipam {
    pub fn new(root: &Path, bridge: &str) -> Ipam {
        Ipam {
            file: root.join(format!(".ipam-{bridge}.json")),
        }
    }

    pub fn at(file: &Path) -> Ipam {
        Ipam {
            file: file.to_path_buf(),
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Reserves a free address of `subnet` for the container.
    pub fn allocate(&self, subnet: Subnet, id: &str, state_dir: &str) -> PluginResult<Ipv4Addr> {
        let _lock = self.lock()?;
        let mut table = self.read()?;
        table.retain(|_, owner| Path::new(&owner.state_dir).exists());
        let address = subnet
            .container_addresses()
            .find(|a| !table.contains_key(a))
            .ok_or_else(|| {
                PluginError::failed(format!(
                    "no free address left in {}/{} ({} in use, see {})",
                    subnet.network,
                    subnet.prefix,
                    table.len(),
                    self.file.display()
                ))
            })?;
        table.insert(
            address,
            Owner {
                id: id.to_string(),
                state_dir: state_dir.to_string(),
            },
        );
        self.write(&table)?;
        Ok(address)
    }

    /// Frees the address; Ok when it is not reserved.
    pub fn release(&self, address: Ipv4Addr) -> PluginResult<()> {
        if !self.file.exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let mut table = self.read()?;
        if table.remove(&address).is_some() {
            self.write(&table)?;
        }
        Ok(())
    }

    /// Frees every address held by the container whose state directory is `state_dir`.
    pub fn release_owner(&self, state_dir: &str) -> PluginResult<()> {
        if !self.file.exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let mut table = self.read()?;
        let before = table.len();
        table.retain(|_, owner| owner.state_dir != state_dir);
        if table.len() != before {
            self.write(&table)?;
        }
        Ok(())
    }

    fn lock(&self) -> PluginResult<File> {
        let path = self.file.with_extension("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| PluginError::os(format!("open {}", path.display()), e))?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(PluginError::os(
                format!("flock {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(file)
    }

    fn read(&self) -> PluginResult<BTreeMap<Ipv4Addr, Owner>> {
        match std::fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                PluginError::failed(format!("{} is corrupt: {e}", self.file.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(PluginError::os(format!("read {}", self.file.display()), e)),
        }
    }

    fn write(&self, table: &BTreeMap<Ipv4Addr, Owner>) -> PluginResult<()> {
        let tmp = self.file.with_extension("tmp");
        let mut f = File::create(&tmp)
            .map_err(|e| PluginError::os(format!("create {}", tmp.display()), e))?;
        f.write_all(&serde_json::to_vec_pretty(table)?)
            .map_err(|e| PluginError::os(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &self.file)
            .map_err(|e| PluginError::os(format!("rename to {}", self.file.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_frees_and_reclaims_stale() {
        // Removed even when an assertion fails.
        let tmp = tempfile::Builder::new()
            .prefix("tong-ipam-test-")
            .tempdir()
            .unwrap();
        let root = tmp.path().to_path_buf();
        let live = root.join("live");
        std::fs::create_dir_all(&live).unwrap();
        let live = live.to_str().unwrap();
        let subnet: Subnet = "10.9.0.0/29".parse().unwrap();
        let ipam = Ipam::new(&root, "br");
        let a = ipam.allocate(subnet, "a", live).unwrap();
        let b = ipam.allocate(subnet, "b", live).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 9, 0, 3));
        ipam.release(a).unwrap();
        ipam.release(a).unwrap();
        let dead = ipam.allocate(subnet, "x", "/nonexistent/x").unwrap();
        ipam.release_owner("/nonexistent/x").unwrap();
        assert_eq!(ipam.allocate(subnet, "y", live).unwrap(), dead);
        ipam.release(dead).unwrap();
        assert_eq!(ipam.allocate(subnet, "c", live).unwrap(), a);
        // An owner whose state directory is gone is taken back.
        let gone = root.join("gone");
        let d = ipam.allocate(subnet, "d", gone.to_str().unwrap()).unwrap();
        assert_eq!(ipam.allocate(subnet, "e", live).unwrap(), d);
        for _ in 0..2 {
            ipam.allocate(subnet, "f", live).unwrap();
        }
        let err = ipam.allocate(subnet, "g", live).unwrap_err().message;
        assert!(err.contains("no free address"), "{err}");
    }
}
