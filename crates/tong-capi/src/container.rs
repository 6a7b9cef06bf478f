//! Runtime and container handles and the lifecycle calls.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tong_abi::PluginKind;

use super::error::{tong_error, tong_error_code, CResult, Failure};
use super::guard::guard;
use super::options::{
    self, tong_create_options, tong_exec_options, tong_log_level, tong_runtime_options,
};
use super::strings::{check_out, into_c_string, opt_str, req_str};
use super::{TONG_DELETE_FORCE, TONG_KILL_ALL};
use engine::log::{Level, Log};
use engine::plugins::PluginHost;
use engine::runtime::{CreateOptions, ExecOptions, Runtime, DEFAULT_ROOT};
use engine::Console;

/// The caller's log callback: the engine's warnings and the outcome of every call.
struct Logger {
    level: c_int,
    sink: unsafe extern "C" fn(*mut c_void, c_int, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: the caller promises (docs/c-api.md, thread contract) that the log callback and
// its user data may be used from any thread that calls the library.
unsafe impl Send for Logger {}
// SAFETY: as above; the logger itself is immutable.
unsafe impl Sync for Logger {}

impl Log for Logger {
    fn log(&self, level: Level, message: &str) {
        if level as c_int > self.level {
            return;
        }
        let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: the caller's callback with its own user data and a message valid for
        // the call, as documented.
        unsafe { (self.sink)(self.user_data, level as c_int, text.as_ptr()) };
    }
}

pub(crate) struct Shared {
    pub(crate) runtime: Runtime,
    /// The caller's callback, if any (the engine's warnings go there too).
    logger: Option<Arc<Logger>>,
}

impl Shared {
    fn log(&self, level: Level, message: impl FnOnce() -> String) {
        if let Some(logger) = &self.logger {
            if level as c_int <= logger.level {
                logger.log(level, &message());
            }
        }
    }

    /// Logs the outcome of a call and converts the engine's error.
    pub(crate) fn outcome<T>(&self, what: &str, id: &str, r: engine::Result<T>) -> CResult<T> {
        match r {
            Ok(v) => {
                self.log(Level::Info, || format!("{what} {id}: ok"));
                Ok(v)
            }
            Err(e) => {
                self.log(Level::Error, || format!("{what} {id}: {e}"));
                Err(e.into())
            }
        }
    }
}

/// A runtime: a state root, a plugin search path and a log sink. Thread-safe: any number
/// of threads may use one runtime at once. Free it with `tong_runtime_free`.
pub struct tong_runtime {
    pub(crate) shared: Arc<Shared>,
}

/// A container of a runtime, by id. Holds a reference to its runtime, so the runtime may
/// be freed first. Thread-safe; free it with `tong_container_free` (which does not delete
/// the container).
pub struct tong_container {
    shared: Arc<Shared>,
    id: CString,
}

impl tong_container {
    fn id(&self) -> &str {
        // The id was a valid &str when the handle was made.
        self.id.to_str().unwrap_or_default()
    }
}

/// Borrows a handle argument.
///
/// # Safety
/// `ptr` is NULL or a live handle of this library.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> CResult<&'a T> {
    // SAFETY: per the caller's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// Makes a runtime. `opts` may be NULL (defaults: root /run/tong, default plugin
/// search, no logging). On success `*out` receives a runtime to free with
/// `tong_runtime_free`. Nothing is touched on disk until the first create.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (NULL `out`, bad struct_size, non-UTF-8 strings,
/// an empty root).
///
/// # Safety
/// `opts` is NULL or a valid options struct; `out` points at writable memory; `err` is
/// NULL or points at a `tong_error *` (NULL on entry).
#[no_mangle]
pub unsafe extern "C" fn tong_runtime_new(
    opts: *const tong_runtime_options,
    out: *mut *mut tong_runtime,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_runtime_new", err, || {
        check_out(out, "out")?;
        // SAFETY: NULL or a caller's options struct.
        let o = unsafe { options::read(opts) }?;
        // SAFETY: the struct's strings are NULL or NUL-terminated per the contract.
        let root = unsafe { opt_str(o.root, "root") }?.unwrap_or(DEFAULT_ROOT);
        if root.is_empty() {
            return Err(Failure::invalid("root is empty"));
        }
        // SAFETY: as above.
        let plugins = match unsafe { opt_str(o.plugin_path, "plugin_path") }? {
            Some(path) => PluginHost::with_dirs(
                path.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect(),
            ),
            None => PluginHost::from_env(),
        };
        if !(0..=tong_log_level::TONG_LOG_DEBUG as c_int).contains(&o.log_level) {
            return Err(Failure::invalid(format!(
                "log_level {} is not a tong_log_level",
                o.log_level
            )));
        }
        // Without a callback (or with TONG_LOG_OFF) warnings stay on stderr.
        let logger = match o.log_fn {
            Some(sink) if o.log_level > tong_log_level::TONG_LOG_OFF as c_int => {
                Some(Arc::new(Logger {
                    level: o.log_level,
                    sink,
                    user_data: o.log_user_data,
                }))
            }
            _ => None,
        };
        let mut runtime = Runtime::new(root, plugins);
        if let Some(logger) = &logger {
            runtime = runtime.with_log(Arc::clone(logger) as Arc<dyn Log>);
        }
        let shared = Shared { runtime, logger };
        shared.log(Level::Debug, || format!("runtime: root {root}"));
        let rt = Box::new(tong_runtime {
            shared: Arc::new(shared),
        });
        // SAFETY: checked non-NULL above; written only on success.
        unsafe { out.write(Box::into_raw(rt)) };
        Ok(())
    })
}

