//! Unit tests of the heap on private instances: a shadow model of live blocks (no overlap,
//! alignment, usable size, contents kept across realloc), the invariant checker after every
//! batch of operations, several caches driven from one thread (deterministic cross-cache frees),
//! and the accounting identity.

use super::*;
use crate::check::check_heap;
use crate::chunk::{Chunk, IS_MMAPPED, MIN_CHUNK};
use crate::config::MMAP_THRESHOLD_MAX;
use crate::link;
use crate::size_class::{chunk_class, request_to_chunk, SMALL_MAX_REQUEST};
use std::collections::BTreeMap;

/// A private heap whose clock stands still (`Shared::test_clock`): its time-based passes
/// (purges, quick-list reviews, cache collections) run only where a test moves the clock, so
/// no test depends on how fast the machine runs.
fn frozen(t: &Tunables) -> PrivateHeap {
    let h = PrivateHeap::new(t).expect("private heap");
    h.shared().test_clock.store(1 << 30, Ordering::Relaxed);
    h
}

/// [`tunables`] with runs off, for the tests of the arena's own mechanisms for the cached
/// classes (quick lists, remote bundles, carving in batches), which runs bypass.
fn without_runs() -> Tunables {
    let mut t = tunables();
    t.runs = false;
    t
}

fn tunables() -> Tunables {
    let mut t = Tunables::defaults(2);
    t.main_reserve = 256 << 20;
    t.arena_max = 3;
    t.runs = crate::config::runs_from_env();
    t
}

/// A frozen private heap with runs on and at most `arena_max` arenas.
fn frozen_with_runs(arena_max: usize) -> PrivateHeap {
    let mut t = tunables();
    t.runs = true;
    t.arena_max = arena_max;
    frozen(&t)
}

/// The run of run block `p`.
///
/// # Safety
/// `p` is a run block the caller holds.
unsafe fn run_of(p: *mut u8) -> *mut crate::run::Run {
    // SAFETY: caller.
    unsafe { crate::run::Run::of(Chunk::from_payload(p)).0 }
}

/// The end of a runs test: cache `by` frees `blocks`, `caches` are dropped, the heap is
/// trimmed, no run and no block is left, and the heap checks out.
///
/// # Safety
/// `blocks` are live blocks of `h`, each freed once here; the caches are `h`'s; no other
/// thread uses `h`'s caches.
unsafe fn free_all_and_drop(
    h: &PrivateHeap,
    by: *mut ThreadCache,
    blocks: &[*mut u8],
    caches: &[*mut ThreadCache],
) {
    // SAFETY: caller.
    unsafe {
        for &p in blocks {
            h.free(by, p);
        }
        for &c in caches {
            h.drop_cache(c);
        }
    }
    h.trim(0);
    let s = h.stats();
    assert_eq!((s.runs, s.run_bytes, s.in_use), (0, 0, 0), "{s}");
    // SAFETY: caller: no other thread uses the heap's caches.
    unsafe { check_heap(h) }.unwrap();
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy)]
struct Live {
    len: usize,
    seed: u8,
}

unsafe fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: caller: `p` is writable for `len` bytes.
        unsafe { *p.add(i) = seed ^ (i as u8) };
    }
}

unsafe fn verify(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        assert_eq!(
            // SAFETY: caller: `p` is readable for `len` bytes.
            unsafe { *p.add(i) },
            seed ^ (i as u8),
            "byte {i} of a {len}-byte block"
        );
    }
}

fn assert_no_overlap(live: &BTreeMap<usize, Live>, p: usize, len: usize) {
    if let Some((&q, l)) = live.range(..=p).next_back() {
        assert!(q + l.len <= p, "new block {p:#x} overlaps {q:#x}+{}", l.len);
    }
    if let Some((&q, _)) = live.range(p..).next() {
        assert!(p + len <= q, "new block {p:#x}+{len} overlaps {q:#x}");
    }
}

fn size_for(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 => rng.below(400_000) as usize + 1,
        1..=3 => rng.below(40_000) as usize + 1,
        _ => rng.below(1100) as usize,
    }
}

fn run_model(seed: u64, ops: usize, ncaches: usize) {
    let heap = frozen(&tunables());
    let caches: Vec<*mut ThreadCache> = (0..ncaches).map(|_| heap.new_cache()).collect();
    let mut rng = Rng(seed | 1);
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    for i in 0..ops {
        let tc = if ncaches == 0 {
            ptr::null_mut()
        } else {
            caches[rng.below(ncaches as u64) as usize]
        };
        // SAFETY: every pointer passed back comes from the model's live set; every cache is
        // driven by this one thread only.
        unsafe {
            match rng.below(10) {
                0..=3 => {
                    let n = size_for(&mut rng);
                    let (p, zero) = match rng.below(4) {
                        0 => (heap.calloc(tc, n), true),
                        1 => (heap.memalign(tc, 1 << (4 + rng.below(9)), n), false),
                        _ => (heap.malloc(tc, n), false),
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % 16, 0);
                    assert!(heap.usable_size(p) >= n);
                    if zero {
                        for k in 0..n {
                            assert_eq!(*p.add(k), 0, "calloc byte {k} of {n}");
                        }
                    }
                    assert_no_overlap(&live, p as usize, n.max(1));
                    let s = rng.next() as u8;
                    fill(p, n.max(1), s);
                    live.insert(
                        p as usize,
                        Live {
                            len: n.max(1),
                            seed: s,
                        },
                    );
                }
                4..=6 if !live.is_empty() => {
                    let k = *live
                        .keys()
                        .nth(rng.below(live.len() as u64) as usize)
                        .unwrap();
                    let l = live.remove(&k).unwrap();
                    verify(k as *mut u8, l.len, l.seed);
                    heap.free(tc, k as *mut u8);
                }
                7 | 8 if !live.is_empty() => {
                    let k = *live
                        .keys()
                        .nth(rng.below(live.len() as u64) as usize)
                        .unwrap();
                    let l = live.remove(&k).unwrap();
                    let n = size_for(&mut rng).max(1);
                    let q = heap.realloc(tc, k as *mut u8, n);
                    assert!(!q.is_null());
                    assert!(heap.usable_size(q) >= n);
                    verify(q, l.len.min(n), l.seed);
                    assert_no_overlap(&live, q as usize, n);
                    fill(q, n, l.seed);
                    live.insert(
                        q as usize,
                        Live {
                            len: n,
                            seed: l.seed,
                        },
                    );
                }
                _ => {
                    if rng.below(50) == 0 {
                        heap.trim(rng.below(2) as usize * 4096);
                    } else if ncaches > 0 && rng.below(10) == 0 {
                        heap.flush_cache(tc);
                    }
                }
            }
            if i % 97 == 0 {
                check_heap(&heap).unwrap();
            }
        }
    }
    // SAFETY: as above.
    unsafe {
        check_heap(&heap).unwrap();
        for (&k, l) in &live {
            verify(k as *mut u8, l.len, l.seed);
            let tc = if ncaches == 0 {
                ptr::null_mut()
            } else {
                caches[k % ncaches]
            };
            heap.free(tc, k as *mut u8);
        }
        for &tc in &caches {
            heap.drop_cache(tc);
        }
        check_heap(&heap).unwrap();
    }
    let s = heap.stats();
    assert_eq!(s.in_use, 0, "everything was freed: {s}");
    assert_eq!(s.tcache_bytes, 0);
    assert_eq!(s.huge_blocks, 0);
    // With runs on, the arenas may keep orphans whose last blocks came back after their
    // cache's teardown: `run_free`.
    assert_eq!(
        s.arena_committed,
        s.overhead + s.free_in_bins + s.quick_bytes + s.top + s.run_free + s.run_remote,
        "{s}"
    );
    // `malloc_trim` gives every one of them back.
    heap.trim(0);
    let s = heap.stats();
    assert_eq!(s.run_free + s.run_remote, 0, "runs left after a trim: {s}");
    assert_eq!(
        s.arena_committed,
        s.overhead + s.free_in_bins + s.quick_bytes + s.top,
        "{s}"
    );
}

#[test]
fn model_without_caches() {
    for seed in 1..4 {
        run_model(seed, 3000, 0);
    }
}

#[test]
fn model_one_cache() {
    for seed in 10..14 {
        run_model(seed, 4000, 1);
    }
}

#[test]
fn model_several_caches_cross_frees() {
    for seed in 20..24 {
        run_model(seed, 4000, 4);
    }
}

#[test]
fn arena_cap_and_reuse() {
    let heap = frozen(&tunables());
    let a: Vec<_> = (0..6).map(|_| heap.new_cache()).collect();
    assert_eq!(heap.arena_count(), 3, "cap of 3 arenas");
    // SAFETY: caches of this heap, used by this thread only.
    unsafe {
        let arenas: Vec<_> = a.iter().map(|&tc| (*tc).arena).collect();
        // Six threads on three arenas: two each, in index order (the least used, lowest index
        // on ties).
        for (i, &ar) in arenas.iter().enumerate() {
            assert!(
                ptr::eq(ar, heap.arena(i % 3)),
                "cache {i} on the wrong arena"
            );
        }
        heap.drop_cache(a[1]);
        // The arena that lost a thread is the least used: the next new thread gets it.
        let b = heap.new_cache();
        assert!(
            ptr::eq((*b).arena, arenas[1]),
            "the new thread did not take the arena a thread left"
        );
        assert_eq!((*arenas[1]).attached.load(Ordering::Relaxed), 2);
        let dropped = a[1];
        for tc in a.into_iter().filter(|&t| t != dropped).chain([b]) {
            heap.drop_cache(tc);
        }
    }
    for i in 0..heap.arena_count() {
        assert_eq!(heap.arena(i).attached.load(Ordering::Relaxed), 0);
    }
}

