//! Loom models of the allocator's concurrent protocols, one protocol per file, each over the
//! real code paths of a private heap (`cfg(all(test, loom))`).
//!
//! | file | protocol |
//! |---|---|
//! | `loom_lock.rs` | the arena/registry lock alone: exclusion, publication, no lost wake-up (futex modelled) |
//! | `loom_registry.rs` | thread → arena attachment: cap, race for the last arena, try another arena when busy, reuse after exit |
//! | `loom_remote_free.rs` | frees pushed on an arena's lock-free remote list racing the owner's allocation and drain |
//! | `loom_run.rs` | frees pushed on a run's remote list racing the owner's exchange and each other, its owner's exit and another thread's adoption |
//! | `loom_tcache_flush.rs` | thread-cache refill and flush racing another thread's flush into the same arena |
//! | `loom_thread_exit.rs` | thread exit (flush, detach, recycle) racing a new thread's attach |
//! | `loom_stats.rs` | statistics read while the counters change |
//! | `loom_mutation.rs` | every planted bug (`sync::mutation`) is reported by its model, with its report |
//!
//! Run (see `docs/loom.md` for timings and the mutations each model catches):
//! `RUSTFLAGS="--cfg loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --lib --release loom_`
//!
//! Memory still comes from real mappings (loom tracks only its atomics and cells); the link
//! words that chunks carry between threads are shadowed by loom cells (`sync::shadow`).

#![allow(clippy::undocumented_unsafe_blocks)] // test code: every unsafe call is a heap entry point used as documented

mod loom_lock;
mod loom_registry;
mod loom_remote_free;
mod loom_run;
mod loom_stats;
mod loom_tcache_flush;
mod loom_thread_exit;

mod loom_mutation;

use crate::check;
use crate::config::Tunables;
use crate::heap::PrivateHeap;
use crate::sync::process::{AtomicUsize, Ordering};

pub(crate) use loom::sync::Arc;
pub(crate) use loom::thread;

/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set.
pub(crate) const DEFAULT_PREEMPTIONS: usize = 2;

/// Runs `f` under loom with the suite's bounds: the preemption bound from
/// `LOOM_MAX_PREEMPTIONS` (default [`DEFAULT_PREEMPTIONS`]), a branch cap that fits the heap's
/// paths, and a line on stderr with the number of executions and the time taken. With
/// `LOOM_PROGRESS=n` it also prints every n-th execution.
pub(crate) fn model<F>(name: &'static str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        b.max_branches = 20_000;
    }
    let bound = b.preemption_bound.unwrap_or(0);
    let progress: usize = std::env::var("LOOM_PROGRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let t0 = std::time::Instant::now();
    b.check(move || {
        let n = r.fetch_add(1, Ordering::Relaxed) + 1;
        if progress > 0 && n % progress == 0 {
            eprintln!("loom model {name}: execution {n}");
        }
        crate::sync::shadow::touch();
        f();
    });
    eprintln!(
        "loom model {name}: {} executions in {:.2?} (preemption bound {bound})",
        runs.load(Ordering::Relaxed),
        t0.elapsed()
    );
}

/// A private heap small enough to build once per execution: `arena_max` arenas at most, a
/// 64 MiB main reservation, thread caches of 4 chunks per class (fixed) for requests up to 64
/// bytes.
pub(crate) fn heap(arena_max: usize) -> Arc<PrivateHeap> {
    model_heap(arena_max, false)
}

/// [`heap`] with the small-block runs on (`Tunables::runs`).
pub(crate) fn heap_runs(arena_max: usize) -> Arc<PrivateHeap> {
    model_heap(arena_max, true)
}

fn model_heap(arena_max: usize, runs: bool) -> Arc<PrivateHeap> {
    let mut t = Tunables::defaults(1);
    t.arena_max = arena_max;
    t.main_reserve = 64 << 20;
    t.tcache_count = 4;
    // Fixed bounds: the models' flushes happen at the fourth chunk (growth is owner-only code).
    t.tcache_grow_bytes = 0;
    t.tcache_max_size = 64;
    t.runs = runs;
    Arc::new(PrivateHeap::new(&t).expect("private heap"))
}

/// A raw pointer that a model hands to another thread (the handoff itself is the spawn or a
/// join, both of which loom orders).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ptr<T>(pub *mut T);
// SAFETY: test-only courier; the model's spawn/join orders every use.
unsafe impl<T> Send for Ptr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Ptr<T> {}

/// Asserts that every live cache's arena is the one the heap's table holds at its index, that
/// the arena count respects the cap, and that the arenas' attach counts add up to the live
/// caches. Everything is read under the registry lock (held by `for_each_cache`), which is
/// what orders attaching and detaching.
pub(crate) fn check_attachment(h: &PrivateHeap) {
    let mut live = 0;
    let mut attached = None;
    h.for_each_cache(|tc| {
        let n = h.arena_count();
        assert!(
            n <= h.arena_max(),
            "arena cap exceeded: {n} > {}",
            h.arena_max()
        );
        if attached.is_none() {
            attached = Some(
                (0..n)
                    .map(|i| h.arena(i).attached.load(crate::sync::Ordering::Relaxed))
                    .sum::<usize>(),
            );
        }
        live += 1;
        // SAFETY: a live cache; its arena lives as long as the heap.
        let a = unsafe { &*(*tc).arena };
        assert!(a.index < n, "cache attached to an arena outside the table");
        assert!(
            core::ptr::eq(h.arena(a.index), a),
            "cache attached to an arena the table lost"
        );
    });
    if let Some(attached) = attached {
        assert_eq!(
            attached, live,
            "attach counts do not add up to the live caches"
        );
    }
}

/// After every thread finished and every cache was dropped: the heap passes its checker, no
/// chunk is lost (nothing in use, cached or pending) and every remote list is drained.
pub(crate) fn check_quiescent(h: &PrivateHeap) {
    // SAFETY: no other thread runs any more.
    if let Err(e) = unsafe { check::check_heap(h) } {
        panic!("heap check failed: {e}");
    }
    for i in 0..h.arena_count() {
        let g = h.arena(i).lock();
        // SAFETY: lock held; top valid.
        let top = unsafe { g.top.size() };
        let free = g.overhead + g.bins.free_bytes + g.quick_bytes + top;
        assert!(
            free <= g.committed,
            "arena {i} accounts more free than committed bytes ({free} > {}): a chunk freed \
             into an arena it does not belong to, or freed twice",
            g.committed
        );
    }
    let s = h.stats();
    assert_eq!(s.threads, 0, "live caches left: {s:?}");
    assert_eq!(s.tcache_bytes, 0, "bytes left in caches: {s:?}");
    assert_eq!(s.remote_pending, 0, "remote frees left pending: {s:?}");
    assert_eq!(s.in_use, 0, "chunks lost (in use with no owner): {s:?}");
    for i in 0..h.arena_count() {
        assert!(
            !h.arena(i).has_remote(),
            "remote list of arena {i} not drained"
        );
        assert_eq!(h.arena(i).attached.load(crate::sync::Ordering::Relaxed), 0);
    }
}