/// Frees a runtime. Container handles made from it stay valid. NULL is ignored.
///
/// # Safety
/// `rt` is NULL or a runtime of this library, freed once, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn tong_runtime_free(rt: *mut tong_runtime) {
    if !rt.is_null() {
        // SAFETY: made by Box::into_raw in tong_runtime_new, freed once.
        drop(unsafe { Box::from_raw(rt) });
    }
}

fn backends(o: &tong_create_options) -> CResult<BTreeMap<PluginKind, String>> {
    let mut out = BTreeMap::new();
    for (kind, ptr, what) in [
        (PluginKind::Namespace, o.backend_ns, "backend_ns"),
        (PluginKind::Cgroup, o.backend_cgroup, "backend_cgroup"),
        (PluginKind::Rootfs, o.backend_rootfs, "backend_rootfs"),
        (PluginKind::Network, o.backend_net, "backend_net"),
    ] {
        // SAFETY: the options' strings are NULL or NUL-terminated per the contract.
        if let Some(name) = unsafe { opt_str(ptr, what) }? {
            if name.is_empty() {
                return Err(Failure::invalid(format!("{what} is empty")));
            }
            out.insert(kind, name.to_string());
        }
    }
    Ok(out)
}

/// Converts a caller's create options.
///
/// # Safety
/// `opts` is NULL or a valid options struct.
unsafe fn create_options(opts: *const tong_create_options) -> CResult<CreateOptions> {
    // SAFETY: forwarded contract.
    let o = unsafe { options::read(opts) }?;
    // SAFETY: NULL or NUL-terminated.
    let pid_file = unsafe { opt_str(o.pid_file, "pid_file") }?.map(PathBuf::from);
    // SAFETY: NULL or NUL-terminated.
    let console_socket = unsafe { opt_str(o.console_socket, "console_socket") }?.map(PathBuf::from);
    // SAFETY: NULL or `extra_fds_len` ints, per the contract.
    let extra_fds = unsafe { options::read_fds(o.extra_fds, o.extra_fds_len) }?;
    Ok(CreateOptions {
        backends: backends(&o)?,
        pid_file,
        stdio: [o.stdin_fd, o.stdout_fd, o.stderr_fd],
        console: console_socket.map_or(Console::None, Console::Socket),
        init: o.init != 0,
        extra_fds,
        ..CreateOptions::default()
    })
}

