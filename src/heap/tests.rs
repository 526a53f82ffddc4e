//! Unit tests of the heap (on private heaps).
use super::*;

fn small_heap() -> PrivateHeap {
    let mut t = Tunables::defaults(2);
    t.main_reserve = 64 << 20;
    PrivateHeap::new(&t).expect("private heap")
}

/// Regression (found by the `capi` fuzz target): a chunk that had been in a thread cache kept
/// the cache key at payload+8 after it went back to the arena and merged into top; a block
/// carved from top at the same address, whose owner never wrote bytes 8..16, was then taken for
/// a double free by `free` (and for a use after free by `realloc`).
#[test]
fn stale_cache_key_is_not_a_double_free() {
    let h = small_heap();
    let tc = h.new_cache();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let p = h.malloc(tc, 24);
        h.free(tc, p); // cached: the key is at p+8
        (*tc).flush_all(&h); // back to the arena, merged into top
        let q = h.malloc(core::ptr::null_mut(), 40); // carved from top, same address
        assert_eq!(
            p, q,
            "test premise: the block comes back from top at the same address"
        );
        q.write(1); // the owner writes only byte 0
        let r = h.realloc(core::ptr::null_mut(), q, 48);
        h.free(core::ptr::null_mut(), r);
        let m = h.memalign(core::ptr::null_mut(), 64, 8);
        h.free(tc, m);
        h.drop_cache(tc);
    }
}

/// Same hazard as above, through coalescing: cached chunks flushed to the arena merge with
/// their free neighbours, leaving stale keys in the interior of big free chunks, which splits
/// and aligned carving then hand out.
#[test]
fn stale_cache_keys_inside_coalesced_chunks() {
    let h = small_heap();
    let tc = h.new_cache();
    // SAFETY: as above.
    unsafe {
        let mut v = [core::ptr::null_mut(); 64];
        for (i, p) in v.iter_mut().enumerate() {
            *p = h.malloc(tc, 8 + (i % 4) * 16);
        }
        let guard = h.malloc(core::ptr::null_mut(), 2000);
        for &p in &v {
            h.free(tc, p);
        }
        (*tc).flush_all(&h);
        let mut got = [core::ptr::null_mut(); 64];
        for (i, g) in got.iter_mut().enumerate() {
            *g = if i % 2 == 0 {
                h.malloc(core::ptr::null_mut(), 1 + i % 7)
            } else {
                h.memalign(core::ptr::null_mut(), 32 << (i % 4), 1 + i % 7)
            };
            g.write(1);
        }
        for &g in &got {
            h.free(core::ptr::null_mut(), g);
        }
        h.free(tc, guard);
        h.drop_cache(tc);
    }
}
