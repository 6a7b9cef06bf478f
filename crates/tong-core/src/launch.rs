//! The launcher: everything that makes a container's process, shared by create, run and
//! exec (and so by the C API, which calls them).
//!
//! 1. [`PassedFds::copy`] takes copies of the caller's descriptors the process inherits;
//! 2. [`Channel::open`] makes the two pipes of the handshake, the exec stub's memfd and
//!    the child's ends ([`ChildEnds`]), all above the passed descriptors;
//! 3. [`process_context`] builds the [`ChildContext`] (every C string and array the child
//!    needs, so it allocates nothing);
//! 4. [`spawn`] clones it through the namespace plugin, with every signal blocked;
//! 5. the parent drops the child's ends and drives the handshake on its [`Channel`]:
//!    [`Channel::go`], [`Channel::ready`], then [`Channel::start`] (run, exec) or the exec
//!    fifo (create, released by `start`). child.rs is the other side.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::runtime::Process;
use tong_abi::{ChildError, NamespaceJoin, SpawnRequest};

use crate::child::{self, ChildContext};
use crate::cstrings::CStrings;
use crate::error::{Context, Error, Result};
use crate::exec_stub;
use crate::hooks;
use crate::host::Host;
use crate::namespaces::NamespacePlan;
use crate::options::MAX_EXTRA_FDS;
use crate::plugins::NamespaceBackend;
use crate::security::ChildSecurity;
use crate::terminal::{self, Console, ConsoleEnds};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The parent's side of the handshake with a launched child: it sends GO once the host
/// side is ready (cgroup, id maps, network), reads READY (or the child's error), then
/// sends START and reads EOF when the program exec'd (or the error of a failed exec).
pub(crate) struct Channel {
    sync: File,
    report: File,
}

/// The child's ends of a launch, held by the parent until the child has its copies: they
/// must close then, so that EOF on the report pipe means what it should.
pub(crate) struct ChildEnds {
    sync: OwnedFd,
    report: OwnedFd,
    exec_stub: OwnedFd,
}

/// What the child reported.
pub(crate) enum Report {
    Ready,
    Failed(Box<ChildError>),
    Closed,
}

impl Channel {
    /// The pipes of a launch and the exec stub's sealed memfd, the child's ends above
    /// the descriptors it will be passed (it still uses them after moving those in).
    pub(crate) fn open(passed: &PassedFds) -> Result<(Channel, ChildEnds)> {
        let (sync_child, sync_parent) = pipe()?;
        let (report_parent, report_child) = pipe()?;
        let ends = ChildEnds {
            sync: passed.above(sync_child)?,
            report: passed.above(report_child)?,
            exec_stub: passed.above(exec_stub::sealed_memfd()?)?,
        };
        let channel = Channel {
            sync: File::from(sync_parent),
            report: File::from(report_parent),
        };
        Ok((channel, ends))
    }

    /// The parent's ends, which the child closes first.
    pub(crate) fn raw_fds(&self) -> [RawFd; 2] {
        [self.sync.as_raw_fd(), self.report.as_raw_fd()]
    }

    /// Lets the child go on with its setup.
    pub(crate) fn go(&self) -> Result<()> {
        (&self.sync).write_all_bytes(&[child::GO])
    }

    /// Waits until the child is ready to exec; its error if it failed, else `closed`
    /// (what to say when it went away without a word).
    pub(crate) fn ready(&self, closed: impl FnOnce() -> String) -> Result<()> {
        match self.report()? {
            Report::Ready => Ok(()),
            Report::Failed(e) => Err(Error::Container(e.describe())),
            Report::Closed => Err(Error::Container(closed())),
        }
    }

    /// Lets the child exec and waits until it did (the report pipe is close-on-exec),
    /// or returns why it could not.
    pub(crate) fn start(&self) -> Result<()> {
        (&self.sync).write_all_bytes(&[child::START])?;
        match self.report()? {
            Report::Closed => Ok(()),
            Report::Failed(e) => Err(Error::Container(e.describe())),
            Report::Ready => Err(Error::Internal("unexpected second ready report".into())),
        }
    }

    /// Reads the child's next report: READY, a ChildError, or EOF.
    pub(crate) fn report(&self) -> Result<Report> {
        read_report(&self.report)
    }

