//! `tmpcopyup`, in the child: copies what a directory held into the tmpfs just mounted
//! over it. No allocation, no locks: raw `*at` calls and stack buffers.
//!
//! The source is read through a directory fd opened before the mount (it still reaches
//! the covered directory). Every call names one entry inside an open directory fd and
//! never follows a symlink (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`): a symlink in the image
//! is copied as a symlink, so a planted `x -> /` or `x -> ../../..` cannot make tong
//! read or write anything outside the rootfs. Directories, regular files (data, mode,
//! owner, times), symlinks and special files are copied; device nodes that may not be
//! made (a user namespace) are skipped, as are ids the namespace does not map (the copy
//! keeps the creator's). Hard links become separate files.

use std::ffi::{c_int, CStr};
use std::mem::MaybeUninit;

use tong_abi::ChildError;

use crate::resolve::{errno, Fd, PATH_MAX};
use crate::steps::CopyUp;

/// Deepest nesting of directories copied below the mount point. Each level holds two
/// directory fds and a small buffer on the stack, so the bound keeps both in check.
pub const MAX_DEPTH: usize = 64;

const TOO_DEEP: &[u8] = b"more than 64 directory levels below the mount point at";
const _: () = assert!(MAX_DEPTH == 64, "TOO_DEEP names MAX_DEPTH");

/// getdents64 buffer of each level: several entries even with 255-byte names.
const DIRENT_BUF: usize = 2048;

/// Offsets in `struct linux_dirent64`: `d_ino` (8), `d_off` (8), `d_reclen` (2),
/// `d_type` (1), then the NUL-terminated name.
const DIRENT_RECLEN: usize = 16;
const DIRENT_NAME: usize = 19;

type Step = Result<(), ()>;

/// Opens the directory `target` (an `O_PATH` fd) for reading, before the tmpfs covers it.
pub fn open_dir(target: &Fd) -> Result<Fd, c_int> {
    // SAFETY: a NUL-terminated literal name relative to an open fd; result checked.
    let fd = unsafe {
        libc::openat(
            target.raw(),
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(Fd::from_raw(fd))
    }
}

/// Copies the contents of `src` into `dst` (the new tmpfs's root), then gives the root
/// the source directory's times, and its mode and owner as `how` says. `dest` is the
/// mount destination, for messages.
pub fn copy(src: &Fd, dst: &Fd, dest: &CStr, how: CopyUp, err: &mut ChildError) -> Step {
    let mut c = Copier {
        dest,
        rel: [0; PATH_MAX],
        rel_len: 0,
        err,
    };
    c.copy_dir(src.raw(), dst.raw(), 0)?;
    let st = match fstat(src.raw()) {
        Ok(st) => st,
        Err(e) => return c.fail(e, b"stat"),
    };
    if how.root_owner {
        c.check(chown_fd(dst.raw(), &st), b"chown the copy of")?;
    }
    if how.root_mode {
        // SAFETY: fchmod on an open fd.
        let rc = unsafe { libc::fchmod(dst.raw(), st.st_mode & 0o7777) };
        c.check(rc_to(rc), b"chmod the copy of")?;
    }
    c.check(
        set_times_fd(dst.raw(), &st),
        b"set the times of the copy of",
    )
}

/// The walk: the mount destination and the path below it of the entry at hand.
struct Copier<'a> {
    dest: &'a CStr,
    /// Path of the current entry relative to `dest` (truncated when too long: it only
    /// serves messages; every call works on one name in a directory fd).
    rel: [u8; PATH_MAX],
    rel_len: usize,
    err: &'a mut ChildError,
}

