//! The plugin ABI's layout, seen from both sides: every struct of include/tong_plugin.h,
//! compiled by the C compiler, has the size, alignment and field offsets of its Rust
//! definition, and the constants agree. The 64-bit sizes of ABI 1.2 are pinned too, so a
//! change that would break built plugins fails here, not in a user's container.

use std::fmt::Write;
use std::mem::{align_of, offset_of, size_of};
use std::path::Path;
use std::process::Command;

use tong_abi::{
    Bytes, CgroupOps, ChildError, NamespaceJoin, NamespaceOps, NetworkOps, PluginDescriptor,
    RootfsOps, Sink, SpawnRequest, SpawnResult,
};

/// `(C type, Rust size, Rust align, [(C field, Rust offset)])` of every ABI struct.
macro_rules! layouts {
    ($($c:literal => $ty:ty { $($cf:ident = $rf:ident),* $(,)? }),* $(,)?) => {
        vec![$((
            $c,
            size_of::<$ty>(),
            align_of::<$ty>(),
            vec![$((stringify!($cf), offset_of!($ty, $rf))),*],
        )),*]
    };
}

type Layout = (&'static str, usize, usize, Vec<(&'static str, usize)>);

fn rust_layouts() -> Vec<Layout> {
    layouts![
        "tong_plugin_bytes" => Bytes { ptr = ptr, len = len },
        "tong_plugin_sink" => Sink { ctx = ctx, write = write },
        "tong_plugin_descriptor" => PluginDescriptor {
            abi_major = abi_major, abi_minor = abi_minor, struct_size = struct_size,
            kind = kind, priority = priority, name = name, version = version,
            description = description, probe = probe, ops = ops,
            set_warning_sink = set_warning_sink,
        },
        "tong_plugin_namespace_join" => NamespaceJoin { fd = fd, nstype = nstype },
        "tong_plugin_child_error" => ChildError { errnum = errno, len = len, message = message },
        "tong_plugin_spawn_request" => SpawnRequest {
            struct_size = struct_size, clone_flags = clone_flags, join = join,
            join_len = join_len, cgroup_fd = cgroup_fd, child_main = child_main,
            child_arg = child_arg, child_fail = child_fail,
        },
        "tong_plugin_spawn_result" => SpawnResult { pid = pid, pidfd = pidfd, in_cgroup = in_cgroup },
        "tong_plugin_namespace_ops" => NamespaceOps { struct_size = struct_size, spawn = spawn },
        "tong_plugin_cgroup_ops" => CgroupOps {
            struct_size = struct_size, create = create, clone_target = clone_target,
            add_process = add_process, update = update, set_frozen = set_frozen,
            stats = stats, pids = pids, destroy = destroy, warm_up = warm_up,
        },
        "tong_plugin_rootfs_ops" => RootfsOps {
            struct_size = struct_size, prepare = prepare, child_setup = child_setup,
            release = release, cleanup = cleanup,
        },
        "tong_plugin_network_ops" => NetworkOps {
            struct_size = struct_size, setup = setup, teardown = teardown,
        },
    ]
}

/// One line per fact, the same from Rust and from C.
fn facts(layouts: &[Layout]) -> String {
    let mut out = String::new();
    for (name, size, align, fields) in layouts {
        let _ = writeln!(out, "{name} size {size} align {align}");
        for (field, offset) in fields {
            let _ = writeln!(out, "{name}.{field} {offset}");
        }
    }
    out
}

