//! What a heap does for its thread caches: refills a stack from the arenas, and takes back
//! the chunks a stack sends away (overflow, collection of idle classes, flushes).
//!
//! The cache (`tcache`) is data and its own policy — its stacks, their bounds, when a class
//! grows or is collected; everything that reaches the arenas (their locks, the release of
//! chunks, the arenas' ageing) is here, so that `tcache` never calls back into the heap.

use core::ptr;

use super::Heap;
use crate::chunk::Chunk;
use crate::link;
use crate::size_class::CLASS_CHUNK_SIZE;
use crate::tcache::ThreadCache;

impl Heap {
    /// Refills class `cls` of cache `t` from the arenas and returns one chunk's payload (null
    /// when out of memory).
    ///
    /// # Safety
    /// Owning thread; `cls` is cached and its stack is empty; this heap owns the cache.
    #[cold]
    #[inline(never)]
    pub unsafe fn refill(&self, t: &mut ThreadCache, cls: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.maybe_collect(t) };
        let want = t.begin_refill(cls);
        if self.runs_on() {
            // SAFETY: forwarded; the stack has room for `want - 1` (`begin_refill`).
            return unsafe { self.refill_from_runs(t, cls, want) };
        }
        let nb = CLASS_CHUNK_SIZE[cls];
        // SAFETY: the arena pointer is valid for the heap's life.
        let own = unsafe { &*t.arena };
        let mut g = self.lock_some_arena(own);
        let sh = self.shared();
        let mut first: *mut u8 = ptr::null_mut();
        let start = t.refill_slots(cls);
        let mut end = start;
        // SAFETY: lock held; each chunk handed to the sink is in use and ours; at most `want`
        // chunks come, and one of them is returned, so the stack gets at most `want - 1`,
        // within its room (`begin_refill`).
        unsafe {
            g.malloc_batch(sh, nb, want, |c: Chunk, marked: bool| {
                let p = c.payload();
                if first.is_null() {
                    // Memory fresh from the arena may hold a stale freed mark at payload+8;
                    // clear it so that freeing this block is not taken for a double free.
                    link::clear_key(p);
                    first = p;
                } else {
                    // `malloc_batch` gives chunks of exactly `nb` bytes (T2); a quick-list chunk
                    // is marked already (and may well be out of the CPU cache: no store; the
                    // `expensive-checks` canary in word 0 must be written though).
                    if !marked || cfg!(feature = "expensive-checks") {
                        link::put_cached(p);
                    }
                    end.write(p);
                    end = end.add(1);
                }
            });
            if first.is_null() {
                // No chunk of exactly the class: the arena may hold only chunks a step above it
                // (whose remainder is too small to split off; they cannot go on the stack, T2,
                // and a batch gives back each one it meets), or memory is short. The request
                // itself takes whatever chunk serves it: its size is in its header.
                if let Some(got) = g.malloc_chunk(sh, nb) {
                    let p = got.chunk.payload();
                    link::clear_key(p);
                    first = p;
                }
            }
        }
        drop(g);
        // SAFETY: [start, end) are the slots just filled.
        unsafe { t.end_refill(cls, start, end) };
        first
    }

    /// Stack `cls` of cache `t` is full and a chunk is being freed: how many of its chunks to
    /// keep ([`ThreadCache::overflow`]; a collection it runs gives chunks back here).
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache.
    pub unsafe fn overflow(&self, t: &mut ThreadCache, cls: usize) -> usize {
        // SAFETY: forwarded; the released chunks are this heap's, out of the cache.
        unsafe {
            t.overflow(
                cls,
                || self.shared().now_ms(),
                |t, ps, size| self.release_slice(ps, size, false, Some(t)),
            )
        }
    }

    /// Collects cache `t`'s idle classes when a collection is due, and ages the arenas then
    /// (the slow paths call it: refills and overflows).
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache.
    pub unsafe fn maybe_collect(&self, t: &mut ThreadCache) {
        if let Some(now) = t.collection_due(|| self.shared().now_ms()) {
            // SAFETY: forwarded.
            unsafe { self.collect(t) };
            // SAFETY: the arena pointer is valid for the heap's life.
            self.decay_arenas(unsafe { &*t.arena }, now);
        }
    }

    /// Gives back what cache `t`'s idle classes hold ([`ThreadCache::collect`]).
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache.
    pub unsafe fn collect(&self, t: &mut ThreadCache) {
        // SAFETY: forwarded; the released chunks are this heap's, out of the cache.
        unsafe { t.collect(|t, ps, size| self.release_slice(ps, size, false, Some(t))) };
        if self.runs_on() {
            // SAFETY: forwarded.
            unsafe { self.sweep_some_runs(t) };
        }
    }

    /// Sends all but the newest `keep` chunks of class `cls` of cache `tc` back to their
    /// arenas; `may_defer` lets a busy arena's share go onto its remote list.
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache.
    pub unsafe fn flush_class(
        &self,
        tc: *mut ThreadCache,
        cls: usize,
        keep: usize,
        may_defer: bool,
    ) {
        // SAFETY: caller: the cache is ours; the released chunks are this heap's, out of it.
        unsafe {
            (*tc).flush(cls, keep, |t, ps, size| {
                self.release_slice(ps, size, may_defer, Some(t))
            })
        };
    }

    /// Empties every stack of cache `tc` back to the arenas (and runs), and gives back the
    /// cache's runs whose blocks are all back (`malloc_trim`, a user heap's lane).
    ///
    /// # Safety
    /// Owning thread, or the cache's owner no longer exists; this heap owns the cache.
    pub unsafe fn flush_cache(&self, tc: *mut ThreadCache) {
        // SAFETY: forwarded; the cache is ours.
        unsafe {
            self.flush_stacks(tc);
            if self.runs_on() {
                self.sweep_runs(&mut *tc);
            }
        }
    }

    /// Empties every stack of cache `tc` back to the arenas (and runs).
    ///
    /// # Safety
    /// As for [`Heap::flush_cache`].
    unsafe fn flush_stacks(&self, tc: *mut ThreadCache) {
        // SAFETY: caller: the cache is ours; the released chunks are this heap's, out of it.
        unsafe { (*tc).flush_all(|t, ps, size| self.release_slice(ps, size, false, Some(t))) };
    }

    /// A cache's teardown (its thread exits, or its heap's lane goes): its stacks are emptied
    /// (as by [`Heap::flush_cache`]) and its runs go back to their arenas, or wait there as orphans
    /// while blocks of theirs are out.
    ///
    /// # Safety
    /// As for [`Heap::flush_cache`]; the cache is not used again before it is made anew.
    pub unsafe fn retire_cache(&self, tc: *mut ThreadCache) {
        // SAFETY: forwarded.
        unsafe {
            if self.runs_on() {
                // Not `flush_cache`: its sweep of the runs would look at each run once more
                // just before `drop_runs` does the same (collects it, gives it back when its
                // blocks are all back), and a thread's exit pays for it (`churn`).
                self.flush_stacks(tc);
                self.drop_runs(&mut *tc);
            } else {
                self.flush_cache(tc);
            }
        }
    }
}
