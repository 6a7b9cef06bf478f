//! `create`: the container made step by step, each step recorded before the next (so
//! `delete --force` can undo a create that failed or was killed half-way; a failure
//! inside `create` undoes everything itself through [`teardown`]).
//!
//! [`create`] checks what can be checked before anything exists on the host and chooses
//! the backends; [`build`] is the script after the state directory exists: cgroup, rootfs,
//! the child prepared, cloned and recorded, the host's side, GO, READY, created.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use oci_spec::runtime::Spec;
use tong_abi::PluginKind;
use tong_plugin_sdk::wire;

use crate::backend_record::{
    cgroup_request, nothing_to_undo, set_backend_request, set_backend_state, to_json, to_value,
};
use crate::child::ChildContext;
use crate::config::Bundle;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::launch::{
    console_for, container_namespaces, how_it_ended, make_fifo, open_joins, process_context, spawn,
    uts_name, with_listen_fds, write_pid_file, Channel, ChildEnds, PassedFds,
};
use crate::namespaces::NamespacePlan;
use crate::oci_state::{container_hook_state, hook_state};
use crate::options::{CreateOptions, Status};
use crate::plugins::{
    Backend, CgroupBackend, NamespaceBackend, NetworkBackend, Plugin, PluginHost, RootfsBackend,
    RootfsPlan,
};
use crate::security::{self, ChildSecurity, HostSteps};
use crate::state::{self, BackendRecord, ContainerDir, Phase, Record, StateStore};
use crate::teardown::teardown;
use crate::terminal::{ConsoleEnds, Relay};
use crate::{fault, hooks, id, init, pool, userns};

/// Annotation prefix choosing a backend per kind: `tong.backend.cgroup: v1`.
pub const BACKEND_ANNOTATION: &str = "tong.backend.";

/// Creates in one process are serialized: a container process inherits every descriptor
/// open in the caller at the moment of its clone (until it execs), including another
/// container's state lock and pipes; one create at a time keeps those inheritances
/// acyclic, so a lock held by a waiting container process never deadlocks two threads.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// How a created process is released.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartGate {
    /// It waits on the exec fifo until `start` (any process) writes it.
    Fifo,
    /// It waits on our pipe (`run` in this process).
    Pipe,
}

/// What `create` (and `run`) is asked to make.
pub(crate) struct CreateRequest<'a> {
    pub(crate) id: &'a str,
    pub(crate) bundle: &'a Path,
    pub(crate) opts: &'a CreateOptions,
    pub(crate) gate: StartGate,
    /// `run` waits for the container here (a terminal may be relayed).
    pub(crate) foreground: bool,
}

/// A container created in this process, not yet started (for `run`).
pub(crate) struct Launched {
    pub(crate) pid: i32,
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) channel: Channel,
    /// The terminal this process relays (`Console::Relay` in the foreground).
    pub(crate) relay: Option<Relay>,
}

