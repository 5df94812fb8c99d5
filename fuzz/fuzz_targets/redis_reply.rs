//! Fuzz target: the bytes as a Redis server's answers to a redis probe.
//! See `probed::fuzz::redis_reply`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| probed::fuzz::redis_reply(data));
