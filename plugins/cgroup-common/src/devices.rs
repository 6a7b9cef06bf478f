//! Device access rules, shared by every cgroup backend.
//!
//! A container starts from "deny every device"; then come the config's
//! `linux.resources.devices` rules in order, then runc's default allows ([`DEFAULTS`]),
//! exactly as runc builds its list. The rules are folded into a [`Policy`] the way the
//! kernel's v1 device cgroup folds them (runc's "emulator" does the same): a default
//! (allow or deny) plus exceptions. cgroup v1 gets the policy as `devices.allow` /
//! `devices.deny` writes ([`Policy::transition`]); cgroup2 as an eBPF program built
//! from the same policy (`crate::bpf`), so both backends decide alike.

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::{PluginError, PluginResult};

/// Which devices a rule is about: all (`a`), block (`b`) or character (`c`) devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    All,
    Block,
    Char,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::All => 'a',
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// A set of accesses: read, write, mknod. The bits are the kernel's
/// `BPF_DEVCG_ACC_*` values, so an eBPF program can test them as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    pub const ALL: Access = Access(7);

    /// Parses `rwm` letters (in any order); `None` for anything else.
    pub fn parse(text: &str) -> Option<Access> {
        text.chars().try_fold(Access(0), |acc, c| match c {
            'r' => Some(acc.union(Access::READ)),
            'w' => Some(acc.union(Access::WRITE)),
            'm' => Some(acc.union(Access::MKNOD)),
            _ => None,
        })
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    pub fn minus(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    pub fn overlaps(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, letter) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.overlaps(bit) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// One device rule; `None` for a major or minor is the wildcard `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

/// Shown as the v1 files take it: `c 1:3 rwm`, `b 8:* r`, `a *:* rwm`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind.letter(),
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

const fn allow(kind: Kind, major: Option<u32>, minor: Option<u32>, access: Access) -> Rule {
    Rule {
        allow: true,
        kind,
        major,
        minor,
        access,
    }
}

/// The devices runc allows every container after the config's own rules (its
/// `AllowedDevices`, as runc 1.1 and 1.2.4+ write them): mknod of any node, then
/// /dev/null, random, full, tty, zero, urandom, the pts devices, ptmx and tun.
pub const DEFAULTS: [Rule; 11] = [
    allow(Kind::Char, None, None, Access::MKNOD),
    allow(Kind::Block, None, None, Access::MKNOD),
    allow(Kind::Char, Some(1), Some(3), Access::ALL),
    allow(Kind::Char, Some(1), Some(8), Access::ALL),
    allow(Kind::Char, Some(1), Some(7), Access::ALL),
    allow(Kind::Char, Some(5), Some(0), Access::ALL),
    allow(Kind::Char, Some(1), Some(5), Access::ALL),
    allow(Kind::Char, Some(1), Some(9), Access::ALL),
    allow(Kind::Char, Some(136), None, Access::ALL),
    allow(Kind::Char, Some(5), Some(2), Access::ALL),
    allow(Kind::Char, Some(10), Some(200), Access::ALL),
];

/// An OCI `linux.resources.devices[index]` entry as a [`Rule`]. A missing type is
/// `a`, a missing (or -1) major or minor `*`, a missing access `rwm`.
pub fn from_oci(index: usize, rule: &LinuxDeviceCgroup) -> PluginResult<Rule> {
    let bad =
        |what: String| PluginError::invalid(format!("linux.resources.devices[{index}]: {what}"));
    let kind = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => Kind::All,
        LinuxDeviceType::B => Kind::Block,
        LinuxDeviceType::C => Kind::Char,
        other @ (LinuxDeviceType::U | LinuxDeviceType::P) => {
            return Err(bad(format!(
                "type {:?} is invalid for the device cgroup: use a, b or c",
                other.as_str()
            )))
        }
    };
    let num = |n: Option<i64>, what: &str| match n {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| bad(format!("{what} {n} is invalid"))),
    };
    let text = rule.access().as_deref().filter(|a| !a.is_empty());
    let access = Access::parse(text.unwrap_or("rwm")).ok_or_else(|| {
        bad(format!(
            "access {:?} is invalid: use letters from \"rwm\"",
            text.unwrap_or_default()
        ))
    })?;
    Ok(Rule {
        allow: rule.allow(),
        kind,
        major: num(rule.major(), "major")?,
        minor: num(rule.minor(), "minor")?,
        access,
    })
}

/// The exceptions' key: device kind, major, minor.
type Key = (Kind, Option<u32>, Option<u32>);

/// What a device cgroup enforces: a default and the exceptions to it (the kernel's v1
/// model). In allow-list mode (`default_allow` false) the exceptions are what is
/// allowed; in deny-list mode, what is denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub default_allow: bool,
    pub exceptions: BTreeMap<Key, Access>,
}

impl Policy {
    /// Every device denied: where a container starts.
    pub fn deny_all() -> Policy {
        Policy {
            default_allow: false,
            exceptions: BTreeMap::new(),
        }
    }

