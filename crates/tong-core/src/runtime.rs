//! The lifecycle front: create, start, run, exec, state, kill, delete, pause, resume,
//! update, stats, ps, wait, list. The processes themselves are made by the launcher
//! (`launch.rs`); each public call makes the runtime's log the thread's current one
//! ([`crate::log`]).
//!
//! `create` records what it is about to make in the container's state file before each
//! step, so `delete --force` can undo a create that failed or was killed half-way; a
//! failure inside `create` undoes everything itself through the same teardown.

use std::collections::BTreeMap;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use oci_spec::runtime::{Process, Spec};
use serde::Serialize;
use serde_json::Value;
use tong_abi::PluginKind;
use tong_plugin_sdk::wire;

use crate::config::Bundle;
use crate::error::{Context, Error, Result};
use crate::launch::{
    console_for, container_namespaces, how_it_ended, make_fifo, open_joins, process_context, spawn,
    uts_name, with_listen_fds, Channel, PassedFds, WriteAllBytes,
};
use crate::log::{Log, SharedLog};
use crate::namespaces::NamespacePlan;
use crate::plugins::{
    Backend, CgroupBackend, NamespaceBackend, NetworkBackend, Plugin, PluginHost, RootfsBackend,
};
use crate::security::{self, ChildSecurity, HostSteps};
use crate::state::{self, BackendRecord, ContainerDir, Phase, Record, StateStore};
use crate::terminal::{Console, Relay};
use crate::{fault, hooks, id, init, pool, process, salvage, userns};

/// Annotation prefix choosing a backend per kind: `tong.backend.cgroup: v1`.
pub const BACKEND_ANNOTATION: &str = "tong.backend.";
/// Default state root.
pub const DEFAULT_ROOT: &str = "/run/tong";
pub use crate::launch::MAX_EXTRA_FDS;

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

/// How a created process is released.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StartGate {
    /// It waits on the exec fifo until `start` (any process) writes it.
    Fifo,
    /// It waits on our pipe (`run` in this process).
    Pipe,
}

/// A container created in this process, not yet started (for `run`).
struct Launched {
    pid: i32,
    pidfd: Option<OwnedFd>,
    channel: Channel,
    /// The terminal this process relays (`Console::Relay` in the foreground).
    relay: Option<Relay>,
}

