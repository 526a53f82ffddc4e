//! The allocation entry points: `malloc` (thread cache, then an arena under its lock), `calloc`,
//! `memalign`, and the huge blocks that skip the arenas.

use core::ptr;

use super::{has_cache, Heap};
use crate::arena::Arena;
use crate::chunk::{Chunk, HEADER};
use crate::config::MMAP_THRESHOLD_MAX;
use crate::link;
use crate::size_class::{request_class, request_to_chunk, CLASS_CHUNK_SIZE, MAX_CLASS_REQUEST};
use crate::sync::Ordering;
use crate::tcache::ThreadCache;

impl Heap {
    /// Allocates `n` bytes (16-byte aligned). Null when impossible or out of memory.
    ///
    /// # Safety
    /// The heap is initialised; `tc` is null, 1, or this thread's cache of this heap.
    #[inline(always)]
    pub unsafe fn malloc(&self, tc: *mut ThreadCache, n: usize) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { self.malloc_raw(tc, n) };
        // SAFETY: p is null or a block we just handed out.
        unsafe { self.asan_alloc(p, n) };
        p
    }

    #[inline(always)]
    unsafe fn malloc_raw(&self, tc: *mut ThreadCache, n: usize) -> *mut u8 {
        if n <= MAX_CLASS_REQUEST {
            let cls = request_class(n).0;
            if has_cache(tc) {
                // SAFETY: caller: our cache.
                let p = unsafe { (*tc).pop(cls) };
                if !p.is_null() {
                    return p;
                }
            }
            // SAFETY: forwarded.
            return unsafe { self.malloc_class_slow(tc, cls) };
        }
        // SAFETY: forwarded.
        unsafe { self.malloc_large(tc, n, false) }
    }

    #[cold]
    #[inline(never)]
    unsafe fn malloc_class_slow(&self, tc: *mut ThreadCache, cls: usize) -> *mut u8 {
        // SAFETY: caller: our cache, if any.
        unsafe { self.settle_pending(tc) };
        if has_cache(tc) {
            // SAFETY: caller: our cache.
            let t = unsafe { &mut *tc };
            if t.caches(cls) {
                // SAFETY: forwarded.
                return unsafe { self.refill(t, cls) };
            }
        }
        let nb = CLASS_CHUNK_SIZE[cls];
        // SAFETY: forwarded.
        unsafe {
            self.arena_malloc(tc, nb)
                .map_or(ptr::null_mut(), Self::hand_out)
        }
    }

    /// Hands out a chunk from an arena: clears a stale cache key at payload+8 (left by an
    /// earlier life of that memory) so that its free is not taken for a double free.
    #[inline]
    pub(super) fn hand_out(c: Chunk) -> *mut u8 {
        let p = c.payload();
        // SAFETY: the chunk is in use and ours; every chunk has at least 16 payload bytes.
        unsafe { link::clear_key(p) };
        p
    }

    unsafe fn arena_malloc(&self, tc: *mut ThreadCache, nb: usize) -> Option<Chunk> {
        let own: &Arena = if has_cache(tc) {
            // SAFETY: caller: our cache; its arena lives as long as the heap.
            unsafe { &*(*tc).arena }
        } else {
            self.cacheless_arena()
        };
        let mut g = self.lock_some_arena(own);
        // SAFETY: lock held.
        if let Some(got) = unsafe { g.malloc_chunk(&self.shared, nb) } {
            return Some(got.chunk);
        }
        drop(g);
        // This arena is out of memory: try the others once.
        for i in 0..self.arena_count() {
            let a = self.arena(i);
            if ptr::eq(a, own) {
                continue;
            }
            let mut g = a.lock();
            // SAFETY: lock held.
            if let Some(got) = unsafe { g.malloc_chunk(&self.shared, nb) } {
                return Some(got.chunk);
            }
        }
        None
    }

    #[cold]
    #[inline(never)]
    unsafe fn malloc_large(&self, tc: *mut ThreadCache, n: usize, zero: bool) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.malloc_large_inner(tc, n, zero) }
    }

    unsafe fn malloc_large_inner(&self, tc: *mut ThreadCache, n: usize, zero: bool) -> *mut u8 {
        let Some(nb) = request_to_chunk(n) else {
            return ptr::null_mut();
        };
        // SAFETY: caller: our cache, if any.
        unsafe { self.settle_pending(tc) };
        if nb >= self.shared.mmap_threshold.load(Ordering::Relaxed) {
            let p = self.huge_alloc(n, 16);
            if !p.is_null() {
                return p;
            }
            if nb > MMAP_THRESHOLD_MAX {
                return p;
            }
        }
        let own: &Arena = if has_cache(tc) {
            // SAFETY: caller: our cache.
            unsafe { &*(*tc).arena }
        } else {
            self.cacheless_arena()
        };
        let mut g = self.lock_some_arena(own);
        // SAFETY: lock held.
        let got = unsafe { g.malloc_chunk(&self.shared, nb) };
        drop(g);
        match got {
            Some(got) => {
                let p = Self::hand_out(got.chunk);
                if zero && !got.zeroed {
                    crate::asan::unpoison(p, n);
                    // SAFETY: the payload is ours, at least n bytes.
                    unsafe { ptr::write_bytes(p, 0, n) };
                }
                p
            }
            // SAFETY: forwarded; other arenas, then a mapping.
            None => match unsafe { self.arena_malloc(tc, nb) } {
                Some(c) => {
                    let p = Self::hand_out(c);
                    if zero {
                        crate::asan::unpoison(c.payload(), n);
                        // SAFETY: as above.
                        unsafe { ptr::write_bytes(p, 0, n) };
                    }
                    p
                }
                None => self.huge_alloc(n, 16),
            },
        }
    }

    /// A huge block (its own mapping) for `n` bytes aligned to `align`; a user heap's is
    /// tracked, so that dropping the heap unmaps it.
    #[inline(never)]
    fn huge_alloc(&self, n: usize, align: usize) -> *mut u8 {
        if self.shared.user {
            let owner = self as *const Heap as usize;
            self.tracked.lock().alloc(&self.shared, owner, n, align)
        } else {
            crate::huge::alloc(&self.shared, n, align)
        }
    }

    /// Allocates `n` zeroed bytes.
    ///
    /// # Safety
    /// As for [`Heap::malloc`].
    pub unsafe fn calloc(&self, tc: *mut ThreadCache, n: usize) -> *mut u8 {
        if n > MAX_CLASS_REQUEST {
            // SAFETY: forwarded.
            let p = unsafe { self.malloc_large(tc, n, true) };
            // SAFETY: null or our fresh block.
            unsafe { self.asan_alloc(p, n) };
            return p;
        }
        // SAFETY: forwarded.
        let p = unsafe { self.malloc(tc, n) };
        if !p.is_null() {
            // SAFETY: p has at least n usable bytes.
            unsafe { ptr::write_bytes(p, 0, n) };
        }
        p
    }

    /// Allocates `n` bytes aligned to `align` (a power of two). Null when impossible.
    ///
    /// # Safety
    /// As for [`Heap::malloc`].
    pub unsafe fn memalign(&self, tc: *mut ThreadCache, align: usize, n: usize) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { self.memalign_raw(tc, align, n) };
        // SAFETY: null or our fresh block.
        unsafe { self.asan_alloc(p, n) };
        p
    }

    unsafe fn memalign_raw(&self, tc: *mut ThreadCache, align: usize, n: usize) -> *mut u8 {
        if align <= 16 {
            // SAFETY: forwarded.
            return unsafe { self.malloc(tc, n) };
        }
        // SAFETY: caller: our cache, if any.
        unsafe { self.settle_pending(tc) };
        if !align.is_power_of_two() || align > (1 << 40) {
            return ptr::null_mut();
        }
        let Some(nb) = request_to_chunk(n) else {
            return ptr::null_mut();
        };
        if n <= MAX_CLASS_REQUEST && has_cache(tc) {
            // A cached chunk of the class that happens to be aligned (one in two for 32
            // bytes, one in four for 64, …): no lock, no carving (which leaves a fragment
            // before the block).
            let cls = request_class(n).0;
            // SAFETY: caller: our cache.
            let p = unsafe { (*tc).pop_aligned(cls, align) };
            if !p.is_null() {
                return p;
            }
        }
        if nb.saturating_add(align) >= self.shared.mmap_threshold.load(Ordering::Relaxed) {
            return self.huge_alloc(n, align);
        }
        let own: &Arena = if has_cache(tc) {
            // SAFETY: caller: our cache.
            unsafe { &*(*tc).arena }
        } else {
            self.cacheless_arena()
        };
        let mut g = self.lock_some_arena(own);
        // SAFETY: lock held.
        match unsafe { g.memalign_chunk(&self.shared, align, nb) } {
            Some(got) => Self::hand_out(got.chunk),
            None => {
                drop(g);
                self.huge_alloc(n, align)
            }
        }
    }

    /// AddressSanitizer hook after an allocation (feature `asan`; empty otherwise).
    ///
    /// # Safety
    /// `p` is null or a live block of this heap with at least `n` bytes.
    #[inline(always)]
    pub(crate) unsafe fn asan_alloc(&self, p: *mut u8, n: usize) {
        if cfg!(feature = "asan") && !p.is_null() {
            // SAFETY: caller: live block; the header is ours to read.
            let usable = unsafe { Chunk::from_payload(p).size() } - HEADER;
            crate::asan::on_alloc(p, n, usable);
        }
    }
}
