//! A thread whose first calls are frees (a consumer that never allocates) still gets a thread
//! cache: its frees are cached (and go back to their arena in batches), not sent one by one to
//! the arena's lock. The thread slot holds a placeholder cache until then (`global`), whose
//! push always fails; the slow path must make the real cache.

#[global_allocator]
static GLOBAL: arena_malloc::ArenaMalloc = arena_malloc::ArenaMalloc;

#[test]
fn a_thread_that_only_frees_caches_its_frees() {
    const N: usize = 200;
    let blocks: Vec<usize> = (0..N)
        .map(|i| Box::into_raw(Box::new([i as u8; 48])) as usize)
        .collect();
    let before = arena_malloc::stats();
    let (threads, delta) = std::thread::spawn(move || {
        for &b in &blocks {
            // SAFETY: each pointer came from Box::into_raw of this type and is freed once.
            drop(unsafe { Box::from_raw(b as *mut [u8; 48]) });
        }
        let s = arena_malloc::stats();
        (
            s.threads,
            s.tcache_bytes as isize - before.tcache_bytes as isize,
        )
    })
    .join()
    .unwrap();
    assert!(
        threads >= 2,
        "the freeing thread has a cache: {threads} threads"
    );
    // 200 chunks of 64 bytes went through a stack bounded at 64 that sends its older half back
    // when full: at least 32 of them are still cached (the main thread is blocked in `join`
    // meanwhile, so its own cache did not change).
    assert!(delta >= 32 * 64, "cached bytes grew by {delta}");
}
