//! The pool of ready-made network namespaces (docs/pools.md) through the C ABI. The
//! pool lives under the runtime's root; a long-lived embedder refills it by calling
//! `tong_pool_fill` with a negative target after its containers have started (the CLI
//! starts a detached `tong pool fill` instead).

use std::ffi::c_char;

use super::container::{handle, tong_runtime, write_json};
use super::error::{tong_error, tong_error_code};
use super::guard::guard;
use super::strings::check_out;

/// The pool's state as JSON `{"netns_target": N, "netns_ready": M}` in `*json_out`
/// (free with `tong_string_free`).
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (NULL arguments, a pool directory others can
/// write), TONG_ERR_OS.
///
/// # Safety
/// `rt` is NULL or a live runtime; `json_out` points at writable memory.
#[no_mangle]
pub unsafe extern "C" fn tong_pool_status(
    rt: *const tong_runtime,
    json_out: *mut *mut c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_pool_status", err, || {
        // SAFETY: per the contract.
        let rt = unsafe { handle(rt, "rt") }?;
        check_out(json_out, "json_out")?;
        let status = rt
            .shared
            .outcome("pool status", "", rt.shared.runtime.pool_status())?;
        write_json(json_out, &status)
    })
}

/// Sets the pool's target to `target` (a negative `target` keeps the recorded one) and
/// makes network namespaces until that many are ready; blocks while another fill runs.
/// `json_out` may be NULL; otherwise it receives the state as `tong_pool_status` does.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (not root, a pool directory others can write),
/// TONG_ERR_OS.
///
/// # Safety
/// `rt` is NULL or a live runtime; `json_out` is NULL or points at writable memory.
#[no_mangle]
pub unsafe extern "C" fn tong_pool_fill(
    rt: *const tong_runtime,
    target: i64,
    json_out: *mut *mut c_char,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_pool_fill", err, || {
        // SAFETY: per the contract.
        let rt = unsafe { handle(rt, "rt") }?;
        let target = u32::try_from(target).ok();
        let status =
            rt.shared
                .outcome("pool fill", "", rt.shared.runtime.pool_fill(target, true))?;
        if json_out.is_null() {
            return Ok(());
        }
        write_json(json_out, &status)
    })
}

/// Sets the pool's target to 0, destroys every pooled namespace and removes the pool.
///
/// Errors: TONG_ERR_INVALID_ARGUMENT (a pool directory others can write), TONG_ERR_OS.
///
/// # Safety
/// `rt` is NULL or a live runtime.
#[no_mangle]
pub unsafe extern "C" fn tong_pool_drain(
    rt: *const tong_runtime,
    err: *mut *mut tong_error,
) -> tong_error_code {
    guard("tong_pool_drain", err, || {
        // SAFETY: per the contract.
        let rt = unsafe { handle(rt, "rt") }?;
        rt.shared
            .outcome("pool drain", "", rt.shared.runtime.pool_drain())
            .map(drop)
    })
}