/// Creates the container `id` from the OCI bundle directory `bundle` (its config.json
/// and rootfs). The container's process is set up and waits for `tong_container_start`.
/// `opts` may be NULL. On success `*out` receives a handle to free with
/// `tong_container_free`; on failure nothing of the container is left behind.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (NULL argument, invalid id, unreadable or invalid
/// config.json, bad options), TONG_ERR_ALREADY_EXISTS, TONG_ERR_PLUGIN (backend missing
/// or unusable), TONG_ERR_CONTAINER (the process failed before exec), TONG_ERR_OS.
///
/// # Safety
/// `rt` is a live runtime; `id` and `bundle` are NUL-terminated strings; `opts` is NULL
/// or a valid options struct; `out` points at writable memory; `err` as everywhere.
#[no_mangle]
pub unsafe extern "C" fn tong_container_create(
    rt: *const tong_runtime,
    id: *const c_char,
    bundle: *const c_char,
    opts: *const tong_create_options,
    out: *mut *mut tong_container,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_container_create", err, || {
        // SAFETY: per the function's contract.
        let rt = unsafe { handle(rt, "rt") }?;
        // SAFETY: as above.
        let (id, bundle) = unsafe { (req_str(id, "id")?, req_str(bundle, "bundle")?) };
        check_out(out, "out")?;
        // SAFETY: as above.
        let opts = unsafe { create_options(opts) }?;
        let shared = &rt.shared;
        shared.log(Level::Debug, || {
            format!("create {id}: bundle {bundle}, {opts:?}")
        });
        shared.outcome(
            "create",
            id,
            shared.runtime.create(id, Path::new(bundle), &opts),
        )?;
        let c = Box::new(tong_container {
            shared: Arc::clone(shared),
            id: CString::new(id).map_err(|_| Failure::invalid("id contains NUL"))?,
        });
        // SAFETY: checked non-NULL; written only on success.
        unsafe { out.write(Box::into_raw(c)) };
        Ok(())
    })
}

/// Opens a handle on an existing container `id` (made by this or another process).
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE
/// (unreadable state).
///
/// # Safety
/// As for `tong_container_create`.
#[no_mangle]
pub unsafe extern "C" fn tong_container_open(
    rt: *const tong_runtime,
    id: *const c_char,
    out: *mut *mut tong_container,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_container_open", err, || {
        // SAFETY: per the function's contract.
        let rt = unsafe { handle(rt, "rt") }?;
        // SAFETY: as above.
        let id = unsafe { req_str(id, "id") }?;
        check_out(out, "out")?;
        let shared = &rt.shared;
        shared.outcome("open", id, shared.runtime.state(id))?;
        let c = Box::new(tong_container {
            shared: Arc::clone(shared),
            id: CString::new(id).map_err(|_| Failure::invalid("id contains NUL"))?,
        });
        // SAFETY: checked non-NULL; written only on success.
        unsafe { out.write(Box::into_raw(c)) };
        Ok(())
    })
}

/// The container's id, valid as long as the handle; "" when `c` is NULL.
///
/// # Safety
/// `c` is NULL or a live container handle.
#[no_mangle]
pub unsafe extern "C" fn tong_container_id(c: *const tong_container) -> *const c_char {
    // SAFETY: per the contract.
    match unsafe { c.as_ref() } {
        Some(c) => c.id.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Frees a container handle; the container itself is left as it is. NULL is ignored.
///
/// # Safety
/// `c` is NULL or a container handle of this library, freed once, not in use by another
/// thread.
#[no_mangle]
pub unsafe extern "C" fn tong_container_free(c: *mut tong_container) {
    if !c.is_null() {
        // SAFETY: made by Box::into_raw in create/open, freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

/// Runs `f` on a container handle inside the guard.
fn with_container(
    name: &'static str,
    c: *const tong_container,
    err: *mut *mut tong_error,
    f: impl FnOnce(&tong_container) -> CResult<()>,
) -> tong_error_code {
    guard(name, err, || {
        // SAFETY: every caller documents `c` as NULL or a live handle.
        let c = unsafe { handle(c, "container") }?;
        c.shared.log(Level::Debug, || format!("{name} {}", c.id()));
        f(c)
    })
}

/// Starts a created container: its process execs the configured program.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE (not
/// created), TONG_ERR_OS.
///
/// # Safety
/// `c` is NULL or a live container handle; `err` as everywhere.
#[no_mangle]
pub unsafe extern "C" fn tong_container_start(
    c: *const tong_container,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_start", c, err, |c| {
        c.shared
            .outcome("start", c.id(), c.shared.runtime.start(c.id()))
    })
}

/// Sends `signal` to the container's init, or with `TONG_KILL_ALL` in `flags` to every
/// process of the container.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (unknown flags), TONG_ERR_NOT_FOUND,
/// TONG_ERR_INVALID_STATE (stopped), TONG_ERR_OS, TONG_ERR_PLUGIN.
///
/// # Safety
/// As for `tong_container_start`.
#[no_mangle]
pub unsafe extern "C" fn tong_container_kill(
    c: *const tong_container,
    signal: c_int,
    flags: u32,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_kill", c, err, |c| {
        if flags & !TONG_KILL_ALL != 0 {
            return Err(Failure::invalid(format!("unknown kill flags {flags:#x}")));
        }
        if !(1..=64).contains(&signal) {
            return Err(Failure::invalid(format!("invalid signal {signal}")));
        }
        let all = flags & TONG_KILL_ALL != 0;
        c.shared
            .outcome("kill", c.id(), c.shared.runtime.kill(c.id(), signal, all))
    })
}

