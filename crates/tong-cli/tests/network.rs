//! Network backends end to end: net-bridge and net-cni with real bridges, veth pairs,
//! nftables rules and Debian's CNI plugins. Every test makes a network namespace of its
//! own and runs tong inside it, so the bridge, the veths, the IPAM and the nftables
//! rules live in that throwaway namespace, never on the host; the "host" side of port
//! publishing is that namespace's loopback. After every test nothing is left in it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{
    assert_no_cgroup, config, process_alive, run_with_files, tong_bin, unique_id, wait_until,
    Bundle,
};
use serde_json::{json, Value};

/// Where Debian's containernetworking-plugins (and upstream's) put the CNI plugins.
const CNI_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

fn skip_unless_root(test: &str) -> bool {
    if !common::root_or_skip(test) {
        return false;
    }
    for needed in ["libtong_plugin_net_bridge.so", "libtong_plugin_net_cni.so"] {
        assert!(
            tong_bin().with_file_name(needed).exists(),
            "{needed} is missing: run `cargo build --workspace` before the tests"
        );
    }
    true
}

fn cni_plugin_dir(test: &str) -> Option<&'static str> {
    let dir = CNI_PLUGIN_DIRS.into_iter().find(|d| {
        ["bridge", "host-local", "loopback", "portmap"]
            .iter()
            .all(|p| Path::new(d).join(p).exists())
    });
    if dir.is_none() {
        tong_testkit::skip(
            test,
            "CNI plugins not installed (apt-get install containernetworking-plugins)",
        );
    }
    dir
}

