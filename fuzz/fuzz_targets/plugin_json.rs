//! What plugins hand back: state JSON (stored in the record and handed back to the
//! plugin unchanged in meaning), pids and stats.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tong::fuzzing::plugin_json(data);
});
