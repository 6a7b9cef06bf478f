//! The lifecycle front: the OCI verbs (create, start, run, exec, state, list, kill,
//! delete, pause, resume, update, stats, ps, wait) and the pool's. Each checks the
//! container's status and hands the work on: `create.rs` makes a container, `exec.rs`
//! runs another process in one, `teardown.rs` undoes one, `oci_state.rs` shows its
//! state; `launch.rs` makes every process. Each public call makes the runtime's log the thread's current one
//! ([`crate::log`]); the kernel calls on which the verbs decide go through
//! `host::Host` so they are unit-tested without root.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::runtime::Process;
use serde_json::Value;
use tong_abi::PluginKind;

use crate::backend_record::{recorded_plugin, to_json};
use crate::create::{self, CreateRequest, Launched, StartGate};
use crate::error::{Error, Result};
use crate::host::{Host, Kernel};
use crate::launch::WriteAllBytes;
use crate::log::{Log, SharedLog};
use crate::oci_state::{hook_state, oci_state, owner_name, status_of};
use crate::plugins::{Backend, CgroupBackend, PluginHost};
use crate::state::{ContainerDir, Phase, Record, StateStore};
use crate::teardown::{teardown, teardown_salvaged};
use crate::{exec, fault, hooks, id, pool, process};

pub use crate::backend_record::plugin_state;
pub use crate::create::BACKEND_ANNOTATION;
pub use crate::options::{ContainerState, CreateOptions, ExecOptions, Status, MAX_EXTRA_FDS};

/// Default state root.
pub const DEFAULT_ROOT: &str = "/run/tong";

/// The engine: a state root, a plugin search path and a log.
#[derive(Clone, Debug)]
pub struct Runtime {
    store: StateStore,
    plugins: PluginHost,
    log: SharedLog,
    /// The kernel, as the lifecycle asks it about container processes.
    host: &'static dyn Host,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, plugins: PluginHost) -> Runtime {
        let store = StateStore::new(root);
        let plugins = plugins.with_priority_cache(crate::plugin_cache::default_dir().as_deref());
        Runtime {
            store,
            plugins,
            log: SharedLog::default(),
            host: &Kernel,
        }
    }

    /// The same runtime asking `host` instead of the kernel (unit tests).
    #[cfg(test)]
    pub(crate) fn with_host(mut self, host: &'static dyn Host) -> Runtime {
        self.host = host;
        self
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
        let request = CreateRequest {
            id,
            bundle,
            opts,
            gate,
            foreground,
        };
        create::create(&self.store, &self.plugins, self.host, &request)
    }

    /// Releases a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let mut record = dir.read()?;
        let status = status_of(self.host, &record, &dir.path);
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
            let status = status_of(self.host, &record, &self.store.root().join(id));
            hooks::run_warn(
                hooks::Point::Poststart,
                &hooks,
                &hook_state(&record, status),
            );
        }
    }

    /// The OCI state of one container.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let _log = crate::log::enter(&self.log);
        id::validate(id)?;
        let dir = self.store.open(id)?;
        let record = dir.read()?;
        Ok(oci_state(
            self.host,
            &record,
            &dir.path,
            owner_name(record.owner),
        ))
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
                let dir = self.store.root().join(&id);
                out.push(oci_state(self.host, &record, &dir, owner));
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
                // One may have exited since the listing: not an error.
                let _ = self.host.signal_pid(pid, signal);
            }
            return Ok(());
        }
        self.host
            .signal(record.pid, record.pid_start, signal)
            .map_err(|e| {
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
        let status = status_of(self.host, &record, &dir.path);
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
                teardown_salvaged(&self.plugins, self.host, &dir)
                    .map_err(|e| Error::InvalidState(format!("{why}; cleaning up: {e}")))?;
                return dir.remove();
            }
            Err(e) => return Err(e),
        };
        fault::point("delete:record-read", record.pid);
        let status = status_of(self.host, &record, &dir.path);
        if !force && matches!(status, Status::Running | Status::Paused) {
            return Err(Error::InvalidState(format!(
                "cannot delete container {id:?}: it is {status} (stop it first or use --force)"
            )));
        }
        teardown(&self.plugins, self.host, &record)?;
        let hooks = hooks::from_record(record.hooks.as_ref());
        if !hooks::Point::Poststop.of(&hooks).is_empty() {
            let state = hook_state(&record, Status::Stopped);
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
            let status = status_of(self.host, &record, &dir.path);
            if status != Status::Running {
                return Err(Error::InvalidState(format!(
                    "cannot exec in container {id:?}: it is {status}, not running"
                )));
            }
            record
        };
        exec::exec(&self.plugins, self.host, &record, process, opts)
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
        let status = status_of(self.host, &record, &dir.path);
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

    /// The plugin of `B`'s kind the container was made with.
    fn recorded_plugin<B: Backend>(&self, record: &Record) -> Result<B> {
        recorded_plugin(&self.plugins, record)
    }
}

