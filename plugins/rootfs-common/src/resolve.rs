//! Path resolution inside the rootfs, for the child: no allocation, no locks, only raw
//! system calls and stack buffers.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT)` relative to an `O_PATH` fd of
//! the rootfs, so `..` and absolute symlinks planted in the image stay inside it. Missing
//! components are created one at a time in a parent that was itself resolved that way.

use std::ffi::{c_int, CStr};

/// Longest path we handle, NUL included.
pub const PATH_MAX: usize = libc::PATH_MAX as usize;
/// Longest path component, NUL excluded.
pub const NAME_MAX: usize = 255;

/// `struct open_how` of openat2(2); libc's is `non_exhaustive`, so we lay out our own.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(c_int);

impl Fd {
    /// Takes ownership of an open descriptor.
    pub fn from_raw(fd: c_int) -> Self {
        Fd(fd)
    }

    /// The raw descriptor.
    pub fn raw(&self) -> c_int {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// A failed resolution: the errno and which step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolveError {
    pub errno: c_int,
    /// Static text naming the step, for the child's error message.
    pub what: &'static [u8],
}

impl ResolveError {
    fn new(errno: c_int, what: &'static [u8]) -> Self {
        ResolveError { errno, what }
    }
}

/// What to create when the path (or one of its parents) is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing path is an error (ENOENT).
    Nothing,
    /// Directories, the last one included.
    Dir,
    /// Directories, then an empty regular file as the last component.
    File,
}

/// openat2(2) with `O_CLOEXEC`; retries the EAGAIN the kernel returns when a rename
/// raced with `..` resolution.
pub fn openat2(dirfd: c_int, path: &CStr, flags: c_int, resolve: u64) -> Result<Fd, c_int> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    for _ in 0..16 {
        // SAFETY: path is NUL-terminated, how is a live open_how of the size we pass.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                std::ptr::from_ref(&how),
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            return Ok(Fd(fd as c_int));
        }
        let e = errno();
        if e != libc::EAGAIN {
            return Err(e);
        }
    }
    Err(libc::EAGAIN)
}

/// Opens `path` (absolute, normalised: no `.`, `..`, empty components or trailing slash)
/// inside `root` as an `O_PATH` fd, creating what is missing as `create` says. `resolve`
/// adds `RESOLVE_*` flags (e.g. `RESOLVE_NO_SYMLINKS`) to `RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS`.
pub fn open_in_root(
    root: c_int,
    path: &CStr,
    create: Create,
    resolve: u64,
) -> Result<Fd, ResolveError> {
    let resolve = resolve | libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let flags = libc::O_PATH;
    match openat2(root, path, flags, resolve) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) if create != Create::Nothing => {}
        Err(e) => return Err(ResolveError::new(e, b"open")),
    }

    let bytes = path.to_bytes();
    if bytes.len() >= PATH_MAX {
        return Err(ResolveError::new(libc::ENAMETOOLONG, b"open"));
    }
    let mut prefix = [0u8; PATH_MAX];
    // Usually only the last component is missing: open its parent in one call, rather
    // than walking every component from the root.
    if let Some(slash) = bytes.iter().rposition(|&b| b == b'/').filter(|&i| i > 0) {
        let name = &bytes[slash + 1..];
        if name.is_empty() {
            return Err(ResolveError::new(libc::EINVAL, b"open"));
        }
        prefix[..slash].copy_from_slice(&bytes[..slash]);
        let Ok(parent_c) = CStr::from_bytes_with_nul(&prefix[..=slash]) else {
            return Err(ResolveError::new(libc::EINVAL, b"open"));
        };
        match openat2(root, parent_c, flags, resolve) {
            Ok(dir) => return create_and_open(root, dir.raw(), name, path, create, resolve),
            Err(libc::ENOENT) => {}
            Err(e) => return Err(ResolveError::new(e, b"open")),
        }
    }
    let mut parent: Option<Fd> = None;
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b'/' {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'/' {
            i += 1;
        }
        if start == i {
            break;
        }
        if i - start > NAME_MAX {
            return Err(ResolveError::new(libc::ENAMETOOLONG, b"open"));
        }
        let last = i == bytes.len();
        prefix[..i].copy_from_slice(&bytes[..i]);
        prefix[i] = 0;
        let Ok(prefix_c) = CStr::from_bytes_with_nul(&prefix[..=i]) else {
            return Err(ResolveError::new(libc::EINVAL, b"open"));
        };
        match openat2(root, prefix_c, flags, resolve) {
            Ok(fd) => {
                parent = Some(fd);
                continue;
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(ResolveError::new(e, b"open")),
        }

        let dirfd = parent.as_ref().map_or(root, Fd::raw);
        let kind = if last { create } else { Create::Dir };
        parent = Some(create_and_open(
            root,
            dirfd,
            &bytes[start..i],
            prefix_c,
            kind,
            resolve,
        )?);
    }
    parent.ok_or(ResolveError::new(libc::ENOENT, b"open"))
}

