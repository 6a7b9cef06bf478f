//! Error reporting from the container's child process, between clone and exec.
//!
//! That code may not allocate (another thread of the parent may have held the allocator's
//! lock at clone time), so errors are built into a fixed buffer from static strings,
//! paths the parent prepared, and an errno.

use std::ffi::{c_int, CStr};

/// Size of [`ChildError::message`].
pub const CHILD_MESSAGE_LEN: usize = 512;

/// A failure in the child: an errno and a NUL-terminated message. Plain bytes, so the
/// host can send it through a pipe as is. (In C the first field is `errnum`: `errno` is
/// a macro of `<errno.h>`.)
///
/// cbindgen:field-names=[errnum, len, message]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ChildError {
    /// The errno of the failed call, or 0.
    pub errno: c_int,
    /// Bytes used in `message`, excluding the NUL.
    pub len: u32,
    /// The message, NUL-terminated, truncated when too long.
    pub message: [u8; CHILD_MESSAGE_LEN],
}

impl Default for ChildError {
    fn default() -> Self {
        ChildError {
            errno: 0,
            len: 0,
            message: [0; CHILD_MESSAGE_LEN],
        }
    }
}

impl ChildError {
    /// Starts a new message with `errno`, dropping any previous one.
    pub fn reset(&mut self, errno: c_int) -> &mut Self {
        self.errno = errno;
        self.len = 0;
        self.message[0] = 0;
        self
    }

    /// Appends bytes, truncating at the buffer's end. Never allocates.
    pub fn push(&mut self, part: &[u8]) -> &mut Self {
        let start = self.len as usize;
        let room = CHILD_MESSAGE_LEN - 1 - start;
        let n = part.len().min(room);
        self.message[start..start + n].copy_from_slice(&part[..n]);
        self.len = (start + n) as u32;
        self.message[start + n] = 0;
        self
    }

    /// Appends a C string (a path the parent prepared).
    pub fn push_cstr(&mut self, part: &CStr) -> &mut Self {
        self.push(part.to_bytes())
    }

    /// Sets the whole error: `errno` and the message parts, in order.
    pub fn set(&mut self, errno: c_int, parts: &[&[u8]]) {
        self.reset(errno);
        for part in parts {
            self.push(part);
        }
    }

    /// The message bytes.
    pub fn message(&self) -> &[u8] {
        &self.message[..self.len as usize]
    }

    /// The calling thread's errno, read without allocating.
    pub fn last_errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Records `what` with the current errno, for a failed system call.
    pub fn os(&mut self, parts: &[&[u8]]) {
        self.set(Self::last_errno(), parts);
    }

    /// Views the struct as bytes, to write it to a pipe.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: ChildError is repr(C), made only of integers and a byte array, with no
        // padding between them (4 + 4 + 512 bytes), so every byte is initialised.
        unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(self).cast::<u8>(),
                std::mem::size_of::<Self>(),
            )
        }
    }

    /// Rebuilds an error read from a pipe; `None` when the size is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<ChildError> {
        if bytes.len() != std::mem::size_of::<Self>() {
            return None;
        }
        let len = u32::from_ne_bytes(bytes[4..8].try_into().ok()?);
        let mut out = ChildError {
            errno: c_int::from_ne_bytes(bytes[0..4].try_into().ok()?),
            len: len.min(CHILD_MESSAGE_LEN as u32 - 1),
            message: [0; CHILD_MESSAGE_LEN],
        };
        out.message.copy_from_slice(&bytes[8..]);
        Some(out)
    }

    /// The message with the errno's description, for the parent to show.
    pub fn describe(&self) -> String {
        let msg = String::from_utf8_lossy(self.message());
        if self.errno == 0 {
            msg.into_owned()
        } else {
            format!("{msg}: {}", std::io::Error::from_raw_os_error(self.errno))
        }
    }
}

impl std::fmt::Debug for ChildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_round_trips_a_message() {
        let mut e = ChildError::default();
        e.set(2, &[b"mount ", b"/proc"]);
        assert_eq!(e.message(), b"mount /proc");
        let back = ChildError::from_bytes(e.as_bytes()).unwrap();
        assert_eq!(back.errno, 2);
        assert_eq!(
            back.describe(),
            "mount /proc: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn truncates_long_messages() {
        let mut e = ChildError::default();
        let long = [b'x'; 2 * CHILD_MESSAGE_LEN];
        e.set(0, &[&long]);
        assert_eq!(e.message().len(), CHILD_MESSAGE_LEN - 1);
        assert_eq!(e.message[CHILD_MESSAGE_LEN - 1], 0);
    }
}
