//! OCI mount options (fstab style) to `mount(2)` flags and a filesystem data string.
//!
//! Pure and allocation-happy: it runs in the parent, in `prepare`.

use libc::c_ulong;

/// Mount flags that a bind mount only honours through a second, remount call.
pub const REMOUNT_FLAGS: c_ulong = libc::MS_RDONLY
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_SYNCHRONOUS
    | libc::MS_MANDLOCK
    | libc::MS_DIRSYNC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME
    | libc::MS_NOSYMFOLLOW
    | libc::MS_LAZYTIME;

/// Options parsed from an OCI `mounts[].options` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the mount call (`MS_BIND`/`MS_REC` included for bind/rbind).
    pub flags: c_ulong,
    /// Propagation changes (`MS_SLAVE | MS_REC`, ...), applied after the mount, in order.
    pub propagation: Vec<c_ulong>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// Everything the kernel should see as filesystem data (`mode=755,size=65536k`).
    pub data: String,
    /// `MOUNT_ATTR_*` bits the r-variants (`rro`, `rnosuid`, ...) set on the mount and
    /// every mount below it, with mount_setattr(2) `AT_RECURSIVE`.
    pub recursive_set: u64,
    /// `MOUNT_ATTR_*` bits they clear (`rrw`, `rsuid`, ...).
    pub recursive_clear: u64,
    /// `tmpcopyup`: the tmpfs starts with a copy of what the directory held before.
    pub tmpcopyup: bool,
}

/// `(name, set?, flag)`: an option either sets or clears a flag.
const FLAG_OPTIONS: &[(&str, bool, c_ulong)] = &[
    ("defaults", false, 0),
    ("ro", true, libc::MS_RDONLY),
    ("rw", false, libc::MS_RDONLY),
    ("nosuid", true, libc::MS_NOSUID),
    ("suid", false, libc::MS_NOSUID),
    ("nodev", true, libc::MS_NODEV),
    ("dev", false, libc::MS_NODEV),
    ("noexec", true, libc::MS_NOEXEC),
    ("exec", false, libc::MS_NOEXEC),
    ("sync", true, libc::MS_SYNCHRONOUS),
    ("async", false, libc::MS_SYNCHRONOUS),
    ("remount", true, libc::MS_REMOUNT),
    ("mand", true, libc::MS_MANDLOCK),
    ("nomand", false, libc::MS_MANDLOCK),
    ("dirsync", true, libc::MS_DIRSYNC),
    ("atime", false, libc::MS_NOATIME),
    ("noatime", true, libc::MS_NOATIME),
    ("diratime", false, libc::MS_NODIRATIME),
    ("nodiratime", true, libc::MS_NODIRATIME),
    ("relatime", true, libc::MS_RELATIME),
    ("norelatime", false, libc::MS_RELATIME),
    ("strictatime", true, libc::MS_STRICTATIME),
    ("nostrictatime", false, libc::MS_STRICTATIME),
    ("lazytime", true, libc::MS_LAZYTIME),
    ("nolazytime", false, libc::MS_LAZYTIME),
    ("nosymfollow", true, libc::MS_NOSYMFOLLOW),
    ("symfollow", false, libc::MS_NOSYMFOLLOW),
    ("silent", true, libc::MS_SILENT),
    ("loud", false, libc::MS_SILENT),
    ("iversion", true, libc::MS_I_VERSION),
    ("noiversion", false, libc::MS_I_VERSION),
];

