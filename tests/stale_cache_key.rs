//! Regression (found by the loom model `loom_thread_exit_vs_attach`, and independently on main):
//! a chunk that went from a thread cache back to its arena and merged into top kept the cache's
//! "freed" key at payload+8; the next allocation carved from top at the same address returned
//! it with the key still there, and freeing that live block aborted as a double free. Schedule:
//! a thread caches two chunks and exits (flush → merged into top); a new thread's refill carves
//! the same addresses and frees its first block. The single-threaded replay below is the same
//! sequence. Fixed on main by clearing the key when a chunk is handed out (`Heap::hand_out`,
//! `ThreadCache::refill`).

use arena_malloc::config::Tunables;
use arena_malloc::PrivateHeap;

#[test]
fn block_reused_from_top_after_cache_flush_frees_cleanly() {
    let mut t = Tunables::defaults(1);
    t.main_reserve = 64 << 20;
    t.tcache_count = 4; // refills of two chunks: both end next to top
    let h = PrivateHeap::new(&t).expect("heap");
    // SAFETY: caches and blocks of this heap, used on this thread only.
    unsafe {
        let tc = h.new_cache();
        let p = h.malloc(tc, 24);
        let q = h.malloc(tc, 24);
        h.free(tc, p);
        h.free(tc, q);
        h.drop_cache(tc); // both chunks go back to the arena and merge into top
        let tc = h.new_cache();
        let r = h.malloc(tc, 24); // refill carves the same addresses from top
        let s = h.malloc(tc, 24);
        assert!(
            r == p || r == q || s == p || s == q,
            "expected the same addresses again"
        );
        h.free(tc, r);
        h.free(tc, s);
        let n = core::ptr::null_mut();
        let u = h.malloc(n, 24); // arena path, no cache
        h.free(n, u);
        h.drop_cache(tc);
    }
}
