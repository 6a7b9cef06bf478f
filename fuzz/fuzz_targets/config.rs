//! config.json parsing and validation: any bytes give a bundle or an error, never a
//! panic; an accepted config also gives a namespace plan.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tong::fuzzing::config(data);
});