    /// After a failed step of the parent: the child's own report when it died first
    /// (a namespace it could not join is the cause, not the step that then found it
    /// gone), else `err`.
    pub(crate) fn child_error_or(
        &self,
        host: &dyn Host,
        err: Error,
        pid: i32,
        start: u64,
    ) -> Error {
        if host.is_alive(pid, start) {
            return err;
        }
        // It is dead, so its end of the pipe is closed and this read cannot block.
        match self.report() {
            Ok(Report::Failed(e)) => Error::Container(e.describe()),
            Ok(Report::Closed) => Error::Container(format!(
                "the container process {}during setup",
                how_it_ended(pid)
            )),
            _ => err,
        }
    }
}

impl ChildEnds {
    /// The descriptors the child uses: these ends, `stdio`, the console socket and the
    /// fifo; it closes `close_first` (the channel's ends among them) before anything.
    pub(crate) fn child_fds(
        &self,
        close_first: Vec<RawFd>,
        stdio: [RawFd; 3],
        console: &ConsoleEnds,
        fifo: Option<&OwnedFd>,
    ) -> ChildFds {
        ChildFds {
            close_first,
            sync_fd: self.sync.as_raw_fd(),
            report_fd: self.report.as_raw_fd(),
            fifo_fd: fifo.map_or(-1, AsRawFd::as_raw_fd),
            stdio,
            console_socket: console.child.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            exec_stub: self.exec_stub.as_raw_fd(),
        }
    }
}

pub(crate) fn cstring(what: &str, s: impl Into<Vec<u8>>) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}

/// Creates the child through the namespace plugin, with every signal blocked around the
/// clone so the child starts with none delivered until it has reset their handlers.
pub(crate) fn spawn(
    plugin: NamespaceBackend,
    clone_flags: u64,
    joins: &[(i32, File)],
    clone_target: Option<&OwnedFd>,
    ctx: &ChildContext,
) -> Result<(tong_abi::SpawnResult, Option<OwnedFd>)> {
    let joins: Vec<NamespaceJoin> = joins
        .iter()
        .map(|(nstype, f)| NamespaceJoin {
            fd: f.as_raw_fd(),
            nstype: *nstype,
        })
        .collect();
    let req = SpawnRequest {
        struct_size: std::mem::size_of::<SpawnRequest>(),
        clone_flags,
        join: joins.as_ptr(),
        join_len: joins.len(),
        cgroup_fd: clone_target.map_or(-1, AsRawFd::as_raw_fd),
        child_main: child::child_main,
        child_arg: std::ptr::from_ref(ctx).cast_mut().cast(),
        child_fail: child::child_fail,
    };
    let mask = crate::signals::block_all_signals();
    let spawned = plugin.spawn(&req);
    crate::signals::restore_signal_mask(&mask);
    let spawned = spawned?;
    // SAFETY: on success the plugin hands us ownership of the pidfd (or -1).
    let pidfd = (spawned.pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(spawned.pidfd) });
    Ok((spawned, pidfd))
}

/// Namespace files of a running container that differ from ours, user namespace first:
/// what an exec'd process must join.
pub(crate) fn container_namespaces(pid: i32) -> Result<Vec<(i32, File)>> {
    use std::os::unix::fs::MetadataExt;
    const KINDS: [(&str, i32); 8] = [
        ("user", libc::CLONE_NEWUSER),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("time", 0x80),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut out = Vec::new();
    for (name, flag) in KINDS {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let (Ok(a), Ok(b)) = (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{name}")),
        ) else {
            continue;
        };
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            let file = File::options()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&theirs)
                .context(|| format!("cannot open {theirs}"))?;
            out.push((flag, file));
        }
    }
    Ok(out)
}

/// Checks an OCI process as `exec` and `create` would before any clone (the fuzz
/// targets use it): everything the child needs must be buildable.
pub fn check_process(process: &Process) -> Result<()> {
    let fds = ChildFds {
        close_first: Vec::new(),
        sync_fd: -1,
        report_fd: -1,
        fifo_fd: -1,
        stdio: [-1; 3],
        console_socket: -1,
        exec_stub: -1,
    };
    process_context(process, fds).map(drop)
}

/// The descriptors a child uses or must close.
pub(crate) struct ChildFds {
    close_first: Vec<RawFd>,
    sync_fd: RawFd,
    report_fd: RawFd,
    fifo_fd: RawFd,
    stdio: [RawFd; 3],
    console_socket: RawFd,
    /// The exec stub's sealed memfd (see exec_stub.rs).
    exec_stub: RawFd,
}