/// Creates in one process are serialized: a container process inherits every descriptor
/// open in the caller at the moment of its clone (until it execs), including another
/// container's state lock and pipes; one create at a time keeps those inheritances
/// acyclic, so a lock held by a waiting container process never deadlocks two threads.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// The engine: a state root, a plugin search path and a log.
#[derive(Clone, Debug)]
pub struct Runtime {
    store: StateStore,
    plugins: PluginHost,
    log: SharedLog,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, plugins: PluginHost) -> Runtime {
        let store = StateStore::new(root);
        let plugins = plugins.with_priority_cache(crate::plugin_cache::default_dir().as_deref());
        Runtime {
            store,
            plugins,
            log: SharedLog::default(),
        }
    }

    /// Sends the engine's warnings to `log` instead of stderr.
    pub fn with_log(mut self, log: Arc<dyn Log>) -> Runtime {
        self.log = SharedLog(log);
        self
    }

    pub fn plugins(&self) -> &PluginHost {
        &self.plugins
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// The pool's target and contents (docs/pools.md).
    pub fn pool_status(&self) -> Result<pool::PoolStatus> {
        let _log = crate::log::enter(&self.log);
        pool::status(self.root())
    }

    /// Sets the pool's target to `target` (or keeps the recorded one when `None`) and
    /// makes or destroys network namespaces until that many are ready. With
    /// `wait == false`, returns at once when another fill holds the pool (a background
    /// refill).
    pub fn pool_fill(&self, target: Option<u32>, wait: bool) -> Result<pool::PoolStatus> {
        let _log = crate::log::enter(&self.log);
        pool::fill(self.root(), target, wait)
    }

    /// Sets the pool's target to 0, destroys every pooled namespace and removes the pool.
    pub fn pool_drain(&self) -> Result<pool::PoolStatus> {
        let _log = crate::log::enter(&self.log);
        pool::drain(self.root())
    }

    /// Creates a container that waits for `start`.
    pub fn create(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        self.create_with(id, bundle, opts, StartGate::Fifo, false)
            .map(drop)
    }

    /// Creates and starts a container; with `detach` returns at once, else waits for it,
    /// deletes it and returns its exit code (128 + signal when killed). With
    /// `forward_signals`, signals sent to this process go to the container. With
    /// `Console::Relay` and a terminal, this process's stdio is relayed to it meanwhile.
    pub fn run(
        &self,
        id: &str,
        bundle: &Path,
        opts: &CreateOptions,
        detach: bool,
        forward_signals: bool,
    ) -> Result<i32> {
        let _log = crate::log::enter(&self.log);
        let mut launched = self
            .create_with(id, bundle, opts, StartGate::Pipe, !detach)?
            .ok_or_else(|| Error::Internal("run: no launch handle".into()))?;
        if let Err(e) = Self::release(&launched) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        self.run_poststart(id);
        if detach {
            return Ok(0);
        }
        let code = process::wait_and_relay(
            launched.pid,
            launched.pidfd.as_ref(),
            forward_signals,
            launched.relay.as_mut(),
        );
        // The terminal is restored before anything else is said.
        drop(launched);
        // Deleted whatever the wait said: run leaves nothing behind.
        let deleted = self.delete(id, true);
        let code = code?;
        deleted.map(|()| code)
    }

    /// Lets a `run` container exec, and reports a failed exec. Its record already says
    /// running (written so by create: `run` has no created phase anyone could see).
    fn release(launched: &Launched) -> Result<()> {
        launched.channel.start()
    }

    fn create_with(
        &self,
        id: &str,
        bundle: &Path,
        opts: &CreateOptions,
        gate: StartGate,
        foreground: bool,
    ) -> Result<Option<Launched>> {
        id::validate(id)?;
        let _one_at_a_time = CREATE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let bundle = Bundle::load(bundle)?;
        let namespaces = NamespacePlan::from_spec(&bundle.spec);
        check_mount_namespace(&bundle.spec, &namespaces)?;
        userns::check(&bundle.spec, &namespaces)?;
        // Checked and compiled before anything exists on the host.
        let security = security::prepare_container(&bundle.spec, &namespaces)?;
        let inherited = opts.listen_fds.saturating_add(opts.preserve_fds);
        let passed = PassedFds::copy(inherited, &opts.extra_fds)?;
        let mut warm_up = WarmUp::default();
        let backends = self.choose_backends(&bundle.spec, opts, &namespaces, &mut warm_up)?;
        let dir = self.store.create(id)?;
        fault::point("create:state-dir-made", 0);
        let mut record = Record {
            oci_version: bundle.spec.version().clone(),
            id: id.to_string(),
            bundle: bundle.path.clone(),
            rootfs: bundle.rootfs.clone(),
            created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            annotations: annotations(&bundle.spec),
            phase: Phase::Creating,
            pid: 0,
            pid_start: 0,
            paused: false,
            owner: nix::unistd::geteuid().as_raw(),
            backends: backends
                .plugins()
                .map(|p| {
                    let rec = BackendRecord {
                        name: p.name.clone(),
                        path: p.path.clone(),
                        state: None,
                        request: None,
                    };
                    (p.kind.as_str().to_string(), rec)
                })
                .collect(),
            hooks: None,
        };
        let plan = CreatePlan {
            bundle: &bundle,
            namespaces: &namespaces,
            backends: &backends,
            opts,
            gate,
            foreground,
            passed: &passed,
        };
        // The cgroup request goes into the first record: a create killed between making
        // the cgroup and recording it is undone by adopting the cgroup (see teardown).
        let result = cgroup_request(id, &bundle.spec)
            .and_then(|req| set_backend_request(&mut record, PluginKind::Cgroup, &req))
            .and_then(|()| dir.write(&record))
            .and_then(|()| build(&plan, security, &dir, &mut record));
        match result {
            Ok(launched) => Ok(launched),
            Err(e) => {
                // Undo everything recorded so far; report the original error.
                let _ = self.teardown(&record);
                let _ = dir.remove();
                Err(e)
            }
        }
    }

    /// Picks a plugin per kind: the caller's choice, else the config's annotation, else
    /// the best one that probes usable.
    fn choose_backends(
        &self,
        spec: &Spec,
        opts: &CreateOptions,
        namespaces: &NamespacePlan,
        warm_up: &mut WarmUp,
    ) -> Result<Backends> {
        let annotations = annotations(spec);
        let creates_network = namespaces.creates(libc::CLONE_NEWNET);
        if opts.backends.contains_key(&PluginKind::Network) && !creates_network {
            let kind = PluginKind::Network;
            return Err(Error::invalid(format!(
                "--backend {kind}=...: this container has no {kind} to set up (no new network namespace in the config)"
            )));
        }
        let explicit = |kind: PluginKind| {
            opts.backends
                .get(&kind)
                .or_else(|| annotations.get(&format!("{BACKEND_ANNOTATION}{kind}")))
                .map(String::as_str)
        };
        // Cgroup first: its warm-up then overlaps the loading of the others.
        let cgroup = match explicit(PluginKind::Cgroup) {
            Some(name) => Some(self.plugins.select_named::<CgroupBackend>(name)?),
            None => match self.plugins.select_best::<CgroupBackend>() {
                Ok(plugin) => Some(plugin),
                Err(e) if userns::rootless() => {
                    userns::warn_no_cgroup(&e);
                    None
                }
                Err(e) => return Err(e),
            },
        };
        if let Some(cgroup) = cgroup {
            warm_up.start(cgroup);
        }
        let namespace = match explicit(PluginKind::Namespace) {
            Some(name) => self.plugins.select_named(name)?,
            // Only ns=fork creates namespaces after joining a user namespace, so they
            // belong to it (clone3 creates them at once, owned by ours).
            None if namespaces.joins_user_and_creates() => self.plugins.select_named("fork")?,
            None => self.plugins.select_best()?,
        };
        let rootfs = self.pick(explicit(PluginKind::Rootfs))?;
        let network = if creates_network {
            Some(self.pick(explicit(PluginKind::Network))?)
        } else {
            None
        };
        Ok(Backends {
            namespace,
            cgroup,
            rootfs,
            network,
        })
    }

    /// The plugin named, else the best one that probes usable.
    fn pick<B: Backend>(&self, name: Option<&str>) -> Result<B> {
        match name {
            Some(name) => self.plugins.select_named(name),
            None => self.plugins.select_best(),
        }
    }

    /// Releases a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let mut record = dir.read()?;
        let status = status_of(&record, &dir.path);
        if status != Status::Created {
            return Err(Error::InvalidState(format!(
                "cannot start container {id:?}: it is {status}, not created"
            )));
        }
        let fifo = dir.fifo_path();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENXIO) {
                    Error::InvalidState(format!(
                        "cannot start container {id:?}: its process is gone"
                    ))
                } else {
                    Error::os(format!("cannot open {}", fifo.display()), e)
                }
            })?;
        (&file).write_all_bytes(&[1])?;
        fault::point("start:released", record.pid);
        let _ = std::fs::remove_file(&fifo);
        record.phase = Phase::Running;
        dir.write(&record)?;
        fault::point("start:record-running", record.pid);
        drop(dir);
        let hooks = hooks::from_record(record.hooks.as_ref());
        if !hooks::Point::Poststart.of(&hooks).is_empty() {
            // poststart follows the program's exec (and so the startContainer hooks).
            hooks::wait_readers_gone(&file);
            self.run_poststart(id);
        }
        Ok(())
    }

    /// poststart hooks: after start, in the runtime's namespaces; a failure only warns.
    fn run_poststart(&self, id: &str) {
        let Ok(record) = self.store.peek(id) else {
            return;
        };
        let hooks = hooks::from_record(record.hooks.as_ref());
        if !hooks::Point::Poststart.of(&hooks).is_empty() {
            let state = hook_state(&record, &self.store.root().join(id), None);
            hooks::run_warn(hooks::Point::Poststart, &hooks, &state);
        }
    }

    /// The OCI state of one container.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let record = dir.read()?;
        Ok(oci_state(&record, &dir.path, owner_name(record.owner)))
    }

    /// The state of every container; unreadable ones are skipped.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let _log = crate::log::enter(&self.log);
        let mut out = Vec::new();
        // One passwd lookup per owner, not per container (ci/bench-list: 1,000 of them).
        let mut owners = BTreeMap::new();
        for id in self.store.ids()? {
            if let Ok(record) = self.store.peek(&id) {
                let owner = owners
                    .entry(record.owner)
                    .or_insert_with(|| owner_name(record.owner))
                    .clone();
                out.push(oci_state(&record, &self.store.root().join(&id), owner));
            }
        }
        Ok(out)
    }

    /// Sends a signal to the container's init, or with `all` to every process in its
    /// cgroup.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        // With --all, processes left in the cgroup after the init died are still
        // signalled (containerd kills them so; runc does the same).
        let (_dir, record) = if all {
            self.open_with(id, "kill", &[Status::Creating])?
        } else {
            self.open_live(id, "kill")?
        };
        if all {
            let cgroup: CgroupBackend = self.recorded_plugin(&record)?;
            let state = record.backend_state(PluginKind::Cgroup).unwrap_or_default();
            for pid in cgroup.pids(&state)? {
                // SAFETY: kill(2) on a pid listed in the container's own cgroup.
                unsafe { libc::kill(pid, signal) };
            }
            return Ok(());
        }
        process::signal(record.pid, record.pid_start, signal).map_err(|e| {
            Error::os(
                format!("cannot signal container {id:?} (pid {})", record.pid),
                e,
            )
        })
    }

    /// Opens and locks a container whose process lives (created, running or paused), for
    /// the command `verb`.
    fn open_live(&self, id: &str, verb: &str) -> Result<(ContainerDir, Record)> {
        self.open_with(id, verb, &[Status::Stopped, Status::Creating])
    }

    /// Opens and locks a container unless its status is one of `refused`.
    fn open_with(
        &self,
        id: &str,
        verb: &str,
        refused: &[Status],
    ) -> Result<(ContainerDir, Record)> {
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let record = dir.read()?;
        let status = status_of(&record, &dir.path);
        if refused.contains(&status) {
            // "container not running" is runc's wording, which containerd's shim reads
            // as "process already finished" and podman leaves out of its output.
            return Err(Error::InvalidState(format!(
                "cannot {verb} container {id:?}: container not running (it is {status})"
            )));
        }
        Ok((dir, record))
    }

    /// Deletes a stopped (or, with `force`, any) container and everything it made.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let dir = match self.store.open(id) {
            Ok(d) => d,
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let record = match dir.read() {
            Ok(r) => r,
            // Unreadable, corrupt or truncated.
            Err(why) if force && !matches!(why, Error::NotFound(_)) => {
                self.teardown_salvaged(&dir)
                    .map_err(|e| Error::InvalidState(format!("{why}; cleaning up: {e}")))?;
                return dir.remove();
            }
            Err(e) => return Err(e),
        };
        fault::point("delete:record-read", record.pid);
        let status = status_of(&record, &dir.path);
        if !force && matches!(status, Status::Running | Status::Paused) {
            return Err(Error::InvalidState(format!(
                "cannot delete container {id:?}: it is {status} (stop it first or use --force)"
            )));
        }
        self.teardown(&record)?;
        let hooks = hooks::from_record(record.hooks.as_ref());
        if !hooks::Point::Poststop.of(&hooks).is_empty() {
            let state = hook_state(&record, &dir.path, Some(Status::Stopped));
            hooks::run_warn(hooks::Point::Poststop, &hooks, &state);
        }
        dir.remove()
    }

    /// Runs another process in a running container: it joins every namespace and the
    /// cgroup of the container's init. Returns its exit code (128 + signal when killed),
    /// or 0 at once with `detach`.
    pub fn exec(&self, id: &str, process: &Process, opts: &ExecOptions) -> Result<i32> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        // The lock is not held while the process runs: other commands must still work.
        let record = {
            let dir = self.store.open(id)?;
            let record = dir.read()?;
            let status = status_of(&record, &dir.path);
            if status != Status::Running {
                return Err(Error::InvalidState(format!(
                    "cannot exec in container {id:?}: it is {status}, not running"
                )));
            }
            record
        };
        let joins = container_namespaces(record.pid)?;
        let in_user_namespace = joins.iter().any(|(t, _)| *t == libc::CLONE_NEWUSER);
        let ns = if in_user_namespace && userns::rootless() {
            // Without root, the container's pid namespace can only be joined from inside
            // its user namespace: ns=fork joins that first (clone3 joins pid in the parent).
            self.plugins.select_named::<NamespaceBackend>("fork")?
        } else {
            self.recorded_plugin(&record)?
        };
        // A container run without root may have no cgroup (see userns).
        let cgroup = match record.backend(PluginKind::Cgroup) {
            Some(_) => Some(self.recorded_plugin::<CgroupBackend>(&record)?),
            None => None,
        };
        let cgroup_state = record.backend_state(PluginKind::Cgroup).unwrap_or_default();
        let console = console_for(process, &opts.console, !opts.detach)?;
        let passed = PassedFds::copy(0, &opts.extra_fds)?;
        let (channel, child_ends) = Channel::open(&passed)?;
        let fds = child_ends.child_fds(channel.raw_fds().to_vec(), opts.stdio, &console, None);
        let mut ctx = process_context(process, fds)?;
        ctx.pass_fds = passed.raw();
        let (child_security, host_steps) = security::prepare(process, in_user_namespace)?;
        ctx.security = child_security;
        ctx.security.seccomp = security::container_seccomp(&record.bundle)?;
        // Its user namespace was mapped without root: setgroups(2) is denied there.
        ctx.set_groups = !(in_user_namespace && userns::rootless());
        let clone_target = match cgroup {
            Some(cgroup) => cgroup.clone_target(&cgroup_state)?,
            None => None,
        };
        let (spawned, pidfd) = spawn(ns, 0, &joins, clone_target.as_ref(), &ctx)?;
        // The child has its own copies; ours must close so EOF means what it should.
        drop((child_ends, clone_target, joins, console.child, passed));
        let pid = spawned.pid;
        let start = state::process_start_time(pid).unwrap_or(0);
        let handshake = || -> Result<Option<Relay>> {
            if let (Some(cgroup), 0) = (cgroup, spawned.in_cgroup) {
                cgroup.add_process(&cgroup_state, pid)?;
            }
            host_steps.apply(pid)?;
            channel.go()?;
            channel.ready(|| "the exec'd process exited during setup".into())?;
            if let Some(path) = &opts.pid_file {
                write_pid_file(path, pid)?;
            }
            // Sent before ready; received before start, so the size is right at once.
            let relay = console.relay.as_ref().map(Relay::receive).transpose()?;
            channel.start()?;
            Ok(relay)
        };
        let mut relay = match handshake() {
            Ok(relay) => relay,
            Err(e) => {
                let _ = process::kill_and_reap(pid, start);
                return Err(e);
            }
        };
        if opts.detach {
            if opts.reap_detached {
                // It is our child: reap it when it exits. Unreaped, its zombie would keep
                // the container's init from dying (a pid namespace ends once all are
                // reaped) in a long-lived caller.
                let _ = std::thread::Builder::new()
                    .name("tong-exec-reaper".into())
                    .spawn(move || process::wait_child(pid));
            }
            return Ok(0);
        }
        process::wait_and_relay(pid, pidfd.as_ref(), opts.forward_signals, relay.as_mut())
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        self.set_paused(id, true)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        self.set_paused(id, false)
    }

    fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let mut record = dir.read()?;
        let status = status_of(&record, &dir.path);
        let (want, verb) = if paused {
            (Status::Running, "pause")
        } else {
            (Status::Paused, "resume")
        };
        if status != want {
            return Err(Error::InvalidState(format!(
                "cannot {verb} container {id:?}: it is {status}, not {want}"
            )));
        }
        let cgroup: CgroupBackend = self.recorded_plugin(&record)?;
        cgroup.set_frozen(
            &record.backend_state(PluginKind::Cgroup).unwrap_or_default(),
            paused,
        )?;
        record.paused = paused;
        dir.write(&record)
    }

    /// Applies new cgroup limits (an OCI `linux.resources` object) to a live container
    /// through its cgroup backend.
    pub fn update(&self, id: &str, resources: &Value) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        let (_dir, record) = self.open_live(id, "update")?;
        let cgroup: CgroupBackend = self.recorded_plugin(&record)?;
        cgroup.update(
            &record.backend_state(PluginKind::Cgroup).unwrap_or_default(),
            &to_json(resources)?,
        )
    }

    /// The container's cgroup statistics (memory, cpu, pids) as JSON.
    pub fn stats(&self, id: &str) -> Result<Value> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let record = dir.read()?;
        let cgroup: CgroupBackend = self.recorded_plugin(&record)?;
        let raw = cgroup.stats(&record.backend_state(PluginKind::Cgroup).unwrap_or_default())?;
        serde_json::from_slice(&raw).map_err(|e| {
            Error::Plugin(format!(
                "cgroup={} stats returned invalid JSON: {e}",
                cgroup.name
            ))
        })
    }

    /// The pids of every process in the container (as the host sees them).
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let record = dir.read()?;
        let cgroup: CgroupBackend = self.recorded_plugin(&record)?;
        let mut pids =
            cgroup.pids(&record.backend_state(PluginKind::Cgroup).unwrap_or_default())?;
        pids.sort_unstable();
        Ok(pids)
    }

    /// Waits for the container's init to exit and returns its exit code (128 + signal
    /// when killed). Only a process that created the container gets its exit status.
    pub fn wait(&self, id: &str) -> Result<i32> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let record = {
            let dir = self.store.open(id)?;
            dir.read()?
        };
        if record.pid <= 0 {
            return Err(Error::InvalidState(format!(
                "container {id:?} has no process"
            )));
        }
        process::wait_child(record.pid)
            .map_err(|e| Error::InvalidState(format!("cannot wait for container {id:?}: {e}")))
    }

    /// Undoes everything a record says exists: the process, network, cgroup, rootfs.
    /// Keeps going after a failure and reports the first.
    fn teardown(&self, record: &Record) -> Result<()> {
        let mut first_error = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        };
        if record.pid > 0 {
            note(process::kill_and_reap(record.pid, record.pid_start));
        }
        fault::point("teardown:init-killed", record.pid);
        for kind in [PluginKind::Network, PluginKind::Cgroup, PluginKind::Rootfs] {
            let Some(backend) = record.backend(kind) else {
                continue;
            };
            let state = match (&backend.state, &backend.request) {
                (Some(state), _) => serde_json::to_vec(state).unwrap_or_default(),
                // Create may have made the cgroup and died before recording its state:
                // creating it again adopts the existing (empty) cgroup and returns the
                // state to destroy it with. A failed create leaves nothing to undo.
                (None, Some(req)) if kind == PluginKind::Cgroup => {
                    match self
                        .recorded_plugin::<CgroupBackend>(record)
                        .and_then(|p| p.create(&serde_json::to_vec(req).unwrap_or_default()))
                    {
                        Ok(state) => state,
                        Err(_) => continue,
                    }
                }
                // Setup may have run in part and died before recording its state: the
                // backend undoes it from the request (net-bridge and net-cni can). A
                // backend that cannot parse a request has nothing to say here.
                (None, Some(req)) if kind == PluginKind::Network => {
                    let req = serde_json::to_vec(req).unwrap_or_default();
                    let _ = self
                        .recorded_plugin::<NetworkBackend>(record)
                        .and_then(|p| p.teardown(&req));
                    continue;
                }
                _ => continue,
            };
            note(match kind {
                PluginKind::Network => self
                    .recorded_plugin::<NetworkBackend>(record)
                    .and_then(|p| p.teardown(&state)),
                PluginKind::Cgroup => self
                    .recorded_plugin::<CgroupBackend>(record)
                    .and_then(|p| p.destroy(&state)),
                _ => self
                    .recorded_plugin::<RootfsBackend>(record)
                    .and_then(|p| p.cleanup(&state)),
            });
            fault::point(
                match kind {
                    PluginKind::Network => "teardown:net-undone",
                    PluginKind::Cgroup => "teardown:cgroup-undone",
                    _ => "teardown:rootfs-undone",
                },
                record.pid,
            );
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Teardown from a missing, corrupt or truncated record: what can still be read of
    /// it, then the cgroup found again by adopting it (the salvaged cgroup state may be
    /// cut short), with the cgroup path of the bundle's config when it is still there.
    fn teardown_salvaged(&self, dir: &ContainerDir) -> Result<()> {
        let data = std::fs::read(dir.path.join(state::RECORD_FILE)).unwrap_or_default();
        let mut record = salvage::record(&dir.id, &data);
        // Best effort with what survived (a salvaged plugin state may be cut short and
        // refused); the cgroup, which holds every process, is adopted below instead.
        if let Some(b) = record.backends.get_mut(PluginKind::Cgroup.as_str()) {
            b.state = None;
            b.request = None;
        }
        let _ = self.teardown(&record);
        let spec = std::fs::read(record.bundle.join("config.json"))
            .ok()
            .and_then(|bytes| crate::config::parse(&bytes).ok());
        let mut request = wire::CgroupRequest {
            id: dir.id.clone(),
            cgroups_path: None,
            resources: None,
            adopt: true,
        };
        if let Some(spec) = spec {
            request.cgroups_path = cgroup_request(&dir.id, &spec)?.cgroups_path;
        }
        let cgroup: CgroupBackend = match record.backend(PluginKind::Cgroup) {
            Some(b) => self.plugins.load_recorded(&b.name, &b.path)?,
            None => self.plugins.select_best()?,
        };
        // Creating the cgroup again adopts it (an existing cgroup with no process left is
        // reused), which gives the state to destroy it with.
        let state = cgroup.create(&to_json(&request)?)?;
        cgroup.destroy(&state)
    }

    /// The plugin of `B`'s kind the container was made with.
    fn recorded_plugin<B: Backend>(&self, record: &Record) -> Result<B> {
        let kind = B::KIND;
        let backend = record.backend(kind).ok_or_else(|| {
            Error::InvalidState(format!("container {:?} has no {kind} backend", record.id))
        })?;
        self.plugins.load_recorded(&backend.name, &backend.path)
    }
}

