//! The cache's policy: how many chunks a refill takes, how far each stack's bound grows for
//! batches and shrinks when idle (collections), what an overflowing stack keeps, and the
//! flushes that send chunks back. The chunks leave through a `release` closure the heap
//! passes in (`heap/cache.rs`): the cache never calls the heap.

use super::{low16, ThreadCache, FREER_STACK};
use crate::size_class::{CLASS_CHUNK_SIZE, NCLASSES};
use crate::sync::{fence, Ordering};

/// Least time between two collections of a cache's idle classes (milliseconds).
pub const GC_INTERVAL_MS: u64 = 100;
/// Least time between two collections when a class cannot grow for want of budget
/// (milliseconds).
pub const GC_MIN_MS: u64 = 5;
/// Slow-path events (refills, overflows) between two reads of the clock for a collection.
const GC_TICKS: u32 = 16;

impl ThreadCache {
    /// Starts a refill of class `cls` (its stack is empty): the stack gets its full bound
    /// back (the thread allocates this class: see [`ThreadCache::overflow`]) and the next
    /// refill's batch doubles. Returns how many chunks to take: the batch, at most the stack's
    /// room plus the one the refill hands out.
    pub fn begin_refill(&mut self, cls: usize) -> usize {
        self.refilled[cls] = true;
        self.used[cls] = true;
        let full = low16(self.bases[cls].wrapping_add(self.bins[cls + 1].max as usize));
        let b = &mut self.bins[cls + 1];
        b.full = full;
        let want = b.fill as usize;
        b.fill = (b.fill * 2).min((b.max / 2).max(1));
        let room = b.max as usize - self.count(cls);
        want.min(room + 1)
    }

    /// The first free slot of stack `cls`, where a refill writes its chunks' payloads (each
    /// put in the cache with `link::put_cached`) in address order.
    pub fn refill_slots(&self, cls: usize) -> *mut *mut u8 {
        self.bins[cls + 1].top.load(Ordering::Relaxed)
    }

    /// Ends a refill that filled the slots `[start, end)` of stack `cls` (`start` from
    /// [`ThreadCache::refill_slots`]): reverses them, so that pops hand out ascending
    /// addresses, and moves the top past them.
    ///
    /// # Safety
    /// Owning thread; `[start, end)` are the slots just filled, within the stack's bound.
    pub unsafe fn end_refill(&mut self, cls: usize, start: *mut *mut u8, end: *mut *mut u8) {
        // SAFETY: caller: [start, end) are the slots just filled.
        unsafe {
            let n = end.offset_from(start) as usize;
            core::slice::from_raw_parts_mut(start, n).reverse();
        }
        self.bins[cls + 1].top.store(end, Ordering::Relaxed);
    }

    /// Stack `cls` is full and a chunk is being freed: returns how many of its chunks to keep
    /// (the caller sends the others back to the arenas; keeping them all means the stack grew
    /// and takes the chunk). A class refilled since the stack last overflowed is one the thread
    /// allocates as well as frees, in batches larger than its stack (the stack empties, then
    /// fills up): its bound doubles, up to [`GROW_STACK`] chunks or [`GROW_CLASS_BYTES`] and
    /// within the cache's budget of grown bytes, so that a steady batch size soon fits whole
    /// (as tcmalloc's free lists grow); at its limit it keeps the newer half. A class not
    /// refilled since is one the thread frees and does not allocate — a consumer of blocks
    /// made by other threads, the free phase of a batch: its chunks would only wait in the
    /// stack, out of reach of the arena (and of the thread that will want them), so the stack is
    /// bounded to [`FREER_STACK`] chunks and flushed whole, also when its bound is that or
    /// less already (keeping half there made twice the flushes of half the size: with runs,
    /// whose stacks start at 16, `c-prodcons` took 1.13x the time and `c-xmalloc` 1.08x). Its
    /// next refill restores the bound.
    ///
    /// `now` reads the heap's clock; `release` gives chunks back to their arenas (a slice of
    /// payloads, and their chunk size).
    ///
    /// # Safety
    /// Owning thread; `release` takes the chunks it is given (they are no longer cached).
    pub unsafe fn overflow(
        &mut self,
        cls: usize,
        now: impl FnOnce() -> u64,
        release: impl FnMut(&ThreadCache, &mut [*mut u8], usize),
    ) -> usize {
        let max = self.bins[cls + 1].max;
        if core::mem::replace(&mut self.refilled[cls], false) {
            if self.grow(cls) {
                return self.count(cls);
            }
            // Out of budget: the classes idle since the last collection give back their grown
            // bounds first (a program's phases move from class to class faster than the
            // collection interval: `c-simple` spends ~20 ms per size).
            if self.grown_bytes > 0 {
                let now = now();
                if now.wrapping_sub(self.gc_ms) >= GC_MIN_MS {
                    self.gc_ms = now;
                    // SAFETY: forwarded.
                    unsafe { self.collect(release) };
                    if self.grow(cls) {
                        return self.count(cls);
                    }
                }
            }
            return max as usize / 2;
        }
        if max > FREER_STACK {
            self.bins[cls + 1].full = low16(self.bases[cls].wrapping_add(FREER_STACK as usize));
        }
        0
    }

