//! Options structs. Each starts with `size_t struct_size`, set by the caller to the
//! `sizeof` it was compiled with: fields past that size take their defaults, so a newer
//! library accepts an older caller's struct. A caller newer than the library may pass a
//! larger struct as long as the fields this library does not know are zero.

use std::ffi::{c_char, c_int, c_void};
use std::mem::{offset_of, size_of};

use super::error::{CResult, Failure};

/// Log levels of the runtime's log callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum tong_log_level {
    /// No logging (the default).
    TONG_LOG_OFF = 0,
    /// Failed calls.
    TONG_LOG_ERROR = 1,
    /// Problems the library worked around.
    TONG_LOG_WARN = 2,
    /// Lifecycle events (created, started, deleted, ...).
    TONG_LOG_INFO = 3,
    /// Every call, with its arguments.
    TONG_LOG_DEBUG = 4,
}

// The C levels are the engine's (`engine::log::Level`): a renumbering fails the build.
const _: () = {
    use engine::log::Level;
    assert!(tong_log_level::TONG_LOG_ERROR as i32 == Level::Error as i32);
    assert!(tong_log_level::TONG_LOG_WARN as i32 == Level::Warn as i32);
    assert!(tong_log_level::TONG_LOG_INFO as i32 == Level::Info as i32);
    assert!(tong_log_level::TONG_LOG_DEBUG as i32 == Level::Debug as i32);
};

/// A log sink: called on the thread making the call, with a message valid for the
/// duration of the callback only. It must not call back into the library.
pub type tong_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: c_int, message: *const c_char)>;

/// Options of `tong_runtime_new`. Start from `TONG_RUNTIME_OPTIONS_INIT`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tong_runtime_options {
    /// `sizeof(tong_runtime_options)` as the caller was compiled.
    pub struct_size: usize,
    /// State root directory; NULL: "/run/tong". Made on first create.
    pub root: *const c_char,
    /// Plugin directories searched first, separated by ':'; then /usr/local/lib/tong/plugins
    /// and /usr/lib/tong/plugins. NULL: $TONG_PLUGIN_PATH, then `<libdir>/tong/plugins`
    /// beside libtong.so, then the system directories.
    pub plugin_path: *const c_char,
    /// Highest `tong_log_level` passed to `log_fn`.
    pub log_level: c_int,
    /// Log sink; NULL: the library logs nothing.
    pub log_fn: tong_log_fn,
    /// Passed to `log_fn` as its first argument.
    pub log_user_data: *mut c_void,
}

impl Default for tong_runtime_options {
    fn default() -> Self {
        tong_runtime_options {
            struct_size: size_of::<Self>(),
            root: std::ptr::null(),
            plugin_path: std::ptr::null(),
            log_level: tong_log_level::TONG_LOG_OFF as c_int,
            log_fn: None,
            log_user_data: std::ptr::null_mut(),
        }
    }
}

/// Options of `tong_container_create` and `tong_container_run`. Start from
/// `TONG_CREATE_OPTIONS_INIT` (which sets the descriptors to -1).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tong_create_options {
    /// `sizeof(tong_create_options)` as the caller was compiled.
    pub struct_size: usize,
    /// Descriptor to become the container's stdin; -1: inherit the caller's.
    pub stdin_fd: c_int,
    /// Descriptor to become the container's stdout; -1: inherit the caller's.
    pub stdout_fd: c_int,
    /// Descriptor to become the container's stderr; -1: inherit the caller's.
    pub stderr_fd: c_int,
    /// File to write the container's pid to once created; NULL: none.
    pub pid_file: *const c_char,
    /// Namespace backend ("clone3"); NULL: the config's `tong.backend.ns` annotation,
    /// else the best usable plugin.
    pub backend_ns: *const c_char,
    /// Cgroup backend ("v1", "v2"); NULL: annotation, else the best usable plugin.
    pub backend_cgroup: *const c_char,
    /// Rootfs backend ("pivot"); NULL: annotation, else the best usable plugin.
    pub backend_rootfs: *const c_char,
    /// Network backend ("none"); NULL: annotation, else the best usable plugin. Only
    /// valid when the config asks for a new network namespace.
    pub backend_net: *const c_char,
    /// Unix socket path to receive the pty master (SCM_RIGHTS) when the config's
    /// `process.terminal` is true; NULL: none (a terminal is then an error). Since 1.1.
    pub console_socket: *const c_char,
    /// Non-zero: tong's minimal init runs as the container's pid 1, reaps orphans and
    /// forwards signals to the program (also the `tong.init=true` annotation). Since 1.1.
    pub init: c_int,
    /// Descriptors passed to the container: `extra_fds[i]` becomes its descriptor 3 + i
    /// (as Go's `exec.Cmd.ExtraFiles`); no other descriptor of the caller is inherited.
    /// The library passes copies: the caller keeps (and closes) its own. NULL: none.
    /// Since 1.2.
    pub extra_fds: *const c_int,
    /// Number of descriptors in `extra_fds`, at most 1000. Since 1.2.
    pub extra_fds_len: usize,
}

