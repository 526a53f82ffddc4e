//! The heap's arenas and the registry of thread caches: making an arena, attaching a thread
//! to one (the arena cap, reuse after exits, the main-arena rule), making, dropping and
//! orphaning caches (their memory comes from slabs of the registry), the free ring's
//! draining, and the arena a chunk belongs to.
//!
//! Holds the registry lock (first in the lock order) and takes arena locks one at a time.

use core::ptr;

use super::{has_cache, Heap, SLAB_SIZE};
use crate::arena::region::{self, RegionHeader};
use crate::arena::{Arena, ArenaGuard, Growth};
use crate::chunk::{Chunk, IN_REGION};
use crate::config::{COMMIT_STEP, MAX_ARENAS};
use crate::os::{self};
use crate::region_map;
use crate::sync::{self, Ordering};
use crate::tcache::ThreadCache;

impl Heap {
    fn create_arena(&self, index: usize) -> Option<*const Arena> {
        let al = core::mem::align_of::<Arena>();
        let arena_off = (region::FIRST_CHUNK_OFFSET + al - 1) & !(al - 1);
        let first = (arena_off + core::mem::size_of::<Arena>() + 15) & !15;
        let commit = os::page_align_up(first + COMMIT_STEP)?;
        let r = RegionHeader::map_unpublished(ptr::null_mut(), commit)?;
        let at: *mut Arena = r.cast::<u8>().wrapping_add(arena_off).cast();
        // SAFETY: `at` lies in the committed head of our fresh region, aligned for Arena. The
        // region is published only once its header names the arena: a `free` of a wild pointer
        // into it reads that header as soon as the region map has it (R1).
        unsafe {
            let a = Arena::init_at(at, &self.shared, index, Growth::Regions);
            RegionHeader::set_arena(r, a);
            RegionHeader::publish(r, self.shared.region_kind());
            let mut g = (*a).lock();
            g.first_region(&self.shared, r, r as usize + first, commit);
            drop(g);
            Some(a)
        }
    }

    /// Chooses an arena for a new thread (registry lock held by the caller).
    ///
    /// Where the main arena grows the program break (`main_thread_only`), it is the process's
    /// main thread's alone: that thread always gets it, and another thread gets it only when no
    /// thread arena exists and none can be made (an arena cap of 1, or the OS refusing a
    /// region). Elsewhere the main arena is an arena like the others. Among the arenas a
    /// thread may get: one no thread uses (lowest index first), else a new one while under the
    /// cap (main arena included in the count), else the least used (lowest index on ties).
    fn attach_locked(&self) -> *const Arena {
        let n = self.narenas.load(Ordering::Acquire);
        // The first arena this thread may be handed.
        let first = if self.main_thread_only.load(Ordering::Relaxed) {
            if os::is_main_thread() {
                let a = self.arena(0);
                a.attached.fetch_add(1, Ordering::Relaxed);
                return a;
            }
            1
        } else {
            0
        };
        for i in first..n {
            let a = self.arena(i);
            if a.attached.load(Ordering::Relaxed) == 0 {
                a.attached.fetch_add(1, Ordering::Relaxed);
                return a;
            }
        }
        // Mutation (loom check, see docs/loom.md): the cap ignored.
        let cap = if sync::mutation::on("attach_ignores_cap") {
            MAX_ARENAS
        } else {
            self.arena_max()
        };
        let room = n < cap;
        if room {
            if let Some(a) = self.create_arena(n) {
                self.arenas[n].store(a.cast_mut(), Ordering::Release);
                // Release: pairs with the Acquire in `arena_count`/`arena`.
                self.narenas.store(n + 1, Ordering::Release);
                // SAFETY: just made.
                unsafe { (*a).attached.fetch_add(1, Ordering::Relaxed) };
                return a;
            }
        }
        // No thread arena to share: the main arena, whatever the rule.
        let first = if first < n { first } else { 0 };
        let mut best = self.arena(first);
        for i in first + 1..n {
            let a = self.arena(i);
            if a.attached.load(Ordering::Relaxed) < best.attached.load(Ordering::Relaxed) {
                best = a;
            }
        }
        best.attached.fetch_add(1, Ordering::Relaxed);
        best
    }

    /// The arena that serves a thread with no cache (while its cache is made or after its
    /// exit destructor ran): the main arena, except where that is the main thread's alone
    /// (`attach_locked`) and another thread asks: then a thread arena, if any.
    pub(super) fn cacheless_arena(&self) -> &Arena {
        if self.main_thread_only.load(Ordering::Relaxed) {
            let n = self.arena_count();
            if n > 1 && !os::is_main_thread() {
                return self.arena(1 + os::thread_id() % (n - 1));
            }
        }
        self.main_arena()
    }

