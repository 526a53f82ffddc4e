#![no_main]
// arena-malloc is this binary's global allocator (under AddressSanitizer, feature `asan`), so
// libFuzzer's and std's own allocations go through it too. Logic: arena_malloc::fuzz::run_global.
#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;
libfuzzer_sys::fuzz_target!(|data: &[u8]| arena_malloc::fuzz::run_global(data));
