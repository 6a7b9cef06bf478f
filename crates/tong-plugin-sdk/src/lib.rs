//! Writing tong plugins in Rust: implement [`PluginInfo`] and one kind trait, then call the
//! kind's export macro. The macro generates the `extern "C"` table, the static descriptor
//! and the entry symbol of the plugin ABI (the `tong-abi` crate, `include/tong_plugin.h`
//! for C); every generated entry point catches panics and turns them, like errors, into
//! a [`Status`] plus a message. [`wire`] holds the JSON requests the host sends.
//!
//! ```ignore
//! struct Mine;
//! impl tong_plugin_sdk::PluginInfo for Mine { /* name, version, probe */ }
//! impl tong_plugin_sdk::NetworkPlugin for Mine { /* setup, teardown */ }
//! tong_plugin_sdk::export_network_plugin!(Mine);
//! ```

use std::ffi::{c_int, c_void, CStr};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The ABI types, for plugins and for the export macros.
pub use tong_abi as abi;
use tong_abi::{
    Bytes, CgroupOps, ChildError, NamespaceOps, NetworkOps, PluginDescriptor, PluginKind,
    RootfsOps, Sink, SpawnRequest, SpawnResult, Status, ABI_MAJOR, ABI_MINOR, STATUS_FAILED,
    STATUS_INVALID, STATUS_OK, STATUS_OS, STATUS_PANIC, STATUS_UNSUPPORTED,
};

pub mod wire;

/// An error a plugin returns: a status class and a message for the user.
#[derive(Debug)]
pub struct PluginError {
    pub status: Status,
    pub message: String,
}

/// Result type of plugin trait methods.
pub type PluginResult<T> = Result<T, PluginError>;

impl PluginError {
    /// Bad input: a request the backend cannot accept.
    pub fn invalid(message: impl Into<String>) -> Self {
        PluginError {
            status: STATUS_INVALID,
            message: message.into(),
        }
    }

    /// The backend cannot work here.
    pub fn unsupported(message: impl Into<String>) -> Self {
        PluginError {
            status: STATUS_UNSUPPORTED,
            message: message.into(),
        }
    }

    /// A failed system call, with what was being done.
    pub fn os(context: impl std::fmt::Display, err: impl Into<std::io::Error>) -> Self {
        PluginError {
            status: STATUS_OS,
            message: format!("{context}: {}", err.into()),
        }
    }