/// The cgroup backend's warm-up (ABI 1.1), run on a thread of its own while create goes
/// on; joined when dropped, so no thread outlives the call.
#[derive(Default)]
struct WarmUp(Option<std::thread::JoinHandle<()>>);

impl WarmUp {
    fn start(&mut self, cgroup: CgroupBackend) {
        self.0 = std::thread::Builder::new()
            .name("tong-warm-up".into())
            .spawn(move || {
                // Only an optimisation: a failure costs time, not correctness.
                let _ = cgroup.warm_up();
            })
            .ok();
    }
}

impl Drop for WarmUp {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

/// The backends a container is made with, one typed handle per kind.
struct Backends {
    namespace: NamespaceBackend,
    /// None only without root, when no cgroup may be made (see userns).
    cgroup: Option<CgroupBackend>,
    rootfs: RootfsBackend,
    /// Only with a new network namespace.
    network: Option<NetworkBackend>,
}

impl Backends {
    /// Every plugin chosen, for the record.
    fn plugins(&self) -> impl Iterator<Item = &'static Plugin> {
        [
            Some(self.namespace.plugin()),
            self.cgroup.map(CgroupBackend::plugin),
            Some(self.rootfs.plugin()),
            self.network.map(NetworkBackend::plugin),
        ]
        .into_iter()
        .flatten()
    }
}

