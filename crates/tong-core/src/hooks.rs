//! OCI hooks (`config.json` `hooks`), at the points the runtime spec names:
//!
//! | hook | when | where it runs | on failure |
//! | --- | --- | --- | --- |
//! | `prestart`, `createRuntime` | create, after the cgroup, id maps and network exist, before the container sets up its root | the runtime's namespaces | create fails and undoes everything |
//! | `createContainer` | create, once the container's root is ready, before `create` returns | the container's namespaces (a helper joins them); the path resolves in the runtime's | as above |
//! | `startContainer` | start, in the container's process before the user's program | the container | the process exits; the container is stopped (`run` reports the error) |
//! | `poststart` | start, once the program has been exec'd (the close-on-exec report fd or exec fifo is gone) | the runtime's | a warning; the next hooks still run |
//! | `poststop` | delete, once everything is undone | the runtime's | a warning; the next hooks still run |
//!
//! Each hook gets the container's state JSON on stdin (a memfd): status `creating` for
//! prestart, createRuntime and createContainer, `created` for startContainer, `running`
//! for poststart, `stopped` (no pid) for poststop; the pid is the one seen from the
//! hook's pid namespace (1 in the container for createContainer and startContainer), as
//! the runtime spec says and runc gives. Each hook gets its own `args` and
//! `env` only, and is killed when its `timeout` passes. The runner
//! ([`crate::child::hooks`]) allocates nothing after it forks, so the same code serves
//! the engine (possibly inside a multi-threaded Go program) and the container's process
//! between clone and exec (startContainer).

use std::ffi::{c_int, CString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::{access, AccessFlags};
use oci_spec::runtime::{Hook, Hooks};
use serde_json::Value;
use tong_abi::ChildError;

pub use crate::child::hooks::{PreparedHook, StartHooks};
use crate::cstrings::CStrings;
use crate::error::{Error, Result};

/// The hook points, by their config.json names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::Prestart => "prestart",
            Point::CreateRuntime => "createRuntime",
            Point::CreateContainer => "createContainer",
            Point::StartContainer => "startContainer",
            Point::Poststart => "poststart",
            Point::Poststop => "poststop",
        }
    }

    /// The hooks of this point in a config's `hooks`.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Point::Prestart => hooks.prestart(),
            Point::CreateRuntime => hooks.create_runtime(),
            Point::CreateContainer => hooks.create_container(),
            Point::StartContainer => hooks.start_container(),
            Point::Poststart => hooks.poststart(),
            Point::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// The hooks kept in a container's record (for `start` and `delete`).
pub fn from_record(value: Option<&Value>) -> Hooks {
    value
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// Every point, in lifecycle order.
pub const POINTS: [Point; 6] = [
    Point::Prestart,
    Point::CreateRuntime,
    Point::CreateContainer,
    Point::StartContainer,
    Point::Poststart,
    Point::Poststop,
];

/// Checks every hook of a config (absolute paths, positive timeouts) before anything is
/// made, including those that run only at start or delete.
pub fn validate(hooks: &Hooks) -> Result<()> {
    for point in POINTS {
        for (i, hook) in point.of(hooks).iter().enumerate() {
            let what = || format!("hooks.{}[{i}] {}", point.name(), hook.path().display());
            if !hook.path().is_absolute() {
                return Err(Error::invalid(format!(
                    "{}: the path must be absolute",
                    what()
                )));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(Error::invalid(format!(
                    "{}: timeout must be greater than zero",
                    what()
                )));
            }
        }
    }
    Ok(())
}

/// Whether a config has no hook at all.
pub fn is_empty(hooks: &Hooks) -> bool {
    POINTS.iter().all(|p| p.of(hooks).is_empty())
}

/// Prepares the hooks of one point (checked by [`validate`] first). `open_exe`: open the executable now (it
/// runs after the runner joins other namespaces). `check_exists`: its path is in our
/// mount namespace, so a missing file is reported now, by name.
pub fn prepare(point: Point, hooks: &[Hook], open_exe: bool) -> Result<Vec<PreparedHook>> {
    hooks
        .iter()
        .enumerate()
        .map(|(i, hook)| prepare_one(point, i, hook, open_exe))
        .collect()
}

/// Prepares `hook`, the `i`th of its point.
fn prepare_one(point: Point, i: usize, hook: &Hook, open_exe: bool) -> Result<PreparedHook> {
    let check_exists = point != Point::StartContainer;
    let what = format!("hooks.{}[{i}] {}", point.name(), hook.path().display());
    if check_exists {
        let c = cstring(&what, hook.path().as_os_str().as_bytes())?;
        access(c.as_c_str(), AccessFlags::X_OK).map_err(|e| {
            Error::invalid(format!(
                "{what}: cannot execute: {}",
                std::io::Error::from(e)
            ))
        })?;
    }
    let exe = if open_exe {
        // Close-on-exec, as std opens every file.
        let file = File::open(hook.path()).map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        Some(OwnedFd::from(file))
    } else {
        None
    };
    let args = match hook.args() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![hook.path().display().to_string()],
    };
    let env = hook.env().clone().unwrap_or_default();
    let strings = |items: &[String]| -> Result<CStrings> {
        Ok(CStrings::new(
            items
                .iter()
                .map(|s| cstring(&what, s.as_bytes()))
                .collect::<Result<_>>()?,
        ))
    };
    Ok(PreparedHook {
        path: cstring(&what, hook.path().as_os_str().as_bytes())?,
        exe,
        argv: strings(&args)?,
        envp: strings(&env)?,
        timeout_ms: hook.timeout().unwrap_or(0).saturating_mul(1000),
    })
}