#[test]
fn a_flush_into_a_busy_arena_goes_remote_as_bundles() {
    let heap = frozen(&without_runs());
    let tc = heap.new_cache();
    // SAFETY: one thread drives the cache; blocks are ours.
    unsafe {
        for &n in &[24usize, 200, 1000] {
            let cls = crate::size_class::request_class(n).0;
            // Fill the stack of this class with 40 chunks of the cache's own arena.
            let ps: Vec<*mut u8> = (0..40).map(|_| heap.malloc(tc, n)).collect();
            for &p in &ps {
                fill(p, n, 7);
                heap.free(tc, p);
            }
            let held = (*tc).count(cls);
            assert!(held >= 32, "{held} cached");
            let arena = heap.arena_of(Chunk::from_payload(ps[0]));
            let bytes = held * CLASS_CHUNK_SIZE[cls];
            // Hold the lock: the flush must defer everything to the remote list, in bundles.
            let g = arena.lock();
            heap.flush_class(tc, cls, 0, true);
            assert_eq!((*tc).count(cls), 0);
            assert!(arena.has_remote());
            assert_eq!(arena.remote_bytes.load(Ordering::Relaxed), bytes);
            drop(g);
            // The next lock holder drains: every chunk lands in a quick list or the bins.
            let _g = arena.lock();
            assert!(!arena.has_remote());
            assert_eq!(arena.remote_bytes.load(Ordering::Relaxed), 0);
            drop(_g);
            check_heap(&heap).unwrap();
            // And they are all usable again, each once.
            let again: Vec<*mut u8> = (0..40).map(|_| heap.malloc(tc, n)).collect();
            let mut sorted = again.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), again.len(), "a chunk handed out twice");
            for &p in &again {
                heap.free(tc, p);
            }
        }
        heap.drop_cache(tc);
        check_heap(&heap).unwrap();
    }
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn remote_list_is_drained_by_the_next_lock_holder() {
    let heap = frozen(&without_runs());
    let tc = heap.new_cache();
    // SAFETY: one thread drives the cache; blocks are ours.
    unsafe {
        let mut ps: Vec<*mut u8> = (0..10).map(|_| heap.malloc(tc, 100)).collect();
        let arena = heap.arena_of(Chunk::from_payload(ps[0]));
        let bytes: usize = ps.iter().map(|&p| Chunk::from_payload(p).size()).sum();
        // hold the lock so the release must go through the remote list
        let g = arena.lock();
        heap.release_slice(&mut ps, 0, true, None);
        for &p in &ps {
            assert!(
                link::has_key(p),
                "a remote-pending chunk carries the freed mark"
            );
        }
        assert!(arena.has_remote());
        drop(g);
        let _g = arena.lock();
        assert!(!arena.has_remote());
        assert_eq!(arena.remote_bytes.load(Ordering::Relaxed), 0);
        drop(_g);
        assert!(bytes >= 10 * 112);
        heap.drop_cache(tc);
        check_heap(&heap).unwrap();
    }
    assert_eq!(heap.stats().in_use, 0);
}

/// The most a block returned by `realloc(p, n)` may hold: the headroom bound (chunk at most a
/// quarter above the request's chunk; small chunks are never shrunk; a huge block's usable size
/// at most a quarter above `n`, or four pages, plus page rounding).
fn realloc_usable_bound(n: usize, huge: bool) -> usize {
    if huge {
        let ps = os::page_size();
        n + (n / 4).max(4 * ps) + ps
    } else {
        let nb = request_to_chunk(n).unwrap();
        (nb + nb / 4).max(1024 + HEADER + 16) - HEADER
    }
}

/// Grows (then shrinks) one block through `steps` on a fragmented private heap, checking
/// contents, `usable_size ≥ n` and the headroom bound after each call; returns how many calls
/// had to grow the block (`n` above its usable size).
fn realloc_walk(heap: &PrivateHeap, tc: *mut ThreadCache, steps: &[usize]) -> usize {
    let mut growths = 0;
    // SAFETY: private heap driven from this thread; `p` is live throughout.
    unsafe {
        let mut p = heap.malloc(tc, steps[0]);
        let mut len = steps[0];
        fill(p, len, 7);
        for (i, &n) in steps.iter().enumerate().skip(1) {
            growths += usize::from(n > heap.usable_size(p));
            let q = heap.realloc(tc, p, n);
            assert!(!q.is_null());
            verify(q, len.min(n), 7);
            let u = heap.usable_size(q);
            let huge = Chunk::from_payload(q).head() & IS_MMAPPED != 0;
            assert!(u >= n, "usable {u} < {n}");
            assert!(
                u <= realloc_usable_bound(n, huge),
                "usable {u} for {n} (huge {huge})"
            );
            fill(q, n, 7);
            p = q;
            len = n;
            if i % 256 == 0 {
                check_heap(heap).unwrap();
            }
        }
        check_heap(heap).unwrap();
        heap.free(tc, p);
    }
    growths
}

#[test]
fn realloc_headroom_keeps_contents_and_bound() {
    let heap = frozen(&tunables());
    let tc = heap.new_cache();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        // Fragment the arena: every other block stays live, so no block can grow in place for
        // long.
        let ps: Vec<*mut u8> = (0..4000).map(|i| heap.malloc(tc, 16 + i % 700)).collect();
        for &p in ps.iter().step_by(2) {
            heap.free(tc, p);
        }
        let step16: Vec<usize> = (1..=4096).map(|i| i * 16).collect();
        let growths = realloc_walk(&heap, tc, &step16);
        // +16 B steps to 64 KiB: without headroom every step past 32 KiB (and most below)
        // would have to grow the block under the lock; with it, one in ~25% of growth does.
        assert!(growths < 120, "{growths} growths over 4096 steps");
        let mut x15 = vec![16];
        while *x15.last().unwrap() < 600 << 10 {
            x15.push((x15.last().unwrap() * 3 / 2 + 15) & !15);
        }
        realloc_walk(&heap, tc, &x15);
        // Past the mmap threshold and back down, by small and large steps.
        let mut mixed: Vec<usize> = (0..300).map(|i| (120 << 10) + i * 1000).collect();
        mixed.extend((0..300).map(|i| (420 << 10) - i * 1000));
        mixed.extend([
            100_000, 40_000, 33_000, 32_768, 5000, 1000, 200, 16, 1, 70_000,
        ]);
        realloc_walk(&heap, tc, &mixed);
        let rev: Vec<usize> = step16.iter().rev().copied().collect();
        realloc_walk(&heap, tc, &rev);
        for &p in ps.iter().skip(1).step_by(2) {
            heap.free(tc, p);
        }
        heap.drop_cache(tc);
        check_heap(&heap).unwrap();
    }
    let s = heap.stats();
    assert_eq!(s.in_use, 0, "{s}");
    assert_eq!(s.huge_blocks, 0);
}

/// A large block that `realloc` must move goes to top (when top has the room), not into a
/// best-fit hole, so that its later growth is in place.
#[test]
fn realloc_moves_large_blocks_to_top() {
    let heap = frozen(&tunables());
    let tc = ptr::null_mut();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let hole = heap.malloc(tc, 70_000);
        let g1 = heap.malloc(tc, 100);
        let p = heap.malloc(tc, 40_000);
        let g2 = heap.malloc(tc, 100);
        let big = heap.malloc(tc, 300_000); // top room without growth, freed into top below
        heap.free(tc, big);
        heap.free(tc, hole); // a 70 KB hole: a best fit for 50 KB, hemmed in by `g1`
        fill(p, 40_000, 3);
        let q = heap.realloc(tc, p, 50_000);
        assert_ne!(q, p, "premise: `g2` blocks in-place growth");
        verify(q, 40_000, 3);
        fill(q, 50_000, 3);
        for n in [60_000, 90_000, 120_000] {
            let r = heap.realloc(tc, q, n);
            assert_eq!(r, q, "growth to {n} is in place");
            verify(r, 50_000, 3);
        }
        check_heap(&heap).unwrap();
        for b in [q, g1, g2] {
            heap.free(tc, b);
        }
        check_heap(&heap).unwrap();
    }
    assert_eq!(heap.stats().in_use, 0);
}

#[test]
fn grow_target_bound_and_classes() {
    let mut size = MIN_CHUNK;
    while size < 300 << 10 {
        for nb in [
            size + 16,
            size + 32,
            size + size / 8,
            size + size / 2,
            2 * size,
        ] {
            let Some(nb) = request_to_chunk(nb - HEADER) else {
                continue;
            };
            let t = grow_target(size, nb);
            assert!(t >= nb && t % ALIGN == 0, "size {size} nb {nb} -> {t}");
            assert!(t <= (nb + nb / 4).max(nb), "size {size} nb {nb} -> {t}");
            if nb <= MAX_CLASS_REQUEST + HEADER && t <= MAX_CLASS_REQUEST + HEADER {
                assert!(
                    chunk_class(t).is_some(),
                    "size {size} nb {nb} -> {t} not a class"
                );
            }
        }
        size += 16 + size / 16 / 16 * 16;
    }
}

// --- regressions found by the fuzz campaigns ---

fn fuzz_regression_heap() -> PrivateHeap {
    let mut t = Tunables::defaults(2);
    t.main_reserve = 64 << 20;
    t.runs = crate::config::runs_from_env();
    frozen(&t)
}

