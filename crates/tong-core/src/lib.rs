//! tong-core: the container engine behind the `tong` command and `libtong`
//! (crates/tong-capi). Public: [`Runtime`] and its options, [`config`], [`error`],
//! [`log`], [`plugins`], [`features`], [`events`]; the rest is the engine's own.
//!
//!
//! - [`config`]: bundle loading and checks (config.json through `oci-spec`);
//! - [`plugins`]: discovery, trust and ABI checks, loading and selection of backends;
//! - `plugin_cache`: plugin priorities remembered so selection loads one plugin;
//! - `state`: the per-container state directory and record;
//! - [`runtime`]: the OCI lifecycle front (create, start, state, kill, delete, run, list),
//!   each verb checking the container's status and handing the work on;
//! - `options`: the lifecycle's public types (status, OCI state, create and exec options);
//! - `create`: the create script, each step recorded before the next; `exec`: a process
//!   in a running container; `teardown`: undoing a container (delete, a failed create);
//! - `oci_state`: the status and OCI state shown by `state`, `list` and the hooks;
//! - `backend_record`: plugin requests and states as the record keeps them;
//! - `host`: the parent side's seam to the kernel (is the init alive, signal, kill), faked
//!   in unit tests;
//! - [`log`]: the engine's one log (stderr, the CLI's `--log`, the C log callback);
//! - `launch`: the pipes, descriptors, clone and handshake that make a process;
//! - `child`: the container's process between clone and exec (no allocation there);
//! - `process`: signalling and waiting through pidfds;
//! - `security`: capabilities, seccomp, rlimits, sysctls, LSM labels;
//! - `userns`: user namespace id mappings and running without root.

pub(crate) mod backend_record;
pub(crate) mod child;
pub mod config;
pub(crate) mod create;
pub(crate) mod cstrings;
pub mod error;
pub mod events;
pub(crate) mod exec;
pub(crate) mod exec_stub;
pub mod fault;
pub mod features;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod hooks;
pub(crate) mod host;
pub(crate) mod id;
pub(crate) mod init;
pub(crate) mod launch;
pub mod log;
pub(crate) mod namespaces;
pub(crate) mod oci_state;
pub(crate) mod options;
pub(crate) mod plugin_cache;
pub mod plugins;
pub mod pool;
pub(crate) mod private_dir;
pub(crate) mod process;
pub mod runtime;
pub(crate) mod salvage;
pub(crate) mod security;
pub(crate) mod signals;
pub(crate) mod state;
pub(crate) mod teardown;
pub(crate) mod terminal;
pub(crate) mod userns;
pub(crate) mod watchdog;

pub use error::{Error, Result};
pub use runtime::{ContainerState, CreateOptions, ExecOptions, Runtime, Status};
pub use terminal::Console;
pub use tong_abi::PluginKind;
