//! Fuzz target: the bytes as a web server's answer to an http probe.
//! See `probed::fuzz::http_reply`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| probed::fuzz::http_reply(data));
