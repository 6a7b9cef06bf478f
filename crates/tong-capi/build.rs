//! Link arguments of `libtong.so`: the SONAME carries the C ABI major, and a version
//! script exports only `tong_*` symbols (under the `TONG_1` version node).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/libtong.map");
    println!("cargo:rerun-if-changed=libtong.map");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtong.so.1");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={script}");
}
