//! State files: read strictly (a record or a clear error) and salvaged (whatever can be
//! read of a damaged file), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tong::fuzzing::state_file(data);
});