    /// Any other failure.
    pub fn failed(message: impl Into<String>) -> Self {
        PluginError {
            status: STATUS_FAILED,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<serde_json::Error> for PluginError {
    fn from(err: serde_json::Error) -> Self {
        PluginError::invalid(format!("invalid JSON: {err}"))
    }
}

/// What every plugin says about itself.
pub trait PluginInfo {
    /// Short name, unique within the kind.
    const NAME: &'static CStr;
    /// The plugin's version.
    const VERSION: &'static CStr;
    /// One line on what it does.
    const DESCRIPTION: &'static CStr;
    /// Preference when the host picks by probing; higher wins.
    const PRIORITY: u32;
    /// Whether the backend can work on this host; the error says why not.
    fn probe() -> PluginResult<()>;
}

/// A namespace backend: creates the container process.
pub trait NamespacePlugin: PluginInfo {
    /// See [`NamespaceOps::spawn`].
    ///
    /// # Safety
    /// `req` comes from the host and obeys [`SpawnRequest`]'s contract: its fds are open
    /// and `child_main`/`child_fail` are valid in the child.
    unsafe fn spawn(req: &SpawnRequest) -> PluginResult<SpawnResult>;
}

/// A cgroup backend. `state` is always the JSON `create` returned.
pub trait CgroupPlugin: PluginInfo {
    fn create(req: &[u8]) -> PluginResult<Vec<u8>>;
    fn clone_target(state: &[u8]) -> PluginResult<Option<OwnedFd>>;
    fn add_process(state: &[u8], pid: i32) -> PluginResult<()>;
    fn update(state: &[u8], resources: &[u8]) -> PluginResult<()>;
    fn set_frozen(state: &[u8], frozen: bool) -> PluginResult<()>;
    fn stats(state: &[u8]) -> PluginResult<Vec<u8>>;
    fn pids(state: &[u8]) -> PluginResult<Vec<i32>>;
    fn destroy(state: &[u8]) -> PluginResult<()>;
    /// See [`CgroupOps::warm_up`]; nothing to do by default.
    fn warm_up() -> PluginResult<()> {
        Ok(())
    }
}

/// A rootfs backend.
pub trait RootfsPlugin: PluginInfo {
    /// Everything the child needs, prepared in the parent.
    type Plan;
    /// Parent side: returns the plan and the state JSON.
    fn prepare(req: &[u8]) -> PluginResult<(Box<Self::Plan>, Vec<u8>)>;
    /// Child side: must not allocate or lock. On failure fill `err` and return `Err`.
    #[allow(
        clippy::result_unit_err,
        reason = "the error's details are in `err`, a buffer that needs no allocation"
    )]
    fn child_setup(plan: &mut Self::Plan, err: &mut ChildError) -> Result<(), ()>;
    /// Undo `prepare`'s host-side work; succeed when there is nothing to undo.
    fn cleanup(state: &[u8]) -> PluginResult<()>;
}

/// A network backend.
pub trait NetworkPlugin: PluginInfo {
    fn setup(req: &[u8]) -> PluginResult<Vec<u8>>;
    fn teardown(state: &[u8]) -> PluginResult<()>;
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

thread_local! {
    /// Where the last panic of this thread happened, kept by [`quiet_panics`]' hook.
    static PANIC_LOCATION: std::cell::Cell<Option<String>> =
        const { std::cell::Cell::new(None) };
}

/// Replaces the default panic hook of the plugin's own copy of std, which would print
/// the panic (and a backtrace) on the host's stderr: the host reports it in its one-line
/// error instead, with the location kept here.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_LOCATION.with(|p| p.set(location));
        }));
    });
}

/// Runs `f`, turning an error or a panic into a status and a message on `err`.
fn guard(err: *const Sink, f: impl FnOnce() -> PluginResult<()>) -> Status {
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => STATUS_OK,
        Ok(Err(e)) => {
            // SAFETY: err is the host's sink (or null), live for this call.
            unsafe { Sink::put(err, e.message.as_bytes()) };
            e.status
        }
        Err(payload) => {
            let at = PANIC_LOCATION
                .with(std::cell::Cell::take)
                .map(|at| format!(" (at {at})"))
                .unwrap_or_default();
            let msg = format!("plugin panicked: {}{at}", panic_message(payload.as_ref()));
            // SAFETY: as above.
            unsafe { Sink::put(err, msg.as_bytes()) };
            STATUS_PANIC
        }
    }
}

/// Like [`guard`] for calls that produce bytes for `out`.
fn guard_out(
    out: *const Sink,
    err: *const Sink,
    f: impl FnOnce() -> PluginResult<Vec<u8>>,
) -> Status {
    guard(err, || {
        let data = f()?;
        // SAFETY: out is the host's sink (or null), live for this call.
        unsafe { Sink::put(out, &data) };
        Ok(())
    })
}

/// The host's warning sink (ABI 1.2), once the host has handed it over.
static WARNING_SINK: AtomicPtr<Sink> = AtomicPtr::new(std::ptr::null_mut());

unsafe extern "C" fn set_warning_sink(sink: *const Sink) {
    WARNING_SINK.store(sink.cast_mut(), Ordering::Release);
}

