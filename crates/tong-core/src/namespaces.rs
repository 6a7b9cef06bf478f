//! The namespaces a config asks for (`linux.namespaces`): which to create, which to join.

use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The namespaces a config asks for: which to create and which to join by path.
#[derive(Debug, Default, Clone)]
pub struct NamespacePlan {
    /// `CLONE_NEW*` flags of namespaces to create.
    pub create: u64,
    /// Namespaces to join: (`CLONE_NEW*` type, path).
    pub join: Vec<(i32, PathBuf)>,
}

impl NamespacePlan {
    /// Reads `linux.namespaces`.
    pub fn from_spec(spec: &Spec) -> NamespacePlan {
        let mut plan = NamespacePlan::default();
        for ns in spec
            .linux()
            .iter()
            .flat_map(|l| l.namespaces().iter().flatten())
        {
            let flag = clone_flag(ns.typ());
            match ns.path() {
                Some(path) => plan.join.push((flag as i32, path.clone())),
                None => plan.create |= flag,
            }
        }
        // A user namespace must be joined first: it decides what the others may do.
        plan.join
            .sort_by_key(|(t, _)| i32::from(*t != CloneFlags::CLONE_NEWUSER.bits()));
        plan
    }

    /// Whether the container gets (creates or joins) a namespace of this type.
    pub fn has(&self, flag: i32) -> bool {
        self.create & flag as u64 != 0 || self.join.iter().any(|(t, _)| *t == flag)
    }

    /// Whether the config joins a user namespace by path and creates other namespaces:
    /// those must be created after the join to belong to it (ns=fork does that).
    pub fn joins_user_and_creates(&self) -> bool {
        self.create != 0
            && self
                .join
                .iter()
                .any(|(t, _)| *t == CloneFlags::CLONE_NEWUSER.bits())
    }

    /// Whether the container creates a namespace of this type.
    pub fn creates(&self, flag: i32) -> bool {
        self.create & flag as u64 != 0
    }
}

/// The `CLONE_NEW*` flag of a namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> u64 {
    let flag = match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME, which nix 0.29 does not name.
        LinuxNamespaceType::Time => return 0x80,
    };
    flag.bits() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_namespaces_user_first() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[
                {"type":"pid"},{"type":"network","path":"/run/netns/x"},
                {"type":"user","path":"/proc/1/ns/user"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        let plan = NamespacePlan::from_spec(&spec);
        let flag = |f: CloneFlags| f.bits();
        assert_eq!(
            plan.create,
            flag(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS) as u64
        );
        assert_eq!(plan.join[0].0, flag(CloneFlags::CLONE_NEWUSER));
        assert_eq!(plan.join[1].0, flag(CloneFlags::CLONE_NEWNET));
        assert!(plan.has(flag(CloneFlags::CLONE_NEWNET)));
        assert!(!plan.creates(flag(CloneFlags::CLONE_NEWNET)));
    }
}