/// Regression (found by the `capi` fuzz target): a chunk that had been in a thread cache kept
/// the cache key at payload+8 after it went back to the arena and merged into top; a block
/// carved from top at the same address, whose owner never wrote bytes 8..16, was then taken for
/// a double free by `free` (and for a use after free by `realloc`).
#[test]
fn stale_cache_key_is_not_a_double_free() {
    let h = frozen(&without_runs());
    let tc = h.new_cache();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let p = h.malloc(tc, 24);
        h.free(tc, p); // cached: the key is at p+8
        h.flush_cache(tc); // back to the arena (onto a quick list)
        h.trim(0); // consolidates the quick lists: the chunk merges into top
        let q = h.malloc(core::ptr::null_mut(), 40); // carved from top, same address
        assert_eq!(
            p, q,
            "premise: the block comes back from top at the same address"
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
    let h = fuzz_regression_heap();
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
        h.flush_cache(tc);
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

// --- quick-list policy ---

fn quick_bytes(h: &Heap) -> usize {
    (0..h.arena_count())
        .map(|i| h.arena(i).lock().quick_bytes)
        .sum()
}

fn quick_chunks(h: &Heap) -> usize {
    (0..h.arena_count())
        .map(|i| {
            let g = h.arena(i).lock();
            (0..crate::size_class::NSMALL_CLASSES)
                .map(|c| g.quick_count(c))
                .sum::<usize>()
        })
        .sum()
}

/// Allocates a block of each size in `sizes` through `tc`, writes it, then frees them all in
/// `order`.
///
/// # Safety
/// `tc` is a cache of `h` owned by this thread.
unsafe fn mix_round(h: &Heap, tc: *mut ThreadCache, sizes: &[usize], order: &[usize]) {
    let mut ptrs = vec![ptr::null_mut::<u8>(); sizes.len()];
    for (p, &n) in ptrs.iter_mut().zip(sizes) {
        // SAFETY: caller: our cache; the block is fresh and at least `n` bytes.
        unsafe {
            *p = h.malloc(tc, n);
            assert!(!p.is_null());
            p.write(1);
        }
    }
    for &i in order {
        // SAFETY: each block is live and freed once.
        unsafe { h.free(tc, ptrs[i]) };
    }
}

fn shuffled_mix(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng(seed);
    let sizes: Vec<usize> = (0..n).map(|_| 16 + rng.below(1000) as usize).collect();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    (sizes, order)
}

/// The quick lists keep as much as the program frees, so that the same mix allocated again is
/// served from them without committing more memory; once the program does other things for
/// two aging epochs, the unused chunks are merged into the bins, coalesce and are trimmed.
#[test]
fn quick_lists_grow_with_reuse_and_age_out_when_unused() {
    // Fixed cache bounds: what the lists keep does not then depend on when the cache's
    // collections ran (they move chunks between the cache and the lists).
    let mut t = without_runs();
    t.tcache_grow_bytes = 0;
    let h = frozen(&t);
    let tc = h.new_cache();
    let (sizes, order) = shuffled_mix(30_000, 7);
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        mix_round(&h, tc, &sizes, &order);
        let kept = quick_bytes(&h);
        assert!(
            kept > 8 << 20,
            "the quick lists kept only {kept} bytes of a ~15 MB mix"
        );
        let committed = h.stats().arena_committed;
        for _ in 0..3 {
            mix_round(&h, tc, &sizes, &order);
            check_heap(&h).unwrap();
            let now = h.stats().arena_committed;
            assert!(
                now <= committed + (1 << 20),
                "reusing the same mix committed more memory: {committed} -> {now}"
            );
        }
        // Other work: blocks too large for the quick lists (and the thread cache). 2000 of
        // them are 160 MB of traffic, five epochs by the bytes alone, but an epoch also needs
        // a quarter as many operations as the lists hold chunks (so that merging them, ~70 ns each, costs
        // at most about one merge per operation): nothing is merged yet. (The cache is emptied
        // first, so that every small block is on a quick list and the whole mix can coalesce.)
        h.flush_cache(tc);
        let kept = quick_bytes(&h);
        let chunks = quick_chunks(&h);
        let churn = |from: usize, to: usize| {
            for i in from..to {
                let p = h.malloc(tc, (40 << 10) + (i % 7) * 16);
                assert!(!p.is_null());
                p.write(1);
                h.free(tc, p);
            }
        };
        churn(0, 2000);
        assert_eq!(
            quick_bytes(&h),
            kept,
            "4000 operations aged quick lists of {chunks} chunks"
        );
        // Two epochs of operations (each iteration is two: a malloc and a free).
        churn(2000, 2000 + chunks);
        check_heap(&h).unwrap();
        let left = quick_bytes(&h);
        assert!(
            left < 1 << 20,
            "{left} bytes still in the quick lists after two idle epochs"
        );
        let after = h.stats().arena_committed;
        assert!(
            after < committed / 2,
            "aged chunks were not coalesced and trimmed: committed {committed} -> {after}"
        );
        assert!(h.stats().free_chunks < 100);
        h.drop_cache(tc);
    }
}

/// `quick_max` bounds the quick lists whatever the demand.
#[test]
fn quick_lists_respect_quick_max() {
    let mut t = tunables();
    t.quick_max = 1 << 20;
    let h = frozen(&t);
    let tc = h.new_cache();
    let (sizes, order) = shuffled_mix(10_000, 11);
    // SAFETY: as above.
    unsafe {
        for _ in 0..2 {
            mix_round(&h, tc, &sizes, &order);
            assert!(quick_bytes(&h) <= 1 << 20);
            check_heap(&h).unwrap();
        }
        h.drop_cache(tc);
    }
}

/// Right after a big batch of small blocks, whose chunks wait on the quick lists for the next
/// batch, a block that `realloc` grows out of the class range and on to 1 MiB gets fresh memory
/// for it, within the growth budget (an eighth of what the lists hold), instead of merging all
/// the batch's chunks first (~70 ns each); its contents survive every step. A demand beyond the
/// budget merges the lists, and their memory serves it.
#[test]
fn growth_after_a_batch_keeps_the_quick_lists_within_a_budget() {
    let h = frozen(&tunables());
    let tc = h.new_cache();
    let (sizes, order) = shuffled_mix(30_000, 5);
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        mix_round(&h, tc, &sizes, &order);
        // Every chunk of the mix on a quick list of the cache's arena, the main one, which the
        // cacheless calls below use too.
        h.flush_cache(tc);
        assert!(ptr::eq((*tc).arena, h.main_arena()));
        let kept = quick_bytes(&h);
        let committed = h.stats().arena_committed;
        let budget = kept / crate::arena::QUICK_GROW_SHARE;
        let mut steps = vec![16];
        while *steps.last().unwrap() < 1 << 20 {
            steps.push((steps.last().unwrap() * 3 / 2 + 15) & !15);
        }
        // Without a cache, each small step takes at most one chunk from a quick list (and the
        // old block goes back to one).
        realloc_walk(&h, ptr::null_mut(), &steps);
        let left = quick_bytes(&h);
        assert!(
            left + steps.len() * (1024 + HEADER) >= kept,
            "the growth merged the batch's quick lists: {kept} -> {left} bytes"
        );
        let grown = h.stats().arena_committed.saturating_sub(committed);
        assert!(
            grown <= budget + COMMIT_STEP,
            "grew {grown} bytes past a budget of {budget}"
        );
        // Blocks of 100 KiB (below the mmap threshold), twice the budget in all.
        let n = 2 * budget / (100 << 10) + 4;
        let big: Vec<*mut u8> = (0..n)
            .map(|i| {
                let p = h.malloc(ptr::null_mut(), 100 << 10);
                assert!(!p.is_null());
                p.write(i as u8);
                p
            })
            .collect();
        assert_eq!(
            quick_bytes(&h),
            0,
            "a demand past the budget kept the lists"
        );
        let after = h.stats().arena_committed;
        assert!(
            after <= committed + budget + 2 * COMMIT_STEP,
            "the merged chunks did not serve the demand: committed {committed} -> {after} \
             ({n} blocks of 100 KiB, budget {budget})"
        );
        check_heap(&h).unwrap();
        for (i, &p) in big.iter().enumerate() {
            assert_eq!(p.read(), i as u8);
            h.free(ptr::null_mut(), p);
        }
        h.drop_cache(tc);
        check_heap(&h).unwrap();
    }
    assert_eq!(h.stats().in_use, 0);
}

/// The trim/regrow thrash of `compare`'s `realloc` (tens of MiB freed into top and built again,
/// round after round): an arena whose automatic trims are undone by its next growth raises its
/// floor until the rounds stop trimming — past the 16 MiB the floor was capped at before, which
/// left a 24 MiB round trimming (and faulting its pages in again) forever — without committing
/// more than a round needs; once the rounds stop and other work goes on, the floor decays and
/// the next free into top gives the memory back.
#[test]
fn trim_floor_follows_regrowth_and_decays_when_unused() {
    let mut t = tunables();
    t.mmap_threshold = 8 << 20;
    t.mmap_threshold_dynamic = false;
    let h = frozen(&t);
    const BLOCK: usize = 1 << 20;
    const ROUND: usize = 24; // 24 MiB a round
    let floor = |h: &Heap| h.main_arena().lock().trim_floor();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let mut kept_rounds = 0;
        let mut peak = 0;
        for round in 0..16 {
            let ps: Vec<*mut u8> = (0..ROUND)
                .map(|i| {
                    let p = h.malloc(ptr::null_mut(), BLOCK);
                    assert!(!p.is_null());
                    fill(p, 64, (round + i) as u8);
                    p.add(BLOCK - 1).write(7);
                    p
                })
                .collect();
            peak = peak.max(h.stats().arena_committed);
            for (i, &p) in ps.iter().enumerate() {
                verify(p, 64, (round + i) as u8);
                h.free(ptr::null_mut(), p);
            }
            check_heap(&h).unwrap();
            // Kept: the round's memory is still committed after its frees (no trim).
            if h.stats().arena_committed >= ROUND * BLOCK {
                kept_rounds += 1;
            } else {
                kept_rounds = 0;
            }
        }
        assert!(
            kept_rounds >= 4,
            "the last rounds still trimmed: floor {} KiB, {kept_rounds} rounds kept",
            floor(&h) >> 10
        );
        assert!(
            floor(&h) > ROUND * BLOCK && floor(&h) > 16 << 20,
            "floor {} KiB",
            floor(&h) >> 10
        );
        assert!(
            peak <= ROUND * (BLOCK + 64) + 4 * COMMIT_STEP,
            "committed {peak} for rounds of {} bytes",
            ROUND * BLOCK
        );
        // Other work, outside the thread caches and quick lists: 40 KiB blocks. The floor
        // (32 MiB) halves after an epoch (4 × floor of traffic) in which the top never went below
        // half of it, and again after the next; the frees into top then trim.
        let before = h.stats().arena_committed;
        let mut pairs = 0;
        while h.stats().arena_committed >= before && pairs < 20_000 {
            let p = h.malloc(ptr::null_mut(), 40 << 10);
            assert!(!p.is_null());
            p.write(1);
            h.free(ptr::null_mut(), p);
            pairs += 1;
        }
        let after = h.stats().arena_committed;
        assert!(
            after < 2 << 20,
            "committed {before} -> {after} after {pairs} pairs of other work (floor {} KiB)",
            floor(&h) >> 10
        );
        // About two epochs of 4 × 32 MiB, each pair 80 KiB of traffic.
        assert!(pairs > 1000, "the floor decayed after only {pairs} pairs");
        check_heap(&h).unwrap();
    }
    assert_eq!(h.stats().in_use, 0);
}

