//! `net=none`: the container keeps its new network namespace to itself, with only the
//! loopback interface, brought up. Nothing is made on the host, so teardown has nothing
//! to do: the namespace goes with the container's last process.
//!
//! Run as root, the calling thread enters the namespace just long enough to open a
//! socket. Run by a non-root user ("rootless"), the namespace belongs to the
//! container's user namespace, where the caller has no capability from outside; the
//! user who created that user namespace has all of them inside it, so a short-lived
//! forked helper joins it (which needs a single-threaded process, hence the fork), then
//! the network namespace, and brings `lo` up there.

use std::ffi::{c_int, CStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::unistd::pipe2;
use tong_plugin_sdk::wire::NetworkRequest;
use tong_plugin_sdk::{NetworkPlugin, PluginError, PluginInfo, PluginResult};
use tong_sys::InterfaceStep;

struct NetNone;

impl PluginInfo for NetNone {
    const NAME: &'static CStr = c"none";
    const VERSION: &'static CStr = c"0.1.0";
    const DESCRIPTION: &'static CStr = c"isolated network namespace with loopback only";
    const PRIORITY: u32 = 10;

    fn probe() -> PluginResult<()> {
        Ok(())
    }
}

impl NetworkPlugin for NetNone {
    fn setup(req: &[u8]) -> PluginResult<Vec<u8>> {
        let req: NetworkRequest = serde_json::from_slice(req)?;
        let path = &req.netns_path;
        let netns = File::open(path).map_err(|e| PluginError::os(format!("open {path}"), e))?;
        match socket_in(&netns, path)? {
            Some(socket) => lo_up(socket.as_fd()).map_err(|(step, errno)| step.error("", errno))?,
            // Not ours to enter: configure it from inside its owning user namespace.
            None => loopback_up_as_owner(&netns, path)?,
        }
        Ok(b"{}".to_vec())
    }

    fn teardown(_state: &[u8]) -> PluginResult<()> {
        Ok(())
    }
}

/// Opens a datagram socket inside the network namespace `netns`: the calling thread
/// enters it just for the socket(2) call and returns to its own namespace. None when
/// the caller may not enter it (EPERM: no CAP_SYS_ADMIN over its owning user namespace).
fn socket_in(netns: &File, path: &str) -> PluginResult<Option<OwnedFd>> {
    let own = File::open("/proc/thread-self/ns/net")
        .map_err(|e| PluginError::os("open /proc/thread-self/ns/net", e))?;
    match setns(netns, CloneFlags::CLONE_NEWNET) {
        Ok(()) => {}
        Err(Errno::EPERM) => return Ok(None),
        Err(e) => return Err(PluginError::os(format!("setns into {path}"), e)),
    }
    let socket = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    );
    setns(own, CloneFlags::CLONE_NEWNET)
        .map_err(|e| PluginError::os("setns back to the runtime's network namespace", e))?;
    let socket = socket.map_err(|e| PluginError::os(format!("socket in {path}"), e))?;
    Ok(Some(socket))
}

/// The steps of bringing `lo` up, named in errors; the helper reports one by number.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    EnterUserNs = 1,
    EnterNetNs = 2,
    Socket = 3,
    GetFlags = 4,
    SetFlags = 5,
}

impl Step {
    const ALL: [Step; 5] = [
        Step::EnterUserNs,
        Step::EnterNetNs,
        Step::Socket,
        Step::GetFlags,
        Step::SetFlags,
    ];

    fn what(self) -> &'static str {
        match self {
            Step::EnterUserNs => "setns into the container's user namespace",
            Step::EnterNetNs => "setns into the container's network namespace",
            Step::Socket => "socket in the container's network namespace",
            Step::GetFlags => "SIOCGIFFLAGS lo",
            Step::SetFlags => "SIOCSIFFLAGS lo up",
        }
    }

    fn error(self, prefix: &str, errno: c_int) -> PluginError {
        PluginError::os(
            format_args!("{prefix}{}", self.what()),
            io::Error::from_raw_os_error(errno),
        )
    }
}

/// Sets IFF_UP on `lo` in the network namespace of `socket`. Allocates nothing: the
/// rootless helper runs it after fork (which is also why it is not a netlink request).
fn lo_up(socket: BorrowedFd<'_>) -> Result<(), (Step, c_int)> {
    tong_sys::interface_up(socket, c"lo").map_err(|(step, errno)| match step {
        InterfaceStep::GetFlags => (Step::GetFlags, errno),
        InterfaceStep::SetFlags => (Step::SetFlags, errno),
    })
}

