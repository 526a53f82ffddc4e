#![no_main]
// Logic and shadow model: arena_malloc::fuzz::run_threads (replayed by `cargo test`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| arena_malloc::fuzz::run_threads(data));