    /// The policy of a container: deny all, then the config's rules in order (`None`
    /// or an empty list: none), then [`DEFAULTS`], as runc does.
    pub fn for_container(config: Option<&[LinuxDeviceCgroup]>) -> PluginResult<Policy> {
        let mut policy = Policy::deny_all();
        for (i, rule) in config.unwrap_or_default().iter().enumerate() {
            let rule = from_oci(i, rule)?;
            policy.apply(&rule).map_err(|e| {
                PluginError::invalid(format!("linux.resources.devices[{i}]: {}", e.message))
            })?;
        }
        for rule in &DEFAULTS {
            policy.apply(rule)?;
        }
        Ok(policy)
    }

    /// The policy an update sets: `None` when it has no `devices` (the rules stay);
    /// otherwise, even for an empty list, a whole new one as [`Policy::for_container`].
    pub fn for_update(config: Option<&[LinuxDeviceCgroup]>) -> PluginResult<Option<Policy>> {
        config
            .map(|rules| Policy::for_container(Some(rules)))
            .transpose()
    }

    /// Applies one rule as the kernel applies a write to `devices.allow` or
    /// `devices.deny`. Type `a` resets everything to allow-all or deny-all.
    pub fn apply(&mut self, rule: &Rule) -> PluginResult<()> {
        if rule.kind == Kind::All {
            *self = Policy {
                default_allow: rule.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        }
        let key = (rule.kind, rule.major, rule.minor);
        if rule.allow != self.default_allow {
            let entry = self.exceptions.entry(key).or_default();
            *entry = entry.union(rule.access);
            return Ok(());
        }
        // Removing access. The kernel only removes an exception with exactly this
        // major:minor and silently keeps a wildcard one that covers it (`c 136:*`
        // stays when `c 136:5` is removed): refuse that, as runc does, rather than
        // leave the access in place.
        for wider in [
            (rule.kind, None, rule.minor),
            (rule.kind, rule.major, None),
            (rule.kind, None, None),
        ] {
            if wider == key {
                continue;
            }
            if let Some(&access) = self.exceptions.get(&wider) {
                if access.overlaps(rule.access) {
                    let shown = Rule {
                        allow: !rule.allow,
                        kind: wider.0,
                        major: wider.1,
                        minor: wider.2,
                        access,
                    };
                    return Err(PluginError::invalid(format!(
                        "the rule \"{rule}\" (allow: {}) cannot take access away from the wider rule \"{shown}\" before it: the device cgroup cannot punch a hole in a wildcard rule",
                        rule.allow
                    )));
                }
            }
        }
        if let Some(access) = self.exceptions.get_mut(&key) {
            *access = access.minus(rule.access);
            if access.is_empty() {
                self.exceptions.remove(&key);
            }
        }
        Ok(())
    }

    /// The exceptions as rules (allow rules in allow-list mode), in a stable order.
    pub fn rules(&self) -> Vec<Rule> {
        self.exceptions
            .iter()
            .map(|(&(kind, major, minor), &access)| Rule {
                allow: !self.default_allow,
                kind,
                major,
                minor,
                access,
            })
            .collect()
    }

    /// The policy a v1 `devices.list` shows. An `a *:* rwm` line means deny-list mode,
    /// whose exceptions the file does not show.
    pub fn from_v1_list(text: &str) -> PluginResult<Policy> {
        let mut policy = Policy::deny_all();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let rule = parse_v1_line(line).ok_or_else(|| {
                PluginError::failed(format!("unexpected devices.list line {line:?}"))
            })?;
            policy.apply(&rule)?;
        }
        Ok(policy)
    }

    /// The v1 writes that take a cgroup from `self` to `target` with the least
    /// disruption: a deny-all (or allow-all) first only when the mode changes or the
    /// current deny-list is unknown, then the access to drop, then the access to add.
    pub fn transition(&self, target: &Policy) -> Vec<Rule> {
        let mut out = Vec::new();
        let empty = BTreeMap::new();
        let mut current = &self.exceptions;
        if self.default_allow || self.default_allow != target.default_allow {
            out.push(Rule {
                allow: target.default_allow,
                kind: Kind::All,
                major: None,
                minor: None,
                access: Access::ALL,
            });
            current = &empty;
        }
        let rule = |(kind, major, minor): Key, access, allow| Rule {
            allow,
            kind,
            major,
            minor,
            access,
        };
        for (&key, &old) in current {
            let dropped = old.minus(target.exceptions.get(&key).copied().unwrap_or_default());
            if !dropped.is_empty() {
                out.push(rule(key, dropped, target.default_allow));
            }
        }
        for (&key, &new) in &target.exceptions {
            let gained = new.minus(current.get(&key).copied().unwrap_or_default());
            if !gained.is_empty() {
                out.push(rule(key, gained, !target.default_allow));
            }
        }
        out
    }
}

