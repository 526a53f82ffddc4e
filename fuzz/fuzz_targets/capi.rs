#![no_main]
// Logic and shadow model: arena_malloc::fuzz::run_capi (replayed by `cargo test`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| arena_malloc::fuzz::run_capi(data));