/// What `create` works from, decided before anything is made on the host.
struct CreatePlan<'a> {
    bundle: &'a Bundle,
    namespaces: &'a NamespacePlan,
    backends: &'a Backends,
    opts: &'a CreateOptions,
    gate: StartGate,
    /// `run` waits for the container here (a terminal may be relayed).
    foreground: bool,
    passed: &'a PassedFds,
}

/// The steps of create after the state directory exists, in order. Each step that makes
/// something on the host is recorded before the next begins.
fn build(
    plan: &CreatePlan<'_>,
    (child_security, host_steps): (ChildSecurity, HostSteps),
    dir: &ContainerDir,
    record: &mut Record,
) -> Result<Option<Launched>> {
    let CreatePlan {
        bundle,
        namespaces,
        backends,
        opts,
        gate,
        foreground,
        passed,
    } = *plan;
    fault::point("create:record-creating", 0);
    let spec = &bundle.spec;
    let cgroup = create_cgroup(backends, spec, dir, record)?;
    let rootfs_plan = prepare_rootfs(backends, bundle, namespaces, dir, record)?;

    // The process, everything it needs prepared now: it allocates nothing after clone.
    let (channel, child_ends) = Channel::open(passed)?;
    let fifo = match gate {
        StartGate::Fifo => Some(passed.above(make_fifo(&dir.fifo_path())?.into())?),
        StartGate::Pipe => None,
    };
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("config has no process"))?;
    let console = console_for(process, &opts.console, foreground)?;
    let mut hooks = CreateHooks::prepare(spec, passed)?;
    let [sync_parent, report_parent] = channel.raw_fds();
    let close_first = vec![dir.lock_fd(), sync_parent, report_parent];
    let fds = child_ends.child_fds(close_first, opts.stdio, &console, fifo.as_ref());
    let listen_env;
    let process = if opts.listen_fds > 0 {
        listen_env = with_listen_fds(process, opts.listen_fds);
        &listen_env
    } else {
        process
    };
    let mut ctx = process_context(process, fds)?;
    ctx.init = opts.init || init::requested_by(&record.annotations);
    ctx.start_hooks = std::mem::take(&mut hooks.start);
    ctx.security = child_security;
    ctx.pass_fds = passed.raw();
    ctx.rootfs = Some(rootfs_plan.child_entry());
    set_namespace_steps(&mut ctx, spec, namespaces)?;

    // Clone.
    let mut join_files = open_joins(namespaces)?;
    let mut clone_flags = namespaces.create;
    // A ready-made network namespace is joined instead of made (docs/pools.md).
    let pooled_netns = pool::take_netns(namespaces, &dir.path)?.map(|(netns, claim)| {
        fault::point("create:pool-netns-claimed", 0);
        join_files.push((libc::CLONE_NEWNET, netns));
        clone_flags &= !(libc::CLONE_NEWNET as u64);
        claim
    });
    let clone_target = match &cgroup {
        Some((plugin, state)) => plugin.clone_target(state)?,
        None => None,
    };
    // A cgroup namespace's root is its creator's cgroup. Only CLONE_INTO_CGROUP (cgroup2)
    // places the child before it exists; otherwise the child is moved after clone and
    // makes the namespace itself once it is there, as runc does.
    if namespaces.creates(libc::CLONE_NEWCGROUP) && clone_target.is_none() {
        clone_flags &= !(libc::CLONE_NEWCGROUP as u64);
        ctx.unshare_cgroup = true;
    }
    let (spawned, pidfd) = spawn(
        backends.namespace,
        clone_flags,
        &join_files,
        clone_target.as_ref(),
        &ctx,
    )?;
    // The child has its own copies; ours must close so EOF means what it should.
    drop((child_ends, fifo, clone_target, join_files, console.child));
    drop(rootfs_plan);
    let pid = spawned.pid;
    fault::point("create:spawned", pid);
    let net_request = record_pid(record, dir, backends, &hooks.config, pid)?;

    // The host's side, then GO. If the child died first and said why (a namespace it
    // could not join), that is the cause, not the step of ours that then found it gone.
    let in_cgroup = spawned.in_cgroup != 0;
    let host_side = (|| -> Result<()> {
        if let Some(claim) = pooled_netns {
            // Network setup and hooks must find the container in it.
            claim.wait_joined(pid)?;
        }
        if let (Some((plugin, state)), false) = (&cgroup, in_cgroup) {
            plugin.add_process(state, pid)?;
        }
        if namespaces.creates(libc::CLONE_NEWUSER) {
            userns::write_maps(spec, pid)?;
        }
        host_steps.apply(pid)?;
        if let Some(net) = backends.network {
            setup_network(net, &net_request, dir, record)?;
        }
        Ok(())
    })();
    host_side.map_err(|e| channel.child_error_or(e, pid, record.pid_start))?;
    hooks.run_before_go(record, &dir.path, ctx.start_hooks.state_fd.as_ref())?;
    channel
        .go()
        .map_err(|e| channel.child_error_or(e, pid, record.pid_start))?;
    fault::point("create:go-sent", pid);
    channel.ready(|| format!("the container process {}during setup", how_it_ended(pid)))?;
    fault::point("create:child-ready", pid);
    hooks.run_create_container(record, &dir.path, pid)?;

    // Created (`run` releases the container next: one record write, not two).
    record.phase = match gate {
        StartGate::Fifo => Phase::Created,
        StartGate::Pipe => Phase::Running,
    };
    dir.write(record)?;
    fault::point("create:record-created", pid);
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, pid)?;
    }
    // The child sent the master before it reported ready.
    let relay = console.relay.as_ref().map(Relay::receive).transpose()?;
    Ok((gate == StartGate::Pipe).then_some(Launched {
        pid,
        pidfd,
        channel,
        relay,
    }))
}