/// Close-on-exec copies of the descriptors a container's process gets as 3, 4, ...:
/// the caller's own 3 up to 3 + `inherited` (LISTEN_FDS, --preserve-fds), then
/// `extra_fds`. Sources and targets may overlap (the caller's 4 meant as 3 and its 3 as
/// 4), so every copy sits at or above 3 + their count: the child then dup2s copy i onto
/// 3 + i, from the first to the last, and never overwrites a copy it has yet to move.
/// Copying in the parent also checks each source once, with a clear error, and keeps a
/// descriptor another thread of the caller closes meanwhile.
pub(crate) struct PassedFds {
    copies: Vec<OwnedFd>,
}

impl PassedFds {
    pub(crate) fn copy(inherited: u32, extra: &[RawFd]) -> Result<PassedFds> {
        if extra.len() > MAX_EXTRA_FDS {
            return Err(Error::invalid(format!(
                "extra_fds names {} descriptors; at most {MAX_EXTRA_FDS} can be passed on",
                extra.len()
            )));
        }
        let count = inherited as usize + extra.len();
        let floor = RawFd::try_from(3 + count)
            .map_err(|_| Error::invalid(format!("{count} descriptors to pass on")))?;
        let inherited = (0..inherited as RawFd).map(|i| (3 + i, None));
        let extra = extra.iter().enumerate().map(|(i, &fd)| (fd, Some(i)));
        let mut copies = Vec::new();
        for (target, (fd, index)) in (3..).zip(inherited.chain(extra)) {
            let name = match index {
                Some(i) => format!("extra_fds[{i}] ({fd}, to be descriptor {target})"),
                None => format!("descriptor {fd} (LISTEN_FDS, --preserve-fds)"),
            };
            if fd < 0 {
                return Err(Error::invalid(format!("{name} is negative")));
            }
            // SAFETY: the caller lends its descriptors for the call (see
            // `CreateOptions::extra_fds`); the borrow only lasts for the fcntl, and a number
            // that is not open makes it fail with EBADF, reported below.
            let source = unsafe { BorrowedFd::borrow_raw(fd) };
            match rustix::io::fcntl_dupfd_cloexec(source, floor) {
                Ok(copy) => copies.push(copy),
                Err(rustix::io::Errno::BADF) => {
                    return Err(Error::invalid(format!("{name} is not an open descriptor")));
                }
                Err(e) => {
                    return Err(Error::os(
                        format!("cannot copy {name} to {floor} or above (RLIMIT_NOFILE?)"),
                        e,
                    ));
                }
            }
        }
        Ok(PassedFds { copies })
    }

    /// The copies for the child, in target order.
    pub(crate) fn raw(&self) -> Vec<RawFd> {
        self.copies.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// `fd`, moved at or above the targets when it is among them: the child still uses
    /// it after the passed descriptors are in place.
    pub(crate) fn above(&self, fd: OwnedFd) -> Result<OwnedFd> {
        let floor = 3 + self.copies.len() as RawFd;
        if fd.as_raw_fd() >= floor {
            return Ok(fd);
        }
        // `fd` closes once copied.
        rustix::io::fcntl_dupfd_cloexec(&fd, floor).map_err(|e| {
            Error::os(
                format!(
                    "cannot move descriptor {} to {floor} or above",
                    fd.as_raw_fd()
                ),
                e,
            )
        })
    }
}

/// The console's descriptors when the process wants a terminal.
pub(crate) fn console_for(
    process: &Process,
    console: &Console,
    foreground: bool,
) -> Result<ConsoleEnds> {
    terminal::console_ends(process.terminal().unwrap_or(false), console, foreground)
}

/// Builds everything the child needs to become `process`, so that it allocates nothing.
/// Hostname and rootfs are left to the caller (a new container sets them, exec does not).
pub(crate) fn process_context(process: &Process, fds: ChildFds) -> Result<ChildContext> {
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let program = args.first().cloned().unwrap_or_default();
    if program.is_empty() {
        return Err(Error::invalid("process.args is empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::invalid(format!(
            "process.cwd {} is not an absolute path",
            process.cwd().display()
        )));
    }
    // Named by their own field, before PATH candidates are made from args[0].
    for (what, items) in [("process.args", &args), ("process.env", &env)] {
        if items.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid(format!("{what} contains a NUL byte")));
        }
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let exec_candidates = if program.contains('/') {
        vec![cstring("process.args[0]", program.clone())?]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstring("PATH", format!("{}/{program}", d.trim_end_matches('/'))))
            .collect::<Result<_>>()?
    };
    let user = process.user();
    let strings = |what: &str, items: &[String]| -> Result<CStrings> {
        Ok(CStrings::new(
            items
                .iter()
                .map(|a| cstring(what, a.as_bytes()))
                .collect::<Result<_>>()?,
        ))
    };
    let argv = strings("process.args", &args)?;
    let stub_args = exec_stub::StubArgs::new(
        fds.exec_stub,
        fds.report_fd,
        &exec_candidates,
        argv.pointers(),
    );
    Ok(ChildContext {
        close_first: fds.close_first,
        sync_fd: fds.sync_fd,
        report_fd: fds.report_fd,
        fifo_fd: fds.fifo_fd,
        stdio: fds.stdio,
        hostname: None,
        domainname: None,
        rootfs: None,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        set_groups: true,
        umask: user.umask(),
        cwd: cstring("process.cwd", process.cwd().as_os_str().as_bytes())?,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        argv,
        envp: strings("process.env", &env)?,
        exec_candidates,
        program: cstring("process.args[0]", program)?,
        exec_stub: fds.exec_stub,
        stub_args,
        dumpable_until_go: false,
        pass_fds: Vec::new(),
        console_socket: fds.console_socket,
        init: false,
        start_hooks: hooks::StartHooks::default(),
        security: ChildSecurity::default(),
        user_namespace_root: false,
        unshare_cgroup: false,
    })
}