/// Waits for the container's init to exit; `*exit_code` (when not NULL) receives its exit
/// status, 128 + the signal number when a signal killed it. Only the process that created
/// the container can wait for it, and only once.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE (no
/// process, not created by this process, or already waited for).
///
/// # Safety
/// As for `tong_container_start`; `exit_code` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tong_container_wait(
    c: *const tong_container,
    exit_code: *mut c_int,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_wait", c, err, |c| {
        let code = c
            .shared
            .outcome("wait", c.id(), c.shared.runtime.wait(c.id()))?;
        if !exit_code.is_null() {
            // SAFETY: non-NULL and writable per the contract; written only on success.
            unsafe { exit_code.write(code) };
        }
        Ok(())
    })
}

/// Deletes the container and everything it made (cgroup, mounts, state). A running or
/// paused container is refused unless `flags` has `TONG_DELETE_FORCE`, which kills it
/// first (and succeeds when the container does not exist). The handle stays to be freed.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE
/// (running), TONG_ERR_PLUGIN, TONG_ERR_OS.
///
/// # Safety
/// As for `tong_container_start`.
#[no_mangle]
pub unsafe extern "C" fn tong_container_delete(
    c: *const tong_container,
    flags: u32,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_delete", c, err, |c| {
        if flags & !TONG_DELETE_FORCE != 0 {
            return Err(Failure::invalid(format!("unknown delete flags {flags:#x}")));
        }
        let force = flags & TONG_DELETE_FORCE != 0;
        c.shared
            .outcome("delete", c.id(), c.shared.runtime.delete(c.id(), force))
    })
}

/// Freezes every process of a running container.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE (not
/// running), TONG_ERR_PLUGIN (the cgroup backend cannot freeze).
///
/// # Safety
/// As for `tong_container_start`.
#[no_mangle]
pub unsafe extern "C" fn tong_container_pause(
    c: *const tong_container,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_pause", c, err, |c| {
        c.shared
            .outcome("pause", c.id(), c.shared.runtime.pause(c.id()))
    })
}

/// Thaws a paused container.
///
/// Errors: as for `tong_container_pause` (TONG_ERR_INVALID_STATE: not paused).
///
/// # Safety
/// As for `tong_container_start`.
#[no_mangle]
pub unsafe extern "C" fn tong_container_resume(
    c: *const tong_container,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_resume", c, err, |c| {
        c.shared
            .outcome("resume", c.id(), c.shared.runtime.resume(c.id()))
    })
}

/// Writes a JSON document to `*out` (a string the caller frees with `tong_string_free`).
pub(crate) fn write_json(out: *mut *mut c_char, value: &impl serde::Serialize) -> CResult<()> {
    let text = serde_json::to_string(value).map_err(|e| Failure {
        code: tong_error_code::TONG_ERR_INTERNAL,
        message: format!("cannot encode JSON: {e}"),
    })?;
    let s = into_c_string(text)?;
    // SAFETY: `out` was checked non-NULL by the caller of write_json; written on success.
    unsafe { out.write(s) };
    Ok(())
}

/// The container's OCI state as JSON (`ociVersion`, `id`, `status`, `pid`, `bundle`,
/// `rootfs`, `created`, `owner`, `annotations`, and tong's `backends` by kind) in
/// `*json_out`, freed with `tong_string_free`.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE.
///
/// # Safety
/// As for `tong_container_start`; `json_out` points at writable memory.
#[no_mangle]
pub unsafe extern "C" fn tong_container_state(
    c: *const tong_container,
    json_out: *mut *mut c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_state", c, err, |c| {
        check_out(json_out, "json_out")?;
        let state = c
            .shared
            .outcome("state", c.id(), c.shared.runtime.state(c.id()))?;
        write_json(json_out, &state)
    })
}

/// The pids of every process of the container, as the host sees them, as a JSON array of
/// numbers in `*json_out` (free with `tong_string_free`).
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_PLUGIN.
///
/// # Safety
/// As for `tong_container_state`.
#[no_mangle]
pub unsafe extern "C" fn tong_container_ps(
    c: *const tong_container,
    json_out: *mut *mut c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_ps", c, err, |c| {
        check_out(json_out, "json_out")?;
        let pids = c
            .shared
            .outcome("ps", c.id(), c.shared.runtime.ps(c.id()))?;
        write_json(json_out, &pids)
    })
}