/// The cgroup, recorded. Without root, a cgroup tong may not create is a warning, not an
/// error (and the container has none).
fn create_cgroup(
    backends: &Backends,
    spec: &Spec,
    dir: &ContainerDir,
    record: &mut Record,
) -> Result<Option<(CgroupBackend, Vec<u8>)>> {
    let Some(plugin) = backends.cgroup else {
        return Ok(None);
    };
    match plugin.create(&to_json(&cgroup_request(&record.id, spec)?)?) {
        Ok(state) => {
            fault::point("create:cgroup-created", 0);
            set_backend_state(record, PluginKind::Cgroup, &state)?;
            dir.write(record)?;
            fault::point("create:cgroup-recorded", 0);
            Ok(Some((plugin, state)))
        }
        Err(e) if userns::rootless() => {
            userns::warn_no_cgroup(&e);
            record.backends.remove(PluginKind::Cgroup.as_str());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The rootfs plugin's plan for the child, its state recorded (unless `{}`).
fn prepare_rootfs(
    backends: &Backends,
    bundle: &Bundle,
    namespaces: &NamespacePlan,
    dir: &ContainerDir,
    record: &mut Record,
) -> Result<crate::plugins::RootfsPlan> {
    let request = rootfs_request(record, bundle, dir, namespaces)?;
    let (plan, state) = backends.rootfs.prepare(&to_json(&request)?)?;
    fault::point("create:rootfs-prepared", 0);
    set_backend_state(record, PluginKind::Rootfs, &state)?;
    if !nothing_to_undo(&state) {
        dir.write(record)?;
    }
    fault::point("create:rootfs-recorded", 0);
    Ok(plan)
}

/// The child's steps that depend on its namespaces: ids in a new user namespace, and the
/// hostname and domainname (refused without a uts namespace).
fn set_namespace_steps(
    ctx: &mut crate::child::ChildContext,
    spec: &Spec,
    namespaces: &NamespacePlan,
) -> Result<()> {
    if namespaces.has(libc::CLONE_NEWUSER) {
        // Until it takes uid 0 of its user namespace, the child keeps tong's own ids,
        // which have no mapping there (files it made would say "overflow").
        ctx.user_namespace_root = true;
        // The kernel denies setgroups(2) in a user namespace mapped by a non-root user.
        ctx.set_groups = !userns::rootless();
        // Such a user can write the id maps of a dumpable child only.
        ctx.dumpable_until_go = userns::rootless();
    }
    ctx.hostname = uts_name("hostname", spec.hostname().as_ref(), namespaces)?;
    ctx.domainname = uts_name("domainname", spec.domainname().as_ref(), namespaces)?;
    Ok(())
}

/// Records the new process (with the config's hooks, and the network request, so that a
/// crash during network setup leaves the backend what it needs to undo a partial
/// setup). Returns that request.
fn record_pid(
    record: &mut Record,
    dir: &ContainerDir,
    backends: &Backends,
    config_hooks: &oci_spec::runtime::Hooks,
    pid: i32,
) -> Result<wire::NetworkRequest> {
    record.pid = pid;
    record.pid_start = state::process_start_time(pid).unwrap_or(0);
    if !hooks::is_empty(config_hooks) {
        record.hooks = Some(to_value(config_hooks)?);
    }
    let net_request = wire::NetworkRequest {
        id: record.id.clone(),
        state_dir: dir.path.display().to_string(),
        pid,
        netns_path: format!("/proc/{pid}/ns/net"),
        annotations: record.annotations.clone(),
    };
    if backends.network.is_some() {
        set_backend_request(record, PluginKind::Network, &net_request)?;
    }
    dir.write(record)?;
    fault::point("create:pid-recorded", pid);
    Ok(net_request)
}

/// The network plugin's setup of the container's namespace, recorded (unless `{}`).
fn setup_network(
    net: NetworkBackend,
    request: &wire::NetworkRequest,
    dir: &ContainerDir,
    record: &mut Record,
) -> Result<()> {
    let pid = request.pid;
    let state = net.setup(&to_json(request)?)?;
    fault::point("create:net-setup", pid);
    set_backend_state(record, PluginKind::Network, &state)?;
    if !nothing_to_undo(&state) {
        dir.write(record)?;
    }
    fault::point("create:net-recorded", pid);
    Ok(())
}

/// The config's hooks of create, checked and prepared before the clone.
struct CreateHooks {
    config: oci_spec::runtime::Hooks,
    prestart: Vec<hooks::PreparedHook>,
    create_runtime: Vec<hooks::PreparedHook>,
    create_container: Vec<hooks::PreparedHook>,
    /// startContainer: the child runs them, from a state memfd written before GO.
    start: hooks::StartHooks,
}

impl CreateHooks {
    fn prepare(spec: &Spec, passed: &PassedFds) -> Result<CreateHooks> {
        use hooks::Point;
        let config = spec.hooks().clone().unwrap_or_default();
        hooks::validate(&config)?;
        let prestart = hooks::prepare(Point::Prestart, Point::Prestart.of(&config), false)?;
        let create_runtime = hooks::prepare(
            Point::CreateRuntime,
            Point::CreateRuntime.of(&config),
            false,
        )?;
        let create_container = hooks::prepare(
            Point::CreateContainer,
            Point::CreateContainer.of(&config),
            true,
        )?;
        let start_hooks = hooks::prepare(
            Point::StartContainer,
            Point::StartContainer.of(&config),
            false,
        )?;
        let state_fd = if start_hooks.is_empty() {
            None
        } else {
            Some(passed.above(hooks::state_memfd(b"")?)?)
        };
        Ok(CreateHooks {
            config,
            prestart,
            create_runtime,
            create_container,
            start: hooks::StartHooks {
                hooks: start_hooks,
                state_fd,
            },
        })
    }

    /// prestart and createRuntime, in the runtime's namespaces, and the state the
    /// child's startContainer hooks will read.
    fn run_before_go(
        &self,
        record: &Record,
        dir: &Path,
        start_state: Option<&OwnedFd>,
    ) -> Result<()> {
        // Only with hooks: the state names the owner, a passwd lookup through NSS.
        let state = if self.prestart.is_empty() && self.create_runtime.is_empty() {
            Vec::new()
        } else {
            hook_state(record, dir, Some(Status::Creating))
        };
        hooks::run_all(hooks::Point::Prestart, &self.prestart, &state, &[])?;
        hooks::run_all(
            hooks::Point::CreateRuntime,
            &self.create_runtime,
            &state,
            &[],
        )?;
        if let Some(fd) = start_state {
            let state = container_hook_state(record, dir, Status::Created);
            hooks::write_state(fd, &state)?;
        }
        Ok(())
    }

    /// createContainer, in the container's namespaces once its rootfs is in place.
    fn run_create_container(&self, record: &Record, dir: &Path, pid: i32) -> Result<()> {
        if self.create_container.is_empty() {
            return Ok(());
        }
        let joins = container_namespaces(pid)?;
        let state = container_hook_state(record, dir, Status::Creating);
        hooks::run_all(
            hooks::Point::CreateContainer,
            &self.create_container,
            &state,
            &joins,
        )
    }
}

/// Computes the live status from the record and the process.
fn status_of(record: &Record, dir: &Path) -> Status {
    let alive = record.pid > 0 && state::is_alive(record.pid, record.pid_start);
    match record.phase {
        Phase::Creating if alive => Status::Creating,
        _ if !alive => Status::Stopped,
        Phase::Created if dir.join(state::FIFO_FILE).exists() => Status::Created,
        _ if record.paused => Status::Paused,
        _ => Status::Running,
    }
}

/// The user name of a uid, or the number when it has none.
fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

fn oci_state(record: &Record, dir: &Path, owner: String) -> ContainerState {
    let status = status_of(record, dir);
    ContainerState {
        oci_version: record.oci_version.clone(),
        id: record.id.clone(),
        status,
        pid: if status == Status::Stopped {
            0
        } else {
            record.pid
        },
        bundle: record.bundle.clone(),
        rootfs: record.rootfs.clone(),
        created: record.created.clone(),
        owner,
        annotations: shown_annotations(record),
        backends: record
            .backends
            .iter()
            .map(|(k, b)| (k.clone(), b.name.clone()))
            .collect(),
    }
}

/// The config's annotations plus those the network backend reports about what it set
/// up (its state's `annotations` object: address, CNI result...).
fn shown_annotations(record: &Record) -> BTreeMap<String, String> {
    let mut shown = record.annotations.clone();
    let reported = record
        .backend(PluginKind::Network)
        .and_then(|b| b.state.as_ref())
        .and_then(|s| s.get("annotations"))
        .and_then(Value::as_object);
    for (k, v) in reported.into_iter().flatten() {
        if let Some(v) = v.as_str() {
            shown.insert(k.clone(), v.to_string());
        }
    }
    shown
}

fn annotations(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v)
        .map_err(|e| Error::Internal(format!("cannot encode config section: {e}")))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("cannot encode plugin request: {e}")))
}