/// The hostname or domainname to set, refused without a uts namespace.
pub(crate) fn uts_name(
    what: &str,
    value: Option<&String>,
    namespaces: &NamespacePlan,
) -> Result<Option<CString>> {
    match value {
        Some(v) if namespaces.has(libc::CLONE_NEWUTS) => Ok(Some(cstring(what, v.as_bytes())?)),
        Some(_) => Err(Error::invalid(format!(
            "{what} is set but the config has no uts namespace"
        ))),
        None => Ok(None),
    }
}

pub(crate) fn open_joins(ns: &NamespacePlan) -> Result<Vec<(i32, File)>> {
    ns.join
        .iter()
        .map(|(nstype, path)| {
            let file = File::options()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| {
                    Error::invalid(format!("cannot open namespace {}: {e}", path.display()))
                })?;
            Ok((*nstype, file))
        })
        .collect()
}

/// The process with LISTEN_FDS and LISTEN_PID=1 set for the socket-activation
/// descriptors passed on (replacing any it had).
pub(crate) fn with_listen_fds(process: &Process, count: u32) -> Process {
    let mut process = process.clone();
    let mut env: Vec<String> = process
        .env()
        .iter()
        .flatten()
        .filter(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="))
        .cloned()
        .collect();
    env.push(format!("LISTEN_FDS={count}"));
    env.push("LISTEN_PID=1".to_string());
    process.set_env(Some(env));
    process
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "pipe2".to_string())
}

pub(crate) fn make_fifo(path: &Path) -> Result<File> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .context(|| format!("mkfifo {}", path.display()))?;
    // Read-write so the open never blocks; the child keeps it and blocks on read.
    File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .context(|| format!("open {}", path.display()))
}

/// "was killed by SIGKILL " or "exited with status 1 " for a child of ours that closed
/// its report pipe without a word; empty when it is not our child.
pub(crate) fn how_it_ended(pid: i32) -> String {
    use rustix::process::{waitpid, Pid, WaitOptions};
    let Some(target) = Pid::from_raw(pid) else {
        return "exited ".into();
    };
    // Blocks only briefly: the container's init no longer talks to us (it closed the
    // report pipe: it is exiting). __WALL: its exit signal may not be SIGCHLD. ECHILD
    // when it is not our child.
    let all = WaitOptions::from_bits_retain(libc::__WALL as u32);
    let status = match waitpid(Some(target), all) {
        Ok(Some((reaped, status))) if reaped == target => status,
        _ => return "exited ".into(),
    };
    if let Some(sig) = status.terminating_signal() {
        let name = nix::sys::signal::Signal::try_from(sig).map_or("?", |s| s.as_str());
        format!("was killed by {name} ")
    } else {
        format!(
            "exited with status {} ",
            status.exit_status().unwrap_or_default()
        )
    }
}

