//! Helpers of the reliability tests (crash points, concurrency, hostile input,
//! misbehaving plugins, state integrity), on top of `common`.
#![allow(dead_code)]

use std::process::Output;

use crate::common::Tong;

/// Runs tong with extra environment variables; output through files like `Tong::run`
/// (a created container inherits tong's stdout and stderr).
pub fn run_with(tong: &Tong, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tong.command(args);
    cmd.envs(env.iter().copied());
    run_command(cmd)
}

/// Runs a command with output through files.
pub fn run_command(mut cmd: std::process::Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    cmd.stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    let status = cmd.status().expect("run tong");
    Output {
        status,
        stdout: read_back(out),
        stderr: read_back(err),
    }
}

fn read_back(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Live (non-zombie) processes, other than this one, whose command line has `arg` as
/// one of its arguments.
pub fn processes_with_arg(arg: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
        .filter(|&pid| crate::common::process_alive(pid))
        .collect()
}

/// Asserts that nothing of `id` remains (state dir, cgroups, mounts of the bundle, the
/// recorded pid) and no process carries `id` on its command line.
pub fn assert_gone(tong: &Tong, id: &str, bundle: &crate::common::Bundle, pid: Option<i32>) {
    tong.assert_clean(id, Some(bundle), pid);
    assert!(
        crate::common::wait_until(5, || processes_with_arg(id).is_empty()),
        "processes of {id} left behind: {:?}",
        processes_with_arg(id)
    );
}

/// The init pid recorded in a container's state file, if it is readable.
pub fn recorded_pid(tong: &Tong, id: &str) -> Option<i32> {
    let data = std::fs::read(tong.root.path().join(id).join("state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
    v["pid"].as_i64().map(|p| p as i32).filter(|&p| p > 0)
}

/// A bundle running a long sleep whose processes all carry `id` on their command line
/// (the child before exec is a copy of `tong ... create ID`; after exec it is
/// `sh -c '...' ID`), so leftovers can be found in /proc.
pub fn marked_bundle(id: &str) -> crate::common::Bundle {
    crate::common::Bundle::new(&crate::common::config(&["sh", "-c", "exec sleep 3600", id]))
}

/// What is left in the state root besides tong's own dot-files (the plugin cache).
pub fn left_in_root(tong: &Tong) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(tong.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.as_encoded_bytes().starts_with(b"."))
        .collect()
}
