//! Fuzz target: the bytes as probed.yaml, through the config loader.
//! See `probed::fuzz::config_loader`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| probed::fuzz::config_loader(data));
