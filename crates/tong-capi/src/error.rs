//! Error codes and error objects of the C ABI.

use std::ffi::{c_char, CStr, CString};

use engine::error::Error;

/// What the functions of the C ABI return. The numbers are part of the ABI (defined here
/// only; each engine error maps onto one) and never change; new codes may be added, so
/// treat an unknown code like `TONG_ERR_INTERNAL`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tong_error_code {
    /// Success.
    TONG_OK = 0,
    /// Bad input: a NULL pointer, an invalid id, config, option, flag or struct_size.
    TONG_ERR_INVALID_ARGUMENT = 1,
    /// No container with that id.
    TONG_ERR_NOT_FOUND = 2,
    /// A container with that id exists already.
    TONG_ERR_ALREADY_EXISTS = 3,
    /// The container is not in a state that allows the operation.
    TONG_ERR_INVALID_STATE = 4,
    /// A backend plugin is missing, untrusted, of the wrong ABI, unusable here, or failed.
    TONG_ERR_PLUGIN = 5,
    /// A system call failed.
    TONG_ERR_OS = 6,
    /// The container's process failed before exec (executable not found, mount error).
    TONG_ERR_CONTAINER = 7,
    /// A panic inside the library was caught at the boundary.
    TONG_ERR_PANIC = 8,
    /// Anything else.
    TONG_ERR_INTERNAL = 9,
}

impl From<&Error> for tong_error_code {
    fn from(e: &Error) -> Self {
        match e {
            Error::InvalidArgument(_) => tong_error_code::TONG_ERR_INVALID_ARGUMENT,
            Error::NotFound(_) => tong_error_code::TONG_ERR_NOT_FOUND,
            Error::AlreadyExists(_) => tong_error_code::TONG_ERR_ALREADY_EXISTS,
            Error::InvalidState(_) => tong_error_code::TONG_ERR_INVALID_STATE,
            Error::Plugin(_) => tong_error_code::TONG_ERR_PLUGIN,
            Error::Os { .. } => tong_error_code::TONG_ERR_OS,
            Error::Container(_) => tong_error_code::TONG_ERR_CONTAINER,
            Error::Internal(_) => tong_error_code::TONG_ERR_INTERNAL,
        }
    }
}

impl tong_error_code {
    fn name(self) -> &'static CStr {
        match self {
            tong_error_code::TONG_OK => c"TONG_OK",
            tong_error_code::TONG_ERR_INVALID_ARGUMENT => c"TONG_ERR_INVALID_ARGUMENT",
            tong_error_code::TONG_ERR_NOT_FOUND => c"TONG_ERR_NOT_FOUND",
            tong_error_code::TONG_ERR_ALREADY_EXISTS => c"TONG_ERR_ALREADY_EXISTS",
            tong_error_code::TONG_ERR_INVALID_STATE => c"TONG_ERR_INVALID_STATE",
            tong_error_code::TONG_ERR_PLUGIN => c"TONG_ERR_PLUGIN",
            tong_error_code::TONG_ERR_OS => c"TONG_ERR_OS",
            tong_error_code::TONG_ERR_CONTAINER => c"TONG_ERR_CONTAINER",
            tong_error_code::TONG_ERR_PANIC => c"TONG_ERR_PANIC",
            tong_error_code::TONG_ERR_INTERNAL => c"TONG_ERR_INTERNAL",
        }
    }
}

/// A failure inside the C layer: a code and a message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: tong_error_code,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            code: tong_error_code::TONG_ERR_INVALID_ARGUMENT,
            message: message.into(),
        }
    }

    pub fn null(what: &str) -> Failure {
        Failure::invalid(format!("{what} is NULL"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            code: (&e).into(),
            message: e.to_string(),
        }
    }
}

/// Result type of the C layer.
pub(crate) type CResult<T> = Result<T, Failure>;

/// An error: its code and message. Returned through the `tong_error **err` argument of
/// a failed call; owned by the caller, who frees it with `tong_error_free`.
#[derive(Debug)]
pub struct tong_error {
    code: tong_error_code,
    message: CString,
}

impl tong_error {
    pub(crate) fn from_failure(f: Failure) -> tong_error {
        // A NUL inside a message would cut it short; replace it.
        let message = CString::new(f.message.replace('\0', "\\0")).unwrap_or_default();
        tong_error {
            code: f.code,
            message,
        }
    }
}

/// The code of an error; `TONG_ERR_INVALID_ARGUMENT` when `err` is NULL.
///
/// # Safety
/// `err` is NULL or an error returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tong_error_get_code(err: *const tong_error) -> tong_error_code {
    // SAFETY: the caller passes NULL or a live error of ours.
    match unsafe { err.as_ref() } {
        Some(e) => e.code,
        None => tong_error_code::TONG_ERR_INVALID_ARGUMENT,
    }
}

/// The message of an error, valid until the error is freed; "" when `err` is NULL.
///
/// # Safety
/// `err` is NULL or an error returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tong_error_message(err: *const tong_error) -> *const c_char {
    // SAFETY: the caller passes NULL or a live error of ours.
    match unsafe { err.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Frees an error. NULL is accepted and ignored.
///
/// # Safety
/// `err` is NULL or an error returned by this library, freed only once.
#[no_mangle]
pub unsafe extern "C" fn tong_error_free(err: *mut tong_error) {
    if !err.is_null() {
        // SAFETY: the error was made by Box::into_raw in guard::finish and is freed once.
        drop(unsafe { Box::from_raw(err) });
    }
}

/// The name of a code ("TONG_ERR_NOT_FOUND"), static: do not free it. Unknown codes
/// give "TONG_ERR_UNKNOWN".
#[no_mangle]
pub extern "C" fn tong_error_code_name(code: i32) -> *const c_char {
    let name = ALL_CODES
        .iter()
        .find(|c| **c as i32 == code)
        .map_or(c"TONG_ERR_UNKNOWN", |c| c.name());
    name.as_ptr()
}

const ALL_CODES: [tong_error_code; 10] = [
    tong_error_code::TONG_OK,
    tong_error_code::TONG_ERR_INVALID_ARGUMENT,
    tong_error_code::TONG_ERR_NOT_FOUND,
    tong_error_code::TONG_ERR_ALREADY_EXISTS,
    tong_error_code::TONG_ERR_INVALID_STATE,
    tong_error_code::TONG_ERR_PLUGIN,
    tong_error_code::TONG_ERR_OS,
    tong_error_code::TONG_ERR_CONTAINER,
    tong_error_code::TONG_ERR_PANIC,
    tong_error_code::TONG_ERR_INTERNAL,
];