/// Creates the component `name` in `dirfd` (its parent, resolved in the rootfs) as
/// `create` says, then opens `path` (the path up to and including it) in `root`.
/// mkdirat and mknodat never follow a symlink in the last component.
fn create_and_open(
    root: c_int,
    dirfd: c_int,
    name: &[u8],
    path: &CStr,
    create: Create,
    resolve: u64,
) -> Result<Fd, ResolveError> {
    if name.len() > NAME_MAX {
        return Err(ResolveError::new(libc::ENAMETOOLONG, b"open"));
    }
    let mut name_c = [0u8; NAME_MAX + 1];
    name_c[..name.len()].copy_from_slice(name);
    let (rc, what): (c_int, &'static [u8]) = if create == Create::File {
        // SAFETY: name_c is NUL-terminated (zeroed buffer, longer than name), dirfd open.
        let rc = unsafe { libc::mknodat(dirfd, name_c.as_ptr().cast(), libc::S_IFREG | 0o644, 0) };
        (rc, b"create file")
    } else {
        // SAFETY: as above.
        let rc = unsafe { libc::mkdirat(dirfd, name_c.as_ptr().cast(), 0o755) };
        (rc, b"mkdir")
    };
    let mut existed = false;
    if rc < 0 {
        let e = errno();
        if e != libc::EEXIST {
            return Err(ResolveError::new(e, what));
        }
        existed = true;
    }
    match openat2(root, path, libc::O_PATH, resolve) {
        Ok(fd) => Ok(fd),
        // The name exists yet does not resolve: a dangling symlink. We refuse to guess
        // where inside the rootfs it was meant to point.
        Err(libc::ENOENT) if existed => Err(ResolveError::new(
            libc::ENOENT,
            b"open (a dangling symlink is in the way)",
        )),
        Err(e) => Err(ResolveError::new(e, b"open")),
    }
}

/// `/proc/self/fd/<n>` built on the stack: the path through which we mount onto an fd.
pub struct ProcFdPath {
    buf: [u8; 32],
}

impl ProcFdPath {
    /// Formats `fd` (non-negative) into the path.
    pub fn new(fd: c_int) -> Self {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        tong_sys::write_decimal(&mut buf[PREFIX.len()..], u64::from(fd.unsigned_abs()));
        ProcFdPath { buf }
    }

    /// The path as a C string.
    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A scratch "rootfs" (no root needed: only directories, files and symlinks).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> (Scratch, Fd) {
            let dir =
                std::env::temp_dir().join(format!("tong-resolve-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            let fd = openat2(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
            (Scratch(dir), fd)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn creates_missing_components_inside_the_root() {
        let (s, root) = Scratch::new("create");
        open_in_root(root.raw(), c"/a/b/c", Create::Dir, 0).unwrap();
        assert!(s.0.join("a/b/c").is_dir());
        open_in_root(root.raw(), c"/a/file", Create::File, 0).unwrap();
        assert!(s.0.join("a/file").is_file());
        assert_eq!(
            open_in_root(root.raw(), c"/missing", Create::Nothing, 0)
                .unwrap_err()
                .errno,
            libc::ENOENT
        );
        assert!(!s.0.join("missing").exists());
    }

    #[test]
    fn symlinks_cannot_leave_the_root() {
        let (s, root) = Scratch::new("escape");
        let unique = format!("tong-resolve-escape-{}", std::process::id());
        // An absolute symlink to / and a ../ chain both stay at the scratch root.
        std::os::unix::fs::symlink("/", s.0.join("to-root")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", s.0.join("up")).unwrap();
        let path = std::ffi::CString::new(format!("/to-root/{unique}/x")).unwrap();
        open_in_root(root.raw(), &path, Create::Dir, 0).unwrap();
        assert!(s.0.join(&unique).join("x").is_dir());
        assert!(!Path::new("/").join(&unique).exists());
        let path = std::ffi::CString::new(format!("/up/{unique}/y")).unwrap();
        open_in_root(root.raw(), &path, Create::Dir, 0).unwrap();
        assert!(s.0.join(&unique).join("y").is_dir());

        // A dangling symlink is reported, not followed out or replaced.
        std::os::unix::fs::symlink(format!("/nonexistent-{unique}"), s.0.join("dangling")).unwrap();
        let e = open_in_root(root.raw(), c"/dangling/z", Create::Dir, 0).unwrap_err();
        assert_eq!(e.errno, libc::ENOENT);
        assert!(e.what.starts_with(b"open (a dangling symlink"));

        // proc and sysfs destinations refuse any symlink.
        let e = open_in_root(
            root.raw(),
            c"/to-root",
            Create::Dir,
            libc::RESOLVE_NO_SYMLINKS,
        )
        .unwrap_err();
        assert_eq!(e.errno, libc::ELOOP);
    }

    #[test]
    fn formats_proc_fd_paths() {
        assert_eq!(ProcFdPath::new(0).as_cstr(), c"/proc/self/fd/0");
        assert_eq!(ProcFdPath::new(7).as_cstr(), c"/proc/self/fd/7");
        assert_eq!(ProcFdPath::new(1234).as_cstr(), c"/proc/self/fd/1234");
        assert_eq!(
            ProcFdPath::new(i32::MAX).as_cstr(),
            c"/proc/self/fd/2147483647"
        );
    }
}
