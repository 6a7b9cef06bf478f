//! The boundary every export goes through: catches panics and turns results into a code
//! and an optional error object.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::{tong_error, tong_error_code, CResult, Failure};

/// Runs `body` for the export `name`; a panic becomes `TONG_ERR_PANIC`. On failure a new
/// error object goes to `*err` (when `err` is not NULL and `*err` is NULL: an error the
/// caller has not freed yet is never overwritten).
pub(crate) fn guard<F>(name: &'static str, err: *mut *mut tong_error, body: F) -> tong_error_code
where
    F: FnOnce() -> CResult<()>,
{
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        test_hook(name);
        body()
    }));
    let failure = match outcome {
        Ok(Ok(())) => return tong_error_code::TONG_OK,
        Ok(Err(f)) => f,
        Err(payload) => Failure {
            code: tong_error_code::TONG_ERR_PANIC,
            message: format!(
                "{name}: internal panic: {}",
                panic_message(payload.as_ref())
            ),
        },
    };
    let code = failure.code;
    // Storing the error must not unwind either (it allocates, which only aborts).
    let _ = catch_unwind(AssertUnwindSafe(|| store(err, failure)));
    code
}

fn store(err: *mut *mut tong_error, failure: Failure) {
    if err.is_null() {
        return;
    }
    // SAFETY: the caller passes NULL (handled above) or a pointer to a writable
    // `tong_error *`, documented in the header.
    let slot = unsafe { &mut *err };
    if slot.is_null() {
        *slot = Box::into_raw(Box::new(tong_error::from_failure(failure)));
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Test builds only (`--features test-hooks`): `TONG_TEST_PANIC=<export name>` makes that
/// export panic inside its guard, to prove a panic comes back as `TONG_ERR_PANIC`.
#[cfg(feature = "test-hooks")]
fn test_hook(name: &str) {
    let armed = std::env::var_os("TONG_TEST_PANIC").is_some_and(|v| v == name);
    assert!(
        !armed,
        "deliberate panic in {name} (TONG_TEST_PANIC test hook)"
    );
}

#[cfg(not(feature = "test-hooks"))]
fn test_hook(_name: &str) {}