/// What the helper writes back: the failed step (0: none) and its errno.
const REPORT_LEN: usize = 8;

/// Brings `lo` up in `netns` from a forked helper that first joins the user namespace
/// owning it, for a caller that may not enter the namespace itself (rootless).
fn loopback_up_as_owner(netns: &File, path: &str) -> PluginResult<()> {
    let Some(userns) = foreign_owner(netns)? else {
        return Err(PluginError::os(
            format!("setns into {path} (the runtime lacks CAP_SYS_ADMIN over it)"),
            io::Error::from(Errno::EPERM),
        ));
    };
    loopback_up_from_helper(&userns, netns)
}

/// Forks the helper that joins `userns`, then `netns`, and brings `lo` up there.
fn loopback_up_from_helper(userns: &File, netns: &File) -> PluginResult<()> {
    // Everything the helper needs is made here: after fork in a possibly multithreaded
    // caller it may only make system calls that allocate nothing.
    let (rd, wr) = pipe2(OFlag::O_CLOEXEC).map_err(|e| PluginError::os("pipe2", e))?;
    // SAFETY: the child runs `helper` only, which makes system calls on memory it owns,
    // allocates nothing and _exits.
    let pid = unsafe { tong_sys::fork() };
    if pid == 0 {
        // SAFETY: we are the freshly forked child, with our own copies of the fds.
        unsafe { helper(userns.as_fd(), netns.as_fd(), wr.as_fd()) }
    }
    if pid < 0 {
        return Err(PluginError::os(
            "fork of the helper that brings lo up in the container's user namespace",
            io::Error::last_os_error(),
        ));
    }
    drop(wr);
    let mut report = [0u8; REPORT_LEN];
    let got = tong_sys::read_full(rd.as_fd(), &mut report);
    tong_sys::reap(pid as c_int);
    let prefix = "bringing lo up from a helper in the container's user namespace: ";
    if got != REPORT_LEN {
        return Err(PluginError::failed(format!(
            "{prefix}the helper died before reporting"
        )));
    }
    let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
    let errno = c_int::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    match Step::ALL.into_iter().find(|s| *s as u32 == step) {
        None if step == 0 => Ok(()),
        None => Err(PluginError::failed(format!(
            "{prefix}malformed report (step {step})"
        ))),
        Some(step) => Err(step.error(prefix, errno)),
    }
}

/// The user namespace owning `netns`, when it is not the caller's own.
fn foreign_owner(netns: &File) -> PluginResult<Option<File>> {
    let owner = owning_user_namespace(netns).map_err(|e| {
        PluginError::os(
            "NS_GET_USERNS: the user namespace owning the container's network namespace",
            e,
        )
    })?;
    let theirs = owner
        .metadata()
        .map_err(|e| PluginError::os("fstat of the container's user namespace", e))?;
    let ours = std::fs::metadata("/proc/self/ns/user")
        .map_err(|e| PluginError::os("stat /proc/self/ns/user", e))?;
    let same = (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino());
    Ok((!same).then_some(owner))
}

/// The user namespace owning the namespace `ns` (NS_GET_USERNS). A raw ioctl: neither
/// nix nor rustix wraps it.
fn owning_user_namespace(ns: &File) -> io::Result<File> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new (close-on-exec) fd or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_USERNS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The helper: joins the user namespace, then the network namespace, brings lo up,
/// reports and exits. No allocation, no locks: system calls on prepared descriptors.
///
/// # Safety
/// Only in the freshly forked child.
unsafe fn helper(userns: BorrowedFd<'_>, netns: BorrowedFd<'_>, wr: BorrowedFd<'_>) -> ! {
    let result = (|| {
        // We are single-threaded and share no fs struct, as joining a user namespace
        // requires; then we hold all capabilities over the network namespace's owner.
        setns(userns, CloneFlags::CLONE_NEWUSER).map_err(|e| (Step::EnterUserNs, e as c_int))?;
        setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| (Step::EnterNetNs, e as c_int))?;
        let socket = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| (Step::Socket, e as c_int))?;
        lo_up(socket.as_fd())
    })();
    let (step, errno) = match result {
        Ok(()) => (0, 0),
        Err((step, errno)) => (step as u32, errno),
    };
    let mut report = [0u8; REPORT_LEN];
    report[..4].copy_from_slice(&step.to_ne_bytes());
    report[4..].copy_from_slice(&errno.to_ne_bytes());
    // A pipe write this small is atomic.
    tong_sys::write_all(wr, &report);
    // SAFETY: exit without running any of the parent's cleanup.
    unsafe { libc::_exit(i32::from(step != 0)) }
}

tong_plugin_sdk::export_network_plugin!(NetNone);