#[cfg(test)]
mod tests {
    //! The verbs' rules without root: records written into a private state root, and a
    //! fake kernel that says which processes live and keeps every signal and kill.

    use std::io::Read;

    use super::*;
    use crate::host::fake::FakeHost;
    use crate::oci_state::tests::record;
    use crate::state;

    /// The recorded init: pid 42, started at tick 7.
    const PID: i32 = 42;
    const START: u64 = 7;

    struct Fixture {
        /// The state root, removed when the test ends.
        _root: tempfile::TempDir,
        host: &'static FakeHost,
        rt: Runtime,
    }

    fn fixture() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let host = FakeHost::leaked();
        let rt = Runtime::new(root.path(), PluginHost::with_dirs(Vec::new())).with_host(host);
        Fixture {
            _root: root,
            host,
            rt,
        }
    }

    impl Fixture {
        /// A container `id` recorded in `phase`; its init lives when `alive`.
        fn put(&self, id: &str, phase: Phase, alive: bool) -> PathBuf {
            let mut rec = record(phase, PID, START, false);
            rec.id = id.into();
            let dir = self.rt.store.create(id).unwrap();
            dir.write(&rec).unwrap();
            if alive {
                self.host.start(PID, START);
            }
            dir.path.clone()
        }

        fn set_paused(&self, id: &str) {
            let dir = self.rt.store.open(id).unwrap();
            let mut rec = dir.read().unwrap();
            rec.paused = true;
            dir.write(&rec).unwrap();
        }

        fn status(&self, id: &str) -> Status {
            self.rt.state(id).unwrap().status
        }
    }

    fn invalid_state(r: Result<impl std::fmt::Debug>, words: &str) {
        match r {
            Err(Error::InvalidState(msg)) => assert!(msg.contains(words), "{msg}"),
            other => panic!("expected InvalidState with {words:?}, got {other:?}"),
        }
    }

    #[test]
    fn state_and_list_show_created_running_paused_stopped() {
        let f = fixture();
        let dir = f.put("c", Phase::Created, true);
        // Created while the exec fifo is there.
        std::fs::write(dir.join(state::FIFO_FILE), b"").unwrap();
        assert_eq!(f.status("c"), Status::Created);
        f.put("r", Phase::Running, true);
        assert_eq!(f.status("r"), Status::Running);
        f.put("p", Phase::Running, true);
        f.set_paused("p");
        assert_eq!(f.status("p"), Status::Paused);
        let state = f.rt.state("r").unwrap();
        assert_eq!((state.id.as_str(), state.pid), ("r", PID));

        let listed: Vec<_> =
            f.rt.list()
                .unwrap()
                .into_iter()
                .map(|s| (s.id, s.status))
                .collect();
        assert_eq!(
            listed,
            [
                ("c".to_string(), Status::Created),
                ("p".into(), Status::Paused),
                ("r".into(), Status::Running),
            ]
        );

        // The init died: every one of them is stopped, with no pid.
        f.host.kill_and_reap(PID, START).unwrap();
        for id in ["c", "r", "p"] {
            let state = f.rt.state(id).unwrap();
            assert_eq!((state.status, state.pid), (Status::Stopped, 0), "{id}");
        }
        assert!(matches!(f.rt.state("nope"), Err(Error::NotFound(_))));
    }

    #[test]
    fn kill_signals_the_recorded_process_and_refuses_a_stopped_one() {
        let f = fixture();
        f.put("r", Phase::Running, true);
        f.rt.kill("r", libc::SIGTERM, false).unwrap();
        assert_eq!(f.host.signals(), [(PID, libc::SIGTERM)]);

        f.put("s", Phase::Running, false);
        f.host.kill_and_reap(PID, START).unwrap();
        invalid_state(
            f.rt.kill("s", libc::SIGKILL, false),
            "container not running",
        );
        // Still being created: refused even with --all.
        f.put("new", Phase::Creating, true);
        invalid_state(
            f.rt.kill("new", libc::SIGKILL, true),
            "container not running",
        );
        assert_eq!(f.host.signals(), [(PID, libc::SIGTERM)]);
        // With --all a stopped container is not refused (processes may be left in its
        // cgroup): kill goes on to its cgroup backend, which this one has none of.
        f.host.kill_and_reap(PID, START).unwrap();
        invalid_state(f.rt.kill("s", libc::SIGKILL, true), "has no cgroup backend");
        assert_eq!(f.host.signals(), [(PID, libc::SIGTERM)]);
    }

    #[test]
    fn delete_refuses_a_live_container_without_force() {
        let f = fixture();
        let running = f.put("r", Phase::Running, true);
        invalid_state(f.rt.delete("r", false), "it is running");
        let paused = f.put("p", Phase::Running, true);
        f.set_paused("p");
        invalid_state(f.rt.delete("p", false), "it is paused");
        assert!(running.exists() && paused.exists());
        assert_eq!(f.host.killed(), []);

        // With force: the init is killed (by pid and start time), the directory goes.
        f.rt.delete("r", true).unwrap();
        assert_eq!(f.host.killed(), [(PID, START)]);
        assert!(!running.exists());
        assert!(matches!(f.rt.state("r"), Err(Error::NotFound(_))));
        // Stopped: deleted without force; a missing one only with force.
        f.rt.delete("p", false).unwrap();
        assert!(!paused.exists());
        assert!(matches!(f.rt.delete("p", false), Err(Error::NotFound(_))));
        f.rt.delete("p", true).unwrap();
    }

    #[test]
    fn start_releases_a_created_container_once() {
        let f = fixture();
        let dir = f.put("c", Phase::Created, true);
        let fifo = dir.join(state::FIFO_FILE);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Nobody reads the fifo: the process is gone (ENXIO), whatever /proc said.
        invalid_state(f.rt.start("c"), "its process is gone");
        // The container's process, blocked on the fifo.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        f.rt.start("c").unwrap();
        let mut byte = [0u8];
        reader.read_exact(&mut byte).unwrap();
        assert_eq!(byte, [1]);
        assert!(!fifo.exists());
        assert_eq!(f.status("c"), Status::Running);
        invalid_state(f.rt.start("c"), "it is running, not created");
    }

    #[test]
    fn verbs_that_need_a_running_container_refuse_other_states() {
        let f = fixture();
        f.put("s", Phase::Running, false);
        let process: Process =
            serde_json::from_str(r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["true"]}"#)
                .unwrap();
        invalid_state(
            f.rt.exec("s", &process, &ExecOptions::default()),
            "it is stopped, not running",
        );
        invalid_state(f.rt.pause("s"), "it is stopped, not running");
        invalid_state(
            f.rt.update("s", &serde_json::json!({})),
            "container not running",
        );
        f.host.start(PID, START);
        invalid_state(f.rt.resume("s"), "it is running, not paused");
        let mut unborn = record(Phase::Creating, 0, 0, false);
        unborn.id = "u".into();
        f.rt.store.create("u").unwrap().write(&unborn).unwrap();
        invalid_state(f.rt.wait("u"), "has no process");
    }
}