impl Default for tong_create_options {
    fn default() -> Self {
        tong_create_options {
            struct_size: size_of::<Self>(),
            stdin_fd: -1,
            stdout_fd: -1,
            stderr_fd: -1,
            pid_file: std::ptr::null(),
            backend_ns: std::ptr::null(),
            backend_cgroup: std::ptr::null(),
            backend_rootfs: std::ptr::null(),
            backend_net: std::ptr::null(),
            console_socket: std::ptr::null(),
            init: 0,
            extra_fds: std::ptr::null(),
            extra_fds_len: 0,
        }
    }
}

/// Options of `tong_container_exec`. Start from `TONG_EXEC_OPTIONS_INIT` (which sets the
/// descriptors to -1).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tong_exec_options {
    /// `sizeof(tong_exec_options)` as the caller was compiled.
    pub struct_size: usize,
    /// Descriptor to become the process's stdin; -1: inherit the caller's.
    pub stdin_fd: c_int,
    /// Descriptor to become the process's stdout; -1: inherit the caller's.
    pub stdout_fd: c_int,
    /// Descriptor to become the process's stderr; -1: inherit the caller's.
    pub stderr_fd: c_int,
    /// File to write the process's pid to once it runs; NULL: none.
    pub pid_file: *const c_char,
    /// Unix socket path to receive the pty master when the process's `terminal` is
    /// true; NULL: none.
    pub console_socket: *const c_char,
    /// Non-zero: return once the process runs (exit code 0) instead of waiting for it.
    pub detach: c_int,
    /// Descriptors passed to the process: `extra_fds[i]` becomes its descriptor 3 + i,
    /// as in `tong_create_options`. NULL: none. Since 1.2.
    pub extra_fds: *const c_int,
    /// Number of descriptors in `extra_fds`, at most 1000. Since 1.2.
    pub extra_fds_len: usize,
}

impl Default for tong_exec_options {
    fn default() -> Self {
        tong_exec_options {
            struct_size: size_of::<Self>(),
            stdin_fd: -1,
            stdout_fd: -1,
            stderr_fd: -1,
            pid_file: std::ptr::null(),
            console_socket: std::ptr::null(),
            detach: 0,
            extra_fds: std::ptr::null(),
            extra_fds_len: 0,
        }
    }
}

/// The smallest `struct_size` accepted: the end of the fields of ABI version 1. Fields
/// added later are appended and optional, so these never grow.
pub(crate) const RUNTIME_OPTIONS_V1_SIZE: usize =
    offset_of!(tong_runtime_options, log_user_data) + size_of::<*mut c_void>();
pub(crate) const CREATE_OPTIONS_V1_SIZE: usize =
    offset_of!(tong_create_options, backend_net) + size_of::<*const c_char>();
pub(crate) const EXEC_OPTIONS_V1_SIZE: usize =
    offset_of!(tong_exec_options, detach) + size_of::<c_int>();

/// Reads a caller's `extra_fds` array (NULL and 0: none).
///
/// # Safety
/// `ptr` is NULL or points at `len` readable `int`s.
pub(crate) unsafe fn read_fds(ptr: *const c_int, len: usize) -> CResult<Vec<c_int>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "extra_fds is NULL but extra_fds_len is {len}"
        )));
    }
    if len > engine::runtime::MAX_EXTRA_FDS {
        return Err(Failure::invalid(format!(
            "extra_fds_len is {len}; at most {} descriptors can be passed on",
            engine::runtime::MAX_EXTRA_FDS
        )));
    }
    // SAFETY: the caller says `len` ints are readable at `ptr` (non-NULL, checked).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

/// Types that are plain C data: every bit pattern a C caller can store is a valid value
/// (integers, raw pointers, nullable function pointers).
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of such fields, whose first field is the
/// `usize` struct size.
pub(crate) unsafe trait OptionsStruct: Copy + Default {
    const NAME: &'static str;
    const MIN_SIZE: usize;
}

// SAFETY: repr(C); fields are usize, c_int, raw pointers and an Option<extern fn>.
unsafe impl OptionsStruct for tong_runtime_options {
    const NAME: &'static str = "tong_runtime_options";
    const MIN_SIZE: usize = RUNTIME_OPTIONS_V1_SIZE;
}

