//! Remote frees: a thread frees chunks of an arena it does not own (`Heap::release_slice` with
//! `may_defer`, the path of every thread-cache flush): when the arena's lock is busy the chain
//! goes on the arena's lock-free remote list (`Arena::push_remote`), racing the owner's own
//! allocation (`lock_some_arena`, `malloc_chunk`) and its drain of the list on every lock.
//!
//! Catches `remote_push_relaxed` (the pusher's CAS no longer releases the chain's links: the
//! drainer's read of a link is reported as a causality violation through `sync::shadow`).

use super::{check_quiescent, heap, model, thread, Ptr};

/// Two chunks of the main arena, allocated before the threads start.
fn two_blocks(h: &crate::heap::PrivateHeap) -> (Ptr<u8>, Ptr<u8>) {
    let null = core::ptr::null_mut();
    unsafe { (Ptr(h.malloc(null, 48)), Ptr(h.malloc(null, 200))) }
}

/// The owner allocates and frees on the main arena while another thread releases two
/// of its chunks.
pub(crate) fn remote_free_races_owner() {
    model("remote_free_races_owner", || {
        let h = heap(1);
        let (p, q) = two_blocks(&h);
        let freer = {
            let h = h.clone();
            thread::spawn(move || unsafe {
                h.release_slice(&mut [p.0, q.0], 0, true, None);
            })
        };
        // The owner: an allocation (locks the arena, drains), then its free.
        unsafe {
            let null = core::ptr::null_mut();
            let r = h.malloc(null, 48);
            assert!(!r.is_null());
            h.free(null, r);
        }
        freer.join().unwrap();
        check_quiescent(&h);
    });
}

#[test]
fn loom_remote_free_races_owner() {
    remote_free_races_owner();
}

/// Two threads push remote frees onto the same arena while a third holds and releases its lock:
/// concurrent pushers must not lose each other's chains.
pub(crate) fn two_pushers() {
    model("remote_free_two_pushers", || {
        let h = heap(1);
        let (p, q) = two_blocks(&h);
        let pushers: Vec<_> = [p, q]
            .into_iter()
            .map(|c| {
                let h = h.clone();
                thread::spawn(move || unsafe {
                    h.release_slice(&mut [c.0], 0, true, None);
                })
            })
            .collect();
        {
            let g = h.main_arena().lock();
            drop(g);
        }
        for t in pushers {
            t.join().unwrap();
        }
        check_quiescent(&h);
    });
}

#[test]
fn loom_remote_free_two_pushers() {
    two_pushers();
}

/// Three threads: the owner allocates through its cache (a refill that takes the lock and
/// drains) and flushes back, while two other threads free one main-arena chunk each. Every
/// chunk ends up freed exactly once.
pub(crate) fn two_freers_vs_cache_owner() {
    model("remote_free_two_freers_vs_cache_owner", || {
        let h = heap(1);
        let owner = Ptr(h.new_cache());
        let (p, q) = two_blocks(&h);
        let freers: Vec<_> = [p, q]
            .into_iter()
            .map(|c| {
                let h = h.clone();
                thread::spawn(move || unsafe {
                    h.release_slice(&mut [c.0], 0, true, None);
                })
            })
            .collect();
        unsafe {
            let t = owner.0;
            let r = h.malloc(t, 48); // refill: lock_some_arena, drain
            assert!(!r.is_null());
            h.free(t, r);
            h.flush_cache(t);
        }
        for f in freers {
            f.join().unwrap();
        }
        unsafe { h.drop_cache(owner.0) };
        check_quiescent(&h);
    });
}

#[test]
fn loom_remote_free_two_freers_vs_cache_owner() {
    two_freers_vs_cache_owner();
}