/// The container's cgroup statistics (memory, cpu, pids) as a JSON object in
/// `*json_out` (free with `tong_string_free`).
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_NOT_FOUND, TONG_ERR_PLUGIN.
///
/// # Safety
/// As for `tong_container_state`.
#[no_mangle]
pub unsafe extern "C" fn tong_container_stats(
    c: *const tong_container,
    json_out: *mut *mut c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_stats", c, err, |c| {
        check_out(json_out, "json_out")?;
        let stats = c
            .shared
            .outcome("stats", c.id(), c.shared.runtime.stats(c.id()))?;
        write_json(json_out, &stats)
    })
}

/// Runs another process in the running container: it joins every namespace and the
/// cgroup of the container's init. `process_json` is an OCI `process` object (`args`,
/// `env`, `cwd`, `user`, `terminal`...). Unless `opts->detach`, waits for it and writes
/// its exit status to `*exit_code` (when not NULL; 128 + signal when killed); detached,
/// `*exit_code` receives 0 once it runs (its pid goes to `opts->pid_file`). With
/// `terminal: true` the pty master is sent to `opts->console_socket`. `opts` may be NULL.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (NULL or invalid process JSON, terminal without a
/// console socket), TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE (not running),
/// TONG_ERR_CONTAINER (the process failed before exec: executable not found, bad cwd),
/// TONG_ERR_PLUGIN, TONG_ERR_OS.
///
/// # Safety
/// As for `tong_container_start`; `process_json` is a NUL-terminated string; `opts` is
/// NULL or a valid options struct; `exit_code` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tong_container_exec(
    c: *const tong_container,
    process_json: *const c_char,
    opts: *const tong_exec_options,
    exit_code: *mut c_int,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_exec", c, err, |c| {
        // SAFETY: per the function's contract.
        let json = unsafe { req_str(process_json, "process_json") }?;
        let process: oci_spec::runtime::Process = serde_json::from_str(json)
            .map_err(|e| Failure::invalid(format!("invalid process JSON: {e}")))?;
        // SAFETY: as above.
        let o = unsafe { options::read(opts) }?;
        // SAFETY: NULL or NUL-terminated.
        let (pid_file, console_socket) = unsafe {
            (
                opt_str(o.pid_file, "pid_file")?.map(PathBuf::from),
                opt_str(o.console_socket, "console_socket")?.map(PathBuf::from),
            )
        };
        // SAFETY: NULL or `extra_fds_len` ints, per the contract.
        let extra_fds = unsafe { options::read_fds(o.extra_fds, o.extra_fds_len) }?;
        let opts = ExecOptions {
            detach: o.detach != 0,
            pid_file,
            stdio: [o.stdin_fd, o.stdout_fd, o.stderr_fd],
            forward_signals: false,
            console: console_socket.map_or(Console::None, Console::Socket),
            reap_detached: true,
            extra_fds,
        };
        let code = c.shared.outcome(
            "exec",
            c.id(),
            c.shared.runtime.exec(c.id(), &process, &opts),
        )?;
        if !exit_code.is_null() {
            // SAFETY: non-NULL and writable per the contract; written only on success.
            unsafe { exit_code.write(code) };
        }
        Ok(())
    })
}

/// Applies new cgroup limits to a live container: `resources_json` is an OCI
/// `linux.resources` object (`{"memory":{"limit":33554432},"pids":{"limit":10}}`); only
/// the limits it names change.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (NULL, invalid JSON, not an object),
/// TONG_ERR_NOT_FOUND, TONG_ERR_INVALID_STATE (stopped), TONG_ERR_PLUGIN (limits the
/// backend refuses).
///
/// # Safety
/// As for `tong_container_start`; `resources_json` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tong_container_update(
    c: *const tong_container,
    resources_json: *const c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    with_container("tong_container_update", c, err, |c| {
        // SAFETY: per the function's contract.
        let json = unsafe { req_str(resources_json, "resources_json") }?;
        let resources: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Failure::invalid(format!("invalid resources JSON: {e}")))?;
        if !resources.is_object() {
            return Err(Failure::invalid(
                "resources_json must be a JSON object (OCI linux.resources)",
            ));
        }
        c.shared.outcome(
            "update",
            c.id(),
            c.shared.runtime.update(c.id(), &resources),
        )
    })
}

