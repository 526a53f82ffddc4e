//! The free entry point: the thread cache's fast path (a class stack with room), the pipelined
//! ring, overflowing stacks, and chunks that go straight to their arena or back to the OS.

use super::{cold_path, has_cache, Heap, Op};
use crate::chunk::{Chunk, FREE, HEADER, IN_RUN, IS_MMAPPED, RUN_CHUNK, SIZE_MASK};
use crate::link;
use crate::os::fatal;
use crate::region_map;
use crate::size_class::{chunk_class, SMALL_MAX_REQUEST};
use crate::sync::{self, Ordering};
use crate::tcache::ThreadCache;

/// A pointer to a run's own chunk: never one the program was given (see `chunk::RUN_CHUNK`).
pub(super) const RUN_CHUNK_MSG: &str =
    "free(): invalid pointer (it points at a run of small blocks: a double free or a stale pointer)";

impl Heap {
    /// Frees a block.
    ///
    /// # Safety
    /// The heap is initialised; `tc` as for [`Heap::malloc`]; `p` is null or a block of this
    /// heap not freed since (violations abort with a message).
    #[inline(always)]
    pub unsafe fn free(&self, tc: *mut ThreadCache, p: *mut u8) {
        if p.is_null() {
            return;
        }
        if cfg!(feature = "asan") {
            // SAFETY: forwarded.
            unsafe { self.asan_free(p) };
        }
        // SAFETY: forwarded.
        unsafe { self.free_raw(tc, p) }
    }

    /// The fast half of `free` for a front whose thread slot always holds a cache, real or a
    /// placeholder ([`ThreadCache::placeholder`]): when `p` is a plain in-use chunk of ours
    /// with a cached class, pushes it on its stack and returns true. Returns false, having
    /// changed nothing, in every other case — null, a pointer it cannot vouch for (misaligned,
    /// outside the heap's reservations, a bad tag), a huge block, a double free, a full stack,
    /// a placeholder — and the caller then calls [`Heap::free`], which diagnoses what needs it.
    ///
    /// It calls nothing (a leaf), so that it needs no saved registers and as few instructions
    /// as it can: when the program frees many blocks it has not touched for a while, each free
    /// waits on its header's cache miss, and the fewer instructions a free takes, the more
    /// frees the CPU overlaps.
    ///
    /// # Safety
    /// `tc` is this thread's cache of this heap or a placeholder; `p` as for [`Heap::free`].
    #[inline(always)]
    pub unsafe fn free_fast(&self, tc: *const ThreadCache, p: *mut u8) -> bool {
        if cfg!(feature = "asan") {
            return false;
        }
        // One test for "16-aligned and below the region map's limit" (null wraps high).
        const ODD: usize = !(region_map::MAP_LIMIT - 1) | 15;
        let a = (p as usize).wrapping_sub(HEADER);
        // SAFETY: a < MAP_LIMIT when the first test passes. A header in the heap's reservations
        // (R1) or in the main arena's first segment (the program break, in `override` builds)
        // is readable.
        if a & ODD != 0 {
            return false;
        }
        // SAFETY: as above.
        if !unsafe { region_map::contains_below_limit(a) } {
            // The break (an `override` build's main arena): off the path of region blocks.
            cold_path();
            if !self.shared.main_segs.first_contains(a) {
                return false;
            }
        }
        // SAFETY: the header is readable (above); our cache or a placeholder (whose keys are 0
        // and whose stacks are always full, so it takes nothing whatever the checks say).
        unsafe {
            let t = &*tc;
            let c = Chunk::from_payload(p);
            let h = c.head();
            // The mark is computed once: checked here, stored by the push.
            let mark = link::mark_of(p, t.mark_key);
            if !c.tag_matches_keyed(h, t.tag_key)
                || h & (IS_MMAPPED | FREE | RUN_CHUNK) != 0
                || link::has_mark(p, mark)
            {
                return false;
            }
            let size = h & SIZE_MASK;
            t.push_small_marked(size, p, mark) || Self::push_medium(t, size, p)
        }
    }

    /// [`Heap::free_fast`] for the classes above the small ones (inlined: no call).
    #[inline(always)]
    unsafe fn push_medium(tc: &ThreadCache, size: usize, p: *mut u8) -> bool {
        if size <= SMALL_MAX_REQUEST + HEADER {
            return false;
        }
        match chunk_class(size) {
            // SAFETY: caller: a checked in-use chunk of exactly class `cls`.
            Some(cls) => unsafe { tc.push(cls.0, p) },
            None => false,
        }
    }

    #[inline(always)]
    unsafe fn free_raw(&self, tc: *mut ThreadCache, p: *mut u8) {
        // SAFETY: check_ptr validates the pointer before anything is trusted.
        unsafe {
            let c = self.check_ptr(p, Op::Free);
            let h = c.head();
            if h & (IS_MMAPPED | FREE | RUN_CHUNK) != 0 {
                return self.free_huge_or_free(c, h);
            }
            let size = c.size();
            if link::has_key(p) {
                self.double_free_cached(tc, p, size);
            }
            // The small classes inline; the others, a full stack, or no cache: out of line.
            if has_cache(tc) && (*tc).push_small(size, p) {
                return;
            }
            self.free_uncached(tc, c, size)
        }
    }

