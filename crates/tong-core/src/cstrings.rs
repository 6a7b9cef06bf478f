//! C string arrays (argv, envp) built in the parent for a child that must not allocate.

use std::ffi::{c_char, CString};

/// A C array of C strings, with its storage.
#[derive(Debug, Default)]
pub struct CStrings {
    _owned: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CStrings {
    pub fn new(items: Vec<CString>) -> CStrings {
        let mut ptrs: Vec<*const c_char> = items.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStrings {
            _owned: items,
            ptrs,
        }
    }

    /// The NULL-terminated array.
    pub fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }

    /// The pointers, NULL included.
    pub fn pointers(&self) -> &[*const c_char] {
        &self.ptrs
    }
}