/// The state of every container under the runtime's root, as a JSON array of
/// `tong_container_state` documents in `*json_out` (free with `tong_string_free`).
///
/// Errors: TONG_ERR_INVALID_ARGUMENT, TONG_ERR_OS.
///
/// # Safety
/// `rt` is NULL or a live runtime; `json_out` points at writable memory.
#[no_mangle]
pub unsafe extern "C" fn tong_runtime_list(
    rt: *const tong_runtime,
    json_out: *mut *mut c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_runtime_list", err, || {
        // SAFETY: per the contract.
        let rt = unsafe { handle(rt, "rt") }?;
        check_out(json_out, "json_out")?;
        let list = rt.shared.outcome("list", "", rt.shared.runtime.list())?;
        write_json(json_out, &list)
    })
}

/// Creates, starts and waits for the container `id`, then deletes it; `*exit_code`
/// (when not NULL) receives its exit status (128 + signal when killed). Whatever fails
/// after create, the container is deleted before returning.
///
/// Errors: those of `tong_container_create`, `tong_container_start` and
/// `tong_container_wait`.
///
/// # Safety
/// As for `tong_container_create`; `exit_code` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tong_container_run(
    rt: *const tong_runtime,
    id: *const c_char,
    bundle: *const c_char,
    opts: *const tong_create_options,
    exit_code: *mut c_int,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_container_run", err, || {
        // SAFETY: per the function's contract.
        let rt = unsafe { handle(rt, "rt") }?;
        // SAFETY: as above.
        let (id, bundle) = unsafe { (req_str(id, "id")?, req_str(bundle, "bundle")?) };
        // SAFETY: as above.
        let opts = unsafe { create_options(opts) }?;
        let shared = &rt.shared;
        shared.log(Level::Debug, || {
            format!("run {id}: bundle {bundle}, {opts:?}")
        });
        let code = shared.outcome(
            "run",
            id,
            shared
                .runtime
                .run(id, Path::new(bundle), &opts, false, false),
        )?;
        if !exit_code.is_null() {
            // SAFETY: non-NULL and writable per the contract; written only on success.
            unsafe { exit_code.write(code) };
        }
        Ok(())
    })
}

/// What this build implements, as the OCI runtime-spec features JSON document, in
/// `*json_out` (free with `tong_string_free`).
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (NULL `json_out`).
///
/// # Safety
/// `json_out` points at writable memory; `err` as everywhere.
#[no_mangle]
pub unsafe extern "C" fn tong_features(
    json_out: *mut *mut c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_features", err, || {
        check_out(json_out, "json_out")?;
        write_json(json_out, &engine::features::features())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    static SEEN: StdMutex<Vec<(c_int, String)>> = StdMutex::new(Vec::new());

    unsafe extern "C" fn collect(_data: *mut c_void, level: c_int, message: *const c_char) {
        // SAFETY: the library passes a NUL-terminated message valid for the call.
        let text = unsafe { std::ffi::CStr::from_ptr(message) };
        SEEN.lock()
            .unwrap()
            .push((level, text.to_string_lossy().into_owned()));
    }

    /// The engine's log reaches the C callback up to the caller's level, NUL bytes
    /// escaped; with no callback the runtime keeps the engine's default (stderr).
    #[test]
    fn engine_messages_reach_the_callback_up_to_its_level() {
        let root = std::env::temp_dir().join("tong-capi-log-test");
        let root = CString::new(root.to_str().unwrap()).unwrap();
        let opts = tong_runtime_options {
            root: root.as_ptr(),
            log_level: tong_log_level::TONG_LOG_WARN as c_int,
            log_fn: Some(collect),
            ..tong_runtime_options::default()
        };
        let mut rt = std::ptr::null_mut();
        // SAFETY: valid options and out pointer.
        let code = unsafe { tong_runtime_new(&raw const opts, &raw mut rt, std::ptr::null_mut()) };
        assert_eq!(code, tong_error_code::TONG_OK);
        // SAFETY: the runtime just made.
        let shared = Arc::clone(&unsafe { &*rt }.shared);
        let logger = shared.logger.clone().unwrap();
        logger.log(Level::Warn, "a\0b");
        logger.log(Level::Info, "not at WARN");
        shared.log(Level::Error, || "failed".into());
        shared.log(Level::Debug, || {
            unreachable!("not formatted above the level")
        });
        assert_eq!(
            *SEEN.lock().unwrap(),
            [
                (Level::Warn as c_int, "a\\0b".to_string()),
                (Level::Error as c_int, "failed".to_string())
            ]
        );
        // SAFETY: made above, freed once.
        unsafe { tong_runtime_free(rt) };
    }
}