/// A thread cache's refills of a class above the small ones carve blocks of at most
/// `BATCH_BLOCK_MAX` bytes, so that the holes of a fragmented heap serve them: with 16 KiB holes
/// between live blocks, every 2 KiB block of a long run of refills (whose batches double to
/// half a list, 16 chunks: one 33 KiB block, which no hole holds) comes from the holes, not from
/// top, and the refills still take their whole batches (few lock holds).
#[test]
fn medium_refills_fit_the_holes_of_a_fragmented_heap() {
    let h = frozen(&without_runs());
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        // 100 holes of 16 KiB, each between two live 64-byte blocks (cacheless: the main arena).
        let mut holes = Vec::new();
        let mut pins = Vec::new();
        for _ in 0..100 {
            holes.push(h.malloc(ptr::null_mut(), (16 << 10) - HEADER));
            pins.push(h.malloc(ptr::null_mut(), 64));
        }
        let (lo, hi) = (holes[0] as usize, pins[99] as usize);
        for &p in &holes {
            h.free(ptr::null_mut(), p);
        }
        let tc = h.new_cache();
        assert!(ptr::eq((*tc).arena, h.main_arena()));
        let cls = request_class(2000).0;
        assert!(CLASS_CHUNK_SIZE[cls] > SMALL_MAX_REQUEST + HEADER);
        let mut most_cached = 0;
        let blocks: Vec<*mut u8> = (0..300)
            .map(|i| {
                let p = h.malloc(tc, 2000);
                assert!(!p.is_null());
                p.write(i as u8);
                most_cached = most_cached.max((*tc).count(cls));
                p
            })
            .collect();
        // A batch of more than one block (8 KiB holds three of these chunks).
        assert!(
            most_cached >= 8,
            "refills took at most {most_cached} chunks"
        );
        for (i, &p) in blocks.iter().enumerate() {
            let a = p as usize;
            assert!(
                a > lo && a < hi,
                "block {i} at {a:#x} is outside the holes [{lo:#x}, {hi:#x})"
            );
        }
        check_heap(&h).unwrap();
        for (i, &p) in blocks.iter().enumerate() {
            assert_eq!(p.read(), i as u8);
            h.free(tc, p);
        }
        h.drop_cache(tc);
        for &p in &pins {
            h.free(ptr::null_mut(), p);
        }
        check_heap(&h).unwrap();
    }
    assert_eq!(h.stats().in_use, 0);
}

/// A refill that finds only chunks one step above its class (whose 16-byte remainder cannot be
/// split off) still serves the request: with one-chunk refills (`tcache_count` 1) and no quick
/// lists (`quick_max` 0), the batch took such a chunk, gave it back (it is not of the class, so
/// it cannot go on the stack) and took it again until its tries ran out, and `malloc` returned
/// null with memory to spare.
#[test]
fn a_refill_that_meets_only_inexact_chunks_still_allocates() {
    let mut t = tunables();
    t.tcache_count = 1;
    t.quick_max = 0;
    let h = frozen(&t);
    let tc = h.new_cache();
    // SAFETY: private heap driven from this thread only; blocks are freed once.
    unsafe {
        // 80-byte chunks (64-byte requests) between 32-byte separators that stay in use, so
        // the freed ones cannot coalesce; then freed, so the bins hold 80-byte chunks only.
        let mut keep = Vec::new();
        let mut freed = Vec::new();
        for _ in 0..8 {
            freed.push(h.malloc(tc, 64));
            keep.push(h.malloc(tc, 16));
        }
        for &p in &freed {
            h.free(tc, p);
        }
        h.flush_cache(tc);
        // 48-byte requests: 64-byte chunks, of which there are none free.
        let mut got = Vec::new();
        for i in 0..8 {
            let p = h.malloc(tc, 48);
            assert!(
                !p.is_null(),
                "request {i}: null with 80-byte chunks free and top to spare"
            );
            p.write_bytes(i as u8, 48);
            got.push(p);
        }
        check_heap(&h).unwrap();
        for (i, &p) in got.iter().enumerate() {
            assert!(
                (0..48).all(|k| *p.add(k) == i as u8),
                "block {i} lost its contents"
            );
            h.free(tc, p);
        }
        for p in keep {
            h.free(tc, p);
        }
        h.drop_cache(tc);
        check_heap(&h).unwrap();
    }
}

/// A long quick list (many bundles of one class): every chunk is counted and found by the
/// checker, and none is handed out twice when a second round takes them back.
#[test]
fn a_long_quick_list_keeps_every_chunk_once() {
    let h = frozen(&without_runs());
    let tc = h.new_cache();
    let n = 8292;
    // SAFETY: private heap driven from this thread only; blocks are freed once.
    unsafe {
        let blocks: Vec<*mut u8> = (0..n).map(|_| h.malloc(tc, 48)).collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        for &p in &blocks {
            h.free(tc, p);
        }
        h.flush_cache(tc);
        h.drain_ring(tc);
        h.flush_cache(tc);
        check_heap(&h).unwrap();
        let queued = quick_chunks(&h);
        assert!(
            queued > n / 2,
            "only {queued} of {n} chunks on the quick lists"
        );
        let mut again: Vec<*mut u8> = (0..n).map(|_| h.malloc(tc, 48)).collect();
        assert!(again.iter().all(|p| !p.is_null()));
        check_heap(&h).unwrap();
        again.sort_unstable();
        again.dedup();
        assert_eq!(again.len(), n, "a chunk was handed out twice");
        for p in again {
            h.free(tc, p);
        }
        h.drop_cache(tc);
        check_heap(&h).unwrap();
    }
}

/// Whether the OS page holding `p` is resident (`mincore`).
fn page_resident(p: *const u8) -> bool {
    let ps = crate::os::page_size();
    let mut v = 0u8;
    // SAFETY: mincore inspects one page of our own mapping and writes one byte into `v`.
    let r = unsafe { libc::mincore((p as usize & !(ps - 1)) as *mut _, 1, &mut v) };
    assert_eq!(r, 0, "mincore failed");
    v & 1 != 0
}

/// The purge pass runs at most once per `purge_delay_ms`, and purges only chunks already free
/// at the previous pass: blocks freed and taken again within the delay keep their pages (no
/// fault storm for programs that churn large blocks: `c-large`), while blocks that stay free
/// lose their pages after one to two delays.
#[test]
fn purge_waits_for_its_delay_and_takes_only_aged_chunks() {
    const BLOCK: usize = 512 << 10;
    const N: usize = 40; // 20 MiB per set: more than PURGE_DEBT
    const _: () = assert!(BLOCK * N > crate::config::PURGE_DEBT);
    let mut t = tunables();
    t.mmap_threshold = 4 << 20;
    t.mmap_threshold_dynamic = false;
    t.purge_delay_ms = 300;
    let h = frozen(&t);
    let tc = h.new_cache();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let set = |h: &PrivateHeap| {
            (0..N)
                .map(|_| {
                    let p = h.malloc(tc, BLOCK);
                    assert!(!p.is_null());
                    ptr::write_bytes(p, 0xA5, BLOCK);
                    // A guard keeps the blocks from coalescing with each other or with top
                    // (above the thread cache's sizes, so it is carved right after the block).
                    assert!(!h.malloc(tc, 40 << 10).is_null());
                    p
                })
                .collect::<Vec<_>>()
        };
        let x = set(&h);
        let y = set(&h);
        let z = set(&h);
        let mid = |p: *mut u8| p.add(BLOCK / 2) as *const u8;
        for &p in &x {
            h.free(tc, p);
        }
        // Freeing `y` right after `x` makes another pass due by traffic, but not by time.
        for &p in &y {
            h.free(tc, p);
        }
        assert!(
            x.iter().chain(&y).all(|&p| page_resident(mid(p))),
            "a pass ran within the delay, or took chunks on their first pass"
        );
        h.shared()
            .test_clock
            .fetch_add(t.purge_delay_ms + 50, Ordering::Relaxed);
        for &p in &z {
            h.free(tc, p);
        }
        // The first pass ran when `x`'s frees reached PURGE_DEBT, so it aged the blocks
        // freed before that (the first 32); this one purges them.
        let aged = crate::config::PURGE_DEBT / BLOCK - 1;
        let purged = x.iter().filter(|&&p| !page_resident(mid(p))).count();
        assert!(
            purged >= aged,
            "only {purged} of {N} chunks free for more than a delay lost their pages"
        );
        assert!(
            y.iter().all(|&p| page_resident(mid(p))),
            "chunks freed after the first pass lost their pages on their first pass"
        );
        check_heap(&h).unwrap();
        // The purged blocks still serve requests, their pages faulting in as zeros.
        let again = set(&h);
        for &p in &again {
            h.free(tc, p);
        }
        check_heap(&h).unwrap();
        h.drop_cache(tc);
    }
}

/// A class that a thread allocates and frees in batches larger than its stack grows its bound
/// until a batch fits (no more arena traffic for it), within the cache's budget; once the
/// thread moves on to other classes, collections give the idle class's chunks and grown bound
/// back.
#[test]
fn cache_bounds_grow_for_batches_and_shrink_when_idle() {
    const BATCH: usize = 256;
    let h = frozen(&tunables());
    let tc = h.new_cache();
    let cls = chunk_class(4096 + HEADER).unwrap().0;
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let initial = (*tc).max(cls);
        assert!(
            initial < BATCH,
            "the test needs a batch beyond the initial bound"
        );
        let round = |n: usize| {
            let v: Vec<*mut u8> = (0..BATCH).map(|_| h.malloc(tc, n)).collect();
            for &p in &v {
                assert!(!p.is_null());
                p.write(1);
            }
            for &p in v.iter().rev() {
                h.free(tc, p);
            }
        };
        for _ in 0..8 {
            round(4096);
        }
        assert!(
            (*tc).max(cls) >= BATCH && (*tc).count(cls) >= BATCH,
            "bound {} (count {}) after 8 batches of {BATCH}",
            (*tc).max(cls),
            (*tc).count(cls)
        );
        assert!((*tc).grown_bytes() > 0);
        // Steady state: a batch is served by the stack alone.
        let committed = h.stats().arena_committed;
        let free_before = h.stats().free_in_bins;
        round(4096);
        assert!((*tc).count(cls) >= BATCH);
        assert_eq!(h.stats().arena_committed, committed);
        assert_eq!(h.stats().free_in_bins, free_before);
        // Other classes now (each met for the first time: refills, the slow path where
        // collections run); after a few collection intervals the 4 KiB class is given back.
        let mut n = 16;
        for _ in 0..6 {
            h.shared().test_clock.fetch_add(
                crate::tcache::GC_INTERVAL_MS as usize + 10,
                Ordering::Relaxed,
            );
            for _ in 0..20 {
                round(n);
                n = if n >= 2048 { 16 } else { n + 16 };
            }
        }
        assert!(
            (*tc).count(cls) < BATCH / 8 && (*tc).max(cls) < BATCH,
            "idle class kept {} chunks, bound {}",
            (*tc).count(cls),
            (*tc).max(cls)
        );
        check_heap(&h).unwrap();
        h.drop_cache(tc);
    }
}

