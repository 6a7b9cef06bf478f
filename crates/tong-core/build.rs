//! Builds the exec stub (stub/exec-stub.c, see src/exec_stub.rs): a freestanding
//! static program of a few KB, compiled with the C compiler ($CC, else `cc`) and embedded
//! in the library.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    build_exec_stub(&dir);
}

fn build_exec_stub(dir: &str) {
    println!("cargo:rerun-if-changed=stub/exec-stub.c");
    println!("cargo:rerun-if-env-changed=CC");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    assert!(
        std::env::var_os("CC").is_some() || target_arch == std::env::consts::ARCH,
        "the exec stub is built with the C compiler: set CC to a {target_arch} compiler"
    );
    let status = std::process::Command::new(&cc)
        .args([
            "-nostdlib",
            "-static",
            "-Os",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-fno-pie",
            "-no-pie",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-s",
            "-Wl,--build-id=none",
            "-o",
        ])
        .arg(format!("{out}/exec-stub"))
        .arg(format!("{dir}/stub/exec-stub.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc} for the exec stub: {e}"));
    assert!(status.success(), "{cc} failed to build stub/exec-stub.c");
}
