//! A check each rootfs backend runs in its own tests: its exported descriptor and table,
//! driven the way the host drives them (probe, prepare good and bad requests, release,
//! cleanup twice).

use std::ffi::CStr;

use tong_abi::{Bytes, PluginDescriptor, RootfsOps, Sink, STATUS_INVALID, STATUS_OK};

/// The plugin's `tong_plugin_entry`.
pub type Entry = extern "C" fn(u32) -> *const PluginDescriptor;

/// Checks name, kind and priority, that probe succeeds as root, that a request with a
/// missing rootfs fails with its path named, and that `good` (request JSON) prepares.
/// Returns the state JSON of the good request, after cleanup ran on it twice.
pub fn check_exported_table(entry: Entry, name: &CStr, priority: u32, good: &[u8]) -> Vec<u8> {
    let desc = entry(tong_abi::ABI_MAJOR);
    assert!(!desc.is_null());
    assert!(entry(tong_abi::ABI_MAJOR + 1).is_null());
    // SAFETY: the descriptor is static; its strings are static C strings and ops points
    // at a static RootfsOps.
    let (desc, ops) = unsafe { (&*desc, &*(*desc).ops.cast::<RootfsOps>()) };
    // SAFETY: as above.
    assert_eq!(unsafe { CStr::from_ptr(desc.name) }, name);
    assert_eq!(desc.kind, tong_abi::PluginKind::Rootfs.as_raw());
    assert_eq!(desc.priority, priority);

    let mut reason = Vec::new();
    let probe = desc.probe.expect("probe");
    // SAFETY: the sink borrows `reason` for the call.
    let status = unsafe { probe(&Sink::for_vec(&mut reason)) };
    if nix::unistd::geteuid().is_root() {
        assert_eq!(status, STATUS_OK, "{}", String::from_utf8_lossy(&reason));
    }

    let bad = br#"{"id":"x","bundle":"/","stateDir":"/","rootfs":"/nonexistent/rootfs"}"#;
    let (mut state, mut err) = (Vec::new(), Vec::new());
    let mut plan = std::ptr::null_mut();
    // SAFETY: bytes, plan_out and both sinks are live for the call.
    let status = unsafe {
        (ops.prepare)(
            Bytes::from_slice(bad),
            &raw mut plan,
            &Sink::for_vec(&mut state),
            &Sink::for_vec(&mut err),
        )
    };
    assert_eq!(status, STATUS_INVALID);
    assert!(plan.is_null());
    assert!(
        String::from_utf8_lossy(&err).contains("/nonexistent/rootfs"),
        "{}",
        String::from_utf8_lossy(&err)
    );

    err.clear();
    // SAFETY: as above.
    let status = unsafe {
        (ops.prepare)(
            Bytes::from_slice(good),
            &raw mut plan,
            &Sink::for_vec(&mut state),
            &Sink::for_vec(&mut err),
        )
    };
    assert_eq!(status, STATUS_OK, "{}", String::from_utf8_lossy(&err));
    assert!(!plan.is_null());
    // SAFETY: plan came from prepare and is released once.
    unsafe { (ops.release)(plan) };
    for _ in 0..2 {
        // SAFETY: the state bytes and the sink are live for the call.
        let status = unsafe { (ops.cleanup)(Bytes::from_slice(&state), &Sink::for_vec(&mut err)) };
        assert_eq!(status, STATUS_OK, "{}", String::from_utf8_lossy(&err));
    }
    state
}