    /// Whether class `cls` was refilled since its stack last overflowed: the thread allocates
    /// the class as well as frees it (see [`ThreadCache::overflow`]).
    pub fn refilled_since_overflow(&self, cls: usize) -> bool {
        self.refilled[cls]
    }

    /// Doubles stack `cls`'s bound when its capacity and the cache's budget allow; whether it
    /// grew.
    fn grow(&mut self, cls: usize) -> bool {
        let max = self.bins[cls + 1].max as usize;
        let new = (max * 2).min(self.caps[cls] as usize);
        let add = (new.saturating_sub(max)) * CLASS_CHUNK_SIZE[cls];
        if add == 0 || self.grown_bytes + add > self.grow_budget {
            return false;
        }
        self.grown_bytes += add;
        self.set_bound(cls, new);
        true
    }

    /// Sets stack `cls`'s bound (at most its capacity, at least its count).
    fn set_bound(&mut self, cls: usize, max: usize) {
        debug_assert!(max <= self.caps[cls] as usize && max >= self.count(cls));
        let full = low16(self.bases[cls].wrapping_add(max));
        let b = &mut self.bins[cls + 1];
        b.max = max as u16;
        b.full = full;
        b.fill = b.fill.min((b.max / 2).max(1));
    }

    /// Whether [`ThreadCache::collect`] is due: [`GC_INTERVAL_MS`] passed since the last one
    /// (the slow paths ask: refills and overflows; every [`GC_TICKS`]th asking reads the clock
    /// with `now`). When it is, returns the time read, which the collection's interval starts
    /// from.
    pub fn collection_due(&mut self, now: impl FnOnce() -> u64) -> Option<u64> {
        self.gc_tick = self.gc_tick.wrapping_add(1);
        if self.gc_tick % GC_TICKS != 0 {
            return None;
        }
        let now = now();
        if now.wrapping_sub(self.gc_ms) >= GC_INTERVAL_MS {
            self.gc_ms = now;
            return Some(now);
        }
        None
    }

    /// Gives back what the idle classes hold: a class not refilled since the last collection
    /// keeps half its chunks (the older half goes back to the arenas) and half its grown bound
    /// (down to the initial one). A class that refilled within the interval keeps everything;
    /// one whose use stopped is empty after a few intervals, so memory a thread cached for a
    /// past phase goes back where other threads can use it. (A class in use that never
    /// misses — its stack big enough for every batch — is halved too, and refills back: a few
    /// refills every other interval.)
    ///
    /// `release` gives chunks back to their arenas (see [`ThreadCache::flush`]).
    ///
    /// # Safety
    /// Owning thread; `release` takes the chunks it is given.
    // The class index runs over several per-class arrays at once.
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn collect(&mut self, mut release: impl FnMut(&ThreadCache, &mut [*mut u8], usize)) {
        for c in 0..NCLASSES {
            if !self.caches(c) || core::mem::replace(&mut self.used[c], false) {
                continue;
            }
            let max = self.bins[c + 1].max as usize;
            let base = self.base_max[c] as usize;
            let new = (max / 2).max(base);
            let n = self.count(c);
            if n > 0 {
                // SAFETY: forwarded.
                unsafe { self.flush(c, (n / 2).min(new), &mut release) };
            }
            if new < max {
                self.grown_bytes -= (max - new) * CLASS_CHUNK_SIZE[c];
                // The freer rule's cut (`overflow`) stays in force if it was lower.
                let limit = self.limit(c);
                self.set_bound(c, new);
                if limit < new {
                    self.bins[c + 1].full = low16(self.bases[c].wrapping_add(limit));
                }
            }
        }
    }

