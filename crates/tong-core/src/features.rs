//! `tong features`: what this build implements, in the runtime-spec features format
//! (features.md of the OCI runtime spec). Only what really works is listed.

use serde_json::{json, Value};

use crate::security::{caps, lsm, seccomp};

/// The features document.
pub fn features() -> Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
            "strictatime", "suid", "sync", "unbindable",
            "lazytime", "nolazytime", "nosymfollow", "symfollow", "silent", "loud",
            "iversion", "noiversion",
            "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
            "rnodiratime", "rdiratime", "rnoatime", "ratime", "rrelatime", "rnorelatime",
            "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps::known_names(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": seccomp::ACTIONS,
                "operators": seccomp::OPERATORS,
                "archs": seccomp::architectures(),
                "knownFlags": seccomp::FLAGS,
                "supportedFlags": seccomp::FLAGS
            },
            // Whether a profile or label can be applied on this host (else it is refused).
            "apparmor": {"enabled": lsm::apparmor_enabled()},
            "selinux": {"enabled": lsm::selinux_enabled()}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "tong.backend.ns": "namespace backend plugin name (e.g. clone3)",
            "tong.backend.cgroup": "cgroup backend plugin name (v1, v2)",
            "tong.backend.rootfs": "rootfs backend plugin name (pivot, chroot, overlay)",
            "tong.rootfs.overlay.lowerdirs": "overlay backend: further read-only layers below root.path, colon-separated, lowest last",
            "tong.backend.net": "network backend plugin name (none)",
            "tong.init": "true: tong's minimal init runs as pid 1, reaps orphans, forwards signals",
            "tong.seccomp.unknown-syscalls": "ignore: skip seccomp syscall names libseccomp does not know (default: refuse them)"
        }
    })
}