/// A warning for the user: something the plugin worked around or could not apply. It
/// goes to the engine's log (the CLI's stderr and `--log` file, libtong's log
/// callback) when the host gave a sink (ABI 1.2 hosts), else to stderr as
/// `tong: warning: ...`.
pub fn warn(message: &str) {
    let sink = WARNING_SINK.load(Ordering::Acquire);
    if sink.is_null() {
        use std::io::Write as _;
        // stderr may be a closed pipe, where `eprintln!` would panic.
        let _ = writeln!(std::io::stderr(), "tong: warning: {message}");
        return;
    }
    // SAFETY: the host's sink is static (it lives as long as the host process).
    unsafe { Sink::put(sink, message.as_bytes()) };
}

/// Builds a descriptor; used by the export macros.
pub const fn descriptor<P: PluginInfo>(kind: PluginKind, ops: *const c_void) -> PluginDescriptor {
    PluginDescriptor {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: std::mem::size_of::<PluginDescriptor>(),
        kind: kind.as_raw(),
        priority: P::PRIORITY,
        name: P::NAME.as_ptr(),
        version: P::VERSION.as_ptr(),
        description: P::DESCRIPTION.as_ptr(),
        probe: Some(probe_entry::<P>),
        ops,
        set_warning_sink: Some(set_warning_sink),
    }
}

unsafe extern "C" fn probe_entry<P: PluginInfo>(reason: *const Sink) -> Status {
    guard(reason, P::probe)
}

/// The namespace table for `P`; used by [`export_namespace_plugin!`](crate::export_namespace_plugin).
pub const fn namespace_ops<P: NamespacePlugin>() -> NamespaceOps {
    unsafe extern "C" fn spawn<P: NamespacePlugin>(
        req: *const SpawnRequest,
        out: *mut SpawnResult,
        err: *const Sink,
    ) -> Status {
        guard(err, || {
            if req.is_null() || out.is_null() {
                return Err(PluginError::invalid("spawn: null request or result"));
            }
            // SAFETY: the host passes a live request; checked non-null above.
            let req = unsafe { &*req };
            if req.struct_size < std::mem::size_of::<SpawnRequest>() {
                return Err(PluginError::invalid("spawn: request struct_size too small"));
            }
            // SAFETY: the request obeys the SpawnRequest contract (host's promise).
            let result = unsafe { P::spawn(req) }?;
            // SAFETY: out is a live, writable SpawnResult (checked non-null above).
            unsafe { out.write(result) };
            Ok(())
        })
    }
    NamespaceOps {
        struct_size: std::mem::size_of::<NamespaceOps>(),
        spawn: spawn::<P>,
    }
}

