//! `exec`: another process in a running container. It joins every namespace of the
//! container's init that differs from ours, and its cgroup, through the same launcher as
//! the init (`launch.rs`): channel, context, spawn, then GO, READY and START.

use oci_spec::runtime::Process;
use tong_abi::PluginKind;

use crate::backend_record::recorded_plugin;
use crate::error::Result;
use crate::host::Host;
use crate::launch::{
    console_for, container_namespaces, process_context, spawn, write_pid_file, Channel, PassedFds,
};
use crate::options::ExecOptions;
use crate::plugins::{CgroupBackend, NamespaceBackend, PluginHost};
use crate::state::{self, Record};
use crate::terminal::Relay;
use crate::{process, security, userns};

/// Runs `process` in the container of `record` (checked running by the caller). Returns
/// its exit code (128 + signal when killed), or 0 at once with `detach`.
pub(crate) fn exec(
    plugins: &PluginHost,
    host: &dyn Host,
    record: &Record,
    process: &Process,
    opts: &ExecOptions,
) -> Result<i32> {
    let joins = container_namespaces(record.pid)?;
    let in_user_namespace = joins.iter().any(|(t, _)| *t == libc::CLONE_NEWUSER);
    let ns = if in_user_namespace && userns::rootless() {
        // Without root, the container's pid namespace can only be joined from inside
        // its user namespace: ns=fork joins that first (clone3 joins pid in the parent).
        plugins.select_named::<NamespaceBackend>("fork")?
    } else {
        recorded_plugin(plugins, record)?
    };
    // A container run without root may have no cgroup (see userns).
    let cgroup = match record.backend(PluginKind::Cgroup) {
        Some(_) => Some(recorded_plugin::<CgroupBackend>(plugins, record)?),
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
            let _ = host.kill_and_reap(pid, start);
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