fn cstring(what: &str, bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::invalid(format!("{what}: contains a NUL byte")))
}

/// A memfd holding the state JSON, to be every hook's stdin.
pub fn state_memfd(state: &[u8]) -> Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(
        c"tong-hook-state",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| Error::os("memfd_create", std::io::Error::from(e)))?;
    write_state(&fd, state)?;
    Ok(fd)
}

/// Replaces the memfd's content with `state`.
pub fn write_state(fd: &OwnedFd, state: &[u8]) -> Result<()> {
    let mut file = File::from(fd.try_clone().map_err(|e| Error::os("dup", e))?);
    file.set_len(0)
        .and_then(|()| std::io::Seek::rewind(&mut file))
        .and_then(|()| file.write_all(state))
        .map_err(|e| Error::os("writing the hook state", e))
}

/// Runs the hooks of one point in the engine, in order; the first failure is the error.
/// `joins`: namespace descriptors to enter first (createContainer), user namespace first.
pub fn run_all(
    point: Point,
    hooks: &[PreparedHook],
    state: &[u8],
    joins: &[(c_int, File)],
) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let memfd = state_memfd(state)?;
    let joins: Vec<(c_int, c_int)> = joins.iter().map(|(t, f)| (f.as_raw_fd(), *t)).collect();
    let name = point.name().as_bytes();
    let exec_failed = exec_failed(point);
    for hook in hooks {
        let mut err = ChildError::default();
        let mask = crate::signals::block_all_signals();
        let r =
            crate::child::hooks::run(name, exec_failed, hook, memfd.as_raw_fd(), &joins, &mut err);
        crate::signals::restore_signal_mask(&mask);
        if r.is_err() {
            return Err(Error::Container(err.describe()));
        }
    }
    Ok(())
}

/// What the message of a hook that could not be executed adds, at `point`.
fn exec_failed(point: Point) -> &'static [u8] {
    if point == Point::CreateContainer {
        b" (could not be executed: in the container's mount namespace its interpreter or loader must exist inside the container)"
    } else {
        crate::child::hooks::EXEC_FAILED
    }
}

/// Runs the hooks of a point whose failure only warns (poststart, poststop): each one
/// that fails is a warning, and the rest of the point's hooks still run.
pub fn run_warn(point: Point, hooks: &Hooks, state: &[u8]) {
    for (i, hook) in point.of(hooks).iter().enumerate() {
        let result = prepare_one(point, i, hook, false)
            .and_then(|prepared| run_all(point, &[prepared], state, &[]));
        if let Err(e) = result {
            crate::log::warn(format_args!("{e}"));
        }
    }
}

/// Waits until nobody reads the exec fifo any more: the container's process closed it
/// by exec'ing its program (the descriptor is close-on-exec), or died.
pub fn wait_readers_gone(fifo: &File) {
    // A write end reports POLLERR without readers.
    let mut pfd = [PollFd::new(fifo.as_fd(), PollFlags::empty())];
    while let Err(nix::errno::Errno::EINTR) = poll(&mut pfd, PollTimeout::NONE) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_create_container_blames_the_container_mount_namespace() {
        for point in POINTS {
            let why = String::from_utf8_lossy(exec_failed(point)).into_owned();
            assert!(why.contains("could not be executed"), "{why}");
            assert_eq!(
                why.contains("the container's mount namespace"),
                point == Point::CreateContainer,
                "{}: {why}",
                point.name()
            );
        }
    }
}
