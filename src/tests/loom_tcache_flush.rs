//! Thread-cache refill and flush (`Heap::refill`, `Heap::flush_class` over `ThreadCache::flush`) racing frees
//! from another thread into the same arena.
//!
//! The owner's cache is attached to the main arena; it misses (refill under
//! `lock_some_arena`, which tries the lock first) and then flushes its class back (`flush` →
//! `release_slice` with `may_defer`: `try_lock`, else the remote list). Meanwhile another thread,
//! whose cache holds chunks of the main arena, flushes them back into it the same way.
//!
//! Catches `lock_acquire_relaxed` (the lock's `try_lock` fast path stops acquiring: the refill
//! touches the arena state while the other thread's flush is not ordered before it) and
//! `lock_release_relaxed`.

use super::{check_quiescent, heap, model, thread, Ptr};
use crate::size_class::request_class;

pub(crate) fn refill_and_flush_race_remote_flush() {
    model("tcache_refill_flush_vs_remote_flush", || {
        let h = heap(2);
        let owner = Ptr(h.new_cache()); // main arena
        let other = Ptr(h.new_cache()); // arena 1
        let cls = request_class(24).0;
        // Two chunks of the main arena, in the other thread's cache.
        let (x, y) = unsafe {
            let null = core::ptr::null_mut();
            (Ptr(h.malloc(null, 24)), Ptr(h.malloc(null, 24)))
        };
        unsafe {
            h.free(other.0, x.0);
            h.free(other.0, y.0);
            assert_eq!((*other.0).count(cls), 2);
        }
        let flusher = {
            let h = h.clone();
            thread::spawn(move || unsafe {
                h.flush_class(other.0, cls, 0, true);
                assert_eq!((*other.0).count(cls), 0);
            })
        };
        unsafe {
            let t = &mut *owner.0;
            let p = h.malloc(owner.0, 24); // miss: refill from the main arena
            assert!(!p.is_null());
            assert!(t.count(cls) <= t.max(cls));
            h.free(owner.0, p);
            h.flush_class(t, cls, 0, true);
            assert_eq!(t.count(cls), 0);
        }
        flusher.join().unwrap();
        unsafe {
            h.drop_cache(owner.0);
            h.drop_cache(other.0);
        }
        check_quiescent(&h);
    });
}

#[test]
fn loom_tcache_refill_flush_vs_remote_flush() {
    refill_and_flush_race_remote_flush();
}
