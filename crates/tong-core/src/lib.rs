//! tong-core: the container engine behind the `tong` command and `libtong`.
//!
//! - [`config`]: bundle loading and checks (config.json through `oci-spec`);
//! - [`plugins`]: discovery, trust and ABI checks, loading and selection of backends;
//! - [`plugin_cache`]: plugin priorities remembered so selection loads one plugin;
//! - [`state`]: the per-container state directory and record;
//! - [`runtime`]: the OCI lifecycle (create, start, state, kill, delete, run, list);
//! - [`log`]: the engine's one log (stderr, the CLI's `--log`, the C log callback);
//! - [`launch`]: the pipes, descriptors, clone and handshake that make a process;
//! - [`child`]: the container's process between clone and exec (no allocation there);
//! - [`process`]: signalling and waiting through pidfds;
//! - [`security`]: capabilities, seccomp, rlimits, sysctls, LSM labels;
//! - [`userns`]: user namespace id mappings and running without root.

pub mod child;
pub mod config;
pub mod cstrings;
pub mod error;
pub mod events;
pub mod exec_stub;
pub mod fault;
pub mod features;
#[doc(hidden)]
pub mod fuzzing;
pub mod hooks;
pub mod id;
pub mod init;
pub(crate) mod launch;
pub mod log;
pub mod namespaces;
pub mod plugin_cache;
pub mod plugins;
pub mod process;
pub mod runtime;
pub mod salvage;
pub mod security;
pub mod signals;
pub mod state;
pub mod terminal;
pub mod userns;
pub mod watchdog;

pub use error::{Error, ErrorCode, Result};
pub use runtime::{ContainerState, CreateOptions, ExecOptions, Runtime, Status};
pub use terminal::Console;
pub use tong_abi::PluginKind;
