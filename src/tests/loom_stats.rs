//! Statistics (`Heap::stats`) read while the counters change: thread-cache counts written by
//! their owner without a lock, remote-pending bytes added and drained, arena figures changed
//! under the arena lock. Every figure must be whole and within bounds at any moment (no torn
//! or wrapped-below-zero value), and exact once the threads are done.
//!
//! Catches `tcache_count_torn` (a cache count kept as a plain integer: the reader's access races
//! the owner's write) and `remote_bytes_late` (remote bytes counted after the chain is
//! published: the drainer can subtract first and the figure wraps below zero).

use super::{check_quiescent, heap, model, thread, Ptr};
use crate::stats::Stats;

/// Bounds that hold at any moment: `pushable` is the most bytes that can ever be pending on
/// remote lists at once, `cached_bytes` the most the caches can hold.
fn check_figures(s: &Stats, pushable: usize, cached_bytes: usize) {
    assert!(s.arenas <= 2, "{s:?}");
    assert!(s.threads <= 2, "{s:?}");
    assert!(
        s.remote_pending <= pushable,
        "remote pending wrapped or torn: {s:?}"
    );
    assert!(s.tcache_bytes <= cached_bytes, "cache bytes torn: {s:?}");
    assert!(s.in_use <= s.mapped, "{s:?}");
    assert!(
        s.free_in_bins + s.quick_bytes + s.top + s.overhead <= s.arena_committed,
        "arena figures inconsistent: {s:?}"
    );
}

pub(crate) fn stats_while_counters_change() {
    model("stats_while_counters_change", || {
        let h = heap(2);
        let owner = Ptr(h.new_cache());
        // One block of the main arena to free remotely.
        let b = Ptr(unsafe { h.malloc(core::ptr::null_mut(), 200) });
        let size = unsafe { crate::chunk::Chunk::from_payload(b.0).size() };
        // Most the caches can hold: two caches × at most 4 cached classes (requests up to
        // 64 bytes) × 4 chunks × the largest of those chunks.
        let cached =
            2 * 4 * crate::size_class::CLASS_CHUNK_SIZE[crate::size_class::request_class(64).0] * 4;
        let worker = {
            let h = h.clone();
            thread::spawn(move || unsafe {
                let p = h.malloc(owner.0, 24); // refill: count changes
                h.free(owner.0, p); // push: count changes
                h.flush_class(owner.0, crate::size_class::request_class(24).0, 0, true);
                h.release_slice(&mut [b.0], 0, true, None); // remote free or locked free
            })
        };
        // Two reads while the worker runs: the second one's lock drains whatever the worker
        // pushed while the first one held the arena.
        // The worker's flush may go to the remote list too (lock busy): its chunks and `b`.
        let pushable = size + cached;
        for _ in 0..2 {
            let s = h.stats();
            check_figures(&s, pushable, cached);
        }
        worker.join().unwrap();
        let s = h.stats();
        check_figures(&s, pushable, cached);
        unsafe { h.drop_cache(owner.0) };
        check_quiescent(&h);
    });
}

#[test]
fn loom_stats_while_counters_change() {
    stats_while_counters_change();
}

/// The remote-pending figure alone: a thread frees a block of the main arena (remote list when
/// the reader holds the lock) while the reader takes two snapshots; the second one's lock
/// drains the list. The figure must never wrap below zero.
pub(crate) fn remote_pending_never_wraps() {
    model("stats_remote_pending_never_wraps", || {
        let h = heap(1);
        let b = Ptr(unsafe { h.malloc(core::ptr::null_mut(), 200) });
        let size = unsafe { crate::chunk::Chunk::from_payload(b.0).size() };
        let freer = {
            let h = h.clone();
            thread::spawn(move || unsafe {
                h.release_slice(&mut [b.0], 0, true, None);
            })
        };
        for _ in 0..2 {
            let s = h.stats();
            assert!(
                s.remote_pending <= size,
                "remote pending wrapped or torn: {s:?}"
            );
        }
        freer.join().unwrap();
        check_quiescent(&h);
    });
}

#[test]
fn loom_stats_remote_pending_never_wraps() {
    remote_pending_never_wraps();
}