/// Creates a container: everything that can be checked is, before anything exists on the
/// host; then its state directory and first record, then [`build`]. A failure undoes
/// whatever was made. Returns the handle `run` starts it with ([`StartGate::Pipe`]).
pub(crate) fn create(
    store: &StateStore,
    plugins: &PluginHost,
    host: &dyn Host,
    req: &CreateRequest<'_>,
) -> Result<Option<Launched>> {
    id::validate(req.id)?;
    let _one_at_a_time = CREATE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let bundle = Bundle::load(req.bundle)?;
    let namespaces = NamespacePlan::from_spec(&bundle.spec);
    check_mount_namespace(&bundle.spec, &namespaces)?;
    userns::check(&bundle.spec, &namespaces)?;
    // Checked and compiled before anything exists on the host.
    let security = security::prepare_container(&bundle.spec, &namespaces)?;
    let opts = req.opts;
    let inherited = opts.listen_fds.saturating_add(opts.preserve_fds);
    let passed = PassedFds::copy(inherited, &opts.extra_fds)?;
    let mut warm_up = WarmUp::default();
    let backends = choose_backends(plugins, &bundle.spec, opts, &namespaces, &mut warm_up)?;
    let dir = store.create(req.id)?;
    fault::point("create:state-dir-made", 0);
    let mut record = first_record(req.id, &bundle, &backends);
    let plan = CreatePlan {
        bundle: &bundle,
        namespaces: &namespaces,
        backends: &backends,
        opts,
        gate: req.gate,
        foreground: req.foreground,
        passed: &passed,
        host,
    };
    // The cgroup request goes into the first record: a create killed between making
    // the cgroup and recording it is undone by adopting the cgroup (see teardown).
    let result = cgroup_request(req.id, &bundle.spec)
        .and_then(|cg| set_backend_request(&mut record, PluginKind::Cgroup, &cg))
        .and_then(|()| dir.write(&record))
        .and_then(|()| build(&plan, security, &dir, &mut record));
    match result {
        Ok(launched) => Ok(launched),
        Err(e) => {
            // Undo everything recorded so far; report the original error.
            let _ = teardown(plugins, host, &record);
            let _ = dir.remove();
            Err(e)
        }
    }
}

/// The record of a container about to be made: phase creating, no process yet.
fn first_record(id: &str, bundle: &Bundle, backends: &Backends) -> Record {
    Record {
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
    }
}