/// A C program printing [`facts`] of the header's structs, and the constants.
fn c_program(layouts: &[Layout]) -> String {
    let mut src = String::from(
        "#include <errno.h>\n#include <stdalign.h>\n#include <stdio.h>\n#include \"tong_plugin.h\"\nint main(void) {\n",
    );
    for (name, _, _, fields) in layouts {
        let _ = writeln!(
            src,
            "    printf(\"{name} size %zu align %zu\\n\", sizeof({name}), alignof({name}));"
        );
        for (field, _) in fields {
            let _ = writeln!(
                src,
                "    printf(\"{name}.{field} %zu\\n\", offsetof({name}, {field}));"
            );
        }
    }
    src += "    printf(\"constants %d %d %d %d %d %d %d %d %d %d %d %d %d\\n\",
        TONG_PLUGIN_ABI_MAJOR, TONG_PLUGIN_ABI_MINOR, TONG_PLUGIN_STATUS_OK,
        TONG_PLUGIN_STATUS_INVALID, TONG_PLUGIN_STATUS_OS, TONG_PLUGIN_STATUS_UNSUPPORTED,
        TONG_PLUGIN_STATUS_PANIC, TONG_PLUGIN_STATUS_FAILED, TONG_PLUGIN_KIND_NAMESPACE,
        TONG_PLUGIN_KIND_CGROUP, TONG_PLUGIN_KIND_ROOTFS, TONG_PLUGIN_KIND_NETWORK,
        TONG_PLUGIN_CHILD_MESSAGE_LEN);\n    return 0;\n}\n";
    src
}

fn rust_constants() -> String {
    use tong_abi::*;
    format!(
        "constants {ABI_MAJOR} {ABI_MINOR} {STATUS_OK} {STATUS_INVALID} {STATUS_OS} \
         {STATUS_UNSUPPORTED} {STATUS_PANIC} {STATUS_FAILED} {KIND_NAMESPACE} {KIND_CGROUP} \
         {KIND_ROOTFS} {KIND_NETWORK} {CHILD_MESSAGE_LEN}\n"
    )
}

#[test]
fn the_c_header_has_the_layout_of_the_rust_types() {
    let layouts = rust_layouts();
    let dir = tempfile_dir();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c_program(&layouts)).unwrap();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{}", include.display()))
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("cc (the C compiler) is needed to check include/tong_plugin.h");
    assert!(status.success(), "compiling {}", src.display());
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let c_facts = String::from_utf8(out.stdout).unwrap();
    let rust_facts = facts(&layouts) + &rust_constants();
    for (c, rust) in c_facts.lines().zip(rust_facts.lines()) {
        assert_eq!(c, rust, "C (left) and Rust (right) disagree");
    }
    assert_eq!(c_facts.lines().count(), rust_facts.lines().count());
    let _ = std::fs::remove_dir_all(&dir);
}

/// ABI 1.2 as built plugins know it (64-bit): these sizes may only grow by appending
/// fields in a new minor, with the `struct_size` checks that go with it. (1.2 appended
/// `set_warning_sink` to the descriptor: 64 bytes before, 72 now.)
#[cfg(target_pointer_width = "64")]
#[test]
fn the_abi_1_2_layout_is_unchanged() {
    assert_eq!((tong_abi::ABI_MAJOR, tong_abi::ABI_MINOR), (1, 2));
    let sizes: Vec<(&str, usize)> = rust_layouts()
        .iter()
        .map(|(name, size, _, _)| (*name, *size))
        .collect();
    assert_eq!(
        sizes,
        [
            ("tong_plugin_bytes", 16),
            ("tong_plugin_sink", 16),
            ("tong_plugin_descriptor", 72),
            ("tong_plugin_namespace_join", 8),
            ("tong_plugin_child_error", 520),
            ("tong_plugin_spawn_request", 64),
            ("tong_plugin_spawn_result", 12),
            ("tong_plugin_namespace_ops", 16),
            ("tong_plugin_cgroup_ops", 80),
            ("tong_plugin_rootfs_ops", 40),
            ("tong_plugin_network_ops", 24),
        ]
    );
    assert_eq!(tong_abi::CGROUP_OPS_SIZE_1_0, 72);
    assert_eq!(tong_abi::DESCRIPTOR_SIZE_1_0, 64);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tong-abi-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