/// A stack its thread only frees into (a consumer's: no refill since it last overflowed) is
/// flushed whole when it overflows, also when its bound is at or below `FREER_STACK` already
/// (the bound with runs): keeping half there made twice the flushes of half the size.
#[test]
fn a_free_only_stack_is_flushed_whole_at_a_small_bound() {
    const N: usize = 100;
    let mut t = tunables();
    t.tcache_count = crate::tcache::FREER_STACK as usize;
    // Every free is done at its call, so the stack's count is read right after it.
    t.free_pipeline = false;
    let h = frozen(&t);
    let (maker, freer) = (h.new_cache(), h.new_cache());
    let cls = chunk_class(request_to_chunk(96).unwrap()).unwrap().0;
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let max = (*freer).max(cls);
        assert!(
            max > 1 && max <= crate::tcache::FREER_STACK as usize,
            "bound {max}"
        );
        let ps: Vec<*mut u8> = (0..N).map(|_| h.malloc(maker, 96)).collect();
        let mut flushes = 0;
        for (i, &p) in ps.iter().enumerate() {
            assert!(!p.is_null());
            let before = (*freer).count(cls);
            h.free(freer, p);
            let after = (*freer).count(cls);
            if after <= before {
                flushes += 1;
                assert_eq!(
                    (before, after),
                    (max, 1),
                    "free {i}: an overflow left {after} of {before} chunks cached"
                );
            }
        }
        assert_eq!(flushes, (N - 1) / max, "{N} frees through a stack of {max}");
        free_all_and_drop(&h, freer, &[], &[maker, freer]);
    }
}

/// The pipelined `free` is armed by an overflow of a class the thread also allocates (its
/// stack refilled since it last overflowed), not by the frees of a consumer, which has just
/// read the blocks it frees (the ring only delayed them).
#[test]
fn only_a_class_the_thread_allocates_arms_the_pipelined_free() {
    const N: usize = 200;
    let h = frozen(&tunables());
    let (maker, consumer) = (h.new_cache(), h.new_cache());
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        // A consumer: frees blocks another cache made, never allocates their class.
        let ps: Vec<*mut u8> = (0..N).map(|_| h.malloc(maker, 96)).collect();
        for &p in &ps {
            h.free(consumer, p);
        }
        assert!(
            !(*consumer).ring_on(),
            "{N} frees of blocks the thread did not allocate armed the pipeline"
        );
        // The maker frees its own blocks in a batch: its stack overflows after refills.
        let qs: Vec<*mut u8> = (0..N).map(|_| h.malloc(maker, 96)).collect();
        for &q in &qs {
            h.free(maker, q);
        }
        assert!(
            (*maker).ring_on(),
            "{N} frees of the thread's own blocks did not arm the pipeline"
        );
        h.drain_ring(maker);
        free_all_and_drop(&h, maker, &[], &[maker, consumer]);
    }
}

/// A cache's reserved slots (for its largest bounds) stay a modest piece of address space.
#[test]
fn cache_footprint_is_bounded() {
    let fixed = ThreadCache::footprint(64, 32 << 10, false);
    let grown = ThreadCache::footprint(64, 32 << 10, true);
    println!("cache footprint: fixed bounds {fixed} B, growing bounds {grown} B");
    assert!(fixed < 64 << 10 && grown < 512 << 10, "{fixed} / {grown}");
}

/// An arena nobody allocates from still ages: once a thread's cache collection runs
/// (`Heap::decay_arenas`, here driven by hand with the cache's slow-path ticks), quick-list
/// chunks untouched for a whole review interval are merged into the bins (and, all freed,
/// coalesce into top and are trimmed), and large free chunks left aged by the last purge pass
/// lose their pages once a purge delay passed, without any further free.
#[test]
fn idle_arenas_age_by_time() {
    const BLOCK: usize = 512 << 10;
    let mut t = without_runs();
    t.mmap_threshold = 4 << 20;
    t.mmap_threshold_dynamic = false;
    t.purge_delay_ms = 300;
    t.arena_max = 1;
    let h = frozen(&t);
    let tc = h.new_cache();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        // Large blocks with guards, all freed: 20 MiB of debt runs a pass, which ages them.
        let big: Vec<_> = (0..40)
            .map(|_| {
                let p = h.malloc(tc, BLOCK);
                ptr::write_bytes(p, 0x5A, BLOCK);
                assert!(!h.malloc(tc, 40 << 10).is_null());
                p
            })
            .collect();
        // Small blocks, freed and flushed to the quick lists.
        let small: Vec<_> = (0..20_000).map(|i| h.malloc(tc, 16 + i % 500)).collect();
        for &p in &small {
            h.free(tc, p);
        }
        for &p in &big {
            h.free(tc, p);
        }
        h.flush_cache(tc);
        let kept = quick_bytes(&h);
        assert!(kept > 2 << 20, "quick lists hold {kept}");
        let resident = |p: *mut u8| page_resident(p.add(BLOCK / 2));
        let aged_resident = big.iter().filter(|&&p| resident(p)).count();
        let tick = || {
            for _ in 0..64 {
                h.maybe_collect(&mut *tc);
            }
        };
        // Two review intervals: the first review notes what the lists hold, the second
        // merges what stayed untouched.
        for _ in 0..2 {
            h.shared().test_clock.fetch_add(
                crate::arena::QUICK_REVIEW_MS as usize + 20,
                Ordering::Relaxed,
            );
            tick();
        }
        let left = quick_bytes(&h);
        assert!(
            left < kept / 10,
            "quick lists kept {left} of {kept} bytes while idle"
        );
        let now_resident = big.iter().filter(|&&p| resident(p)).count();
        assert!(
            now_resident < aged_resident / 2,
            "idle large free chunks kept their pages: {aged_resident} -> {now_resident} resident"
        );
        check_heap(&h).unwrap();
        h.drop_cache(tc);
    }
}

/// An aligned request whose class is cached takes a cached chunk that happens to be aligned
/// (among the newest few), with no arena work; the others are left in the stack, and the
/// alignment always holds.
#[test]
fn aligned_requests_take_aligned_cached_chunks() {
    let h = frozen(&tunables());
    let tc = h.new_cache();
    // 48-byte chunks carved one after another: their payloads run through every residue
    // modulo 64, so some of the newest eight are 64-aligned.
    let cls = request_class(32).0;
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let v: Vec<*mut u8> = (0..16).map(|_| h.malloc(tc, 32)).collect();
        for &p in &v {
            h.free(tc, p);
        }
        let cached = (*tc).count(cls);
        assert!(cached >= 8);
        let aligned_among_newest = (*tc).cached(cls)[cached - 8..]
            .iter()
            .filter(|&&p| p as usize % 64 == 0)
            .count();
        assert!(
            aligned_among_newest > 0,
            "no 64-aligned chunk among the newest eight"
        );
        let free_before = h.stats().free_in_bins;
        let p = h.memalign(tc, 64, 32);
        assert_eq!(p as usize % 64, 0);
        assert_eq!(
            (*tc).count(cls),
            cached - 1,
            "the block did not come from the cache"
        );
        assert!(v.contains(&p));
        assert_eq!(h.stats().free_in_bins, free_before);
        // Alignments the stack cannot serve still work (carved from the arena).
        let mut got = vec![p];
        for shift in 5..13 {
            let q = h.memalign(tc, 1 << shift, 200);
            assert_eq!(q as usize % (1 << shift), 0, "alignment {}", 1 << shift);
            ptr::write_bytes(q, 0xAB, 200);
            got.push(q);
        }
        for q in got {
            h.free(tc, q);
        }
        check_heap(&h).unwrap();
        h.drop_cache(tc);
    }
}

/// A block that `realloc` grows past the classes stays where it can keep growing — at the
/// start of top, which grows for it — even while the quick lists hold chunks (whose rule stops
/// top growth for new requests): before, whether a growth loop moved its block (a copy) at some
/// steps depended on whether a cache collection had just filled the quick lists or a review
/// had just emptied them (issue 29: the same loop at 65–100 ns or at 470 ns per realloc).
/// Here every round starts with a cache flush onto the quick lists, as a collection would do.
#[test]
fn realloc_growth_stays_in_place_while_quick_lists_hold_chunks() {
    let mut t = without_runs();
    t.mmap_threshold = 4 << 20;
    t.mmap_threshold_dynamic = false;
    let h = frozen(&t);
    let tc = h.new_cache();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let mut moves = 0;
        let mut committed = Vec::new();
        for round in 0..20 {
            let small: Vec<_> = (0..500).map(|i| h.malloc(tc, 24 + (i % 8) * 16)).collect();
            for &p in &small {
                h.free(tc, p);
            }
            h.flush_cache(tc);
            assert!(
                quick_bytes(&h) > 0,
                "round {round}: the quick lists are empty"
            );
            let mut size = 16;
            let mut p = h.malloc(tc, size);
            while size < 256 << 10 {
                let new = (size * 3 / 2 + 15) & !15;
                let q = h.realloc(tc, p, new);
                assert!(!q.is_null());
                if q != p && size >= 48 << 10 {
                    moves += 1;
                }
                q.add(new - 1).write(1);
                p = q;
                size = new;
            }
            h.free(tc, p);
            committed.push(h.stats().arena_committed);
        }
        assert_eq!(
            moves, 0,
            "the growing block moved {moves} times beyond 48 KiB in 20 rounds"
        );
        // Top grows for the block in the first rounds (while the flushes' chunks settle), then
        // the rounds reuse it: the footprint does not grow round after round.
        assert_eq!(
            committed[4], committed[19],
            "the arena kept growing: {committed:?}"
        );
        check_heap(&h).unwrap();
        h.drop_cache(tc);
    }
}

/// `fork`'s child drops the caches of the threads it does not have, and one of them may have
/// stopped between storing a stack's new top and writing the pushed chunk's mark. That torn
/// push is simulated (a cached chunk's mark wiped), the cache is dropped as `fork_child` drops
/// it, and another cache then refills the class — from the arena's quick list, or with runs
/// from the dropped cache's run (kept as an orphan by a block still out, and adopted) — whose
/// pops check every mark. Found by `.ci/soak.sh 20`: `fork_while_threads_allocate`'s child
/// aborted with "a freed chunk in a thread cache was overwritten" in 2 runs of 20.
#[test]
fn an_orphaned_cache_torn_mid_push_is_dropped_cleanly() {
    // The torn chunk at every depth of the stack (which position a flush makes a quick-list
    // bundle's head, whose words are rewritten anyway, depends on the order it flushes in).
    for depth in 0..8 {
        let mut t = tunables();
        t.arena_max = 1;
        let h = frozen(&t);
        let orphan = h.new_cache();
        let me = h.new_cache();
        // SAFETY: private heap driven from this thread; the orphan's "thread" is this one,
        // stopped.
        unsafe {
            let cls = request_class(48).0;
            let blocks: Vec<_> = (0..8).map(|_| h.malloc(orphan, 48)).collect();
            // Still out when the cache is dropped: with runs, its run stays an orphan of the
            // arena (with every block back it would go back whole, and whether the torn address
            // came out again would depend on where the next run is carved).
            let keeper = h.malloc(orphan, 48);
            for &p in &blocks {
                h.free(orphan, p);
            }
            let n = (*orphan).count(cls);
            assert!(n >= 8, "{n} cached");
            let torn = (*orphan).cached(cls)[n - 1 - depth];
            link::clear_key(torn);
            h.drop_orphaned_cache(orphan);
            if t.runs {
                let s = h.stats();
                assert_eq!(s.runs, 1, "depth {depth}: the orphan's run went: {s}");
            }
            let again: Vec<_> = (0..64).map(|_| h.malloc(me, 48)).collect();
            assert!(
                again.contains(&torn),
                "depth {depth}: the torn chunk was not handed out again"
            );
            for p in again {
                h.free(me, p);
            }
            h.free(me, keeper);
            check_heap(&h).unwrap();
            h.drop_cache(me);
        }
    }
}