/// Picks a plugin per kind: the caller's choice, else the config's annotation, else the
/// best one that probes usable.
fn choose_backends(
    plugins: &PluginHost,
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
        Some(name) => Some(plugins.select_named::<CgroupBackend>(name)?),
        None => match plugins.select_best::<CgroupBackend>() {
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
        Some(name) => plugins.select_named(name)?,
        // Only ns=fork creates namespaces after joining a user namespace, so they
        // belong to it (clone3 creates them at once, owned by ours).
        None if namespaces.joins_user_and_creates() => plugins.select_named("fork")?,
        None => plugins.select_best()?,
    };
    let rootfs = pick(plugins, explicit(PluginKind::Rootfs))?;
    let network = if creates_network {
        Some(pick(plugins, explicit(PluginKind::Network))?)
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
fn pick<B: Backend>(plugins: &PluginHost, name: Option<&str>) -> Result<B> {
    match name {
        Some(name) => plugins.select_named(name),
        None => plugins.select_best(),
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
    host: &'a dyn Host,
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
        host,
        ..
    } = *plan;
    fault::point("create:record-creating", 0);
    let spec = &bundle.spec;
    let cgroup = create_cgroup(backends, spec, dir, record)?;
    let rootfs_plan = prepare_rootfs(backends, bundle, namespaces, dir, record)?;
    let mut child = prepare_child(plan, child_security, &rootfs_plan, dir, record)?;
    let (spawned, pidfd, pooled_netns) = clone_child(plan, &mut child.ctx, cgroup.as_ref(), dir)?;
    // The child has its own copies; ours must close so EOF means what it should.
    drop((child.ends, child.fifo, child.console.child, rootfs_plan));
    let pid = spawned.pid;
    fault::point("create:spawned", pid);
    let net_request = record_pid(record, dir, backends, &child.hooks.config, pid)?;

    // The host's side, then GO. If the child died first and said why (a namespace it
    // could not join), that is the cause, not the step of ours that then found it gone.
    let channel = child.channel;
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
    let child_error_or = |e| channel.child_error_or(host, e, pid, record.pid_start);
    host_side.map_err(child_error_or)?;
    let start_state = child.ctx.start_hooks.state_fd.as_ref();
    child.hooks.run_before_go(record, start_state)?;
    channel.go().map_err(child_error_or)?;
    fault::point("create:go-sent", pid);
    channel.ready(|| format!("the container process {}during setup", how_it_ended(pid)))?;
    fault::point("create:child-ready", pid);
    child.hooks.run_create_container(record, pid)?;

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
    let relay = child
        .console
        .relay
        .as_ref()
        .map(Relay::receive)
        .transpose()?;
    Ok((gate == StartGate::Pipe).then_some(Launched {
        pid,
        pidfd,
        channel,
        relay,
    }))
}

/// The container's process before the clone: everything it needs is prepared here, so
/// it allocates nothing after; the parent keeps the rest of each pair.
struct PreparedChild {
    channel: Channel,
    ends: ChildEnds,
    /// The exec fifo the child blocks on (create), moved above the passed descriptors.
    fifo: Option<OwnedFd>,
    console: ConsoleEnds,
    hooks: CreateHooks,
    ctx: ChildContext,
}

fn prepare_child(
    plan: &CreatePlan<'_>,
    child_security: ChildSecurity,
    rootfs_plan: &RootfsPlan,
    dir: &ContainerDir,
    record: &Record,
) -> Result<PreparedChild> {
    let CreatePlan {
        bundle,
        namespaces,
        opts,
        gate,
        foreground,
        passed,
        ..
    } = *plan;
    let spec = &bundle.spec;
    let (channel, ends) = Channel::open(passed)?;
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
    let fds = ends.child_fds(close_first, opts.stdio, &console, fifo.as_ref());
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
    Ok(PreparedChild {
        channel,
        ends,
        fifo,
        console,
        hooks,
        ctx,
    })
}

/// Clones the child through the namespace plugin, into its cgroup when the plugin can
/// (CLONE_INTO_CGROUP), joining a pooled network namespace when one is ready (its claim
/// is returned: the host's side waits until the child joined it).
fn clone_child(
    plan: &CreatePlan<'_>,
    ctx: &mut ChildContext,
    cgroup: Option<&(CgroupBackend, Vec<u8>)>,
    dir: &ContainerDir,
) -> Result<(tong_abi::SpawnResult, Option<OwnedFd>, Option<pool::Claim>)> {
    let namespaces = plan.namespaces;
    let mut join_files = open_joins(namespaces)?;
    let mut clone_flags = namespaces.create;
    // A ready-made network namespace is joined instead of made (docs/pools.md).
    let pooled_netns = pool::take_netns(namespaces, &dir.path)?.map(|(netns, claim)| {
        fault::point("create:pool-netns-claimed", 0);
        join_files.push((libc::CLONE_NEWNET, netns));
        clone_flags &= !(libc::CLONE_NEWNET as u64);
        claim
    });
    let clone_target = match cgroup {
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
        plan.backends.namespace,
        clone_flags,
        &join_files,
        clone_target.as_ref(),
        ctx,
    )?;
    // The join files and the cgroup's descriptor close on return: the child has copies.
    Ok((spawned, pidfd, pooled_netns))
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
) -> Result<RootfsPlan> {
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
    ctx: &mut ChildContext,
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
    fn run_before_go(&self, record: &Record, start_state: Option<&OwnedFd>) -> Result<()> {
        // Only with hooks: the state names the owner, a passwd lookup through NSS.
        let state = if self.prestart.is_empty() && self.create_runtime.is_empty() {
            Vec::new()
        } else {
            hook_state(record, Status::Creating)
        };
        hooks::run_all(hooks::Point::Prestart, &self.prestart, &state, &[])?;
        hooks::run_all(
            hooks::Point::CreateRuntime,
            &self.create_runtime,
            &state,
            &[],
        )?;
        if let Some(fd) = start_state {
            let state = container_hook_state(record, Status::Created);
            hooks::write_state(fd, &state)?;
        }
        Ok(())
    }

    /// createContainer, in the container's namespaces once its rootfs is in place.
    fn run_create_container(&self, record: &Record, pid: i32) -> Result<()> {
        if self.create_container.is_empty() {
            return Ok(());
        }
        let joins = container_namespaces(pid)?;
        let state = container_hook_state(record, Status::Creating);
        hooks::run_all(
            hooks::Point::CreateContainer,
            &self.create_container,
            &state,
            &joins,
        )
    }
}

/// The config's annotations.
fn annotations(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