#[cfg(test)]
mod tests {
    //! Real namespaces (root only): one made by root, one owned by a user namespace of
    //! an unprivileged user, as a rootless container's is.

    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    fn root_or_skip(test: &str) -> bool {
        tong_testkit::require_root(test, "network namespaces")
            && ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/nsenter"]
                .into_iter()
                .all(|tool| tong_testkit::require_tool(test, &[tool], "util-linux").is_some())
    }

    /// A `sleep` in a new network namespace (and a user namespace of uid 65534 when
    /// `as_nobody`), killed and reaped on drop.
    struct NetNs {
        child: Child,
        path: String,
    }

    impl NetNs {
        fn new(as_nobody: bool) -> NetNs {
            let mut cmd = if as_nobody {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .args(["unshare", "--user", "--map-root-user", "--net"]);
                c
            } else {
                let mut c = Command::new("unshare");
                c.arg("--net");
                c
            };
            let child = cmd.args(["sleep", "60"]).spawn().unwrap();
            let path = format!("/proc/{}/ns/net", child.id());
            let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
            let started = Instant::now();
            // Until unshare has made the namespace and exec'd sleep.
            while std::fs::read_link(&path).ok().as_ref() == Some(&ours)
                || std::fs::read_to_string(format!("/proc/{}/comm", child.id()))
                    .is_ok_and(|c| c.trim() != "sleep")
            {
                assert!(started.elapsed() < Duration::from_secs(5), "unshare hung");
                std::thread::sleep(Duration::from_millis(10));
            }
            NetNs { child, path }
        }

        /// `ip -o link show lo` seen from inside.
        fn lo(&self) -> String {
            let out = Command::new("nsenter")
                .args(["--target", &self.child.id().to_string(), "--net"])
                .args(["ip", "-o", "link", "show", "lo"])
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        fn setup(&self) -> PluginResult<Vec<u8>> {
            let req = NetworkRequest {
                id: "t".into(),
                state_dir: "/nonexistent".into(),
                pid: self.child.id() as i32,
                netns_path: self.path.clone(),
                annotations: std::collections::BTreeMap::new(),
            };
            NetNone::setup(&serde_json::to_vec(&req).unwrap())
        }
    }

    impl Drop for NetNs {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn root_brings_lo_up_in_its_own_namespace() {
        if !root_or_skip("root_brings_lo_up_in_its_own_namespace") {
            return;
        }
        let ns = NetNs::new(false);
        assert!(!ns.lo().contains(",UP"), "{}", ns.lo());
        let netns = File::open(&ns.path).unwrap();
        assert!(
            foreign_owner(&netns).unwrap().is_none(),
            "owned by our user namespace"
        );
        assert_eq!(ns.setup().unwrap(), b"{}");
        assert!(ns.lo().contains("<LOOPBACK,UP,LOWER_UP>"), "{}", ns.lo());
    }

    #[test]
    fn a_helper_brings_lo_up_in_a_namespace_owned_by_another_user_namespace() {
        if !root_or_skip("a_helper_brings_lo_up_in_a_namespace_owned_by_another_user_namespace") {
            return;
        }
        let ns = NetNs::new(true);
        assert!(!ns.lo().contains(",UP"), "{}", ns.lo());
        let netns = File::open(&ns.path).unwrap();
        let owner = foreign_owner(&netns).unwrap().expect("a foreign owner");
        // The rootless path, from this multithreaded test process.
        loopback_up_from_helper(&owner, &netns).unwrap();
        assert!(ns.lo().contains("<LOOPBACK,UP,LOWER_UP>"), "{}", ns.lo());
    }

    #[test]
    fn a_failing_helper_names_its_step() {
        if !root_or_skip("a_failing_helper_names_its_step") {
            return;
        }
        let ns = NetNs::new(true);
        let netns = File::open(&ns.path).unwrap();
        // A network namespace where the user namespace should be: setns refuses it.
        let err = loopback_up_from_helper(&netns, &netns).unwrap_err();
        assert_eq!(
            err.message,
            "bringing lo up from a helper in the container's user namespace: setns into the container's user namespace: Invalid argument (os error 22)"
        );
        // A user namespace where the network namespace should be.
        let owner = foreign_owner(&netns).unwrap().unwrap();
        let err = loopback_up_from_helper(&owner, &owner).unwrap_err();
        assert_eq!(
            err.message,
            "bringing lo up from a helper in the container's user namespace: setns into the container's network namespace: Invalid argument (os error 22)"
        );
        assert!(!ns.lo().contains(",UP"), "{}", ns.lo());
    }
}
