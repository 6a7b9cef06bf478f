//! C strings in and out.

use std::ffi::{c_char, CStr, CString};

use super::error::{CResult, Failure};

/// Borrows a C string argument that may be NULL; it must be UTF-8.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that outlives the returned borrow.
pub(crate) unsafe fn opt_str<'a>(ptr: *const c_char, what: &str) -> CResult<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map(Some)
        .map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// Borrows a C string argument that must not be NULL.
///
/// # Safety
/// As for [`opt_str`].
pub(crate) unsafe fn req_str<'a>(ptr: *const c_char, what: &str) -> CResult<&'a str> {
    // SAFETY: forwarded contract.
    unsafe { opt_str(ptr, what) }?.ok_or_else(|| Failure::null(what))
}

/// Makes a string the caller owns and frees with [`tong_string_free`].
pub(crate) fn into_c_string(s: String) -> CResult<*mut c_char> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| Failure::invalid("output contains a NUL byte".to_string()))
}

/// Checks that an output pointer is not NULL.
pub(crate) fn check_out<T>(out: *mut T, what: &str) -> CResult<()> {
    if out.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}

/// Frees a string returned by this library (JSON documents). NULL is accepted.
///
/// # Safety
/// `s` is NULL or a string returned by this library, freed only once.
#[no_mangle]
pub unsafe extern "C" fn tong_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: the string was made by CString::into_raw in into_c_string and is freed
        // once, per the caller's contract.
        drop(unsafe { CString::from_raw(s) });
    }
}