// SAFETY: repr(C); fields are usize, c_int and raw pointers.
unsafe impl OptionsStruct for tong_create_options {
    const NAME: &'static str = "tong_create_options";
    const MIN_SIZE: usize = CREATE_OPTIONS_V1_SIZE;
}

// SAFETY: repr(C); fields are usize, c_int and raw pointers.
unsafe impl OptionsStruct for tong_exec_options {
    const NAME: &'static str = "tong_exec_options";
    const MIN_SIZE: usize = EXEC_OPTIONS_V1_SIZE;
}

/// Reads a caller's options struct: NULL gives the defaults; a `struct_size` below the
/// version 1 size is refused; fields past `struct_size` keep their defaults; bytes past
/// what this library knows must be zero.
///
/// # Safety
/// `ptr` is NULL or points at `struct_size` readable bytes that start with that size.
pub(crate) unsafe fn read<T: OptionsStruct>(ptr: *const T) -> CResult<T> {
    let mut out = T::default();
    if ptr.is_null() {
        return Ok(out);
    }
    // SAFETY: the struct starts with its size (a usize); an unaligned read is tolerated.
    let size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if size < T::MIN_SIZE {
        return Err(Failure::invalid(format!(
            "{}.struct_size is {size}, smaller than the {} bytes of its first version",
            T::NAME,
            T::MIN_SIZE
        )));
    }
    let known = size_of::<T>();
    if size > known {
        // SAFETY: the caller says `size` bytes are readable.
        let tail = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(known), size - known) };
        if tail.iter().any(|b| *b != 0) {
            return Err(Failure::invalid(format!(
                "{} has fields this library ({}) does not know (struct_size {size} > {known}) set",
                T::NAME,
                env!("CARGO_PKG_VERSION")
            )));
        }
    }
    // SAFETY: copies min(size, known) bytes of plain C data (see OptionsStruct) from the
    // caller's struct over the defaults; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            ptr.cast::<u8>(),
            std::ptr::from_mut(&mut out).cast::<u8>(),
            size.min(known),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_gives_defaults() {
        // SAFETY: NULL is allowed.
        let o = unsafe { read::<tong_create_options>(std::ptr::null()) }.unwrap();
        assert_eq!(o.stdin_fd, -1);
    }

    /// A caller compiled against 1.1 (struct ending at `init`) gets no extra fds, even
    /// when the bytes after its struct are not zero.
    #[test]
    fn version_1_1_struct_has_no_extra_fds() {
        let mut o = tong_create_options {
            extra_fds: std::ptr::dangling(),
            extra_fds_len: 3,
            init: 1,
            ..Default::default()
        };
        o.struct_size = offset_of!(tong_create_options, init) + size_of::<c_int>();
        // SAFETY: a live struct, larger than its struct_size says.
        let read = unsafe { read(&raw const o) }.unwrap();
        assert_eq!((read.init, read.extra_fds_len), (1, 0));
        assert!(read.extra_fds.is_null());
    }

    #[test]
    fn extra_fds_array_checks() {
        // SAFETY: NULL with 0 is allowed; NULL with 2 is refused before any read.
        unsafe {
            assert!(read_fds(std::ptr::null(), 0).unwrap().is_empty());
            let e = read_fds(std::ptr::null(), 2).unwrap_err();
            assert!(e.message.contains("extra_fds is NULL"), "{}", e.message);
        }
        let fds = [5, 7];
        // SAFETY: a live array of 2; a too-large length is refused before the read.
        unsafe {
            assert_eq!(read_fds(fds.as_ptr(), 2).unwrap(), vec![5, 7]);
            let e = read_fds(fds.as_ptr(), 1001).unwrap_err();
            assert!(e.message.contains("at most 1000"), "{}", e.message);
        }
    }

    #[test]
    fn too_small_is_refused() {
        let o = tong_create_options {
            struct_size: 8,
            ..Default::default()
        };
        // SAFETY: a live struct.
        let e = unsafe { read(&raw const o) }.unwrap_err();
        assert!(e.message.contains("struct_size"), "{}", e.message);
    }

    #[test]
    fn larger_with_zero_tail_is_accepted_nonzero_refused() {
        #[repr(C)]
        struct Newer {
            base: tong_create_options,
            extra: u64,
        }
        let mut n = Newer {
            base: tong_create_options::default(),
            extra: 0,
        };
        n.base.struct_size = size_of::<Newer>();
        n.base.stdout_fd = 7;
        // SAFETY: a live struct of struct_size bytes.
        let o = unsafe { read(std::ptr::from_ref(&n).cast::<tong_create_options>()) }.unwrap();
        assert_eq!(o.stdout_fd, 7);
        n.extra = 1;
        // SAFETY: as above.
        assert!(unsafe { read(std::ptr::from_ref(&n).cast::<tong_create_options>()) }.is_err());
    }
}