/// The cgroup table for `P`; used by [`export_cgroup_plugin!`](crate::export_cgroup_plugin).
pub const fn cgroup_ops<P: CgroupPlugin>() -> CgroupOps {
    unsafe extern "C" fn create<P: CgroupPlugin>(
        req: Bytes,
        out: *const Sink,
        err: *const Sink,
    ) -> Status {
        // SAFETY: the host's bytes are live for the call.
        guard_out(out, err, || P::create(unsafe { req.as_slice() }))
    }
    unsafe extern "C" fn clone_target<P: CgroupPlugin>(
        state: Bytes,
        fd_out: *mut c_int,
        err: *const Sink,
    ) -> Status {
        guard(err, || {
            if fd_out.is_null() {
                return Err(PluginError::invalid("clone_target: null fd_out"));
            }
            // SAFETY: the host's bytes are live for the call.
            let fd =
                P::clone_target(unsafe { state.as_slice() })?.map_or(-1, IntoRawFd::into_raw_fd);
            // SAFETY: fd_out is a live, writable int (checked above).
            unsafe { fd_out.write(fd) };
            Ok(())
        })
    }
    unsafe extern "C" fn add_process<P: CgroupPlugin>(
        state: Bytes,
        pid: c_int,
        err: *const Sink,
    ) -> Status {
        // SAFETY: the host's bytes are live for the call.
        guard(err, || P::add_process(unsafe { state.as_slice() }, pid))
    }
    unsafe extern "C" fn update<P: CgroupPlugin>(
        state: Bytes,
        resources: Bytes,
        err: *const Sink,
    ) -> Status {
        // SAFETY: the host's bytes are live for the call.
        let (state, resources) = unsafe { (state.as_slice(), resources.as_slice()) };
        guard(err, || P::update(state, resources))
    }
    unsafe extern "C" fn set_frozen<P: CgroupPlugin>(
        state: Bytes,
        frozen: u32,
        err: *const Sink,
    ) -> Status {
        // SAFETY: the host's bytes are live for the call.
        let state = unsafe { state.as_slice() };
        guard(err, || P::set_frozen(state, frozen != 0))
    }
    unsafe extern "C" fn stats<P: CgroupPlugin>(
        state: Bytes,
        out: *const Sink,
        err: *const Sink,
    ) -> Status {
        // SAFETY: the host's bytes are live for the call.
        guard_out(out, err, || P::stats(unsafe { state.as_slice() }))
    }
    unsafe extern "C" fn pids<P: CgroupPlugin>(
        state: Bytes,
        out: *const Sink,
        err: *const Sink,
    ) -> Status {
        guard_out(out, err, || {
            // SAFETY: the host's bytes are live for the call.
            let pids = P::pids(unsafe { state.as_slice() })?;
            Ok(serde_json::to_vec(&pids)?)
        })
    }
    unsafe extern "C" fn destroy<P: CgroupPlugin>(state: Bytes, err: *const Sink) -> Status {
        // SAFETY: the host's bytes are live for the call.
        guard(err, || P::destroy(unsafe { state.as_slice() }))
    }
    unsafe extern "C" fn warm_up<P: CgroupPlugin>(err: *const Sink) -> Status {
        guard(err, P::warm_up)
    }
    CgroupOps {
        struct_size: std::mem::size_of::<CgroupOps>(),
        create: create::<P>,
        clone_target: clone_target::<P>,
        add_process: add_process::<P>,
        update: update::<P>,
        set_frozen: set_frozen::<P>,
        stats: stats::<P>,
        pids: pids::<P>,
        destroy: destroy::<P>,
        warm_up: Some(warm_up::<P>),
    }
}

/// The rootfs table for `P`; used by [`export_rootfs_plugin!`](crate::export_rootfs_plugin).
pub const fn rootfs_ops<P: RootfsPlugin>() -> RootfsOps {
    unsafe extern "C" fn prepare<P: RootfsPlugin>(
        req: Bytes,
        plan_out: *mut *mut c_void,
        state_out: *const Sink,
        err: *const Sink,
    ) -> Status {
        guard(err, || {
            if plan_out.is_null() {
                return Err(PluginError::invalid("prepare: null plan_out"));
            }
            // SAFETY: the host's bytes are live for the call.
            let (plan, state) = P::prepare(unsafe { req.as_slice() })?;
            // SAFETY: state_out is the host's sink; plan_out is writable (checked above).
            unsafe {
                Sink::put(state_out, &state);
                plan_out.write(Box::into_raw(plan).cast());
            }
            Ok(())
        })
    }
    unsafe extern "C" fn child_setup<P: RootfsPlugin>(
        plan: *mut c_void,
        err: *mut ChildError,
    ) -> Status {
        if plan.is_null() || err.is_null() {
            return STATUS_INVALID;
        }
        // SAFETY: plan came from prepare (a Box<P::Plan>) and is still owned by the host;
        // err is the host's buffer. Both are exclusively ours during this call.
        let (plan, err) = unsafe { (&mut *plan.cast::<P::Plan>(), &mut *err) };
        // A panic here would allocate; catch it anyway so it never unwinds into C.
        match catch_unwind(AssertUnwindSafe(|| P::child_setup(plan, err))) {
            Ok(Ok(())) => STATUS_OK,
            Ok(Err(())) => STATUS_OS,
            Err(_) => {
                err.set(0, &[b"rootfs plugin panicked in the child"]);
                STATUS_PANIC
            }
        }
    }
    unsafe extern "C" fn release<P: RootfsPlugin>(plan: *mut c_void) {
        if !plan.is_null() {
            // SAFETY: plan came from Box::into_raw in prepare and is released once.
            drop(unsafe { Box::from_raw(plan.cast::<P::Plan>()) });
        }
    }
    unsafe extern "C" fn cleanup<P: RootfsPlugin>(state: Bytes, err: *const Sink) -> Status {
        // SAFETY: the host's bytes are live for the call.
        guard(err, || P::cleanup(unsafe { state.as_slice() }))
    }
    RootfsOps {
        struct_size: std::mem::size_of::<RootfsOps>(),
        prepare: prepare::<P>,
        child_setup: child_setup::<P>,
        release: release::<P>,
        cleanup: cleanup::<P>,
    }
}