    /// Bytes of chunks the grown bounds add over the initial ones.
    #[cfg(any(test, feature = "internals"))]
    pub fn grown_bytes(&self) -> usize {
        self.grown_bytes
    }

    /// Most chunks stack `cls` takes now: its bound, or less while the thread only frees
    /// that class ([`ThreadCache::overflow`]).
    pub fn limit(&self, cls: usize) -> usize {
        let b = &self.bins[cls + 1];
        (b.full.wrapping_sub(b.empty) / 8) as usize
    }

    /// Sends all but the newest `keep` chunks of class `cls` back to their arenas: `release`
    /// gets the cache itself, the payloads that leave the stack (which no longer holds them)
    /// and their chunk size. The cache comes as a reborrow of `self` for the call: whatever
    /// the release reads or counts in it (its runs, its run figures) goes through that
    /// reference, not through a second one made from the cache's address while `self` is
    /// borrowed mutably. The slice lies in the stacks' area after the struct, which the
    /// reference does not cover.
    ///
    /// # Safety
    /// Owning thread; `release` takes the chunks it is given.
    #[cold]
    #[inline(never)]
    pub unsafe fn flush(
        &mut self,
        cls: usize,
        keep: usize,
        release: impl FnOnce(&ThreadCache, &mut [*mut u8], usize),
    ) {
        let n = self.count(cls);
        if n <= keep {
            return;
        }
        let base = self.bases[cls];
        // SAFETY: T1: slots [0, n) are filled. The newest `keep` rotate down to the bottom and
        // the stack is cut to them *before* the others are released: a `fork` while the release
        // runs (another thread's prepare handler waits on an arena lock this one takes next)
        // leaves the child a cache that no longer holds the released chunks, so the child's
        // flush of this vanished thread's cache does not release them a second time
        // (tests/fork.rs found it). The slots above the top are scratch space.
        // The rotation itself runs on a stack cut to nothing: a `fork` that copies the slots
        // half rotated (a chunk in two slots, another in none) would leave the child a cache
        // holding a chunk twice, and its flush of the vanished thread's cache would free it
        // twice (`fork_while_threads_allocate`'s child aborted "double free" in 1 soak run of
        // 8). Cut first, the child's copy holds fewer chunks (leaked there), never one twice.
        // The fences keep the stores in this order for a copy taken from another CPU.
        unsafe {
            let all = core::slice::from_raw_parts_mut(base, n);
            if keep > 0 {
                self.bins[cls + 1].top.store(base, Ordering::Relaxed);
                fence(Ordering::Release);
                all.rotate_left(n - keep);
                fence(Ordering::Release);
            }
            self.bins[cls + 1]
                .top
                .store(base.add(keep), Ordering::Relaxed);
            release(self, &mut all[keep..], CLASS_CHUNK_SIZE[cls]);
        }
    }

    /// Empties every stack (thread exit, cache teardown), giving the chunks to `release` as
    /// [`ThreadCache::flush`] does.
    ///
    /// # Safety
    /// Owning thread, or the cache's owner no longer exists; `release` takes the chunks.
    pub unsafe fn flush_all(
        &mut self,
        mut release: impl FnMut(&ThreadCache, &mut [*mut u8], usize),
    ) {
        for c in 0..NCLASSES {
            // Classes that are not cached hold nothing (and cost loom a scheduling point each).
            if !self.caches(c) {
                continue;
            }
            // SAFETY: forwarded.
            unsafe { self.flush(c, 0, &mut release) };
        }
    }
}