/// Writes `pid` to `path` (through a temporary file and a rename: readers never see
/// half of it).
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("tong-tmp");
    std::fs::write(&tmp, pid.to_string())
        .context(|| format!("cannot write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context(|| format!("cannot write pid file {}", path.display()))
}

/// Reads the child's next report: READY, a ChildError, or EOF.
fn read_report(mut file: &File) -> Result<Report> {
    let mut buf = [0u8; std::mem::size_of::<ChildError>()];
    let mut got = 0;
    loop {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == 1 && buf[0] == child::READY {
                    return Ok(Report::Ready);
                }
                if got == buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::os("reading the container's report", e)),
        }
    }
    match got {
        0 => Ok(Report::Closed),
        _ => ChildError::from_bytes(&buf[..got])
            .map(|e| Report::Failed(Box::new(e)))
            .ok_or_else(|| {
                Error::Container(format!(
                    "the container process sent a malformed report ({got} bytes)"
                ))
            }),
    }
}

/// `write_all` that names the failure.
pub(crate) trait WriteAllBytes {
    fn write_all_bytes(self, data: &[u8]) -> Result<()>;
}

impl WriteAllBytes for &File {
    fn write_all_bytes(mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        self.write_all(data)
            .context(|| "cannot reach the container process".to_string())
    }
}

#[cfg(test)]
mod tests {
    //! The parent's side of the launch without root: the handshake over real pipes with a
    //! thread playing the child, the descriptor copies, and the context checks.

    use super::*;
    use std::io::Write;

    /// A channel and the child's ends of its two pipes (sync to read, report to write).
    fn channel() -> (Channel, File, File) {
        let (sync_child, sync_parent) = pipe().unwrap();
        let (report_parent, report_child) = pipe().unwrap();
        let channel = Channel {
            sync: File::from(sync_parent),
            report: File::from(report_parent),
        };
        (channel, File::from(sync_child), File::from(report_child))
    }

    fn read_byte(mut f: &File) -> u8 {
        let mut b = [0u8];
        f.read_exact(&mut b).unwrap();
        b[0]
    }

    fn child_error(text: &str) -> ChildError {
        let mut e = ChildError::default();
        e.set(libc::ENOENT, &[text.as_bytes()]);
        e
    }

    #[test]
    fn handshake_go_ready_start_exec() {
        let (channel, sync, report) = channel();
        let child = std::thread::spawn(move || {
            assert_eq!(read_byte(&sync), child::GO);
            (&report).write_all(&[child::READY]).unwrap();
            assert_eq!(read_byte(&sync), child::START);
            // exec closes the close-on-exec report pipe: EOF.
            drop(report);
        });
        channel.go().unwrap();
        channel.ready(|| "gone".into()).unwrap();
        channel.start().unwrap();
        child.join().unwrap();
    }

    #[test]
    fn a_failure_before_ready_is_the_childs_error() {
        let (channel, sync, report) = channel();
        let child = std::thread::spawn(move || {
            assert_eq!(read_byte(&sync), child::GO);
            let e = child_error("mount /proc");
            (&report).write_all(e.as_bytes()).unwrap();
        });
        channel.go().unwrap();
        let err = channel.ready(|| "gone".into()).unwrap_err();
        child.join().unwrap();
        assert!(matches!(err, Error::Container(_)), "{err:?}");
        assert!(err.to_string().contains("mount /proc"), "{err}");
    }

    #[test]
    fn a_failed_exec_after_start_is_the_childs_error() {
        let (channel, sync, report) = channel();
        let child = std::thread::spawn(move || {
            assert_eq!(read_byte(&sync), child::START);
            let e = child_error("exec /bin/nothing");
            (&report).write_all(e.as_bytes()).unwrap();
        });
        let err = channel.start().unwrap_err();
        child.join().unwrap();
        assert!(err.to_string().contains("exec /bin/nothing"), "{err}");
    }

