//! A thread whose first calls are frees (a consumer that never allocates) still gets a thread
//! cache: its frees are cached (and go back to their arena in batches), not sent one by one to
//! the arena's lock. The thread slot holds a placeholder cache until then (`global`), whose
//! push always fails; the slow path must make the real cache.
//!
//! Such a thread does not hoard what it frees either: a stack that overflows without having
//! been refilled since its last overflow is cut to `FREER_STACK` (16) chunks, and gets its full
//! bound (64 for 64-byte chunks) back when the thread allocates that class again.

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

type Block = [u8; 48];
const CHUNK: isize = 64;
/// Slack for a stray block of another class freed by std meanwhile.
const OTHER: isize = 256;

#[test]
fn a_thread_that_only_frees_caches_its_frees_and_does_not_hoard_them() {
    const N: usize = 200;
    let blocks: Vec<usize> = (0..N)
        .map(|i| Box::into_raw(Box::new([i as u8; 48])) as usize)
        .collect();
    let (threads, after_frees, after_own) = std::thread::spawn(move || {
        // The baseline is taken here, after std's thread start: what that start allocated
        // (its refills leave chunks of other classes cached) is not ours to count, and the
        // main thread is blocked in `join`, so the only change from here on is this thread's.
        let before = arena_malloc::stats();
        let cached =
            move || arena_malloc::stats().tcache_bytes as isize - before.tcache_bytes as isize;
        for &b in &blocks {
            // SAFETY: each pointer came from Box::into_raw of this type and is freed once.
            drop(unsafe { Box::from_raw(b as *mut Block) });
        }
        let s = arena_malloc::stats();
        let after_frees = cached();
        // Now the thread allocates the class too: its refills give the stack its bound back.
        let own: Vec<Box<Block>> = (0..40).map(|i| Box::new([i as u8; 48])).collect();
        for (i, b) in own.iter().enumerate() {
            assert!(
                b.iter().all(|&x| x == i as u8),
                "block {i} lost its contents"
            );
        }
        drop(own);
        let after_own = cached();
        eprintln!("cached bytes: {after_frees} after the frees, {after_own} after its own blocks");
        (s.threads, after_frees, after_own)
    })
    .join()
    .unwrap();
    assert!(
        threads >= 2,
        "the freeing thread has a cache: {threads} threads"
    );
    // 200 frees of 64-byte chunks: the stack (bound 64) overflowed once with no refill behind
    // it, was flushed whole and cut to 16; it holds 1 to 16 chunks now. (A regression found by
    // CI: with the baseline taken before the spawn, std's thread start left 0 or 1520 bytes of
    // other classes cached, by which arena the thread got, and the bound failed one run in 4.)
    assert!(
        (CHUNK..=16 * CHUNK + OTHER).contains(&after_frees),
        "cached bytes after 200 frees: {after_frees}"
    );
    // 40 allocations (refilled) then 40 frees: with the bound back at 64 the stack holds more
    // than the 16 a free-only stack may.
    assert!(
        after_own > 16 * CHUNK + OTHER,
        "cached bytes after the thread's own 40 blocks: {after_own}"
    );
}