/// An arena past `MAX_SEGS` segments (one per 64 MiB region here: each block is too big for
/// two to share a region) is walked whole by the checker: before, `check_arena` returned `Ok`
/// for any arena with 64 segments or more without looking at it, so a header overwritten in
/// its newest segment went unreported.
#[test]
fn the_checker_walks_arenas_past_the_segment_table() {
    let mut t = tunables();
    t.mmap_threshold = MMAP_THRESHOLD_MAX;
    t.mmap_threshold_dynamic = false;
    t.main_reserve = 64 << 20;
    let h = frozen(&t);
    let tc = h.new_cache();
    let n = MMAP_THRESHOLD_MAX - 4096;
    let mut blocks = Vec::new();
    // SAFETY: a private heap driven from this thread; every block is checked and freed.
    unsafe {
        let arena = &*(*tc).arena;
        while arena.lock().segment_count() <= crate::arena::MAX_SEGS + 2 {
            let p = h.malloc(tc, n);
            assert!(!p.is_null(), "out of memory after {} blocks", blocks.len());
            blocks.push(p);
            assert!(
                blocks.len() < 4 * crate::arena::MAX_SEGS,
                "the arena does not add segments"
            );
        }
        assert_eq!(check_heap(&h), Ok(()));
        // Overwrite the size in the header of the newest block (in the newest segment).
        let c = Chunk::from_payload(*blocks.last().unwrap());
        let head = c.ptr().add(8).cast::<usize>();
        let saved = head.read();
        head.write(saved ^ (1 << 20));
        let seen = crate::check::check_arena(&arena.lock());
        head.write(saved);
        assert!(
            seen.is_err(),
            "a corrupted header past segment 64 went unreported"
        );
        assert_eq!(check_heap(&h), Ok(()));
        for p in blocks {
            h.free(tc, p);
        }
        h.drop_cache(tc);
    }
    // SAFETY: no cache is in use.
    assert_eq!(unsafe { check_heap(&h) }, Ok(()));
}

/// A region enters the region map only once its header names its arena (R1): a `free` of a
/// wild pointer into it reads the header as soon as the map has the region. Before, a new
/// arena's first region was published with a null arena, set a moment later (a window for a
/// null read, and a data race on the header).
#[test]
fn regions_are_published_with_their_arena() {
    use crate::arena::region::{RegionHeader, ON_PUBLISH};
    use std::cell::Cell;
    std::thread_local! {
        /// (regions published on this thread, of which without an arena)
        static SEEN: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }
    fn hook(r: *mut RegionHeader) {
        // SAFETY: the hook runs on a whole, mapped header.
        let none = unsafe { (*r).arena.is_null() };
        SEEN.with(|s| {
            let (n, bad) = s.get();
            s.set((n + 1, bad + none as usize));
        });
    }
    ON_PUBLISH.with(|h| h.set(Some(hook)));
    let h = frozen(&tunables());
    // SAFETY: a private heap driven from this thread.
    unsafe {
        let caches: Vec<_> = (0..3).map(|_| h.new_cache()).collect();
        // Grow one thread arena into a second region as well.
        let tc = *caches
            .iter()
            .find(|&&tc| !ptr::eq((*tc).arena, h.main_arena()))
            .expect("a thread arena");
        let arena = &*(*tc).arena;
        let mut blocks = Vec::new();
        while arena.lock().segment_count() < 2 {
            let p = h.malloc(tc, 100 << 10);
            assert!(!p.is_null());
            blocks.push(p);
        }
        for p in blocks {
            h.free(tc, p);
        }
        for tc in caches {
            h.drop_cache(tc);
        }
        assert_eq!(check_heap(&h), Ok(()));
    }
    ON_PUBLISH.with(|h| h.set(None));
    let (published, without_arena) = SEEN.with(|s| s.get());
    assert!(
        published >= 3,
        "{published} regions published (two new arenas, one growth)"
    );
    assert_eq!(
        without_arena, 0,
        "regions published before their header named the arena"
    );
}

/// A remote-list entry whose header was overwritten is caught when the list is drained:
/// before, the drain filed the entry (and a bundle's members) by the size in that header,
/// unchecked, and a 32-byte chunk went onto the quick list of 1 KiB chunks.
#[test]
fn a_remote_entry_with_an_overwritten_header_aborts_the_drain() {
    let h = frozen(&tunables());
    let tc = h.new_cache();
    // SAFETY: a private heap driven from this thread.
    unsafe {
        let p = h.malloc(tc, 16);
        assert!(!p.is_null());
        let a = h.arena_of_payload(p);
        let c = Chunk::from_payload(p);
        assert_eq!(
            crate::arena::remote_cap(c.size()),
            0,
            "a lone entry, no bundle"
        );
        link::set(p, ptr::null_mut());
        a.push_remote(p, p, c.size());
        let head = c.ptr().add(8).cast::<usize>();
        let saved = head.read();
        head.write(saved ^ (1 << 10));
        os::assert_fatal("corrupted chunk header on a remote-free list", || {
            drop(a.lock())
        });
        // The drain took the list before it stopped: the heap is whole again once the
        // header is.
        head.write(saved);
        link::clear_key(p); // in use again, as the program's block
        h.free(tc, p);
        h.drop_cache(tc);
        assert_eq!(check_heap(&h), Ok(()));
    }
}

/// A quick-list bundle slot overwritten with a value whose low 4 bits demangle to zero is
/// caught when read: before, only those 4 bits were tested, and the slot was handed out as a
/// block at a wild address.
#[test]
fn an_overwritten_bundle_slot_aborts() {
    let h = frozen(&without_runs());
    let tc = h.new_cache();
    let n = 200;
    let cls = crate::size_class::request_class(n).0;
    assert!(crate::arena::QUICK_CAP[cls] > 0);
    // SAFETY: a private heap driven from this thread.
    unsafe {
        let ps: Vec<_> = (0..40).map(|_| h.malloc(tc, n)).collect();
        for &p in &ps {
            h.free(tc, p);
        }
        h.flush_cache(tc); // onto the arena's quick list, in bundles
        let a = h.arena_of_payload(ps[0]);
        let mut head: *mut u8 = ptr::null_mut();
        a.lock().for_each_quick(|c, p| {
            if c == cls && head.is_null() {
                head = p;
            }
        });
        assert!(!head.is_null(), "no quick list of the class");
        let count = head.cast::<usize>().add(2).read();
        assert!(count > 0, "the head bundle has no members");
        for i in 0..count {
            let slot = head.cast::<usize>().add(3 + i);
            slot.write(slot.read() ^ (1 << 60));
        }
        os::assert_fatal("corrupted quick list", || {
            let again: Vec<_> = (0..40).map(|_| h.malloc(tc, n)).collect();
            assert!(again.iter().all(|p| !p.is_null()));
        });
        // The heap is left as the abort found it (a real process would be gone): dropped
        // without further checks.
    }
}

/// Regression (runs on): run blocks lost their `IN_RUN` flag (`Chunk::set_head` kept only the
/// low flags), so a flush took them for arena chunks and merged a run's block into the bins;
/// here a chunk beside a fresh run is cached, the run's block freed, the cache flushed (its run
/// goes back to the arena) and the heap trimmed, with the checker after each step.
#[test]
fn a_run_beside_a_cached_chunk_survives_flush_and_trim() {
    let mut t = tunables();
    t.runs = true;
    let heap = frozen(&t);
    let tc = heap.new_cache();
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let a = heap.memalign(tc, 8192, 337);
        heap.free(tc, a);
        let b = heap.malloc(tc, 243);
        let cb = Chunk::from_payload(b);
        assert_ne!(cb.head() & crate::chunk::IN_RUN, 0, "a block from a run");
        check_heap(&heap).unwrap();
        heap.free(tc, b);
        check_heap(&heap).unwrap();
        heap.flush_cache(tc);
        check_heap(&heap).unwrap();
        heap.trim(121);
        check_heap(&heap).unwrap();
    }
}

/// With runs on, `realloc` of a run block never takes an arena lock: within its class it
/// returns at once, beyond it the block moves through the thread cache (a new block, a copy,
/// a free). Checked while another thread holds every arena's lock: a realloc that reached for
/// one would not come back before the watchdog.
#[test]
fn realloc_of_a_run_block_takes_no_lock() {
    let mut t = tunables();
    t.runs = true;
    let heap = frozen(&t);
    let tc = heap.new_cache();
    // SAFETY: private heap; the cache is used by one thread at a time (handed over through
    // the scope's spawn and join).
    unsafe {
        // The classes the moves will use hold blocks in the cache before the locks are taken.
        let warm: Vec<_> = [100, 300, 700]
            .iter()
            .map(|&n| heap.malloc(tc, n))
            .collect();
        for p in warm {
            heap.free(tc, p);
        }
        let p = heap.malloc(tc, 100);
        assert_ne!(Chunk::from_payload(p).head() & crate::chunk::IN_RUN, 0);
        p.write_bytes(0x5a, 100);
        let guards: Vec<_> = (0..heap.arena_count())
            .map(|i| heap.arena(i).lock())
            .collect();
        let (tcp, pp) = (tc as usize, p as usize);
        std::thread::scope(|s| {
            let h = &heap;
            let worker = s.spawn(move || {
                let (tc, p) = (tcp as *mut ThreadCache, pp as *mut u8);
                let q = h.realloc(tc, p, 110);
                let same = q == p;
                let r = h.realloc(tc, q, 300);
                let kept = (0..100).all(|k| *r.add(k) == 0x5a);
                (same, r as usize, kept)
            });
            let t0 = std::time::Instant::now();
            while !worker.is_finished() && t0.elapsed() < std::time::Duration::from_secs(10) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let waited = !worker.is_finished();
            drop(guards);
            let (same, r, kept) = worker.join().unwrap();
            assert!(!waited, "realloc of a run block waited on an arena lock");
            assert!(same, "a realloc within the class moved the block");
            assert!(kept, "contents lost by the move");
            assert_ne!(r, pp, "a realloc beyond the class stayed in place");
            heap.free(tc, r as *mut u8);
        });
        check_heap(&heap).unwrap();
    }
}

