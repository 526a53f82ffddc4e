//! Thread caches: one thread's lock-free stacks of free chunks, one per class.
//!
//! ```text
//! ThreadCache (in a metadata slab, never on the heap)
//! +-----------------------------+
//! | heads[84]   *mut u8         |  payload of the newest cached chunk per class
//! | counts[84]  AtomicU16       |  owner writes with load+store; stats read them
//! | maxes[84]   u16             |  per-class bound (0: class not cached)
//! | arena, heap, live links     |
//! +-----------------------------+
//! cached chunk: payload+0 = mangled link to the next cached payload
//!               payload+8 = CACHE_KEY (marks "in a cache": a second free of it is caught)
//! ```
//!
//! The hit path is a table lookup, a load, a demangle and a store: no lock and no atomic
//! read-modify-write. A miss refills half a list from the arena under one lock hold; a full list
//! sends its older half back to the arenas, one lock hold per arena, or — when the arena's lock is
//! busy — onto the arena's lock-free remote list, which the arena's next lock holder drains.
//!
//! # Invariants
//! - T1: `counts[c]` equals the length of list `c`, and is at most `maxes[c]`.
//! - T2: every chunk in list `c` has chunk size `CLASS_CHUNK_SIZE[c]` and is in use from its
//!   arena's view; its payload+8 holds `CACHE_KEY`.
//! - T3: only the owning thread touches `heads` and writes `counts` (a thread's exit, or a
//!   `fork` child for the threads it lost, hands the cache over first).

pub mod link;

use core::ptr;

use crate::arena::Arena;
use crate::chunk::Chunk;
use crate::heap::Heap;
use crate::size_class::{CLASS_CHUNK_SIZE, NCLASSES};
use crate::sync::Ordering;

/// A class's chunk count: the owner writes it with load + store (no read-modify-write), any
/// thread may read it (statistics), so it is an atomic.
#[cfg(not(all(test, loom, loom_mutation = "tcache_count_torn")))]
type Count = crate::sync::AtomicU16;
/// Mutation (loom check, see docs/loom.md): the count as a plain, non-atomic `u16`.
#[cfg(all(test, loom, loom_mutation = "tcache_count_torn"))]
type Count = crate::sync::PlainU16;

/// Chunks the first refill of a class takes.
const FIRST_FILL: u16 = 4;

/// One thread's cache.
#[repr(C)]
#[derive(Debug)]
pub struct ThreadCache {
    heads: [*mut u8; NCLASSES],
    counts: [Count; NCLASSES],
    maxes: [u16; NCLASSES],
    /// Chunks the next refill of each class takes: starts small and doubles with each refill,
    /// up to half the bound, so a class used once (a growing buffer passing through) costs a few
    /// chunks, not half a list.
    fills: [u16; NCLASSES],
    /// The arena this thread allocates from.
    pub arena: *const Arena,
    /// Registry links (registry lock).
    pub(crate) next_live: *mut ThreadCache,
    pub(crate) prev_live: *mut ThreadCache,
}

impl ThreadCache {
    /// Initialises a cache in place with per-class bounds from `count` (most chunks per class)
    /// and `max_size` (largest request cached).
    ///
    /// # Safety
    /// `at` is writable, aligned and not in use.
    pub unsafe fn init_at(
        at: *mut ThreadCache,
        arena: *const Arena,
        count: usize,
        max_size: usize,
    ) {
        let mut maxes = [0u16; NCLASSES];
        for (c, m) in maxes.iter_mut().enumerate() {
            let size = CLASS_CHUNK_SIZE[c];
            if size - crate::chunk::HEADER <= max_size && count > 0 {
                let by_bytes = crate::config::TCACHE_CLASS_BYTES / size;
                *m = count.min(by_bytes.max(4)).min(u16::MAX as usize) as u16;
            }
        }
        // SAFETY: caller: writable and unused.
        unsafe {
            at.write(ThreadCache {
                heads: [ptr::null_mut(); NCLASSES],
                counts: core::array::from_fn(|_| Count::new(0)),
                fills: core::array::from_fn(|c| (maxes[c] / 2).clamp(1, FIRST_FILL)),
                maxes,
                arena,
                next_live: ptr::null_mut(),
                prev_live: ptr::null_mut(),
            })
        };
    }

    /// Takes a cached chunk of class `cls` (payload pointer), or null.
    ///
    /// # Safety
    /// Called by the owning thread; `cls < NCLASSES`.
    #[inline(always)]
    pub unsafe fn pop(&mut self, cls: usize) -> *mut u8 {
        let p = self.heads[cls];
        if p.is_null() {
            return p;
        }
        // SAFETY: T2: p is a cached payload of at least 16 bytes that we own.
        unsafe {
            self.heads[cls] = link::get(p);
            link::clear_key(p);
        }
        let n = self.counts[cls].load(Ordering::Relaxed);
        self.counts[cls].store(n.wrapping_sub(1), Ordering::Relaxed);
        p
    }

