//! The process JSON of `tong exec --process FILE`: parsed and checked as exec does
//! before any clone.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tong::fuzzing::exec_process(data);
});
