//! Fuzz target: the bytes as the rest of a push URL, sent to the API.
//! See `probed::fuzz::push_url`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| probed::fuzz::push_url(data));