/// The cgroup plugin's create request for a container.
fn cgroup_request(id: &str, spec: &Spec) -> Result<wire::CgroupRequest> {
    let linux = spec.linux().as_ref();
    Ok(wire::CgroupRequest {
        id: id.to_string(),
        cgroups_path: linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string()),
        resources: linux
            .and_then(|l| l.resources().as_ref())
            .map(to_value)
            .transpose()?,
        adopt: false,
    })
}

fn set_backend_request<T: Serialize>(record: &mut Record, kind: PluginKind, req: &T) -> Result<()> {
    if let Some(b) = record.backends.get_mut(kind.as_str()) {
        b.request = Some(to_value(req)?);
    }
    Ok(())
}

fn set_backend_state(record: &mut Record, kind: PluginKind, state: &[u8]) -> Result<()> {
    let name = record.backend(kind).map_or("?", |b| b.name.as_str());
    let value = plugin_state(kind, name, state)?;
    if let Some(b) = record.backends.get_mut(kind.as_str()) {
        b.state = Some(value);
        b.request = None;
    }
    Ok(())
}

/// Deepest plugin state accepted: the state file nests it three levels down, and must
/// stay under serde_json's limit of 128 to be read back (found by fuzz/plugin_json).
const MAX_STATE_DEPTH: usize = 64;