/// With runs on, a block written after its free while it waits in its run (not on a stack)
/// is caught when a refill hands it out: its freed mark is checked as a stack's pop checks it.
#[test]
fn a_run_block_written_after_its_free_aborts_when_handed_out() {
    let mut t = tunables();
    t.runs = true;
    let heap = frozen(&t);
    let tc = heap.new_cache();
    // SAFETY: private heap driven from this thread; the write after free is planted on purpose.
    unsafe {
        let p = heap.malloc(tc, 200);
        // Another block of the run stays out, so the run stays when the cache is flushed.
        let _q = heap.malloc(tc, 200);
        heap.free(tc, p);
        // The stack goes back to the run: `p` is a free bit now, not a stack slot (the lowest,
        // so the next refill hands it out first).
        heap.flush_cache(tc);
        assert!(
            link::has_key(p),
            "a block free in its run keeps its freed mark"
        );
        p.add(8).write_bytes(0x41, 8);
        crate::os::assert_fatal("overwritten", || {
            heap.malloc(tc, 200);
        });
    }
}

/// Regression (issue 29, runs on): a collection looked at every run of its cache, so after a
/// batch that left thousands of runs the allocation a collection came with paid for walking
/// them all (the `realloc` step loop after micro's 100 000-block batch ran at 70–90 ns instead
/// of 10–14, whenever a collection fell inside it). A collection now looks at most
/// [`COLLECT_SWEEP`](super::runs::COLLECT_SWEEP) runs, in turn, and gives back the idle ones
/// among them (empty at two looks in a row); runs with a block out stay, and every empty run
/// goes back within a bounded number of collections.
#[test]
fn a_collection_looks_at_a_bounded_number_of_runs_in_turn() {
    use super::runs::{COLLECT_SWEEP, IDLE_SWEEPS};
    use crate::run::{self, Run};
    use crate::size_class::request_class;
    let h = frozen_with_runs(1);
    let tc = h.new_cache();
    let n = 48;
    let cls = request_class(n).0;
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let ps: Vec<_> = (0..16_000).map(|_| h.malloc(tc, n)).collect();
        let mut runs: Vec<*mut Run> = ps.iter().map(|&p| run_of(p)).collect();
        runs.dedup();
        let total = run::list_len((*tc).runs[cls]);
        assert!(
            total > 3 * COLLECT_SWEEP,
            "{total} runs: too few for the test"
        );
        // One block stays out in every third run; the rest come back.
        let mut keep = Vec::new();
        let mut kept_runs = std::collections::HashSet::new();
        for &p in &ps {
            let r = run_of(p);
            let i = runs
                .iter()
                .position(|&x| x == r)
                .expect("a run of the batch");
            if i % 3 == 0 && kept_runs.insert(r) {
                keep.push(p);
            } else {
                h.free(tc, p);
            }
        }
        // Blocks still in the stack go back to their runs first (not part of the bound).
        (*tc).flush_all(|t, ps, size| h.release_slice(ps, size, false, Some(t)));
        let before = run::list_len((*tc).runs[cls]);
        assert_eq!(before, total);
        h.collect(&mut *tc);
        let after = run::list_len((*tc).runs[cls]);
        assert!(
            before - after <= COLLECT_SWEEP,
            "one collection gave back {} runs (at most {COLLECT_SWEEP} looked at)",
            before - after
        );
        check_heap(&h).unwrap();
        // An empty run goes back when a sweep finds it idle a second time: within enough
        // collections for every run to be looked at twice more, only the runs with a block out
        // and the first (it serves the next refill) are left.
        let mut gave_back = 0;
        for _ in 0..(IDLE_SWEEPS + 1) * (total / COLLECT_SWEEP + 1) + 1 {
            let before = run::list_len((*tc).runs[cls]);
            h.collect(&mut *tc);
            let after = run::list_len((*tc).runs[cls]);
            assert!(
                before - after <= COLLECT_SWEEP,
                "{} runs given back at once",
                before - after
            );
            gave_back += before - after;
        }
        assert!(gave_back > 0, "no collection gave back an empty run");
        let left = run::list_len((*tc).runs[cls]);
        let first_kept = usize::from(kept_runs.contains(&(*tc).runs[cls]));
        assert_eq!(
            left,
            kept_runs.len() + 1 - first_kept,
            "runs left after the sweeps"
        );
        check_heap(&h).unwrap();
        for p in keep {
            h.free(tc, p);
        }
        h.drop_cache(tc);
    }
}

/// A run that empties and is used again between two collections is not idle: only a run found
/// empty at two sweeps in a row, with no block taken from it between them, goes back (a run
/// given back at every collection was carved again at the next refill: `pipeline16` carved
/// 2 672 runs and gave back 2 083, 1 040 of them at collections).
#[test]
fn a_run_used_between_two_collections_is_not_given_back() {
    use super::runs::IDLE_SWEEPS;
    use crate::run;
    use crate::size_class::request_class;
    assert_eq!(IDLE_SWEEPS, 1, "the test counts on one idle sweep");
    let h = frozen_with_runs(1);
    let tc = h.new_cache();
    let n = 200;
    let cls = request_class(n).0;
    // SAFETY: private heap driven from this thread; every pointer is live when passed.
    unsafe {
        let p = h.malloc(tc, n);
        let cap = (*run_of(p)).capacity();
        h.free(tc, p);
        let round = move |h: &PrivateHeap| {
            let ps: Vec<_> = (0..3 * cap).map(|_| h.malloc(tc, n)).collect();
            for p in ps {
                h.free(tc, p);
            }
            (*tc).flush_all(|t, ps, size| h.release_slice(ps, size, false, Some(t)));
        };
        round(&h);
        let runs = run::list_len((*tc).runs[cls]);
        assert!(runs >= 3, "{runs} runs");
        h.collect(&mut *tc); // found empty once
        assert_eq!(
            run::list_len((*tc).runs[cls]),
            runs,
            "an empty run went back at once"
        );
        round(&h); // every run gives blocks again (one more may be carved), all come back
        let runs = run::list_len((*tc).runs[cls]);
        h.collect(&mut *tc); // empty again, but used since the last look
        assert_eq!(
            run::list_len((*tc).runs[cls]),
            runs,
            "a run used since the last collection went back"
        );
        h.collect(&mut *tc); // idle since the last look: back, but for the first
        assert_eq!(run::list_len((*tc).runs[cls]), 1, "idle runs stayed");
        check_heap(&h).unwrap();
        h.drop_cache(tc);
    }
}

/// A block freed into an orphan run (its owner exited with the block out) while the orphan's
/// arena lock is free settles the orphan at once: the run goes back with its last block,
/// without waiting for a sweep (at the end of `prodcons` 22 MiB waited so on orphans with no
/// block in use).
#[test]
fn the_last_block_freed_into_an_orphan_gives_the_run_back() {
    let h = frozen_with_runs(1);
    let owner = h.new_cache();
    let other = h.new_cache();
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        let ps: Vec<_> = (0..40).map(|_| h.malloc(owner, 96)).collect();
        for &p in &ps[1..] {
            h.free(owner, p);
        }
        h.drop_cache(owner); // the run keeps ps[0] out: an orphan
        let s = h.stats();
        assert!(s.run_free > 0, "no orphan: {s}");
        h.free(other, ps[0]);
        h.flush_cache(other); // the block reaches its run
        let s = h.stats();
        assert_eq!(s.run_free + s.run_remote, 0, "the orphan stayed: {s}");
        check_heap(&h).unwrap();
        h.drop_cache(other);
    }
}

/// A heap with runs on and `arena_max` arenas, and three caches made in this order: an owner
/// that allocated `n` blocks of 96 bytes, a thief that has none, and a freer that freed them
/// all and flushed, so that every block waits on its run's remote set. Returns the heap, the
/// owner, the thief, the freer and the blocks.
fn remote_frees_of_one_owner(
    arena_max: usize,
    n: usize,
) -> (PrivateHeap, [*mut ThreadCache; 3], Vec<*mut u8>) {
    let h = frozen_with_runs(arena_max);
    let (owner, thief) = (h.new_cache(), h.new_cache());
    let freer = h.new_cache();
    // SAFETY: private heap driven from this thread; each block is freed once.
    let ps = unsafe {
        let ps: Vec<_> = (0..n).map(|_| h.malloc(owner, 96)).collect();
        for &p in &ps {
            h.free(freer, p);
        }
        h.flush_cache(freer); // every block reaches its run's remote set
        ps
    };
    (h, [owner, thief, freer], ps)
}

/// A refill with no run of its own left to use takes the remote frees another cache's run got
/// back and its owner has not collected, before it carves a run: the blocks a thread freed for
/// another (here: all of them) serve the next thread short of blocks, and no run is added.
///
/// The thief of [`remote_frees_of_one_owner`] (200 blocks) takes 150 blocks: they are the
/// owner's blocks the freer gave back, no run is carved, the figures add up, and everything
/// goes back at the end.
#[test]
fn a_refill_takes_other_caches_remote_frees_before_carving() {
    let (h, [owner, thief, freer], ps) = remote_frees_of_one_owner(1, 200);
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        let s0 = h.stats();
        assert!(s0.run_remote >= 150 * 96, "{s0}");
        let qs: Vec<_> = (0..150).map(|_| h.malloc(thief, 96)).collect();
        let s1 = h.stats();
        assert_eq!(s1.runs, s0.runs, "a run was carved: {s1}");
        assert!(s1.run_remote + 150 * 96 <= s0.run_remote, "{s1}");
        // Every block out of a run is the program's or cached (the stolen ones too).
        let held: usize = qs.iter().map(|&q| h.usable_size(q) + 16).sum();
        assert_eq!(
            s1.run_bytes,
            s1.run_free + s1.run_remote + held + s1.tcache_bytes,
            "{s1}"
        );
        let old: std::collections::HashSet<_> = ps.iter().collect();
        assert!(
            qs.iter().all(|q| old.contains(q)),
            "the thief's blocks are not the freed ones"
        );
        check_heap(&h).unwrap();
        free_all_and_drop(&h, thief, &qs, &[owner, freer, thief]);
    }
}