fn nft_or_skip(test: &str) -> bool {
    tong_testkit::require_tool(test, &["/usr/sbin/nft", "/sbin/nft"], "nftables").is_some()
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace of the test's own (`ip netns add`), removed on drop.
struct TestNetns {
    name: String,
    file: File,
}

impl TestNetns {
    fn new() -> TestNetns {
        let name = unique_id("tong-net");
        check(
            run_with_files(Command::new("ip").args(["netns", "add", &name])),
            "ip netns add",
        );
        let file = File::open(format!("/run/netns/{name}")).unwrap();
        let ns = TestNetns { name, file };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `program` to be run inside the namespace (the mount namespace stays the host's,
    /// so tong's state and mounts are where a real host would have them).
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.as_raw_fd();
        // SAFETY: between fork and exec the closure makes one system call on a
        // descriptor the parent keeps open; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run_with_files(self.command(args[0]).args(&args[1..]))
    }

    fn ok(&self, args: &[&str]) -> String {
        check(self.run(args), &format!("{args:?} in the test namespace"))
    }

    /// Interface names in the namespace.
    fn links(&self) -> BTreeSet<String> {
        self.ok(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    fn nft_ruleset(&self) -> String {
        self.ok(&["nft", "list", "ruleset"])
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = run_with_files(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// tong run inside a test namespace, with a private state root. On drop it force-deletes
/// whatever is left, inside the namespace, then the namespace goes.
struct NetTong {
    root: tempfile::TempDir,
    ns: TestNetns,
}

impl NetTong {
    fn new() -> NetTong {
        NetTong {
            root: tempfile::Builder::new()
                .prefix("tong-net-state-")
                .tempdir()
                .unwrap(),
            ns: TestNetns::new(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.ns.command(tong_bin());
        cmd.arg("--root").arg(self.root.path()).args(args);
        run_with_files(&mut cmd)
    }

    fn ok(&self, args: &[&str]) -> String {
        check(self.run(args), &format!("tong {args:?}"))
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "tong {args:?} should fail but succeeded"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    fn annotation(&self, id: &str, key: &str) -> String {
        let state = self.state(id);
        state["annotations"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: no annotation {key} in {state}"))
            .to_string()
    }

    /// Runs a command in the container; returns its stdout.
    fn exec(&self, id: &str, args: &[&str]) -> String {
        let mut all = vec!["exec", id];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    fn container_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for NetTong {
    fn drop(&mut self) {
        for id in self.container_dirs() {
            if id != "-pool" {
                let _ = self.run(&["delete", "--force", &id]);
            }
        }
        let _ = self.run(&["pool", "drain"]);
    }
}

/// A backend as the scenarios see it: what to annotate a container with, the bridge it
/// lands on, its gateway, and where its address bookkeeping lives.
struct Backend {
    annotations: BTreeMap<String, String>,
    bridge: &'static str,
    gateway: &'static str,
    subnet_prefix: &'static str,
    /// CNI: the scratch directory (net.d, host-local data, extra plugins).
    cni: Option<tempfile::TempDir>,
}

impl Backend {
    /// net-bridge with its defaults.
    fn bridge() -> Backend {
        Backend {
            annotations: [("tong.backend.net".to_string(), "bridge".to_string())].into(),
            bridge: "tong0",
            gateway: "10.77.0.1",
            subnet_prefix: "10.77.0.",
            cni: None,
        }
    }

    /// net-cni with Debian's plugins: a loopback network and a bridge network (bridge,
    /// host-local, portmap) written to a private configuration directory.
    fn cni(plugin_dir: &str, extra_plugins: &[Value], extra_bin: &[(&str, &str)]) -> Backend {
        let dir = tempfile::Builder::new()
            .prefix("tong-net-cni-")
            .tempdir()
            .unwrap();
        let net_d = dir.path().join("net.d");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&net_d).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let mut plugins = vec![json!({
            "type": "bridge", "bridge": "tongcni0", "isGateway": true, "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.78.0.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.path().join("ipam"),
            }
        })];
        plugins.extend_from_slice(extra_plugins);
        let list = json!({"cniVersion": "1.0.0", "name": "tongtest", "plugins": plugins});
        std::fs::write(net_d.join("10-tongtest.conflist"), list.to_string()).unwrap();
        let lo = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"});
        std::fs::write(net_d.join("99-loopback.conf"), lo.to_string()).unwrap();
        for (name, script) in extra_bin {
            let path = bin.join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let annotations = [
            ("tong.backend.net", "cni".to_string()),
            ("tong.cni.confdir", net_d.display().to_string()),
            ("tong.cni.networks", "lo,tongtest".to_string()),
            ("tong.cni.path", format!("{}:{plugin_dir}", bin.display())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Backend {
            annotations,
            bridge: "tongcni0",
            gateway: "10.78.0.1",
            subnet_prefix: "10.78.0.",
            cni: Some(dir),
        }
    }

    fn portmap() -> Value {
        json!({"type": "portmap", "capabilities": {"portMappings": true}})
    }

    /// A bundle running `args`, with this backend's annotations plus `extra`.
    fn bundle(&self, args: &[&str], extra: &[(&str, &str)]) -> Bundle {
        let mut c = config(args);
        let mut annotations = self.annotations.clone();
        for (k, v) in extra {
            annotations.insert((*k).to_string(), (*v).to_string());
        }
        c["annotations"] = json!(annotations);
        // ping needs CAP_NET_RAW whatever the default capability set becomes.
        let caps = json!([
            "CAP_NET_RAW",
            "CAP_NET_BIND_SERVICE",
            "CAP_KILL",
            "CAP_AUDIT_WRITE"
        ]);
        c["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
        Bundle::new(&c)
    }

    /// Addresses this backend's IPAM still holds.
    fn reserved_addresses(&self, tong: &NetTong) -> Vec<String> {
        match &self.cni {
            None => {
                let file = tong.root.path().join(format!(".ipam-{}.json", self.bridge));
                match std::fs::read(&file) {
                    Ok(bytes) => {
                        let table: BTreeMap<String, Value> =
                            serde_json::from_slice(&bytes).unwrap();
                        table.into_keys().collect()
                    }
                    Err(_) => Vec::new(),
                }
            }
            Some(dir) => std::fs::read_dir(dir.path().join("ipam/tongtest"))
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Nothing of the containers is left: state, cgroups, processes, pinned namespaces,
    /// veths (they go with the container's namespace, so shortly after delete), IPAM
    /// entries and nftables rules; only the bridge the backend made stays, in the
    /// test's namespace, which goes with the test.
    fn assert_no_leftovers(&self, tong: &NetTong, ids: &[&str], pids: &[i32]) {
        for id in ids {
            assert!(
                !tong.root.path().join(id).exists(),
                "state of {id} left behind"
            );
            assert_no_cgroup(id);
        }
        for pid in pids {
            assert!(!process_alive(*pid), "container process {pid} left behind");
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = tong.root.path().display().to_string();
        assert!(
            !mountinfo.contains(&root),
            "a mount under {root} left behind"
        );
        let expected: BTreeSet<String> = ["lo", self.bridge]
            .iter()
            .map(ToString::to_string)
            .collect();
        let settled = wait_until(20, || tong.ns.links().is_subset(&expected));
        assert!(settled, "links left behind: {:?}", tong.ns.links());
        let reserved = self.reserved_addresses(tong);
        assert!(
            reserved.is_empty(),
            "IPAM entries left behind: {reserved:?}"
        );
        if Path::new("/usr/sbin/nft").exists() {
            let rules = tong.ns.nft_ruleset();
            assert!(
                !rules.contains("table ip tong_"),
                "nftables table left behind:\n{rules}"
            );
            assert!(
                !rules.contains(self.subnet_prefix),
                "nftables rule for a container left behind:\n{rules}"
            );
        }
    }
}

/// The address (without prefix) `tong state` reports for the container.
fn address_of(tong: &NetTong, id: &str) -> String {
    let ip = tong.annotation(id, "tong.net.ip");
    ip.split('/').next().unwrap().to_string()
}

/// Two containers on one backend: they see only lo and eth0 with the address and route
/// tong reports, ping each other and the gateway, talk TCP (busybox nc), the published
/// port answers on the test namespace's loopback; a crashed container's delete removes
/// its veth and frees its address (the next container gets it back).
///
/// With `pooled`, the containers join ready-made namespaces of `tong pool` (the veths
/// go into those) and the pool drains clean afterwards.
fn two_containers_talk(test: &str, backend: &Backend, pooled: bool) {
    let tong = NetTong::new();
    // The namespaces of the pool once the refill after the last start has finished.
    let pool_inodes = |tong: &NetTong| -> Vec<u64> {
        let ready = tong.root.path().join("-pool/netns/ready");
        let list = || -> Vec<u64> {
            std::fs::read_dir(&ready)
                .map(|d| {
                    d.flatten()
                        .map(|e| std::fs::metadata(e.path().join("ns")).unwrap().ino())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(wait_until(10, || list().len() == 2), "pool not refilled");
        list()
    };
    let mut pooled_inodes = Vec::new();
    if pooled {
        tong.ok(&["pool", "fill", "2"]);
        pooled_inodes = pool_inodes(&tong);
    }
    let echo = ["nc", "-ll", "-p", "7000", "-e", "cat"];
    let server = backend.bundle(&echo, &[("tong.net.publish", "18080:7000")]);
    let client = backend.bundle(&["sleep", "3600"], &[]);
    let (a, b, c) = (unique_id(test), unique_id(test), unique_id(test));
    let before = tong.ns.links();
    tong.ok(&["run", "-d", "--bundle", server.path().to_str().unwrap(), &a]);
    let a_veth: Vec<String> = tong
        .ns
        .links()
        .difference(&before)
        .filter(|l| *l != backend.bridge)
        .cloned()
        .collect();
    assert_eq!(a_veth.len(), 1, "one host-side veth for {a}: {a_veth:?}");
    if pooled {
        pooled_inodes.extend(pool_inodes(&tong));
    }
    tong.ok(&["run", "-d", "--bundle", client.path().to_str().unwrap(), &b]);
    let a_pid = tong.state(&a)["pid"].as_i64().unwrap() as i32;
    let b_pid = tong.state(&b)["pid"].as_i64().unwrap() as i32;
    let (a_ip, b_ip) = (address_of(&tong, &a), address_of(&tong, &b));
    assert_ne!(a_ip, b_ip);
    if pooled {
        for pid in [a_pid, b_pid] {
            let ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .unwrap()
                .ino();
            assert!(
                pooled_inodes.contains(&ns),
                "{pid}: {ns} not a pooled namespace {pooled_inodes:?}, {}",
                tong.ok(&["pool", "status"])
            );
        }
    }

    for (id, ip) in [(&a, &a_ip), (&b, &b_ip)] {
        assert!(ip.starts_with(backend.subnet_prefix), "{id}: {ip}");
        let links = tong.exec(id, &["ls", "/sys/class/net"]);
        assert_eq!(
            links.split_whitespace().collect::<Vec<_>>(),
            ["eth0", "lo"],
            "{id}"
        );
        let addr = tong.exec(id, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(addr.contains(&format!("inet {ip}/24")), "{id}: {addr}");
        let routes = tong.exec(id, &["ip", "route"]);
        assert!(
            routes.contains(&format!("default via {} dev eth0", backend.gateway)),
            "{id}: {routes}"
        );
        let lo = tong.exec(
            id,
            &[
                "cat",
                "/sys/class/net/lo/operstate",
                "/sys/class/net/eth0/operstate",
            ],
        );
        assert!(
            lo.starts_with("unknown") && lo.ends_with("up\n"),
            "{id}: lo/eth0 state {lo:?}"
        );
    }
    // The bridge holds the gateway address and both host ends.
    let bridge = tong
        .ns
        .ok(&["ip", "-4", "-o", "addr", "show", "dev", backend.bridge]);
    assert!(
        bridge.contains(&format!("inet {}/24", backend.gateway)),
        "{bridge}"
    );
    let ports = tong
        .ns
        .ok(&["ip", "-o", "link", "show", "master", backend.bridge]);
    assert_eq!(ports.lines().count(), 2, "{ports}");

    for (from, to) in [
        (&a, &b_ip),
        (&b, &a_ip),
        (&a, &backend.gateway.to_string()),
        (&b, &backend.gateway.to_string()),
    ] {
        let ping = tong.exec(from, &["ping", "-c", "1", "-W", "3", to]);
        assert!(
            ping.contains("1 packets received"),
            "{from} -> {to}: {ping}"
        );
    }
    let reply = tong.exec(
        &b,
        &[
            "sh",
            "-c",
            &format!("echo hello-from-b | nc -w 3 {a_ip} 7000"),
        ],
    );
    assert_eq!(reply.trim(), "hello-from-b");
    let reply = tong.ns.ok(&[
        "sh",
        "-c",
        "echo hello-from-host | busybox nc -w 3 127.0.0.1 18080",
    ]);
    assert_eq!(
        reply.trim(),
        "hello-from-host",
        "published port 18080 -> {a}:7000"
    );

    // a crashes; its delete still undoes everything it had.
    tong.ok(&["kill", &a, "KILL"]);
    assert!(wait_until(10, || tong.state(&a)["status"] == "stopped"));
    tong.ok(&["delete", &a]);
    assert!(
        wait_until(20, || !tong.ns.links().contains(&a_veth[0])),
        "veth {} of {a} left after delete",
        a_veth[0]
    );
    assert!(
        !backend.reserved_addresses(&tong).contains(&a_ip),
        "{a_ip} not freed"
    );
    // Its address is free again: bridge IPAM hands out the lowest one; host-local goes
    // round the range, so for it only check that c got an address b does not have.
    tong.ok(&["create", "--bundle", client.path().to_str().unwrap(), &c]);
    let c_ip = address_of(&tong, &c);
    assert_ne!(c_ip, b_ip);
    if backend.cni.is_none() {
        assert_eq!(c_ip, a_ip, "the freed address is reused");
    }
    let c_pid = tong.state(&c)["pid"].as_i64().unwrap() as i32;
    tong.ok(&["delete", "--force", &b]);
    tong.ok(&["delete", "--force", &c]);
    if pooled {
        tong.ok(&["pool", "drain"]);
        let root = tong.root.path().display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(&root), "pool mounts left under {root}");
    }
    backend.assert_no_leftovers(&tong, &[&a, &b, &c], &[a_pid, b_pid, c_pid]);
}

/// 50 creates at once get 50 distinct addresses, each the one its container really has;
/// deleting them (also at once) frees every address.
fn fifty_concurrent_creates(test: &str, backend: &Backend) {
    const N: usize = 50;
    let tong = NetTong::new();
    let bundle = backend.bundle(&["sleep", "3600"], &[]);
    let bundle_path = bundle.path().to_str().unwrap().to_string();
    let ids: Vec<String> = (0..N).map(|_| unique_id(test)).collect();
    std::thread::scope(|s| {
        let runs: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(|| tong.run(&["create", "--bundle", &bundle_path, id])))
            .collect();
        for (id, run) in ids.iter().zip(runs) {
            check(run.join().unwrap(), &format!("create {id}"));
        }
    });
    let mut seen = BTreeSet::new();
    let mut pids = Vec::new();
    for id in &ids {
        let ip = address_of(&tong, id);
        let pid = tong.state(id)["pid"].as_i64().unwrap() as i32;
        let inside = check(
            run_with_files(Command::new("nsenter").args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
            ])),
            "nsenter ip addr",
        );
        assert!(
            inside.contains(&format!("inet {ip}/")),
            "{id}: state says {ip}, eth0 has {inside}"
        );
        assert!(seen.insert(ip.clone()), "{ip} given twice");
        pids.push(pid);
    }
    assert_eq!(seen.len(), N);
    assert_eq!(backend.reserved_addresses(&tong).len(), N);
    std::thread::scope(|s| {
        let runs: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(|| tong.run(&["delete", "--force", id])))
            .collect();
        for (id, run) in ids.iter().zip(runs) {
            check(run.join().unwrap(), &format!("delete {id}"));
        }
    });
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    backend.assert_no_leftovers(&tong, &ids, &pids);
}

#[test]
fn bridge_two_containers_talk() {
    if !skip_unless_root("bridge_two_containers_talk") || !nft_or_skip("bridge_two_containers_talk")
    {
        return;
    }
    two_containers_talk("bridge-talk", &Backend::bridge(), false);
}

#[test]
fn bridge_fifty_concurrent_creates() {
    if !skip_unless_root("bridge_fifty_concurrent_creates") {
        return;
    }
    fifty_concurrent_creates("bridge-fifty", &Backend::bridge());
}

#[test]
fn cni_two_containers_talk() {
    if !skip_unless_root("cni_two_containers_talk") {
        return;
    }
    let Some(plugins) = cni_plugin_dir("cni_two_containers_talk") else {
        return;
    };
    two_containers_talk(
        "cni-talk",
        &Backend::cni(plugins, &[Backend::portmap()], &[]),
        false,
    );
}

#[test]
fn bridge_two_containers_talk_in_pooled_namespaces() {
    let test = "bridge_two_containers_talk_in_pooled_namespaces";
    if !skip_unless_root(test) || !nft_or_skip(test) {
        return;
    }
    two_containers_talk("bridge-pool", &Backend::bridge(), true);
}

#[test]
fn cni_two_containers_talk_in_pooled_namespaces() {
    let test = "cni_two_containers_talk_in_pooled_namespaces";
    if !skip_unless_root(test) {
        return;
    }
    let Some(plugins) = cni_plugin_dir(test) else {
        return;
    };
    two_containers_talk(
        "cni-pool",
        &Backend::cni(plugins, &[Backend::portmap()], &[]),
        true,
    );
}

#[test]
fn cni_fifty_concurrent_creates() {
    if !skip_unless_root("cni_fifty_concurrent_creates") {
        return;
    }
    let Some(plugins) = cni_plugin_dir("cni_fifty_concurrent_creates") else {
        return;
    };
    fifty_concurrent_creates("cni-fifty", &Backend::cni(plugins, &[], &[]));
}

/// Settings by annotation: bridge name, subnet, MTU, MAC; chosen with `--backend`
/// instead of the annotation; the NAT rule is the container's own table, gone on delete.
#[test]
fn bridge_settings_by_annotation() {
    let test = "bridge_settings_by_annotation";
    if !skip_unless_root(test) || !nft_or_skip(test) {
        return;
    }
    let tong = NetTong::new();
    let mut backend = Backend::bridge();
    backend.annotations.clear();
    backend.bridge = "tongtest1";
    backend.gateway = "10.123.4.1";
    backend.subnet_prefix = "10.123.4.";
    let bundle = backend.bundle(
        &["sleep", "3600"],
        &[
            ("tong.net.bridge", "tongtest1"),
            ("tong.net.subnet", "10.123.4.77/24"),
            ("tong.net.mtu", "1400"),
            ("tong.net.mac", "02:00:00:00:00:42"),
            ("tong.net.nat", "true"),
        ],
    );
    let id = unique_id("bridge-settings");
    tong.ok(&[
        "create",
        "--backend",
        "net=bridge",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let pid = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    assert_eq!(tong.state(&id)["backends"]["net"], "bridge");
    assert_eq!(tong.annotation(&id, "tong.net.ip"), "10.123.4.2/24");
    let nsenter = |args: &[&str]| {
        let pid = pid.to_string();
        let mut all = vec!["-t", &pid, "-n"];
        all.extend_from_slice(args);
        check(
            run_with_files(Command::new("nsenter").args(&all)),
            "nsenter",
        )
    };
    let link = nsenter(&["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(
        link.contains("mtu 1400") && link.contains("link/ether 02:00:00:00:00:42"),
        "{link}"
    );
    let routes = nsenter(&["ip", "route"]);
    assert!(
        routes.contains("default via 10.123.4.1 dev eth0"),
        "{routes}"
    );
    let bridge = tong
        .ns
        .ok(&["ip", "-o", "link", "show", "dev", "tongtest1"]);
    assert!(bridge.contains("mtu 1400"), "{bridge}");
    let rules = tong.ns.nft_ruleset();
    assert!(
        rules.contains("ip saddr 10.123.4.2 oifname != \"tongtest1\" masquerade"),
        "{rules}"
    );
    // Outbound NAT for real: an "outside" namespace linked to the test namespace only,
    // with no route back to the container's subnet, answers the container's ping only
    // if it left masqueraded.
    let outside = TestNetns::new();
    tong.ns.ok(&[
        "ip",
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "out0",
        "netns",
        &outside.name,
    ]);
    tong.ns
        .ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "up0"]);
    tong.ns.ok(&["ip", "link", "set", "up0", "up"]);
    outside.ok(&["ip", "addr", "add", "192.0.2.2/24", "dev", "out0"]);
    outside.ok(&["ip", "link", "set", "out0", "up"]);
    let ping = nsenter(&["busybox", "ping", "-c", "1", "-W", "3", "192.0.2.2"]);
    assert!(ping.contains("1 packets received"), "{ping}");
    tong.ns.ok(&["ip", "link", "del", "up0"]);
    drop(outside);
    tong.ok(&["delete", "--force", &id]);
    backend.assert_no_leftovers(&tong, &[&id], &[pid]);
}

/// Bad settings are refused with one line naming the annotation; a full subnet is a
/// clear error; neither leaves anything behind.
#[test]
fn bridge_bad_settings_and_full_subnet() {
    let test = "bridge_bad_settings_and_full_subnet";
    if !skip_unless_root(test) {
        return;
    }
    let tong = NetTong::new();
    let backend = Backend::bridge();
    for (key, value) in [
        ("tong.net.subnet", "10.77.0.0/33"),
        ("tong.net.mtu", "9"),
        ("tong.net.publish", "80"),
    ] {
        let bundle = backend.bundle(&["true"], &[(key, value)]);
        let id = unique_id("bridge-bad");
        let err = tong.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        assert!(
            err.contains(key) && err.trim().lines().count() == 1,
            "{err}"
        );
        backend.assert_no_leftovers(&tong, &[&id], &[]);
    }
    // A /30 has room for one container besides the gateway.
    let bundle = backend.bundle(&["sleep", "3600"], &[("tong.net.subnet", "10.77.0.0/30")]);
    let (a, b) = (unique_id("bridge-full"), unique_id("bridge-full"));
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &a]);
    let err = tong.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &b]);
    assert!(
        err.contains("no free address left in 10.77.0.0/30"),
        "{err}"
    );
    assert!(!tong.root.path().join(&b).exists());
    assert_eq!(backend.reserved_addresses(&tong), ["10.77.0.2"]);
    let pid = tong.state(&a)["pid"].as_i64().unwrap() as i32;
    tong.ok(&["delete", "--force", &a]);
    backend.assert_no_leftovers(&tong, &[&a, &b], &[pid]);
}

/// A CNI plugin that fails ADD: its error reaches the user, and the plugins before it
/// are undone (DEL), so no veth, address, pin or state is left.
#[test]
fn cni_failing_add_is_undone() {
    let test = "cni_failing_add_is_undone";
    if !skip_unless_root(test) {
        return;
    }
    let Some(plugins) = cni_plugin_dir(test) else {
        return;
    };
    let script = "#!/bin/sh\n\
        if [ \"$CNI_COMMAND\" = ADD ]; then\n\
          echo '{\"cniVersion\":\"1.0.0\",\"code\":100,\"msg\":\"tong-fail refuses ADD\",\"details\":\"on purpose\"}'\n\
          exit 1\n\
        fi\n\
        exit 0\n";
    let backend = Backend::cni(
        plugins,
        &[json!({"type": "tong-fail"})],
        &[("tong-fail", script)],
    );
    let tong = NetTong::new();
    let bundle = backend.bundle(&["sleep", "3600"], &[]);
    let id = unique_id("cni-fail");
    let err = tong.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("CNI plugin tong-fail ADD (network tongtest) failed")
            && err.contains("tong-fail refuses ADD: on purpose (CNI error code 100)"),
        "{err}"
    );
    backend.assert_no_leftovers(&tong, &[&id], &[]);
}

/// CHECK when asked (tong.cni.check), a missing network named clearly, the result kept
/// in the state directory and shown by `tong state`.
#[test]
fn cni_check_result_and_missing_network() {
    let test = "cni_check_result_and_missing_network";
    if !skip_unless_root(test) {
        return;
    }
    let Some(plugins) = cni_plugin_dir(test) else {
        return;
    };
    let backend = Backend::cni(plugins, &[], &[]);
    let tong = NetTong::new();
    let bundle = backend.bundle(&["sleep", "3600"], &[("tong.cni.check", "true")]);
    let id = unique_id("cni-check");
    tong.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let pid = tong.state(&id)["pid"].as_i64().unwrap() as i32;
    let shown: Value = serde_json::from_str(&tong.annotation(&id, "tong.cni.result")).unwrap();
    let saved: Value = serde_json::from_slice(
        &std::fs::read(tong.root.path().join(&id).join("cni-result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shown, saved);
    let ip = shown["tongtest"]["ips"][0]["address"].as_str().unwrap();
    assert_eq!(tong.annotation(&id, "tong.net.ip"), ip);
    assert_eq!(shown["lo"]["interfaces"][0]["name"], "lo");
    tong.ok(&["delete", "--force", &id]);

    // After a crash that also lost the pinned namespace (the container died, the pin was
    // unmounted), DEL runs with no namespace and still frees what lives outside it.
    let crashed = unique_id("cni-crash");
    tong.ok(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &crashed,
    ]);
    let crashed_pid = tong.state(&crashed)["pid"].as_i64().unwrap() as i32;
    assert_eq!(backend.reserved_addresses(&tong).len(), 1);
    tong.ok(&["kill", &crashed, "KILL"]);
    assert!(wait_until(10, || tong.state(&crashed)["status"] == "stopped"));
    let pin = tong.root.path().join(&crashed).join("netns");
    check(
        run_with_files(Command::new("umount").arg(&pin)),
        "umount the pin",
    );
    tong.ok(&["delete", &crashed]);

    let bundle = backend.bundle(&["true"], &[("tong.cni.networks", "nosuchnet")]);
    let bad = unique_id("cni-missing");
    let err = tong.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &bad]);
    assert!(err.contains("no CNI network \"nosuchnet\" in"), "{err}");
    backend.assert_no_leftovers(&tong, &[&id, &crashed, &bad], &[pid, crashed_pid]);
}
