//! Writes the two C headers with the pinned cbindgen: `include/tong.h` (libtong's C API)
//! from `crates/tong-capi/src` with `cbindgen.toml`, and `include/tong_plugin.h` (the
//! plugin ABI) from `crates/tong-abi` with `cbindgen-plugin.toml`. With `--check`, fails
//! when a committed header differs from what would be generated.
//!
//! Usage: `cargo run -p tong-header [-- --check] [--root DIR]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The version macros come from this crate's version, which is the workspace's, which
/// is tong-capi's (checked below).
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let mut check = false;
    let mut root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--root" => match args.next() {
                Some(dir) => root = PathBuf::from(dir),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    match run(&root, check) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("tong-header: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: tong-header [--check] [--root REPO]");
    ExitCode::from(2)
}

fn run(root: &Path, check: bool) -> Result<String, String> {
    check_core_version(root)?;
    let headers = [
        ("include/tong.h", generate(root)?),
        ("include/tong_plugin.h", generate_plugin(root)?),
    ];
    let mut done = Vec::new();
    for (name, header) in headers {
        done.push(if check {
            check_header(&root.join(name), &header)?
        } else {
            write_header(root, &root.join(name), &header)?
        });
    }
    Ok(done.join("\n"))
}

fn check_header(path: &Path, header: &str) -> Result<String, String> {
    let current = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if current != header {
        let first = current
            .lines()
            .zip(header.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(header.lines().count()));
        return Err(format!(
            "{} is stale (first difference at line {}): run `cargo run -p tong-header` and commit it",
            path.display(),
            first + 1
        ));
    }
    Ok(format!("{} is current", path.display()))
}

fn write_header(root: &Path, path: &Path, header: &str) -> Result<String, String> {
    std::fs::create_dir_all(root.join("include"))
        .map_err(|e| format!("cannot create include/: {e}"))?;
    std::fs::write(path, header).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(format!("wrote {}", path.display()))
}

/// tong-capi takes its version from the workspace, as this crate does: the macros then
/// match `tong_version()`.
fn check_core_version(root: &Path) -> Result<(), String> {
    let manifest = root.join("crates/tong-capi/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    if text.lines().any(|l| l.trim() == "version.workspace = true") {
        Ok(())
    } else {
        Err(format!(
            "{} does not use `version.workspace = true`: the header's version macros would not match it",
            manifest.display()
        ))
    }
}

fn version_macros() -> Result<String, String> {
    let parts: Vec<&str> = VERSION.split(['.', '-', '+']).take(3).collect();
    let [major, minor, patch] = parts[..] else {
        return Err(format!("cannot parse version {VERSION:?}"));
    };
    Ok(format!(
        "\n/** The version of the library this header belongs to (see tong_version()). */\n\
         #define TONG_VERSION_MAJOR {major}\n\
         #define TONG_VERSION_MINOR {minor}\n\
         #define TONG_VERSION_PATCH {patch}\n\
         #define TONG_VERSION_STRING \"{VERSION}\"\n"
    ))
}

/// Initializers of the options structs, compiled with the caller's `sizeof` (macros, so
/// they may precede the types).
const TRAILER: &str = "\
/** Default tong_runtime_options: root /run/tong, default plugin search, no logging. */
#define TONG_RUNTIME_OPTIONS_INIT { sizeof(tong_runtime_options), NULL, NULL, TONG_LOG_OFF, NULL, NULL }

/** Default tong_create_options: inherited stdio, no pid file, backends chosen automatically, no extra descriptors. */
#define TONG_CREATE_OPTIONS_INIT { sizeof(tong_create_options), -1, -1, -1, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0 }

/** Default tong_exec_options: inherited stdio, no pid file, no terminal, wait for the process, no extra descriptors. */
#define TONG_EXEC_OPTIONS_INIT { sizeof(tong_exec_options), -1, -1, -1, NULL, NULL, 0, NULL, 0 }
";

/// Runs cbindgen on `src` with the configuration file `config`, with `after_include`
/// after the includes.
fn cbindgen(root: &Path, config: &str, src: &str, after_include: &str) -> Result<String, String> {
    let config_path = root.join(config);
    let config = cbindgen::Config::from_file(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join(src))
        .with_after_include(after_include)
        .generate()
        .map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))
}

/// include/tong.h.
fn generate(root: &Path) -> Result<String, String> {
    let after_include = format!("{}\n{TRAILER}", version_macros()?);
    cbindgen(
        root,
        "cbindgen.toml",
        "crates/tong-capi/src/lib.rs",
        &after_include,
    )
}

/// The entry point every plugin defines, declared so the compiler checks a C plugin's
/// definition against it (tong-abi names it in a `&str` constant, which C cannot have).
const PLUGIN_ENTRY: &str = "
#ifdef __cplusplus
extern \"C\" {
#endif

/**
 * The one symbol every plugin exports: given the host's ABI major, returns the plugin's
 * static descriptor, or NULL when it cannot serve that major.
 */
const struct tong_plugin_descriptor *tong_plugin_entry(uint32_t host_abi_major);

#ifdef __cplusplus
}
#endif
";

/// include/tong_plugin.h.
fn generate_plugin(root: &Path) -> Result<String, String> {
    cbindgen(
        root,
        "cbindgen-plugin.toml",
        "crates/tong-abi/src/lib.rs",
        PLUGIN_ENTRY,
    )
}