    /// Caches payload `p` of class `cls`; false when the list is full.
    ///
    /// # Safety
    /// Owning thread; `p` is an in-use chunk's payload of exactly class `cls`, owned by the caller.
    #[inline(always)]
    pub unsafe fn push(&mut self, cls: usize, p: *mut u8) -> bool {
        let n = self.counts[cls].load(Ordering::Relaxed);
        if n >= self.maxes[cls] {
            return false;
        }
        // SAFETY: caller: p is ours; it becomes a list member.
        unsafe {
            link::set(p, self.heads[cls]);
            link::set_key(p);
        }
        self.heads[cls] = p;
        self.counts[cls].store(n + 1, Ordering::Relaxed);
        true
    }

    /// Whether class `cls` is cached at all.
    #[inline]
    pub fn caches(&self, cls: usize) -> bool {
        self.maxes[cls] > 0
    }

    /// Cached chunks in class `cls`.
    pub fn count(&self, cls: usize) -> usize {
        self.counts[cls].load(Ordering::Relaxed) as usize
    }

    /// Newest cached payload of class `cls` (for checkers).
    pub fn head(&self, cls: usize) -> *mut u8 {
        self.heads[cls]
    }

    /// Bound of class `cls`.
    pub fn max(&self, cls: usize) -> usize {
        self.maxes[cls] as usize
    }

    /// Bytes of chunks held (read by any thread; a snapshot).
    pub fn held_bytes(&self) -> usize {
        // Classes that are not cached are skipped: their counts stay 0 (and under loom every
        // atomic load is a scheduling point).
        (0..NCLASSES)
            .filter(|&c| self.caches(c))
            .map(|c| self.counts[c].load(Ordering::Relaxed) as usize * CLASS_CHUNK_SIZE[c])
            .sum()
    }

    /// Refills class `cls` from the arenas and returns one chunk's payload (null when out of
    /// memory).
    ///
    /// # Safety
    /// Owning thread; `cls` is cached; `heap` owns the cache.
    #[cold]
    #[inline(never)]
    pub unsafe fn refill(&mut self, heap: &Heap, cls: usize) -> *mut u8 {
        let want = self.fills[cls] as usize;
        self.fills[cls] = (self.fills[cls] * 2).min((self.maxes[cls] / 2).max(1));
        let nb = CLASS_CHUNK_SIZE[cls];
        // SAFETY: the arena pointer is valid for the heap's life.
        let own = unsafe { &*self.arena };
        let mut g = heap.lock_some_arena(own);
        let sh = heap.shared();
        let mut first: *mut u8 = ptr::null_mut();
        let n = self.counts[cls].load(Ordering::Relaxed);
        let mut added = 0u16;
        let heads = &mut self.heads[cls];
        // SAFETY: lock held; each chunk handed to the sink is in use and ours.
        unsafe {
            g.malloc_batch(sh, nb, want, |c: Chunk| {
                let p = c.payload();
                if first.is_null() {
                    // Memory fresh from the arena may hold a stale cache key at payload+8;
                    // clear it so that freeing this block is not taken for a double free.
                    link::clear_key(p);
                    first = p;
                } else {
                    link::set(p, *heads);
                    link::set_key(p);
                    *heads = p;
                    added += 1;
                }
            });
        }
        drop(g);
        self.counts[cls].store(n + added, Ordering::Relaxed);
        first
    }

    /// Sends all but the newest `keep` chunks of class `cls` back to their arenas.
    ///
    /// # Safety
    /// Owning thread.
    #[cold]
    #[inline(never)]
    pub unsafe fn flush(&mut self, heap: &Heap, cls: usize, keep: usize, may_defer: bool) {
        let n = self.counts[cls].load(Ordering::Relaxed) as usize;
        if n <= keep {
            return;
        }
        let chain;
        // SAFETY: T1: the list has n members; we cut it after `keep`.
        unsafe {
            if keep == 0 {
                chain = self.heads[cls];
                self.heads[cls] = ptr::null_mut();
            } else {
                let mut p = self.heads[cls];
                for _ in 1..keep {
                    p = link::get(p);
                }
                chain = link::get(p);
                link::set(p, ptr::null_mut());
            }
        }
        self.counts[cls].store(keep as u16, Ordering::Relaxed);
        // SAFETY: the chain's chunks are in use and now ours alone.
        unsafe { heap.release_chain(chain, may_defer) };
    }

    /// Empties every list (thread exit, cache teardown).
    ///
    /// # Safety
    /// Owning thread, or the cache's owner no longer exists.
    pub unsafe fn flush_all(&mut self, heap: &Heap) {
        for c in 0..NCLASSES {
            // Classes that are not cached hold nothing (and cost loom a scheduling point each).
            if !self.caches(c) {
                continue;
            }
            // SAFETY: forwarded.
            unsafe { self.flush(heap, c, 0, false) };
        }
    }

    /// Walks list `cls` looking for `p` (double-free diagnosis).
    ///
    /// # Safety
    /// Owning thread.
    pub unsafe fn contains(&self, cls: usize, p: *mut u8) -> bool {
        let mut q = self.heads[cls];
        let mut n = self.count(cls);
        while !q.is_null() && n > 0 {
            if q == p {
                return true;
            }
            // SAFETY: T1/T2: list members.
            q = unsafe { link::get(q) };
            n -= 1;
        }
        false
    }
}
