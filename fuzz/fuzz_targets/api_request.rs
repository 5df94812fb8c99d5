//! Fuzz target: the bytes as a raw HTTP/1 request to the API, and a silence glob.
//! See `probed::fuzz::api_request`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| probed::fuzz::api_request(data));