/// Parses the state JSON a plugin returned (empty means `{}`).
pub fn plugin_state(kind: PluginKind, name: &str, state: &[u8]) -> Result<Value> {
    if state.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let value: Value = serde_json::from_slice(state)
        .map_err(|e| Error::Plugin(format!("{kind}={name} returned invalid state JSON: {e}")))?;
    // The state file cannot tell a null state from none recorded (found by
    // fuzz/plugin_json): teardown would then skip the backend.
    if value.is_null() {
        return Err(Error::Plugin(format!(
            "{kind}={name} returned null as its state (return {{}} or nothing for no state)"
        )));
    }
    if depth(&value) > MAX_STATE_DEPTH {
        return Err(Error::Plugin(format!(
            "{kind}={name} returned state JSON nested deeper than {MAX_STATE_DEPTH} levels"
        )));
    }
    Ok(value)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A container without a mount namespace of its own (none created, none joined) mounts
/// in its caller's. maskedPaths and readonlyPaths would then cover the caller's own
/// `/proc` and `/sys` entries: refused, as runc does.
fn check_mount_namespace(spec: &Spec, ns: &NamespacePlan) -> Result<()> {
    if ns.has(libc::CLONE_NEWNS) {
        return Ok(());
    }
    let linux = spec.linux().as_ref();
    let masked = linux.and_then(|l| l.masked_paths().as_ref());
    let readonly = linux.and_then(|l| l.readonly_paths().as_ref());
    if masked.is_some_and(|v| !v.is_empty()) || readonly.is_some_and(|v| !v.is_empty()) {
        return Err(Error::invalid(
            "linux.maskedPaths and linux.readonlyPaths need a mount namespace (type \"mount\", \
             new or joined by path): without one they would mask the caller's own paths",
        ));
    }
    Ok(())
}

fn rootfs_request(
    record: &Record,
    bundle: &Bundle,
    dir: &ContainerDir,
    ns: &NamespacePlan,
) -> Result<wire::RootfsRequest> {
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref();
    Ok(wire::RootfsRequest {
        id: record.id.clone(),
        bundle: bundle.path.display().to_string(),
        state_dir: dir.path.display().to_string(),
        rootfs: bundle.rootfs.display().to_string(),
        readonly: spec
            .root()
            .as_ref()
            .and_then(oci_spec::runtime::Root::readonly)
            .unwrap_or(false),
        mounts: spec
            .mounts()
            .iter()
            .flatten()
            .map(to_value)
            .collect::<Result<_>>()?,
        masked_paths: linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default(),
        readonly_paths: linux
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default(),
        devices: linux
            .and_then(|l| l.devices().as_ref())
            .iter()
            .flat_map(|d| d.iter())
            .map(to_value)
            .collect::<Result<_>>()?,
        rootfs_propagation: linux.and_then(|l| l.rootfs_propagation().clone()),
        user_namespace: ns.has(libc::CLONE_NEWUSER),
        cgroup_namespace: ns.has(libc::CLONE_NEWCGROUP),
        network_namespace: ns.has(libc::CLONE_NEWNET),
        caller_mount_namespace: !ns.has(libc::CLONE_NEWNS),
        annotations: record.annotations.clone(),
        mount_label: linux.and_then(|l| l.mount_label().clone()),
    })
}

/// Whether a backend's state says it made nothing teardown would undo (pivot and
/// chroot's rootfs, net-none): `{}` (or empty, which means the same). Its record write
/// waits for the next one, so a crash before that finds no state and skips the backend,
/// which is then right.
fn nothing_to_undo(state: &[u8]) -> bool {
    matches!(state.trim_ascii(), b"" | b"{}")
}

/// The state JSON given to hooks on stdin; `status` overrides the computed one.
fn hook_state(record: &Record, dir: &Path, status: Option<Status>) -> Vec<u8> {
    let mut state = oci_state(record, dir, owner_name(record.owner));
    if let Some(s) = status {
        state.status = s;
        state.pid = if s == Status::Stopped { 0 } else { record.pid };
    }
    state_json(&state)
}

/// The state of a hook that runs in the container's namespaces (createContainer,
/// startContainer): its pid is the process's pid as seen in the container (1 in a new
/// pid namespace), as the runtime spec says and runc gives.
fn container_hook_state(record: &Record, dir: &Path, status: Status) -> Vec<u8> {
    let mut state = oci_state(record, dir, owner_name(record.owner));
    state.status = status;
    state.pid = pid_in_container(record.pid);
    state_json(&state)
}

/// A hook's state JSON; a stopped container has no pid (omitted, as runc).
fn state_json(state: &ContainerState) -> Vec<u8> {
    let mut value = serde_json::to_value(state).unwrap_or_default();
    if state.pid == 0 {
        if let Some(map) = value.as_object_mut() {
            map.remove("pid");
        }
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `pid` in its innermost pid namespace: the last NSpid of /proc/PID/status.
fn pid_in_container(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            line.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or(pid)
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("tong-tmp");
    std::fs::write(&tmp, pid.to_string())
        .context(|| format!("cannot write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context(|| format!("cannot write pid file {}", path.display()))
}

#[cfg(test)]
mod tests {
    //! The lifecycle's status rules without root: this test process plays a live
    //! container process, a reaped child a dead one.

    use super::*;

    fn record(phase: Phase, pid: i32, pid_start: u64, paused: bool) -> Record {
        Record {
            oci_version: "1.0.2".into(),
            id: "t".into(),
            bundle: PathBuf::from("/b"),
            rootfs: PathBuf::from("/b/rootfs"),
            created: String::new(),
            annotations: BTreeMap::new(),
            phase,
            pid,
            pid_start,
            paused,
            owner: 0,
            backends: BTreeMap::new(),
            hooks: None,
        }
    }

    #[test]
    fn status_follows_the_record_and_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let start = state::process_start_time(me).unwrap();
        let live = |phase, paused| status_of(&record(phase, me, start, paused), dir.path());
        assert_eq!(live(Phase::Creating, false), Status::Creating);
        // Created only while the exec fifo is there (start removes it).
        assert_eq!(live(Phase::Created, false), Status::Running);
        std::fs::write(dir.path().join(state::FIFO_FILE), b"").unwrap();
        assert_eq!(live(Phase::Created, false), Status::Created);
        assert_eq!(live(Phase::Running, false), Status::Running);
        assert_eq!(live(Phase::Running, true), Status::Paused);
        // Our pid with another start time is a recycled pid: not the container.
        let recycled = record(Phase::Running, me, start + 1, false);
        assert_eq!(status_of(&recycled, dir.path()), Status::Stopped);
        // A process that exited (and was reaped) is stopped, whatever the record says.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert_eq!(
            status_of(&record(Phase::Running, pid, 1, false), dir.path()),
            Status::Stopped
        );
        assert_eq!(
            status_of(&record(Phase::Creating, 0, 0, false), dir.path()),
            Status::Stopped
        );
    }

    #[test]
    fn plugin_state_is_checked_before_it_is_recorded() {
        assert_eq!(
            plugin_state(PluginKind::Cgroup, "v1", b"").unwrap(),
            serde_json::json!({})
        );
        let err = plugin_state(PluginKind::Cgroup, "v1", b"null").unwrap_err();
        assert!(err.to_string().contains("returned null"), "{err}");
        let deep = "[".repeat(MAX_STATE_DEPTH + 1) + &"]".repeat(MAX_STATE_DEPTH + 1);
        let err = plugin_state(PluginKind::Rootfs, "x", deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        assert!(nothing_to_undo(b" {} ") && nothing_to_undo(b"") && !nothing_to_undo(b"{\"a\":1}"));
    }
}
