//! Replays every input kept for the fuzz targets (fuzz/, ci/fuzz) as a normal test: the
//! seed corpus (fuzz/corpus/TARGET) and every crash found and fixed
//! (fuzz/regressions/TARGET, one file per crash, named after the bug).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            println!("replaying {}", entry.path().display());
            run(&data);
            count += 1;
        }
    }
    assert!(count > 0, "no inputs kept for fuzz target {target}");
}

#[test]
fn config() {
    replay("config", tong::fuzzing::config);
}

#[test]
fn exec_process() {
    replay("exec_process", tong::fuzzing::exec_process);
}

#[test]
fn plugin_json() {
    replay("plugin_json", tong::fuzzing::plugin_json);
}

#[test]
fn state_file() {
    replay("state_file", tong::fuzzing::state_file);
}
