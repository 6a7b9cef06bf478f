//! A plugin that misbehaves on demand, for the tests of how tong survives its plugins.
//! The same library is a cgroup plugin when its file is named
//! `libtong_plugin_cgroup_misbehave.so` and a network plugin when named
//! `libtong_plugin_net_misbehave.so`. It makes nothing on the host.
//!
//! `TONG_TEST_MISBEHAVE=OP:HOW[,OP:HOW...]` picks the misbehaviour per operation:
//! OP is `probe`, a cgroup op (`create`, `clone_target`, `add_process`, `update`,
//! `set_frozen`, `stats`, `pids`, `destroy`) or a network op (`setup`, `teardown`);
//! HOW is `panic`, `error`, `badjson` (output that is not JSON) or `hang`.

use std::ffi::{c_void, CStr};
use std::os::fd::OwnedFd;

use tong_abi::{CgroupOps, NetworkOps, PluginDescriptor, PluginKind, ABI_MAJOR};
use tong_plugin_sdk::{
    cgroup_ops, descriptor, network_ops, CgroupPlugin, NetworkPlugin, PluginError, PluginInfo,
    PluginResult,
};

struct Misbehave;

/// Runs the misbehaviour asked for `op`; `Some(bytes)` replaces the op's output.
fn act(op: &str) -> PluginResult<Option<Vec<u8>>> {
    let asked = std::env::var("TONG_TEST_MISBEHAVE").unwrap_or_default();
    let how = asked
        .split(',')
        .filter_map(|item| item.split_once(':'))
        .find(|(o, _)| *o == op)
        .map(|(_, how)| how.to_string());
    match how.as_deref() {
        Some("panic") => panic!("misbehave: {op} panics on purpose"),
        Some("error") => Err(PluginError::failed(format!(
            "misbehave: {op} refused on purpose"
        ))),
        Some("badjson") => Ok(Some(b"{\"half\": [1, 2".to_vec())),
        Some("hang") => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        _ => Ok(None),
    }
}

fn output(op: &str, normal: &[u8]) -> PluginResult<Vec<u8>> {
    Ok(act(op)?.unwrap_or_else(|| normal.to_vec()))
}

impl PluginInfo for Misbehave {
    const NAME: &'static CStr = c"misbehave";
    const VERSION: &'static CStr = c"0.0.0-test";
    const DESCRIPTION: &'static CStr = c"test plugin that misbehaves on demand";
    const PRIORITY: u32 = 0;

    fn probe() -> PluginResult<()> {
        act("probe").map(drop)
    }
}

impl CgroupPlugin for Misbehave {
    fn create(_req: &[u8]) -> PluginResult<Vec<u8>> {
        output("create", b"{\"misbehave\":true}")
    }
    fn clone_target(_state: &[u8]) -> PluginResult<Option<OwnedFd>> {
        act("clone_target").map(|_| None)
    }
    fn add_process(_state: &[u8], _pid: i32) -> PluginResult<()> {
        act("add_process").map(drop)
    }
    fn update(_state: &[u8], _resources: &[u8]) -> PluginResult<()> {
        act("update").map(drop)
    }
    fn set_frozen(_state: &[u8], _frozen: bool) -> PluginResult<()> {
        act("set_frozen").map(drop)
    }
    fn stats(_state: &[u8]) -> PluginResult<Vec<u8>> {
        output("stats", b"{}")
    }
    fn pids(_state: &[u8]) -> PluginResult<Vec<i32>> {
        act("pids").map(|_| Vec::new())
    }
    fn destroy(_state: &[u8]) -> PluginResult<()> {
        act("destroy").map(drop)
    }
}

impl NetworkPlugin for Misbehave {
    fn setup(_req: &[u8]) -> PluginResult<Vec<u8>> {
        output("setup", b"{}")
    }
    fn teardown(_state: &[u8]) -> PluginResult<()> {
        act("teardown").map(drop)
    }
}

static CGROUP_OPS: CgroupOps = cgroup_ops::<Misbehave>();
static CGROUP: PluginDescriptor =
    descriptor::<Misbehave>(PluginKind::Cgroup, std::ptr::addr_of!(CGROUP_OPS).cast());
static NETWORK_OPS: NetworkOps = network_ops::<Misbehave>();
static NETWORK: PluginDescriptor =
    descriptor::<Misbehave>(PluginKind::Network, std::ptr::addr_of!(NETWORK_OPS).cast());

/// The entry point: the cgroup or the network descriptor, by this library's file name.
#[no_mangle]
pub extern "C" fn tong_plugin_entry(host_abi_major: u32) -> *const PluginDescriptor {
    if host_abi_major != ABI_MAJOR {
        return std::ptr::null();
    }
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = tong_plugin_entry as *const c_void;
    // SAFETY: dladdr only reads the address and fills the struct we own.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    // SAFETY: zeroed is a valid Dl_info; dladdr filled it when it returned non-zero.
    let info = unsafe { info.assume_init() };
    if found == 0 || info.dli_fname.is_null() {
        return std::ptr::null();
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the dynamic linker.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    // tong loads a plugin by its open descriptor (`/proc/self/fd/N`, kept open), whose
    // link names the file.
    let file = std::fs::read_link(&*name).map_or(name.to_string(), |p| p.display().to_string());
    if file.contains("_cgroup_") {
        &raw const CGROUP
    } else {
        &raw const NETWORK
    }
}