    /// Makes a thread cache attached to an arena. Null when out of memory.
    pub fn new_cache(&self) -> *mut ThreadCache {
        // Mutation (loom check, see docs/loom.md): choose the arena before taking the registry
        // lock, so two threads can race to create the same last arena.
        let unlocked = sync::mutation::on("attach_unlocked");
        let early = if unlocked {
            self.attach_locked()
        } else {
            ptr::null()
        };
        let mut reg = self.registry.lock();
        let count = self.tcache_count.load(Ordering::Relaxed);
        let max_size = self.tcache_max_size.load(Ordering::Relaxed);
        // Each cache may grow its bounds by its share of the heap's total, within the
        // per-thread most (`TCACHE_GROW_TOTAL`: many threads get smaller caches).
        let grow_budget = self
            .tcache_grow_bytes
            .load(Ordering::Relaxed)
            .min(crate::config::TCACHE_GROW_TOTAL / (reg.nlive + 1));
        let grow = self.tcache_grow_bytes.load(Ordering::Relaxed) > 0;
        let (tc, bytes) = if !reg.free_caches.is_null() {
            let tc = reg.free_caches;
            // SAFETY: free caches are linked through next_live under the registry lock; a
            // recycled cache keeps its stacks area (bounds are cut to fit it if the settings grew).
            unsafe {
                reg.free_caches = (*tc).next_live;
                let bytes = core::mem::size_of::<ThreadCache>() + (*tc).capacity() * 8;
                (tc, bytes)
            }
        } else {
            let size = (ThreadCache::footprint(count, max_size, grow) + 63) & !63;
            if reg.slab_left < size {
                let len = (size + 64).max(SLAB_SIZE).next_multiple_of(os::page_size());
                let Some(s) = os::map(len) else {
                    return ptr::null_mut();
                };
                // SAFETY: the slab's first two words link slabs and give their length, for
                // teardown.
                unsafe {
                    s.cast::<*mut u8>().write(reg.slabs);
                    s.cast::<usize>().add(1).write(len);
                }
                reg.slabs = s;
                reg.slab = s.wrapping_add(64);
                reg.slab_left = len - 64;
            }
            let tc = reg.slab.cast::<ThreadCache>();
            reg.slab = reg.slab.wrapping_add(size);
            reg.slab_left -= size;
            (tc, size)
        };
        let a = if unlocked {
            early
        } else {
            self.attach_locked()
        };
        // SAFETY: tc is unused metadata memory, aligned.
        unsafe {
            ThreadCache::init_at(
                tc,
                bytes,
                a,
                count,
                max_size,
                grow_budget,
                self.shared.now_ms(),
            );
            (*tc).next_live = reg.live;
            if !reg.live.is_null() {
                (*reg.live).prev_live = tc;
            }
        }
        reg.live = tc;
        reg.nlive += 1;
        tc
    }

    /// Flushes a cache, detaches its arena and recycles it.
    ///
    /// # Safety
    /// `tc` came from this heap's `new_cache`, and no thread uses it any more.
    pub unsafe fn drop_cache(&self, tc: *mut ThreadCache) {
        // The flush must come before the cache goes back on the free list: a new thread may get
        // the same cache memory as soon as the registry lock is released (loom_thread_exit).
        // SAFETY: caller: we are its only user. Frees pending in its ring are done first.
        let late_flush = sync::mutation::on("exit_recycle_before_flush");
        if !late_flush {
            // SAFETY: as above.
            unsafe {
                self.drain_ring(tc);
                self.retire_cache(tc)
            };
        }
        let mut reg = self.registry.lock();
        // SAFETY: registry lock held; tc is on the live list.
        unsafe {
            let a = &*(*tc).arena;
            // Mutation (loom check): the arena stays attached to a thread that is gone.
            if !sync::mutation::on("exit_keeps_attached") {
                a.attached.fetch_sub(1, Ordering::Relaxed);
            }
            let (p, n) = ((*tc).prev_live, (*tc).next_live);
            if p.is_null() {
                reg.live = n;
            } else {
                (*p).next_live = n;
            }
            if !n.is_null() {
                (*n).prev_live = p;
            }
            (*tc).next_live = reg.free_caches;
            reg.free_caches = tc;
        }
        reg.nlive -= 1;
        // Mutation (loom check, see docs/loom.md): flush after the cache was recycled.
        if late_flush {
            drop(reg);
            // SAFETY: none: this is the bug the mutation plants.
            unsafe { self.retire_cache(tc) };
        }
    }

    /// Drops the cache of a thread that does not exist any more because the process forked
    /// (the child's copy of another thread's cache): its marks are written again first
    /// (`ThreadCache::remark_all`: the thread may have stopped mid-push), then it is dropped
    /// as at a thread's exit.
    ///
    /// # Safety
    /// `tc` came from this heap's `new_cache`, and its thread does not exist.
    pub unsafe fn drop_orphaned_cache(&self, tc: *mut ThreadCache) {
        // SAFETY: caller: no thread uses the cache.
        unsafe {
            (*tc).remark_all();
            self.drop_cache(tc);
        }
    }

