//! Fuzz target: durations, sizes and status patterns, parsed and formatted back.
//! See `probed::fuzz::units`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| probed::fuzz::units(data));