    /// `free` of a checked, in-use chunk that the small-class fast path did not take.
    #[cold]
    #[inline(never)]
    unsafe fn free_uncached(&self, tc: *mut ThreadCache, c: Chunk, size: usize) {
        let p = c.payload();
        if has_cache(tc) {
            if let Some(cls) = chunk_class(size) {
                // SAFETY: our cache; p is a checked in-use chunk of class cls.
                unsafe {
                    let t = &mut *tc;
                    if t.push(cls.0, p) {
                        return;
                    }
                    if t.caches(cls.0) {
                        return self.free_flush(t, cls.0, p);
                    }
                }
            }
        }
        // SAFETY: caller: checked in-use chunk of ours.
        unsafe { self.free_to_arena(c, tc) }
    }

    #[cold]
    #[inline(never)]
    unsafe fn double_free_cached(&self, tc: *mut ThreadCache, p: *mut u8, size: usize) {
        if has_cache(tc) {
            if let Some(cls) = chunk_class(size) {
                // SAFETY: our cache.
                if unsafe { (*tc).contains(cls.0, p) } {
                    fatal("free(): double free (chunk is in this thread's cache)");
                }
            }
        }
        fatal(
            "free(): double free (chunk is already cached, free in a run, or pending in a quick or remote list)",
        );
    }

    #[cold]
    #[inline(never)]
    unsafe fn free_flush(&self, t: &mut ThreadCache, cls: usize, p: *mut u8) {
        // SAFETY: our cache. `overflow` says how much of the stack stays: all of it when the
        // bound grows, the newer half, or none for a class the thread only frees. The pipelined
        // `free` (`ThreadCache::ring_swap`) is armed when the thread's frees overflow a class it
        // also allocates (refilled since the stack last overflowed): a steady mix of frees of
        // blocks made a while ago, likely out of the CPU cache (`larson`, `c-larson`) — for
        // blocks in the heap's reservations, the only ones it pipelines (a thread whose blocks
        // lie on the program break would pay for the test and gain nothing). Not for a class
        // the thread only frees: a consumer frees blocks it has just read, whose lines are in
        // its cache already, and the ring only delayed them (with runs, `c-prodcons` took 1.39x
        // the time with the ring, `c-xmalloc` 1.10x, `service` 1.03x; without runs, no change).
        // The test comes before `overflow`, which clears what it reads.
        unsafe {
            if self.free_pipeline.load(Ordering::Relaxed)
                && t.refilled_since_overflow(cls)
                && region_map::contains(p.addr().wrapping_sub(HEADER))
            {
                t.ring_arm();
            }
            self.maybe_collect(t);
            let keep = self.overflow(t, cls);
            if keep < t.count(cls) {
                self.flush_class(t, cls, keep, true);
            }
            if !t.push(cls, p) {
                self.free_to_arena(Chunk::from_payload(p), t);
            }
        }
    }

    /// `free` of a checked chunk whose head `h` says huge or free (a double free).
    #[cold]
    #[inline(never)]
    unsafe fn free_huge_or_free(&self, c: Chunk, h: usize) {
        if h & RUN_CHUNK != 0 {
            fatal(RUN_CHUNK_MSG);
        }
        if h & IS_MMAPPED == 0 {
            fatal("free(): double free (chunk is already free)");
        }
        // SAFETY: caller: checked huge chunk.
        unsafe {
            crate::huge::check(c);
            if self.shared.user {
                // The owner was checked by `check_foreign`.
                self.tracked.lock().free(&self.shared, c);
            } else {
                crate::huge::free(&self.shared, c);
            }
        }
    }

    /// Frees a checked, in-use chunk past the thread caches: to its arena, or to its run
    /// (`tc`, the calling thread's cache or null/`DEAD`, says whether it owns the run).
    #[cold]
    #[inline(never)]
    unsafe fn free_to_arena(&self, c: Chunk, tc: *mut ThreadCache) {
        // SAFETY: caller: checked in-use chunk of ours; `tc` is ours when it is a cache (the
        // caller holds no other reference to it across this call).
        unsafe {
            if c.head() & IN_RUN != 0 {
                let from = if has_cache(tc) { Some(&*tc) } else { None };
                return self.free_run_block(c, from);
            }
            // Mutation (loom check): the chunk goes to the main arena, whichever it came from.
            let a = if sync::mutation::on("free_to_main_arena") {
                self.main_arena()
            } else {
                self.arena_of(c)
            };
            let mut g = a.lock();
            g.release(&self.shared, c);
        }
    }

    /// AddressSanitizer hook before a free: poison the payload past its link words; a huge
    /// block is unpoisoned instead (its mapping goes back to the OS).
    ///
    /// # Safety
    /// As for [`Heap::free`].
    #[cold]
    unsafe fn asan_free(&self, p: *mut u8) {
        // SAFETY: validated first (a bad pointer aborts here, as in `free`).
        let c = unsafe { self.check_ptr(p, Op::Free) };
        // SAFETY: checked header.
        let (h, usable) = unsafe { (c.head(), c.size() - HEADER) };
        if h & IS_MMAPPED != 0 {
            crate::asan::unpoison(p, usable);
        } else {
            crate::asan::on_free(p, usable);
        }
    }
}