/// The network table for `P`; used by [`export_network_plugin!`](crate::export_network_plugin).
pub const fn network_ops<P: NetworkPlugin>() -> NetworkOps {
    unsafe extern "C" fn setup<P: NetworkPlugin>(
        req: Bytes,
        out: *const Sink,
        err: *const Sink,
    ) -> Status {
        // SAFETY: the host's bytes are live for the call.
        guard_out(out, err, || P::setup(unsafe { req.as_slice() }))
    }
    unsafe extern "C" fn teardown<P: NetworkPlugin>(state: Bytes, err: *const Sink) -> Status {
        // SAFETY: the host's bytes are live for the call.
        guard(err, || P::teardown(unsafe { state.as_slice() }))
    }
    NetworkOps {
        struct_size: std::mem::size_of::<NetworkOps>(),
        setup: setup::<P>,
        teardown: teardown::<P>,
    }
}

/// Generates the entry symbol and static tables of a plugin; the kind macros call it.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($ty:ty, $kind:expr, $ops_ty:ty, $ops:expr) => {
        static TONG_PLUGIN_OPS: $ops_ty = $ops;
        static TONG_PLUGIN_DESCRIPTOR: $crate::abi::PluginDescriptor =
            $crate::descriptor::<$ty>($kind, ::std::ptr::addr_of!(TONG_PLUGIN_OPS).cast());

        /// The plugin's entry point: its descriptor, or null for another ABI major.
        #[no_mangle]
        pub extern "C" fn tong_plugin_entry(
            host_abi_major: u32,
        ) -> *const $crate::abi::PluginDescriptor {
            if host_abi_major == $crate::abi::ABI_MAJOR {
                &TONG_PLUGIN_DESCRIPTOR
            } else {
                ::std::ptr::null()
            }
        }
    };
}

/// Exports a [`NamespacePlugin`] as this library's plugin.
#[macro_export]
macro_rules! export_namespace_plugin {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty,
            $crate::abi::PluginKind::Namespace,
            $crate::abi::NamespaceOps,
            $crate::namespace_ops::<$ty>()
        );
    };
}

/// Exports a [`CgroupPlugin`] as this library's plugin.
#[macro_export]
macro_rules! export_cgroup_plugin {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty,
            $crate::abi::PluginKind::Cgroup,
            $crate::abi::CgroupOps,
            $crate::cgroup_ops::<$ty>()
        );
    };
}

/// Exports a [`RootfsPlugin`] as this library's plugin.
#[macro_export]
macro_rules! export_rootfs_plugin {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty,
            $crate::abi::PluginKind::Rootfs,
            $crate::abi::RootfsOps,
            $crate::rootfs_ops::<$ty>()
        );
    };
}

/// Exports a [`NetworkPlugin`] as this library's plugin.
#[macro_export]
macro_rules! export_network_plugin {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty,
            $crate::abi::PluginKind::Network,
            $crate::abi::NetworkOps,
            $crate::network_ops::<$ty>()
        );
    };
}