/// A block freed twice, once by its run's owner and once by another thread, is caught when a
/// third thread takes the run's remote frees (as when the owner collects them): it must not go
/// out twice.
#[test]
fn a_refill_takes_a_stolen_double_free_and_is_caught() {
    let h = frozen_with_runs(1);
    let owner = h.new_cache();
    // SAFETY: private heap driven from this thread; the double free is the point.
    unsafe {
        let ps: Vec<_> = (0..40).map(|_| h.malloc(owner, 96)).collect();
        let c = Chunk::from_payload(ps[0]);
        let (r, slot) = crate::run::Run::of(c);
        // The owner's free puts the block in its run's free set at once.
        h.free_run_block(c, Some(&*owner));
        let mut bits = [0; crate::run::BIT_WORDS];
        crate::run::add_block(&mut bits, slot);
        crate::run::Run::push_remote(r, &bits, 1);
        crate::os::assert_fatal("double free", || {
            let _ = crate::run::Run::steal(r);
        });
    }
}

/// Not from another arena: a thread whose arena has no run of the class with remote frees
/// carves its own run rather than take another arena's (blocks taken from a run of another
/// arena stay that run's, so they came back as remote frees and went out again as stolen ones
/// for ever: `c-respawn` ran 1.5x as long as with runs off). The owner's run keeps its remote
/// frees for its owner, and everything goes back at the end.
#[test]
fn a_refill_does_not_take_remote_frees_from_another_arena() {
    let (h, [owner, thief, freer], ps) = remote_frees_of_one_owner(2, 200);
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        assert!(
            !ptr::eq((*owner).arena, (*thief).arena),
            "the owner and the thief share an arena"
        );
        let s0 = h.stats();
        assert!(s0.run_remote >= 150 * 96, "{s0}");
        let qs: Vec<_> = (0..150).map(|_| h.malloc(thief, 96)).collect();
        let s1 = h.stats();
        assert!(s1.runs > s0.runs, "no run was carved: {s1}");
        assert_eq!(
            s1.run_remote, s0.run_remote,
            "remote frees were taken: {s1}"
        );
        let old: std::collections::HashSet<_> = ps.iter().collect();
        assert!(
            qs.iter().all(|q| !old.contains(q)),
            "the thief took blocks of the other arena's run"
        );
        // The owner collects them: once its stack is empty, its blocks are the freed ones.
        let again: Vec<_> = (0..100).map(|_| h.malloc(owner, 96)).collect();
        assert!(
            again[50..].iter().all(|p| old.contains(p)),
            "the owner did not get its remote frees back"
        );
        check_heap(&h).unwrap();
        for &p in &again {
            h.free(owner, p);
        }
        free_all_and_drop(&h, thief, &qs, &[owner, freer, thief]);
    }
}

/// An orphan waits for a thread of its own arena: a thread of another arena carves instead
/// (see the test above), and the next thread that gets the orphan's arena adopts it before it
/// carves.
#[test]
fn a_refill_adopts_the_orphans_of_its_own_arena_only() {
    let h = frozen_with_runs(2);
    let (owner, other) = (h.new_cache(), h.new_cache());
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        assert!(
            !ptr::eq((*owner).arena, (*other).arena),
            "the owner and the other share an arena"
        );
        let arena = (*owner).arena;
        let ps: Vec<_> = (0..8).map(|_| h.malloc(owner, 96)).collect();
        for &p in &ps[1..] {
            h.free(owner, p);
        }
        h.drop_cache(owner); // its run keeps ps[0] out: an orphan of the owner's arena
        let s0 = h.stats();
        let q = h.malloc(other, 96);
        let s1 = h.stats();
        assert_eq!(
            s1.runs,
            s0.runs + 1,
            "the other arena's thread did not carve: {s1}"
        );
        assert_ne!(
            run_of(ps[0]),
            run_of(q),
            "the orphan was taken from another arena"
        );
        let heir = h.new_cache();
        assert!(ptr::eq((*heir).arena, arena), "the heir got another arena");
        let r = h.malloc(heir, 96);
        assert_eq!(h.stats().runs, s1.runs, "the heir carved a run");
        assert_eq!(
            run_of(ps[0]),
            run_of(r),
            "the heir's block is not from the orphan"
        );
        check_heap(&h).unwrap();
        free_all_and_drop(&h, heir, &[r, ps[0], q], &[heir, other]);
    }
}

/// A block the owner frees onto one of its runs that is not the first of its class is found
/// by the refill that runs short, before it adopts or carves: a refill walks the runs only
/// when told one may have free blocks (`ThreadCache::run_local`, `run_hint`), so the local free
/// must tell it.
#[test]
fn a_refill_finds_a_local_free_in_a_run_that_is_not_first() {
    let h = frozen_with_runs(1);
    let owner = h.new_cache();
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        // Blocks over three runs: the first run is full, and no longer the first of the list.
        let mut ps = vec![h.malloc(owner, 96)];
        let first = run_of(ps[0]);
        let mut runs_seen = 1;
        let mut last = first;
        while runs_seen < 3 {
            let p = h.malloc(owner, 96);
            if run_of(p) != last {
                last = run_of(p);
                runs_seen += 1;
            }
            ps.push(p);
        }
        let p = ps.swap_remove(1);
        assert_eq!(run_of(p), first);
        h.free(owner, p);
        h.flush_cache(owner); // p reaches its run; the stack's blocks go back to theirs
        let s0 = h.stats();
        // The first run left with free blocks serves until it is empty; the refill that finds
        // it empty takes p (and may carve a run for the rest of its batch).
        let mut qs = Vec::new();
        while !qs.contains(&p) {
            assert!(
                qs.len() < ps.len(),
                "the freed block did not come back: {}",
                h.stats()
            );
            qs.push(h.malloc(owner, 96));
        }
        let s = h.stats();
        assert!(s.runs <= s0.runs + 1, "{s}");
        check_heap(&h).unwrap();
        ps.extend(qs);
        free_all_and_drop(&h, owner, &ps, &[owner]);
    }
}

/// Blocks of one run-class cache `owner` allocated until it holds every block of the run of
/// its first block; returns them (that run's first).
unsafe fn hold_a_whole_run(h: &PrivateHeap, owner: *mut ThreadCache) -> Vec<*mut u8> {
    // SAFETY: caller: a cache of `h` used by this thread; run blocks the test holds.
    unsafe {
        let mut ps = vec![h.malloc(owner, 96)];
        let r = run_of(ps[0]);
        while ps.iter().filter(|&&p| run_of(p) == r).count() < (*r).capacity() {
            ps.push(h.malloc(owner, 96));
        }
        ps.sort_by_key(|&p| run_of(p) != r);
        ps
    }
}

/// A dropped cache's run with most of its blocks out waits at the end of its orphan list, one
/// with most of them free at its front: the next adoption gets many blocks, not one.
#[test]
fn an_orphan_mostly_out_waits_behind_one_mostly_free() {
    let h = frozen_with_runs(1);
    let (owner, heir) = (h.new_cache(), h.new_cache());
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        let mut ps = hold_a_whole_run(&h, owner);
        let full = run_of(ps[0]);
        while run_of(ps[ps.len() - 1]) == full {
            ps.push(h.malloc(owner, 96));
        }
        // One block of the full run back, and all but one of the others'.
        let mut kept: Vec<*mut u8> = Vec::new();
        let mut others_kept = std::collections::HashSet::new();
        for (i, p) in ps.drain(..).enumerate() {
            let r = run_of(p);
            if (r == full && i != 0) || (r != full && others_kept.insert(r)) {
                kept.push(p);
            } else {
                h.free(owner, p);
            }
        }
        assert!(!others_kept.is_empty());
        h.drop_cache(owner); // the drop takes the newest run first: `full` is dropped last
        let q = h.malloc(heir, 96);
        assert_ne!(
            run_of(q),
            full,
            "the heir adopted the run with one free block"
        );
        kept.push(q);
        check_heap(&h).unwrap();
        free_all_and_drop(&h, heir, &kept, &[heir]);
    }
}

/// An orphan with no free block is not adopted (its heir would only carry it): it stays an
/// orphan, and the refill carves.
#[test]
fn an_orphan_with_no_free_block_is_not_adopted() {
    let h = frozen_with_runs(1);
    let (owner, heir) = (h.new_cache(), h.new_cache());
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        let mut ps = hold_a_whole_run(&h, owner);
        let full = run_of(ps[0]);
        let rest = ps.split_off((*full).capacity());
        for p in rest {
            h.free(owner, p);
        }
        h.drop_cache(owner);
        let s0 = h.stats();
        assert_eq!(s0.runs, 1, "{s0}");
        ps.push(h.malloc(heir, 96));
        assert_eq!((*full).owner(), 0, "the full orphan was adopted");
        assert_eq!(h.stats().runs, 2);
        check_heap(&h).unwrap();
        free_all_and_drop(&h, heir, &ps, &[heir]);
    }
}

/// A refill called with blocks already on its stack (the pipelined `free`'s ring is drained
/// onto the stacks just before it) fills a stolen set only up to the stack's bound: past it,
/// the slots are another stack's or the cache's (a run of `dispatch16` aborted so, "a freed
/// chunk in a thread cache was overwritten").
#[test]
fn a_refill_fills_a_stolen_set_only_up_to_the_stack_bound() {
    use crate::size_class::request_class;
    let (h, [owner, thief, freer], _) = remote_frees_of_one_owner(1, 400);
    let cls = request_class(96).0;
    // SAFETY: private heap driven from this thread; each block is freed once.
    unsafe {
        let mut qs = vec![h.malloc(thief, 96)];
        let n = (*thief).count(cls);
        assert!(n > 3, "the steal filled the stack with {n} blocks only");
        for _ in 0..n - 3 {
            qs.push(h.malloc(thief, 96));
        }
        assert_eq!((*thief).count(cls), 3);
        // What `malloc_class_slow` does after a drain left blocks on the stack.
        qs.push(h.refill(&mut *thief, cls));
        let (count, bound) = ((*thief).count(cls), (*thief).limit(cls));
        assert!(
            count <= bound,
            "{count} blocks on a stack bounded to {bound}"
        );
        check_heap(&h).unwrap();
        for &q in &qs {
            h.free(thief, q);
        }
        for c in [owner, freer, thief] {
            h.drop_cache(c);
        }
    }
}
