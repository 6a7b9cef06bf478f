//! Test-only fault injection, compiled in only with the `fault-injection` feature (never
//! in release builds or installs). The lifecycle calls [`point`] at each named step of
//! create, start and delete; the names follow what the state record holds at that
//! moment. With the feature on:
//!
//! - `TONG_CRASH_AT=<step>`: tong SIGKILLs itself there (a crash the runtime cannot
//!   react to, like `kill -9` or a power cut of the management process);
//! - `TONG_KILL_INIT_AT=<step>`: tong SIGKILLs the container's init there and goes on
//!   (the container dying under the runtime's feet).
//!
//! Without the feature [`point`] is an empty inline function.

/// Every step, in the order a create, start and delete reach them.
pub const STEPS: &[&str] = &[
    // create
    "create:state-dir-made",
    "create:record-creating",
    "create:cgroup-created",
    "create:cgroup-recorded",
    "create:rootfs-prepared",
    "create:rootfs-recorded",
    "create:spawned",
    "create:pid-recorded",
    "create:net-setup",
    "create:net-recorded",
    "create:go-sent",
    "create:child-ready",
    "create:record-created",
    // start
    "start:released",
    "start:record-running",
    // delete (and the teardown a failed create runs)
    "delete:record-read",
    "teardown:init-killed",
    "teardown:net-undone",
    "teardown:cgroup-undone",
    "teardown:rootfs-undone",
];

/// The steps of the network namespace pool (docs/pools.md): reached only with a pool,
/// so kept out of [`STEPS`], which every create reaches.
pub const POOL_STEPS: &[&str] = &[
    // `tong pool fill`: a namespace mounted under making/, not yet ready
    "pool:netns-mounted",
    // create: a namespace claimed into the container's directory, not yet joined
    "create:pool-netns-claimed",
];

/// A named step of the lifecycle; `init` is the container's init pid (0 before it exists).
#[cfg(feature = "fault-injection")]
pub fn point(step: &str, init: i32) {
    debug_assert!(
        STEPS.contains(&step) || POOL_STEPS.contains(&step),
        "unknown fault point {step}"
    );
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::{getpid, Pid};
    let here = |var: &str| std::env::var_os(var).is_some_and(|v| v == step);
    if here("TONG_KILL_INIT_AT") && init > 0 {
        let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
    }
    if here("TONG_CRASH_AT") {
        // SIGKILL cannot be caught: nothing runs after it.
        let _ = kill(getpid(), Signal::SIGKILL);
    }
}

/// A named step of the lifecycle (fault injection is compiled out of this build).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_step: &str, _init: i32) {}