impl Copier<'_> {
    /// Records "tmpcopyup on DEST: WHAT DEST/REL" with `errno` (0: no errno text).
    fn fail(&mut self, errno: c_int, what: &[u8]) -> Step {
        let slash: &[u8] = if self.rel_len > 0 { b"/" } else { b"" };
        self.err.set(
            errno,
            &[
                b"tmpcopyup on ",
                self.dest.to_bytes(),
                b": ",
                what,
                b" ",
                self.dest.to_bytes(),
                slash,
                &self.rel[..self.rel_len],
            ],
        );
        Err(())
    }

    fn check(&mut self, r: Result<(), c_int>, what: &[u8]) -> Step {
        match r {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e, what),
        }
    }

    fn checked(&mut self, r: Result<(), Failed>) -> Step {
        match r {
            Ok(()) => Ok(()),
            Err((e, what)) => self.fail(e, what),
        }
    }

    /// Appends `/name` to the message path; returns the length to restore.
    fn push(&mut self, name: &[u8]) -> usize {
        let saved = self.rel_len;
        for part in [if saved > 0 { &b"/"[..] } else { b"" }, name] {
            let n = part.len().min(self.rel.len() - self.rel_len);
            self.rel[self.rel_len..self.rel_len + n].copy_from_slice(&part[..n]);
            self.rel_len += n;
        }
        saved
    }

    /// Copies every entry of the directory `src` into the directory `dst`; `depth` is
    /// how far below the mount point `src` is.
    fn copy_dir(&mut self, src: c_int, dst: c_int, depth: usize) -> Step {
        let mut buf = [0u8; DIRENT_BUF];
        loop {
            // SAFETY: buf is writable for its length; src is an open directory fd.
            let n =
                unsafe { libc::syscall(libc::SYS_getdents64, src, buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return self.fail(errno(), b"read the directory");
            }
            if n == 0 {
                return Ok(());
            }
            let n = n as usize;
            let mut pos = 0;
            while pos + DIRENT_NAME < n {
                let reclen =
                    u16::from_ne_bytes([buf[pos + DIRENT_RECLEN], buf[pos + DIRENT_RECLEN + 1]])
                        as usize;
                if reclen <= DIRENT_NAME || pos + reclen > n {
                    return self.fail(libc::EIO, b"parse the directory");
                }
                let record = &buf[pos + DIRENT_NAME..pos + reclen];
                pos += reclen;
                let Ok(name) = CStr::from_bytes_until_nul(record) else {
                    return self.fail(libc::EIO, b"parse the directory");
                };
                if name == c"." || name == c".." {
                    continue;
                }
                let saved = self.push(name.to_bytes());
                let r = self.copy_entry(src, dst, name, depth);
                self.rel_len = saved;
                r?;
            }
        }
    }

    fn copy_entry(&mut self, src: c_int, dst: c_int, name: &CStr, depth: usize) -> Step {
        let st = match fstatat(src, name) {
            Ok(st) => st,
            Err(e) => return self.fail(e, b"stat"),
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => self.copy_subdir(src, dst, name, &st, depth + 1),
            libc::S_IFREG => self.checked(copy_file(src, dst, name, &st)),
            libc::S_IFLNK => self.checked(copy_symlink(src, dst, name, &st)),
            _ => self.checked(copy_node(dst, name, &st)),
        }
    }

    /// `depth`: how far below the mount point the new directory is.
    fn copy_subdir(
        &mut self,
        src: c_int,
        dst: c_int,
        name: &CStr,
        st: &libc::stat,
        depth: usize,
    ) -> Step {
        if depth > MAX_DEPTH {
            return self.fail(0, TOO_DEEP);
        }
        // SAFETY: name is NUL-terminated; dst is an open directory fd.
        let rc = unsafe { libc::mkdirat(dst, name.as_ptr(), 0o700) };
        self.check(rc_to(rc), b"mkdir")?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let s = match openat(src, name, flags, 0) {
            Ok(fd) => fd,
            Err(e) => return self.fail(e, b"open"),
        };
        let d = match openat(dst, name, flags, 0) {
            Ok(fd) => fd,
            Err(e) => return self.fail(e, b"open the copy of"),
        };
        self.copy_dir(s.raw(), d.raw(), depth)?;
        // Owner, mode and times last: the entries just made changed the times, and a
        // read-only mode must not stop them from being made.
        self.checked(finish_fd(d.raw(), st))
    }
}