/// Propagation options; each becomes its own mount call after the mount.
const PROPAGATION_OPTIONS: &[(&str, c_ulong)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Recursive attribute options (runc's names): `(name, set?, MOUNT_ATTR_* bit)`. They
/// need mount_setattr(2) (Linux 5.12), applied after the mount.
const RECURSIVE_OPTIONS: &[(&str, bool, u64)] = &[
    ("rro", true, libc::MOUNT_ATTR_RDONLY),
    ("rrw", false, libc::MOUNT_ATTR_RDONLY),
    ("rnosuid", true, libc::MOUNT_ATTR_NOSUID),
    ("rsuid", false, libc::MOUNT_ATTR_NOSUID),
    ("rnodev", true, libc::MOUNT_ATTR_NODEV),
    ("rdev", false, libc::MOUNT_ATTR_NODEV),
    ("rnoexec", true, libc::MOUNT_ATTR_NOEXEC),
    ("rexec", false, libc::MOUNT_ATTR_NOEXEC),
    ("rnodiratime", true, libc::MOUNT_ATTR_NODIRATIME),
    ("rdiratime", false, libc::MOUNT_ATTR_NODIRATIME),
    ("rnosymfollow", true, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", false, libc::MOUNT_ATTR_NOSYMFOLLOW),
];

/// Recursive access-time options. The kernel treats atime as one field: it must be
/// cleared whole and set to one value, so `ratime`, `rnorelatime` and `rnostrictatime`
/// all mean the default, relatime.
const RECURSIVE_ATIME_OPTIONS: &[(&str, u64)] = &[
    ("rnoatime", libc::MOUNT_ATTR_NOATIME),
    ("rstrictatime", libc::MOUNT_ATTR_STRICTATIME),
    ("rrelatime", libc::MOUNT_ATTR_RELATIME),
    ("ratime", libc::MOUNT_ATTR_RELATIME),
    ("rnorelatime", libc::MOUNT_ATTR_RELATIME),
    ("rnostrictatime", libc::MOUNT_ATTR_RELATIME),
];

/// Options other runtimes accept that need id-mapped mounts, which tong does not do
/// (yet): refused rather than silently ignored.
const UNSUPPORTED_OPTIONS: &[&str] = &["idmap", "ridmap"];

/// Parses a propagation name (`rslave`, `private`, ...) into its `MS_*` flags.
pub fn parse_propagation(name: &str) -> Option<c_ulong> {
    PROPAGATION_OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, f)| f)
}

/// Parses OCI mount options. Entries may themselves hold comma-separated options. Unknown
/// options become filesystem data; the caller decides whether data makes sense (it does
/// not for bind mounts).
pub fn parse_mount_options<S: AsRef<str>>(options: &[S]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    for entry in options {
        let entry = entry.as_ref();
        if entry.contains('\0') {
            return Err(format!("mount option {entry:?} contains a NUL byte"));
        }
        for opt in entry.split(',') {
            if opt.is_empty() {
                return Err(format!("empty mount option in {entry:?}"));
            }
            if let Some(&(_, set, flag)) = FLAG_OPTIONS.iter().find(|(n, _, _)| *n == opt) {
                if set {
                    out.flags |= flag;
                } else {
                    out.flags &= !flag;
                }
            } else if let Some(prop) = parse_propagation(opt) {
                out.propagation.push(prop);
            } else if opt == "bind" {
                out.bind = true;
                out.flags |= libc::MS_BIND;
            } else if opt == "rbind" {
                out.bind = true;
                out.flags |= libc::MS_BIND | libc::MS_REC;
            } else if let Some(&(_, set, bit)) =
                RECURSIVE_OPTIONS.iter().find(|(n, _, _)| *n == opt)
            {
                if set {
                    out.recursive_set |= bit;
                    out.recursive_clear &= !bit;
                } else {
                    out.recursive_clear |= bit;
                    out.recursive_set &= !bit;
                }
            } else if let Some(&(_, value)) =
                RECURSIVE_ATIME_OPTIONS.iter().find(|(n, _)| *n == opt)
            {
                out.recursive_clear |= libc::MOUNT_ATTR__ATIME;
                out.recursive_set = (out.recursive_set & !libc::MOUNT_ATTR__ATIME) | value;
            } else if opt == "tmpcopyup" {
                out.tmpcopyup = true;
            } else if UNSUPPORTED_OPTIONS.contains(&opt) {
                return Err(format!(
                    "mount option {opt:?} is not supported by tong's rootfs backends"
                ));
            } else {
                if !out.data.is_empty() {
                    out.data.push(',');
                }
                out.data.push_str(opt);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_set_and_clear_in_order() {
        let o = parse_mount_options(&["nosuid", "noexec", "nodev", "ro"]).unwrap();
        assert_eq!(
            o.flags,
            libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV | libc::MS_RDONLY
        );
        assert!(o.data.is_empty());
        assert!(!o.bind);

        let o = parse_mount_options(&["ro", "rw", "nosuid", "suid", "noatime", "atime"]).unwrap();
        assert_eq!(o.flags, 0);

        let o = parse_mount_options(&[
            "sync",
            "dirsync",
            "mand",
            "relatime",
            "strictatime",
            "nodiratime",
        ])
        .unwrap();
        assert_eq!(
            o.flags,
            libc::MS_SYNCHRONOUS
                | libc::MS_DIRSYNC
                | libc::MS_MANDLOCK
                | libc::MS_RELATIME
                | libc::MS_STRICTATIME
                | libc::MS_NODIRATIME
        );
        let o = parse_mount_options(&["sync", "async", "mand", "nomand", "remount"]).unwrap();
        assert_eq!(o.flags, libc::MS_REMOUNT);
    }

    #[test]
    fn unknown_options_become_data() {
        let o = parse_mount_options(&["nosuid", "strictatime", "mode=755", "size=65536k"]).unwrap();
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");

        let o = parse_mount_options(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ])
        .unwrap();
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn comma_separated_entries_are_split() {
        let o = parse_mount_options(&["ro,nosuid,mode=700"]).unwrap();
        assert_eq!(o.flags, libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(o.data, "mode=700");
    }

    #[test]
    fn bind_and_propagation() {
        let o = parse_mount_options(&["rbind", "ro", "rprivate"]).unwrap();
        assert!(o.bind);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);

        let o = parse_mount_options(&["bind", "shared", "runbindable"]).unwrap();
        assert!(o.bind);
        assert_eq!(o.flags, libc::MS_BIND);
        assert_eq!(
            o.propagation,
            vec![libc::MS_SHARED, libc::MS_UNBINDABLE | libc::MS_REC]
        );
        assert_eq!(
            parse_propagation("rslave"),
            Some(libc::MS_SLAVE | libc::MS_REC)
        );
        assert_eq!(parse_propagation("sideways"), None);
    }

    #[test]
    fn refuses_bad_options() {
        assert!(parse_mount_options(&[""]).unwrap_err().contains("empty"));
        assert!(parse_mount_options(&["ro,,nosuid"]).is_err());
        assert!(parse_mount_options(&["mode=7\u{0}55"])
            .unwrap_err()
            .contains("NUL"));
        let e = parse_mount_options(&["idmap"]).unwrap_err();
        assert!(e.contains("\"idmap\" is not supported"), "{e}");
    }

    #[test]
    fn tmpcopyup_is_not_data() {
        let o = parse_mount_options(&["rw,nosuid,nodev,tmpcopyup", "size=1m"]).unwrap();
        assert!(o.tmpcopyup);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NODEV);
        assert_eq!(o.data, "size=1m");
        assert!(!parse_mount_options(&["size=1m"]).unwrap().tmpcopyup);
    }

    #[test]
    fn recursive_attributes() {
        let o = parse_mount_options(&["rbind", "rro", "rnosuid", "rnoexec", "rnoatime"]).unwrap();
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC);
        assert_eq!(
            o.recursive_set,
            libc::MOUNT_ATTR_RDONLY
                | libc::MOUNT_ATTR_NOSUID
                | libc::MOUNT_ATTR_NOEXEC
                | libc::MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.recursive_clear, libc::MOUNT_ATTR__ATIME);
        assert!(o.data.is_empty());
        // The later option wins.
        let o = parse_mount_options(&["rro", "rrw", "rnoatime", "ratime"]).unwrap();
        assert_eq!(o.recursive_set, libc::MOUNT_ATTR_RELATIME);
        assert_eq!(
            o.recursive_clear,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR__ATIME
        );
    }

    #[test]
    fn empty_options() {
        let none: [&str; 0] = [];
        assert_eq!(parse_mount_options(&none).unwrap(), MountOptions::default());
    }
}