    /// Does the frees pending in a cache's ring (the pipelined `free`, see
    /// `ThreadCache::ring_swap`), checking each as `free` does.
    ///
    /// # Safety
    /// `tc` is a cache of this heap used by the calling thread only, or whose thread is gone.
    pub unsafe fn drain_ring(&self, tc: *mut ThreadCache) {
        loop {
            // SAFETY: caller.
            let q = unsafe { (*tc).ring_take() };
            if q.is_null() {
                return;
            }
            // SAFETY: caller: a pointer freed through this cache's thread.
            unsafe { self.free(tc, q) };
        }
    }

    /// Before an allocation that reaches the arenas: the frees pending in the thread's ring are
    /// done, so that the arena never hands out a block whose free is pending (a double free
    /// whose first free was done: the pending one would free the block under its new owner;
    /// pops from the thread's own stacks check the ring instead), and so that their memory can
    /// serve this request (a pipelined free of a large block must not keep it from the next
    /// large request). The pipeline stays on: a thread that allocates and frees in a steady
    /// mix (a server replacing old blocks, `c-larson`) keeps overlapping its frees' misses
    /// between refills; it turns off after `RING_BUDGET` frees without an overflow.
    ///
    /// # Safety
    /// `tc` is null, 1 (`DEAD`), or the calling thread's cache of this heap.
    #[inline]
    pub(super) unsafe fn settle_pending(&self, tc: *mut ThreadCache) {
        // SAFETY: caller.
        if has_cache(tc) && unsafe { (*tc).ring_busy() } {
            // SAFETY: caller: our cache.
            unsafe {
                self.drain_ring(tc);
            }
        }
    }

    /// Calls `f` on every live cache (registry lock held meanwhile).
    pub fn for_each_cache(&self, mut f: impl FnMut(*mut ThreadCache)) {
        let reg = self.registry.lock();
        let mut c = reg.live;
        while !c.is_null() {
            // SAFETY: live caches stay valid while the registry lock is held.
            let next = unsafe { (*c).next_live };
            f(c);
            c = next;
        }
    }

    /// The registry's raw lock, for the fork handlers.
    pub fn registry_raw_lock(&self) -> &sync::RawLock {
        sync::raw_of(&self.registry)
    }

    /// Locks `own` if it is free, else any other free arena, else waits for `own`.
    #[inline]
    pub fn lock_some_arena<'a>(&'a self, own: &'a Arena) -> ArenaGuard<'a> {
        if let Some(g) = own.try_lock() {
            return g;
        }
        self.lock_some_arena_slow(own)
    }

    #[cold]
    fn lock_some_arena_slow<'a>(&'a self, own: &'a Arena) -> ArenaGuard<'a> {
        let n = self.arena_count();
        let start = own.index;
        // A thread arena's thread never moves onto a main arena that is the main thread's.
        let skip_main = own.index != 0 && self.main_thread_only.load(Ordering::Relaxed);
        for k in 1..n {
            let i = (start + k) % n;
            if i == 0 && skip_main {
                continue;
            }
            let a = self.arena(i);
            if let Some(g) = a.try_lock() {
                return g;
            }
        }
        own.lock()
    }

    /// The time-based aging of the arenas (`ArenaState::decay`), run by a thread cache's
    /// collection: its own arena and one other, in turn, each only if its lock is free, so
    /// that arenas whose threads are gone or idle age too while any thread is active.
    pub fn decay_arenas(&self, own: &Arena, now: u64) {
        if let Some(mut g) = own.try_lock() {
            g.decay(&self.shared, now);
        }
        let n = self.arena_count();
        if n > 1 {
            let i = self.decay_cursor.fetch_add(1, Ordering::Relaxed) % n;
            let a = self.arena(i);
            if !ptr::eq(a, own) {
                if let Some(mut g) = a.try_lock() {
                    g.decay(&self.shared, now);
                }
            }
        }
    }

    /// The arena owning chunk `c`.
    ///
    /// # Safety
    /// `c` is a checked, non-huge chunk of this heap.
    #[inline]
    pub unsafe fn arena_of(&self, c: Chunk) -> &Arena {
        // SAFETY: caller: checked chunk; region chunks find their header by masking.
        unsafe {
            if c.flags() & IN_REGION != 0 {
                &*region::arena_of(c.ptr())
            } else {
                self.main_arena()
            }
        }
    }

    /// The arena owning the chunk whose payload is `p`, found from the region map and not from
    /// the chunk's header (which a caller may know not to need).
    ///
    /// # Safety
    /// `p` is the payload of a live chunk of this heap's arenas (not a huge block).
    #[inline]
    pub unsafe fn arena_of_payload(&self, p: *mut u8) -> &Arena {
        if region_map::kind(p as usize) & !region_map::USER == region_map::REGION {
            // SAFETY: caller: a region chunk; its header holds its arena.
            unsafe { &*region::arena_of(p) }
        } else {
            self.main_arena()
        }
    }
}