fn rc_to(rc: c_int) -> Result<(), c_int> {
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// A failed step: the errno and what was being done.
type Failed = (c_int, &'static [u8]);

fn step(rc: c_int, what: &'static [u8]) -> Result<(), Failed> {
    rc_to(rc).map_err(|e| (e, what))
}

fn openat(dir: c_int, name: &CStr, flags: c_int, mode: libc::mode_t) -> Result<Fd, c_int> {
    // SAFETY: name is NUL-terminated; dir is an open directory fd; result checked.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, mode) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(Fd::from_raw(fd))
    }
}

fn fstat(fd: c_int) -> Result<libc::stat, c_int> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is writable storage for one stat; fd is open.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: fstat succeeded and filled st.
    Ok(unsafe { st.assume_init() })
}

/// lstat of one entry of `dir`.
fn fstatat(dir: c_int, name: &CStr) -> Result<libc::stat, c_int> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: name is NUL-terminated, st is writable storage for one stat, dir is open.
    let rc = unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(errno());
    }
    // SAFETY: fstatat succeeded and filled st.
    Ok(unsafe { st.assume_init() })
}

/// The source's access and modification times, for futimens/utimensat.
fn times(st: &libc::stat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

/// A chown result, where EINVAL (an id this user namespace does not map) keeps the
/// creator's owner, as a copy by the container's root would.
fn chown_ok(rc: c_int) -> Result<(), c_int> {
    match rc_to(rc) {
        Err(libc::EINVAL) => Ok(()),
        r => r,
    }
}

fn chown_fd(fd: c_int, st: &libc::stat) -> Result<(), c_int> {
    // SAFETY: fchown on an open fd.
    chown_ok(unsafe { libc::fchown(fd, st.st_uid, st.st_gid) })
}

fn set_times_fd(fd: c_int, st: &libc::stat) -> Result<(), c_int> {
    let t = times(st);
    // SAFETY: t is two live timespecs; fd is open.
    rc_to(unsafe { libc::futimens(fd, t.as_ptr()) })
}

/// Owner, then mode (a chown clears set-id bits), then times, of a copy open as `fd`.
fn finish_fd(fd: c_int, st: &libc::stat) -> Result<(), Failed> {
    chown_fd(fd, st).map_err(|e| (e, &b"chown"[..]))?;
    // SAFETY: fchmod on an open fd.
    step(unsafe { libc::fchmod(fd, st.st_mode & 0o7777) }, b"chmod")?;
    set_times_fd(fd, st).map_err(|e| (e, &b"set the times of"[..]))
}

/// Owner and times of the entry `name` of `dir` (a symlink or node just made).
fn finish_at(dir: c_int, name: &CStr, st: &libc::stat) -> Result<(), Failed> {
    // SAFETY: name is NUL-terminated; dir is open; the entry itself is changed.
    let rc = unsafe {
        libc::fchownat(
            dir,
            name.as_ptr(),
            st.st_uid,
            st.st_gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    chown_ok(rc).map_err(|e| (e, &b"chown"[..]))?;
    let t = times(st);
    // SAFETY: as above; t is two live timespecs.
    let rc = unsafe { libc::utimensat(dir, name.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    step(rc, b"set the times of")
}

/// A regular file: its data, owner, mode and times.
fn copy_file(src: c_int, dst: c_int, name: &CStr, st: &libc::stat) -> Result<(), Failed> {
    // O_NONBLOCK: should the name have become a FIFO since the stat, open must not hang.
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    let s = openat(src, name, flags | libc::O_CLOEXEC, 0).map_err(|e| (e, &b"open"[..]))?;
    let now = fstat(s.raw()).map_err(|e| (e, &b"stat"[..]))?;
    if now.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err((libc::EAGAIN, b"copy (no longer a regular file)"));
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let d = openat(dst, name, flags, 0o600).map_err(|e| (e, &b"create the copy of"[..]))?;
    copy_data(s.raw(), d.raw()).map_err(|e| (e, &b"copy the data of"[..]))?;
    finish_fd(d.raw(), st)
}

/// Copies a file's data with sendfile(2), or read/write where sendfile cannot.
fn copy_data(src: c_int, dst: c_int) -> Result<(), c_int> {
    let mut copied = false;
    loop {
        // SAFETY: both fds are open; a null offset uses and moves src's file offset.
        let n = unsafe { libc::sendfile(dst, src, std::ptr::null_mut(), 1 << 30) };
        if n > 0 {
            copied = true;
            continue;
        }
        if n == 0 {
            return Ok(());
        }
        match errno() {
            libc::EINTR => {}
            libc::EINVAL | libc::ENOSYS if !copied => return read_write(src, dst),
            e => return Err(e),
        }
    }
}

/// Kept out of line: its buffer must not sit in the recursion's frames.
#[inline(never)]
fn read_write(src: c_int, dst: c_int) -> Result<(), c_int> {
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf is writable for its length; src is open.
        let n = unsafe { libc::read(src, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(errno());
        }
        if n == 0 {
            return Ok(());
        }
        let mut data = &buf[..n as usize];
        while !data.is_empty() {
            // SAFETY: data is a live buffer of data.len() bytes; dst is open.
            let w = unsafe { libc::write(dst, data.as_ptr().cast(), data.len()) };
            if w < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err(errno());
            }
            data = &data[w as usize..];
        }
    }
}

/// A symlink, copied as is (never followed), with its owner and times. Kept out of line:
/// its PATH_MAX buffer must not sit in the recursion's frames.
#[inline(never)]
fn copy_symlink(src: c_int, dst: c_int, name: &CStr, st: &libc::stat) -> Result<(), Failed> {
    let mut target = [0u8; PATH_MAX];
    // SAFETY: name is NUL-terminated; target is writable for the length passed.
    let n = unsafe {
        libc::readlinkat(
            src,
            name.as_ptr(),
            target.as_mut_ptr().cast(),
            target.len() - 1,
        )
    };
    if n < 0 {
        return Err((errno(), b"read the link"));
    }
    let n = n as usize;
    if n >= target.len() - 1 {
        return Err((libc::ENAMETOOLONG, b"read the link"));
    }
    target[n] = 0;
    // SAFETY: target is NUL-terminated (just written), name too; dst is open.
    let rc = unsafe { libc::symlinkat(target.as_ptr().cast(), dst, name.as_ptr()) };
    step(rc, b"symlink")?;
    finish_at(dst, name, st)
}

/// A FIFO, socket or device node. Where mknod is not allowed (device nodes in a user
/// namespace), the entry is skipped.
fn copy_node(dst: c_int, name: &CStr, st: &libc::stat) -> Result<(), Failed> {
    let kind = st.st_mode & libc::S_IFMT;
    // SAFETY: name is NUL-terminated; dst is open.
    let rc = unsafe { libc::mknodat(dst, name.as_ptr(), kind | 0o600, st.st_rdev) };
    match rc_to(rc) {
        Ok(()) => {}
        Err(libc::EPERM) => return Ok(()),
        Err(e) => return Err((e, b"mknod")),
    }
    // Owner before mode (a chown clears set-id bits); a chmod leaves the times alone.
    finish_at(dst, name, st)?;
    // SAFETY: as above; the node was just made by us and is not a symlink.
    let rc = unsafe { libc::fchmodat(dst, name.as_ptr(), st.st_mode & 0o7777, 0) };
    step(rc, b"chmod")
}
