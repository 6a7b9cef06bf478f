//! `net=none`: the container keeps its new network namespace to itself, with only the
//! loopback interface, brought up. Nothing is made on the host, so teardown has nothing
//! to do: the namespace goes with the container's last process.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tong_abi::plugin::{NetworkPlugin, PluginError, PluginInfo, PluginResult};
use tong_abi::wire::NetworkRequest;

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
        let socket = socket_in(&req.netns_path)?;
        loopback_up(&socket)?;
        Ok(b"{}".to_vec())
    }

    fn teardown(_state: &[u8]) -> PluginResult<()> {
        Ok(())
    }
}

/// Opens a datagram socket inside the network namespace at `path`: the calling thread
/// enters it just for the socket(2) call and returns to its own namespace.
fn socket_in(path: &str) -> PluginResult<OwnedFd> {
    let target = File::open(path).map_err(|e| PluginError::os(format!("open {path}"), e))?;
    let own = File::open("/proc/thread-self/ns/net")
        .map_err(|e| PluginError::os("open /proc/thread-self/ns/net", e))?;
    // SAFETY: setns on a live namespace fd; affects only this thread.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(PluginError::os(
            format!("setns into {path}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let socket_err = std::io::Error::last_os_error();
    // SAFETY: back to the thread's own namespace from a live fd.
    if unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(PluginError::os(
            "setns back to the runtime's network namespace",
            std::io::Error::last_os_error(),
        ));
    }
    if fd < 0 {
        return Err(PluginError::os(format!("socket in {path}"), socket_err));
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets IFF_UP on `lo` through the socket's namespace.
fn loopback_up(socket: &OwnedFd) -> PluginResult<()> {
    // SAFETY: an all-zero ifreq is valid; the name is copied in below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(PluginError::os(
                "SIOCGIFFLAGS lo",
                std::io::Error::last_os_error(),
            ));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(PluginError::os(
                "SIOCSIFFLAGS lo up",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

tong_abi::export_network_plugin!(NetNone);
