//! The lifecycle's public types: a container's status and OCI state, and the options of
//! `create`, `run` and `exec`. A leaf module (re-exported as `tong::runtime::*` and
//! `tong::*`), so the lifecycle's modules share them without importing one another.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;

use serde::Serialize;
use tong_abi::PluginKind;

use crate::terminal::Console;

/// The most descriptors `extra_fds` may name.
pub const MAX_EXTRA_FDS: usize = 1000;

/// A container's status, as OCI state reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The OCI state of a container (what `tong state` prints).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The backend plugins the container uses, by kind.
    pub backends: BTreeMap<String, String>,
}

/// Options of `create` and `run`.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Explicit backend per kind; beats the config's annotations and probing.
    pub backends: BTreeMap<PluginKind, String>,
    /// Write the container's pid here once created.
    pub pid_file: Option<PathBuf>,
    /// Descriptors to become the container's stdin, stdout, stderr (-1: inherit).
    pub stdio: [RawFd; 3],
    /// Where the pty master goes when `process.terminal` is true.
    pub console: Console,
    /// Run tong's minimal init as pid 1 (also the `tong.init=true` annotation).
    pub init: bool,
    /// Socket-activation descriptors (3 up to 3 + n) passed on with LISTEN_FDS=n and
    /// LISTEN_PID=1 in the container's environment, as runc does.
    pub listen_fds: u32,
    /// Further descriptors after those (runc's `--preserve-fds`), passed on as they are.
    pub preserve_fds: u32,
    /// Descriptors of the caller the container gets next, in order: after the
    /// `listen_fds` and `preserve_fds` ones, so `extra_fds[i]` becomes 3 + i when those
    /// are 0 (as Go's `exec.Cmd.ExtraFiles`). Borrowed for the call: tong passes copies.
    /// At most [`MAX_EXTRA_FDS`].
    pub extra_fds: Vec<RawFd>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            backends: BTreeMap::new(),
            pid_file: None,
            stdio: [-1; 3],
            console: Console::None,
            init: false,
            listen_fds: 0,
            preserve_fds: 0,
            extra_fds: Vec::new(),
        }
    }
}

/// Options of `exec`.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    /// Write the process's pid here once it runs.
    pub pid_file: Option<PathBuf>,
    /// Descriptors to become its stdin, stdout, stderr (-1: inherit).
    pub stdio: [RawFd; 3],
    /// Forward the usual termination signals this process receives to it.
    pub forward_signals: bool,
    /// Where the pty master goes when `process.terminal` is true.
    pub console: Console,
    /// With `detach`, reap the process in this process when it exits (a long-lived
    /// caller). A short-lived one (the CLI) leaves it to the reaper it is handed to when
    /// the caller exits: the engine's shim or conmon, which reads its exit status.
    pub reap_detached: bool,
    /// Descriptors of the caller the process gets as 3, 4, ... (see
    /// [`CreateOptions::extra_fds`]).
    pub extra_fds: Vec<RawFd>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            detach: false,
            pid_file: None,
            stdio: [-1; 3],
            forward_signals: false,
            console: Console::None,
            reap_detached: true,
            extra_fds: Vec::new(),
        }
    }
}