    #[test]
    fn a_child_gone_without_a_word_says_so() {
        let (channel, sync, report) = channel();
        drop((sync, report));
        let err = channel
            .ready(|| "it exited during setup".into())
            .unwrap_err();
        assert_eq!(err.to_string(), "it exited during setup");
        // GO to a child that is gone is an error naming it, not a SIGPIPE death (Rust
        // ignores SIGPIPE).
        let err = channel.go().unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot reach the container process"),
            "{err}"
        );
    }

    #[test]
    fn a_short_report_is_malformed() {
        let (channel, _sync, report) = channel();
        (&report).write_all(b"xyz").unwrap();
        drop(report);
        let err = channel.ready(|| "gone".into()).unwrap_err();
        assert!(
            err.to_string().contains("malformed report (3 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn a_second_ready_after_start_is_an_internal_error() {
        let (channel, _sync, report) = channel();
        (&report).write_all(&[child::READY]).unwrap();
        let err = channel.start().unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
    }

    #[test]
    fn after_a_failed_step_a_dead_childs_report_is_the_cause() {
        use crate::host::fake::FakeHost;
        let host = FakeHost::default();
        let ours = || Error::Internal("adding to the cgroup".into());
        // Pid 1 is never a child of ours: how it ended is unknown ("exited").
        let (said_why, _sync, report) = channel();
        host.start(1, 5);
        let err = said_why.child_error_or(&host, ours(), 1, 5);
        assert!(
            matches!(err, Error::Internal(_)),
            "alive: our error, got {err:?}"
        );
        // Dead, after saying why.
        (&report)
            .write_all(child_error("setns user").as_bytes())
            .unwrap();
        drop(report);
        let err = said_why.child_error_or(&host, ours(), 1, 6);
        assert!(err.to_string().contains("setns user"), "{err}");
        // Dead without a word.
        let (silent, _sync, report) = channel();
        drop(report);
        let err = silent.child_error_or(&host, ours(), 1, 6);
        assert_eq!(err.to_string(), "the container process exited during setup");
    }

    #[test]
    fn how_a_reaped_or_foreign_process_ended_is_unknown() {
        assert_eq!(how_it_ended(1), "exited ");
        assert_eq!(how_it_ended(0), "exited ");
    }

    #[test]
    #[allow(clippy::zombie_processes, reason = "how_it_ended reaps them")]
    fn how_our_child_ended_is_read_from_its_status() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        assert_eq!(how_it_ended(child.id() as i32), "exited with status 3 ");
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        child.kill().unwrap();
        assert_eq!(how_it_ended(child.id() as i32), "was killed by SIGKILL ");
    }

    #[test]
    fn passed_descriptors_are_checked_and_copied_above_their_targets() {
        let err = PassedFds::copy(0, &[-1]).err().unwrap();
        assert!(err.to_string().contains("extra_fds[0] (-1"), "{err}");
        // A descriptor number nobody has open (the file closes at the end of the block).
        let closed = {
            let file = File::open("/dev/null").unwrap();
            file.as_raw_fd()
        };
        let err = PassedFds::copy(0, &[closed]).err().unwrap();
        assert!(
            err.to_string().contains("is not an open descriptor"),
            "{err}"
        );
        let too_many = vec![0; MAX_EXTRA_FDS + 1];
        assert!(PassedFds::copy(0, &too_many).is_err());

        let a = File::open("/dev/null").unwrap();
        let b = File::open("/dev/null").unwrap();
        let passed = PassedFds::copy(0, &[a.as_raw_fd(), b.as_raw_fd()]).unwrap();
        assert_eq!(passed.raw().len(), 2);
        assert!(passed.raw().iter().all(|&fd| fd >= 5));
        // The channel's ends sit above the targets 3 and 4 too.
        let (channel, ends) = Channel::open(&passed).unwrap();
        let console = ConsoleEnds::default();
        let fds = ends.child_fds(channel.raw_fds().to_vec(), [-1; 3], &console, None);
        for fd in [fds.sync_fd, fds.report_fd, fds.exec_stub] {
            assert!(fd >= 5, "child end {fd} among the passed targets");
        }
        assert_eq!(fds.close_first, channel.raw_fds().to_vec());
        assert_eq!(fds.fifo_fd, -1);
    }

    #[test]
    fn the_context_refuses_what_the_child_could_not_run() {
        let process = |json: &str| -> Process { serde_json::from_str(json).unwrap() };
        let err = check_process(&process(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":[]}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("process.args is empty"), "{err}");
        let err = check_process(&process(
            r#"{"user":{"uid":0,"gid":0},"cwd":"tmp","args":["sh"]}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("not an absolute path"), "{err}");
        let err = check_process(&process(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["sh"],"env":["A=\u0000"]}"#,
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("process.env contains a NUL byte"),
            "{err}"
        );
        check_process(&process(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["sh"],"env":["PATH=/a:/b/"]}"#,
        ))
        .unwrap();
    }

    #[test]
    fn listen_fds_replace_those_of_the_config() {
        let process: Process = serde_json::from_str(
            r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["sh"],"env":["LISTEN_FDS=9","KEEP=1","LISTEN_PID=7"]}"#,
        )
        .unwrap();
        let env = with_listen_fds(&process, 2).env().clone().unwrap();
        assert_eq!(env, ["KEEP=1", "LISTEN_FDS=2", "LISTEN_PID=1"]);
    }
}