/// One `devices.list` line: `c 1:3 rwm`, `a *:* rwm`.
fn parse_v1_line(line: &str) -> Option<Rule> {
    let mut words = line.split_whitespace();
    let kind = match words.next()? {
        "a" => Kind::All,
        "b" => Kind::Block,
        "c" => Kind::Char,
        _ => return None,
    };
    let (major, minor) = words.next()?.split_once(':')?;
    let num = |n: &str| -> Option<Option<u32>> {
        if n == "*" {
            Some(None)
        } else {
            n.parse().ok().map(Some)
        }
    };
    let access = Access::parse(words.next()?).filter(|a| !a.is_empty())?;
    Some(Rule {
        allow: true,
        kind,
        major: num(major)?,
        minor: num(minor)?,
        access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rules: serde_json::Value) -> PluginResult<Policy> {
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_value(rules).unwrap();
        Policy::for_container(Some(&rules))
    }

    fn shown(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {r}", if r.allow { "allow" } else { "deny" }))
            .collect()
    }

    /// What `devices.list` of a runc 1.1.5 container showed on this project's host
    /// (`runc spec` config), sorted.
    const RUNC_LIST: &str = "b *:* m\nc *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 1:7 rwm\nc 1:8 rwm\nc 1:9 rwm\nc 5:0 rwm\nc 5:2 rwm\nc 10:200 rwm\nc 136:* rwm\n";

    #[test]
    fn translation_defaults_match_runc() {
        let runc = Policy::from_v1_list(RUNC_LIST).unwrap();
        // No rules, an empty list and runc spec's deny-all all give runc's list.
        assert_eq!(Policy::for_container(None).unwrap(), runc);
        assert_eq!(policy(json!([])).unwrap(), runc);
        assert_eq!(
            policy(json!([{"allow": false, "access": "rwm"}])).unwrap(),
            runc
        );
        assert!(!runc.default_allow);
    }

    #[test]
    fn translation_rules_in_order_last_wins() {
        // An allow, then a deny of the same device: denied.
        let p = policy(json!([
            {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rwm"}
        ]))
        .unwrap();
        assert!(!p.exceptions.contains_key(&(Kind::Char, Some(1), Some(11))));
        // Deny, then allow: allowed; partial access removal keeps the rest.
        let p = policy(json!([
            {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "rwm"},
            {"allow": false, "type": "b", "major": 7, "minor": 0, "access": "w"}
        ]))
        .unwrap();
        assert_eq!(
            p.exceptions.get(&(Kind::Block, Some(7), Some(0))),
            Some(&Access::parse("rm").unwrap())
        );
        // A privileged container: allow all makes a deny-list, and the defaults that
        // follow change nothing.
        let p = policy(json!([{"allow": true, "access": "rwm"}])).unwrap();
        assert!(p.default_allow);
        assert!(p.exceptions.is_empty());
    }

    #[test]
    fn translation_refuses_holes_in_wildcards() {
        let e = policy(json!([
            {"allow": true, "type": "c", "major": 4, "access": "rw"},
            {"allow": false, "type": "c", "major": 4, "minor": 1, "access": "r"}
        ]))
        .unwrap_err();
        assert!(
            e.message.contains("cannot punch a hole in a wildcard rule"),
            "{e}"
        );
        assert!(e.message.starts_with("linux.resources.devices[1]"), "{e}");
        // The defaults deny nothing, so the default pts wildcard is never in the way.
        policy(json!([{"allow": false, "type": "c", "major": 136, "minor": 3}])).unwrap();
    }

    #[test]
    fn translation_invalid_rules() {
        let err = |v| policy(v).unwrap_err().message;
        assert!(err(json!([{"allow": true, "type": "p"}])).contains("type \"p\""));
        assert!(err(json!([{"allow": true, "access": "rwx"}])).contains("access \"rwx\""));
        assert!(err(json!([{"allow": true, "major": -5}])).contains("major -5"));
        assert!(
            err(json!([{"allow": true, "minor": 4_294_967_296_i64}])).contains("minor 4294967296")
        );
    }

    #[test]
    fn translation_v1_transition() {
        let fresh = Policy::from_v1_list("a *:* rwm\n").unwrap();
        assert!(fresh.default_allow);
        let target = policy(json!([
            {"allow": true, "type": "c", "major": 10, "minor": 232, "access": "rw"}
        ]))
        .unwrap();
        // From a new cgroup: deny all first, then every allow.
        let writes = fresh.transition(&target);
        assert_eq!(shown(&writes[..1]), ["deny a *:* rwm"]);
        assert_eq!(writes.len(), 1 + DEFAULTS.len() + 1);
        assert!(shown(&writes).contains(&"allow c 10:232 rw".to_owned()));
        // A live change: only the difference, no deny-all in between.
        let now = Policy::from_v1_list(RUNC_LIST).unwrap();
        let less = Policy::for_container(None).unwrap();
        assert_eq!(shown(&now.transition(&target)), ["allow c 10:232 rw"]);
        assert_eq!(shown(&target.transition(&less)), ["deny c 10:232 rw"]);
        assert!(less.transition(&less).is_empty());
        // Reading back what was written gives the target.
        let list = target
            .rules()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(Policy::from_v1_list(&list).unwrap(), target);
        assert!(Policy::from_v1_list("x 1:2 r").is_err());
    }
}
