//! A heap: the main arena, the thread arenas, the registry of thread caches, and the entry
//! points (`malloc`, `free`, `realloc`, …) that take an explicit thread cache.
//!
//! The global allocator is one static `Heap`; tests, fuzz targets and loom models make private
//! ones ([`PrivateHeap`]) and drive several caches from one OS thread.
//!
//! A request's path: thread cache (lock-free) → arena under its lock (bins → top → growth) →
//! the OS. Requests at or above the mmap threshold skip the arenas (see `huge`).
//!
//! # Lock order
//! The registry lock, then arena locks in index order (main arena = index 0). No code holds two
//! arena locks at once except the `fork` handlers, which take them all in that order.

use core::ptr;

use crate::arena::region::{self, RegionHeader};
use crate::arena::{self, remote_cap, Arena, ArenaGuard, Growth};
use crate::chunk::{Chunk, ALIGN, FREE, HEADER, IN_REGION, IS_MMAPPED, MIN_CHUNK, SIZE_MASK};
use crate::config::{Tunables, COMMIT_STEP, MAX_ARENAS, MMAP_THRESHOLD_MAX};
use crate::os::{self, fatal};
use crate::region_map;
use crate::shared::Shared;
use crate::size_class::{
    chunk_class, request_class, request_to_chunk, CLASS_CHUNK_SIZE, MAX_CLASS_REQUEST, MAX_REQUEST,
    SMALL_MAX_REQUEST,
};
use crate::stats::Stats;
use crate::sync::process::{AtomicBool as PAtomicBool, AtomicUsize as PAtomicUsize};
use crate::sync::{self, const_fn_unless_loom, AtomicPtr, AtomicUsize, Mutex, Ordering};
use crate::tcache::{link, ThreadCache};

mod cache;
mod tracked;

#[derive(Debug)]
struct Registry {
    free_caches: *mut ThreadCache,
    live: *mut ThreadCache,
    slab: *mut u8,
    slab_left: usize,
    slabs: *mut u8,
    nlive: usize,
}

// SAFETY: only reached through the registry lock.
unsafe impl Send for Registry {}

const SLAB_SIZE: usize = 64 << 10;

/// A heap.
#[derive(Debug)]
pub struct Heap {
    shared: Shared,
    arenas: [AtomicPtr<Arena>; MAX_ARENAS],
    narenas: AtomicUsize,
    registry: Mutex<Registry>,
    arena_max: PAtomicUsize,
    tcache_count: PAtomicUsize,
    /// Most bytes a thread cache's bounds may grow by (`Tunables::tcache_grow_bytes`).
    tcache_grow_bytes: PAtomicUsize,
    /// The next arena a cache collection ages (`decay_arenas`).
    decay_cursor: PAtomicUsize,
    tcache_max_size: PAtomicUsize,
    main_map: PAtomicUsize,
    main_reserve: PAtomicUsize,
    main_reserve_len: PAtomicUsize,
    /// Tunables::free_pipeline.
    free_pipeline: PAtomicBool,
    /// Whether the main arena belongs to the process's main thread alone: set where it grows
    /// the program break (`Tunables::use_brk`). See `attach_locked` and docs/design.md, "Who
    /// gets the main arena".
    main_thread_only: PAtomicBool,
    /// A user heap's huge blocks (empty in the others).
    tracked: Mutex<tracked::List>,
}

// SAFETY: all mutable state is atomic or behind the registry/arena locks.
unsafe impl Sync for Heap {}
// SAFETY: as above.
unsafe impl Send for Heap {}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl Heap {
    const_fn_unless_loom! {
        /// An empty heap; [`Heap::init`] must run before use.
        pub fn new() -> Heap {
            Heap {
                shared: Shared::new(),
                arenas: new_arena_table(),
                narenas: AtomicUsize::new(0),
                registry: sync::new_mutex(Registry {
                    free_caches: ptr::null_mut(),
                    live: ptr::null_mut(),
                    slab: ptr::null_mut(),
                    slab_left: 0,
                    slabs: ptr::null_mut(),
                    nlive: 0,
                }),
                arena_max: PAtomicUsize::new(8),
                tcache_count: PAtomicUsize::new(crate::config::TCACHE_COUNT_DEFAULT),
                tcache_grow_bytes: PAtomicUsize::new(crate::config::TCACHE_GROW_BYTES_DEFAULT),
                decay_cursor: PAtomicUsize::new(0),
                tcache_max_size: PAtomicUsize::new(crate::config::TCACHE_MAX_SIZE_DEFAULT),
                main_map: PAtomicUsize::new(0),
                main_reserve: PAtomicUsize::new(0),
                main_reserve_len: PAtomicUsize::new(0),
                free_pipeline: PAtomicBool::new(true),
                main_thread_only: PAtomicBool::new(false),
                tracked: sync::new_mutex(tracked::List::new()),
            }
        }
    }

    /// Makes this heap a user heap (see [`Shared::user`]).
    ///
    /// # Safety
    /// Called before [`Heap::init`], before the heap is shared.
    pub unsafe fn mark_user(&self) {
        // SAFETY: caller: not shared yet; `user` is otherwise read-only.
        unsafe { ptr::addr_of!(self.shared.user).cast_mut().write(true) };
    }

    /// Applies the tunables and builds the main arena. Returns false if no memory could be had.
    ///
    /// # Safety
    /// Called once, before any other use, at the heap's final address.
    pub unsafe fn init(&self, t: &Tunables) -> bool {
        crate::keys::init();
        let sh = &self.shared;
        sh.mmap_threshold.store(t.mmap_threshold, Ordering::Relaxed);
        sh.mmap_dynamic
            .store(t.mmap_threshold_dynamic, Ordering::Relaxed);
        sh.trim_threshold.store(t.trim_threshold, Ordering::Relaxed);
        // SAFETY: init runs before the heap is shared; top_pad is otherwise read-only.
        unsafe { ptr::addr_of!(sh.top_pad).cast_mut().write(t.top_pad) };
        // SAFETY: as above; quick_max is otherwise read-only.
        unsafe { ptr::addr_of!(sh.quick_max).cast_mut().write(t.quick_max) };
        // SAFETY: as above; purge_delay_ms is otherwise read-only.
        unsafe {
            ptr::addr_of!(sh.purge_delay_ms)
                .cast_mut()
                .write(t.purge_delay_ms)
        };
        self.arena_max
            .store(t.arena_max.clamp(1, MAX_ARENAS), Ordering::Relaxed);
        self.tcache_count.store(t.tcache_count, Ordering::Relaxed);
        self.tcache_grow_bytes
            .store(t.tcache_grow_bytes, Ordering::Relaxed);
        self.free_pipeline.store(t.free_pipeline, Ordering::Relaxed);
        self.main_thread_only.store(t.use_brk, Ordering::Relaxed);
        self.tcache_max_size
            .store(t.tcache_max_size.min(MAX_CLASS_REQUEST), Ordering::Relaxed);

        let Some(meta_len) = os::page_align_up(core::mem::size_of::<Arena>()) else {
            return false;
        };
        let Some(meta) = os::map(meta_len) else {
            return false;
        };
        self.main_map.store(meta as usize, Ordering::Relaxed);
        let growth = if t.use_brk {
            Growth::Brk
        } else {
            Growth::Reserve
        };
        // SAFETY: meta is fresh, writable and page aligned.
        let a = unsafe { Arena::init_at(meta.cast(), &self.shared, 0, growth) };
        sh.set_main_arena(a as usize);
        // SAFETY: the arena is fully built; nobody else sees it yet.
        let ok = unsafe {
            let mut g = (*a).lock();
            match growth {
                Growth::Brk => g.first_brk(sh) || g.first_fallback(sh),
                _ => match os::map_aligned(t.main_reserve, crate::config::REGION_SIZE, false) {
                    Some(base) if os::commit(base, COMMIT_STEP) => {
                        // R1: the whole reservation is readable and ours until `Drop`.
                        region_map::register(base as usize, t.main_reserve, sh.main_kind());
                        self.main_reserve.store(base as usize, Ordering::Relaxed);
                        self.main_reserve_len
                            .store(t.main_reserve, Ordering::Relaxed);
                        g.first_reserve(sh, base, t.main_reserve, COMMIT_STEP);
                        true
                    }
                    _ => g.first_fallback(sh),
                },
            }
        };
        // Release: pairs with the Acquire loads of the arena table.
        self.arenas[0].store(a, Ordering::Release);
        self.narenas.store(1, Ordering::Release);
        ok
    }

    /// Heap-wide settings.
    #[inline(always)]
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The main arena.
    #[inline]
    pub fn main_arena(&self) -> &Arena {
        // SAFETY: set by init, lives as long as the heap.
        unsafe { &*(self.shared.main_arena() as *const Arena) }
    }

    /// Arenas made so far.
    pub fn arena_count(&self) -> usize {
        self.narenas.load(Ordering::Acquire)
    }

    /// Arena number `i` (< `arena_count()`).
    pub fn arena(&self, i: usize) -> &Arena {
        // SAFETY: published with Release before narenas covered it; lives as long as the heap.
        unsafe { &*self.arenas[i].load(Ordering::Acquire) }
    }

    /// The arena cap.
    pub fn arena_max(&self) -> usize {
        self.arena_max.load(Ordering::Relaxed)
    }
}

#[cfg(not(all(test, loom)))]
const fn new_arena_table() -> [AtomicPtr<Arena>; MAX_ARENAS] {
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_ARENAS]
}
#[cfg(all(test, loom))]
fn new_arena_table() -> [AtomicPtr<Arena>; MAX_ARENAS] {
    core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut()))
}

// --- impl Heap: arenas and the registry ---

impl Heap {
    fn create_arena(&self, index: usize) -> Option<*const Arena> {
        let al = core::mem::align_of::<Arena>();
        let arena_off = (region::FIRST_CHUNK_OFFSET + al - 1) & !(al - 1);
        let first = (arena_off + core::mem::size_of::<Arena>() + 15) & !15;
        let commit = os::page_align_up(first + COMMIT_STEP)?;
        let r = RegionHeader::map(
            ptr::null(),
            ptr::null_mut(),
            commit,
            self.shared.region_kind(),
        )?;
        let at: *mut Arena = r.cast::<u8>().wrapping_add(arena_off).cast();
        // SAFETY: `at` lies in the committed head of our fresh region, aligned for Arena.
        unsafe {
            let a = Arena::init_at(at, &self.shared, index, Growth::Regions);
            RegionHeader::set_arena(r, a);
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
    fn cacheless_arena(&self) -> &Arena {
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
                self.flush_cache(tc)
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
            unsafe { self.flush_cache(tc) };
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
    unsafe fn settle_pending(&self, tc: *mut ThreadCache) {
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

    /// Gives chunks back to their arenas: one lock hold per arena, or — with `may_defer`, when
    /// an arena's lock is busy — onto that arena's lock-free remote list in one push. The slice
    /// is scratch space (its order is changed). `size` is the chunks' common size when they come
    /// from a thread cache's stack (then no header is read, and their freed marks stay as they
    /// are), or 0.
    ///
    /// # Safety
    /// Every pointer is the payload of a checked, in-use chunk of this heap that the caller owns
    /// and gives up; when `size` is not 0, of `size` bytes and carrying the freed mark.
    pub unsafe fn release_slice(&self, ps: &mut [*mut u8], size: usize, may_defer: bool) {
        let sh = &self.shared;
        let mut n = ps.len();
        while n > 0 {
            // SAFETY: caller: members are checked, in-use chunks of ours.
            unsafe {
                let a: &Arena = self.arena_of_payload(ps[0]);
                let mut guard = if may_defer {
                    a.try_lock()
                } else {
                    Some(a.lock())
                };
                let (mut mine, mut mine_tail) = (ptr::null_mut::<u8>(), ptr::null_mut::<u8>());
                let mut bytes = 0;
                let mut rest = 0;
                // The remote bundle being filled (its head, member count and capacity).
                let (mut head, mut members, cap) = (
                    ptr::null_mut::<u8>(),
                    0usize,
                    if size == 0 { 0 } else { remote_cap(size) },
                );
                // One pass: this arena's chunks are released at once when we hold its lock, or
                // bundled for its remote list when the lock is busy; the others move to the
                // front of the slice for a later pass.
                for i in 0..n {
                    let p = ps[i];
                    let c = Chunk::from_payload(p);
                    if !ptr::eq(self.arena_of_payload(p), a) {
                        ps[rest] = p;
                        rest += 1;
                    } else if let Some(g) = guard.as_mut() {
                        if size == 0 {
                            g.release(sh, c);
                        } else {
                            g.release_sized(sh, c, size, true);
                        }
                    } else if !head.is_null() && members < cap {
                        // A member of the current bundle (same size, marked: from a cache).
                        arena::remote_slot_set(head, members, p);
                        members += 1;
                        bytes += size;
                    } else {
                        // A new bundle head, linked onto the chain; the previous head's count
                        // is final.
                        if !head.is_null() && cap > 0 {
                            arena::remote_set_count(head, members);
                        }
                        let sz = if size == 0 { c.size() } else { size };
                        if size == 0 && arena::remote_cap(sz) > 0 {
                            arena::remote_set_count(p, 0);
                        }
                        link::set(p, mine);
                        if mine_tail.is_null() {
                            mine_tail = p;
                        }
                        mine = p;
                        head = p;
                        members = 0;
                        bytes += sz;
                    }
                }
                if !head.is_null() && cap > 0 {
                    arena::remote_set_count(head, members);
                }
                drop(guard);
                if !mine.is_null() {
                    a.push_remote(mine, mine_tail, bytes);
                }
                n = rest;
            }
        }
    }
}

// --- impl Heap: entry points ---

/// Whether `tc` names a usable cache (null and the `DEAD` marker 1 do not).
#[inline(always)]
/// The chunk size given to a block of `size` bytes that must grow to `nb > size` bytes
/// (`realloc` headroom): up to `size + size / 4` when that is more than `nb`, so that a run of
/// small growth steps (`+16 B`, `Vec::reserve_exact`) needs the lock and a copy only once per
/// ~25 % of growth. Within the class range the result is rounded down to a class size (never
/// below `nb`), so the block can still go to a thread cache.
///
/// Bound: the result is at most `max(nb, 1.25 × size)` < 1.25 × `nb`, so a grown block's chunk
/// exceeds its request's chunk size by less than a quarter; `realloc` keeps slack only within
/// that same bound when a block shrinks.
fn grow_target(size: usize, nb: usize) -> usize {
    let room = (size + size / 4) & !(ALIGN - 1);
    if room <= nb {
        return nb;
    }
    if room <= MAX_CLASS_REQUEST + HEADER {
        // The smallest class that holds `room`, or the one below it when that is too big.
        let c = request_class(room - HEADER).0;
        let cs = CLASS_CHUNK_SIZE[c];
        let at_most = if cs > room {
            CLASS_CHUNK_SIZE[c.saturating_sub(1)]
        } else {
            cs
        };
        return at_most.max(nb);
    }
    room
}

/// Marks the path that calls it as unlikely (a stable stand-in for `core::hint::cold_path`,
/// which is newer than the crate's minimum Rust).
#[cold]
#[inline(always)]
fn cold_path() {}

fn has_cache(tc: *mut ThreadCache) -> bool {
    tc as usize > 1
}

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
    fn hand_out(c: Chunk) -> *mut u8 {
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

    /// Checks that `p` is a live block of ours and returns its chunk; aborts with a message
    /// naming the problem otherwise.
    ///
    /// # Safety
    /// The heap is initialised.
    #[inline(always)]
    pub unsafe fn check_ptr(&self, p: *mut u8, op: Op) -> Chunk {
        // One test for "16-aligned and below the region map's limit" (a power of two), on the
        // chunk address `a` (a null `p` wraps high and fails it).
        const ODD: usize = !(region_map::MAP_LIMIT - 1) | 15;
        let a = (p as usize).wrapping_sub(HEADER);
        // SAFETY: a < MAP_LIMIT when the first test passes. A user heap checks every pointer
        // in `check_unusual` (its granules are not `contains`'s, the others' must be refused).
        if a & ODD != 0 || !unsafe { region_map::contains_below_limit(a) } || self.shared.user {
            // SAFETY: forwarded.
            unsafe { self.check_unusual(p, op) };
        }
        // SAFETY: the header is readable (checked above).
        let c = unsafe { Chunk::from_payload(p) };
        // SAFETY: readable.
        if !c.tag_matches(unsafe { c.head() }) {
            fatal(op.msg(Problem::BadHeader));
        }
        c
    }

    /// The rest of [`Heap::check_ptr`] for a pointer that is misaligned, high, or outside the
    /// reservations the region map knows (the break, other mappings, huge blocks).
    #[cold]
    #[inline(never)]
    unsafe fn check_unusual(&self, p: *mut u8, op: Op) {
        if p as usize & 15 != 0 {
            fatal(op.msg(Problem::Misaligned));
        }
        let a = (p as usize).wrapping_sub(HEADER);
        let k = region_map::kind(a);
        if k & region_map::USER != 0 && k != region_map::DROPPED {
            // A live user heap's reservation (readable: R1). Only that heap may free there.
            if !self.shared.user {
                fatal(op.msg(Problem::UserHeap));
            }
            let mine = if k == region_map::USER_REGION {
                // SAFETY: a live region; its header names its arena, which lives in the
                // arena's first region, unmapped last.
                ptr::eq(unsafe { (*region::arena_of(p)).shared() }, &self.shared)
            } else {
                let base = self.main_reserve.load(Ordering::Relaxed);
                a.wrapping_sub(base) < self.main_reserve_len.load(Ordering::Relaxed)
            };
            if !mine {
                fatal(op.msg(Problem::OtherHeap));
            }
            return;
        }
        if self.shared.user && k != region_map::NOT_OURS && k != region_map::DROPPED {
            // The global heap's (or a test heap's) reservations.
            fatal(op.msg(Problem::NotThisHeap));
        }
        if !self
            .shared
            .main_segs
            .contains((p as usize).wrapping_sub(HEADER))
        {
            // SAFETY: forwarded.
            unsafe { self.check_foreign(p, op) };
        }
    }

    #[cold]
    #[inline(never)]
    unsafe fn check_foreign(&self, p: *mut u8, op: Op) {
        // A pointer into what a dropped user heap gave back is named as such when it fails.
        let dropped = region_map::kind((p as usize).wrapping_sub(HEADER)) == region_map::DROPPED;
        let fail = |problem| {
            fatal(op.msg(if dropped { Problem::Dropped } else { problem }));
        };
        if p as usize <= 4096 || !os::readable(p.wrapping_sub(HEADER), HEADER) {
            fail(Problem::Unmapped);
        }
        // SAFETY: readable.
        let c = unsafe { Chunk::from_payload(p) };
        // SAFETY: readable.
        let h = unsafe { c.head() };
        if !c.tag_matches(h) {
            // Not one of ours. A local's address approximates this thread's stack pointer:
            // a pointer within the stack's usual reach (8 MiB above, a little below) is named
            // as a stack pointer. (Only here, after the tag check: thread stacks are mappings
            // like huge blocks, and may lie right beside them.)
            let here = core::ptr::addr_of!(op) as usize;
            if (p as usize).wrapping_sub(here.wrapping_sub(64 << 10)) < (8 << 20) + (64 << 10) {
                fail(Problem::Stack);
            }
            fail(Problem::NotOurs);
        }
        if h & IS_MMAPPED == 0 {
            fail(Problem::BadHeader);
        }
        // SAFETY: tag checked.
        unsafe { crate::huge::check(c) };
        // A user heap's huge blocks are linked to it (and only it may free them).
        // SAFETY: checked huge chunk.
        let owner = unsafe { tracked::owner(c) };
        if self.shared.user {
            if owner != self as *const Heap as usize {
                fatal(op.msg(if owner == 0 {
                    Problem::NotThisHeap
                } else {
                    Problem::OtherHeap
                }));
            }
        } else if owner != 0 {
            fatal(op.msg(Problem::UserHeap));
        }
    }

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
                || h & (IS_MMAPPED | FREE) != 0
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
            if h & (IS_MMAPPED | FREE) != 0 {
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
        unsafe { self.free_to_arena(c) }
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
            "free(): double free (chunk is already cached, or pending in a quick or remote list)",
        );
    }

    #[cold]
    #[inline(never)]
    unsafe fn free_flush(&self, t: &mut ThreadCache, cls: usize, p: *mut u8) {
        // SAFETY: our cache; keep the newer half. The thread's frees overflow its cache: they
        // are likely of blocks out of the CPU cache (made a while ago, or written by another
        // core), and the pipelined `free` (`ThreadCache::ring_swap`) pays from here on — for
        // blocks in the heap's reservations, the only ones it pipelines (a thread whose blocks
        // lie on the program break would pay for the test and gain nothing).
        unsafe {
            if self.free_pipeline.load(Ordering::Relaxed)
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
                self.free_to_arena(Chunk::from_payload(p));
            }
        }
    }

    /// `free` of a checked chunk whose head `h` says huge or free (a double free).
    #[cold]
    #[inline(never)]
    unsafe fn free_huge_or_free(&self, c: Chunk, h: usize) {
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

    #[cold]
    #[inline(never)]
    unsafe fn free_to_arena(&self, c: Chunk) {
        // SAFETY: caller: checked in-use chunk of ours.
        unsafe {
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

    /// Resizes a block, in place when it can. Null (old block untouched) when impossible.
    ///
    /// # Safety
    /// As for [`Heap::free`]; `p` is non-null.
    pub unsafe fn realloc(&self, tc: *mut ThreadCache, p: *mut u8, n: usize) -> *mut u8 {
        if cfg!(feature = "asan") {
            // The old slack becomes readable for the copy; the old block is live until the new
            // one exists.
            // SAFETY: validated first.
            let usable = unsafe { self.check_ptr(p, Op::Realloc).size() } - HEADER;
            crate::asan::unpoison(p, usable);
        }
        // SAFETY: forwarded.
        let q = unsafe { self.realloc_raw(tc, p, n) };
        // SAFETY: null or our live block.
        unsafe { self.asan_alloc(q, n) };
        q
    }

    /// `realloc` proper. A block that must grow gets headroom (see [`grow_target`]), so that
    /// a run of small growth steps mostly returns early, without the lock or a copy.
    unsafe fn realloc_raw(&self, tc: *mut ThreadCache, p: *mut u8, n: usize) -> *mut u8 {
        // The frees pending in this thread's ring (pipelined `free`) are done first: a block
        // pending there (a realloc after its free) is then found freed by the checks below,
        // and none of their memory is kept from this request. An empty ring costs one load, so
        // a run of reallocs after a run of frees scans nothing (a check of `p` against the ring
        // made every realloc read its 8 slots while one free stayed pending).
        // SAFETY: our cache, if any.
        unsafe { self.settle_pending(tc) };
        // SAFETY: validated before use, as in `free`.
        unsafe {
            let c = self.check_ptr(p, Op::Realloc);
            let Some(nb) = request_to_chunk(n) else {
                return ptr::null_mut();
            };
            let old_usable;
            let mut move_n = n;
            if c.head() & IS_MMAPPED != 0 {
                crate::huge::check(c);
                old_usable = crate::huge::usable(c);
                if nb >= self.shared.mmap_threshold.load(Ordering::Relaxed) / 2 || n > old_usable {
                    // Slack within four pages or the headroom bound (a quarter) stays.
                    if n <= old_usable && old_usable - n < (os::page_size() * 4).max(n / 4) {
                        return p;
                    }
                    // Growth gets headroom as in the arenas: up to a quarter more.
                    let to = if n > old_usable {
                        n.max((old_usable + old_usable / 4).min(MAX_REQUEST))
                    } else {
                        n
                    };
                    let mut q = crate::huge::realloc(&self.shared, c, to);
                    if q.is_null() && to != n {
                        q = crate::huge::realloc(&self.shared, c, n);
                    }
                    if !q.is_null() {
                        return q;
                    }
                }
            } else {
                let size = c.size();
                if c.head() & FREE != 0 || link::has_key(p) {
                    fatal("realloc(): pointer already freed (use after free)");
                }
                old_usable = size - HEADER;
                if nb <= size {
                    // Slack within the headroom bound stays (a grown block keeps its room).
                    if size - nb > nb / 4 && size - nb >= MIN_CHUNK && size > 1024 + HEADER + 16 {
                        let mut g = self.arena_of(c).lock();
                        g.shrink_chunk(&self.shared, c, nb);
                    }
                    return p;
                }
                let want = grow_target(size, nb);
                if nb <= MMAP_THRESHOLD_MAX {
                    let mut g = self.arena_of(c).lock();
                    if g.grow_chunk(&self.shared, c, nb, want) {
                        return p;
                    }
                    // A large block that must move goes to the start of top when top has the
                    // room: its later growth is then in place (no copy), where a best fit would
                    // leave it hemmed in. Class-sized blocks move through the thread cache.
                    if want > MAX_CLASS_REQUEST + HEADER
                        && want < self.shared.mmap_threshold.load(Ordering::Relaxed)
                    {
                        if let Some(got) = g.take_top_for_move(&self.shared, want) {
                            drop(g);
                            let q = Self::hand_out(got.chunk);
                            // Memory from top may be poisoned (feature `asan`); `realloc`
                            // poisons the slack past `n` again afterwards.
                            crate::asan::unpoison(q, want - HEADER);
                            ptr::copy_nonoverlapping(p, q, old_usable);
                            self.free(tc, p);
                            return q;
                        }
                    }
                }
                move_n = want - HEADER;
            }
            let mut q = self.malloc(tc, move_n);
            if q.is_null() && move_n != n {
                q = self.malloc(tc, n);
            }
            if q.is_null() {
                return q;
            }
            ptr::copy_nonoverlapping(p, q, old_usable.min(n));
            self.free(tc, p);
            q
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

    /// Usable bytes of a live block.
    ///
    /// # Safety
    /// As for [`Heap::free`]; `p` is non-null.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: validated before use.
        unsafe {
            let c = self.check_ptr(p, Op::UsableSize);
            c.size().saturating_sub(HEADER)
        }
    }

    /// Returns free memory to the OS: every arena's top above `pad`, and the interior OS pages
    /// of large free chunks. Returns the bytes released.
    pub fn trim(&self, pad: usize) -> usize {
        let mut released = 0;
        for i in 0..self.arena_count() {
            let mut g = self.arena(i).lock();
            g.consolidate(&self.shared);
            // SAFETY: lock held.
            released += unsafe { g.trim(&self.shared, pad) };
            released += g.purge_all();
        }
        released
    }

    /// A snapshot of the heap's figures. Takes each arena's lock in turn and walks its large
    /// bins for the purged bytes (a slow path: a few microseconds per thousand large free
    /// chunks).
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            arenas: self.arena_count(),
            ..Stats::default()
        };
        for i in 0..s.arenas {
            let a = self.arena(i);
            let g = a.lock();
            // SAFETY: lock held; top valid.
            let top = unsafe { g.top.size() };
            s.arena_committed += g.committed;
            s.free_in_bins += g.bins.free_bytes;
            s.free_chunks += g.bins.free_chunks;
            s.quick_bytes += g.quick_bytes;
            // SAFETY: lock held.
            s.purged += unsafe { g.bins.purged_bytes() };
            s.top += top;
            s.overhead += g.overhead;
            s.in_use += g.committed - g.overhead - g.bins.free_bytes - g.quick_bytes - top;
            drop(g);
            s.remote_pending += a.remote_bytes.load(Ordering::Relaxed);
        }
        self.for_each_cache(|tc| {
            // SAFETY: live cache, registry lock held by for_each_cache.
            s.tcache_bytes += unsafe { (*tc).held_bytes() };
            // SAFETY: as above.
            s.frees_pending += unsafe { (*tc).ring_pending() };
            s.threads += 1;
        });
        s.in_use = s.in_use.saturating_sub(s.tcache_bytes + s.remote_pending);
        s.huge_blocks = self.shared.huge_count.load(Ordering::Relaxed);
        s.huge_bytes = self.shared.huge_bytes.load(Ordering::Relaxed);
        s.in_use += s.huge_bytes;
        s.mapped = s.arena_committed + s.huge_bytes;
        s.resident = s.mapped - s.purged;
        s.mmap_threshold = self.shared.mmap_threshold.load(Ordering::Relaxed);
        s
    }

    /// Applies a `mallopt` setting; false when the parameter is unknown or the value invalid.
    pub fn set_option(&self, param: i32, value: i32) -> bool {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_MMAP_MAX: i32 = -4;
        const M_ARENA_TEST: i32 = -7;
        const M_ARENA_MAX: i32 = -8;
        const M_PERTURB: i32 = -6;
        const M_CHECK_ACTION: i32 = -5;
        if value < 0 && param != M_PERTURB {
            return false;
        }
        let v = value as usize;
        let sh = &self.shared;
        match param {
            M_TRIM_THRESHOLD => {
                sh.trim_threshold.store(v, Ordering::Relaxed);
                sh.mmap_dynamic.store(false, Ordering::Relaxed);
            }
            M_MMAP_THRESHOLD => {
                if v > MMAP_THRESHOLD_MAX {
                    return false;
                }
                sh.mmap_threshold.store(v.max(MIN_CHUNK), Ordering::Relaxed);
                sh.mmap_dynamic.store(false, Ordering::Relaxed);
            }
            M_ARENA_MAX => {
                if v == 0 {
                    return false;
                }
                self.arena_max.store(v.min(MAX_ARENAS), Ordering::Relaxed);
            }
            // Accepted and ignored: top pad is fixed at start; huge blocks are not counted
            // against a maximum; arena test, perturb and check action have no equivalent.
            M_TOP_PAD | M_MMAP_MAX | M_ARENA_TEST | M_PERTURB | M_CHECK_ACTION => {}
            _ => return false,
        }
        true
    }

    /// Unmaps everything the heap mapped, except live huge blocks.
    ///
    /// # Safety
    /// Nothing uses the heap or its memory any more.
    pub unsafe fn destroy(&self) {
        // SAFETY: caller: nothing uses the heap's huge blocks any more.
        unsafe { self.tracked.lock().free_all(&self.shared) };
        let left = self.shared.left_kind();
        let n = self.arena_count();
        // SAFETY: caller: no users. Thread arenas live in their first region, so unmap that last.
        unsafe {
            for i in (0..n).rev() {
                let a = self.arena(i);
                let mut r = a.lock().regions;
                let mut first = ptr::null_mut();
                while !r.is_null() {
                    let prev = (*r).prev;
                    if i != 0 && prev.is_null() {
                        first = r;
                    } else {
                        RegionHeader::unmap(r, left);
                    }
                    r = prev;
                }
                if !first.is_null() {
                    RegionHeader::unmap(first, left);
                }
            }
            let base = self.main_reserve.load(Ordering::Relaxed);
            if base != 0 {
                region_map::register(base, self.main_reserve_len.load(Ordering::Relaxed), left);
                os::unmap(
                    ptr::with_exposed_provenance_mut(base),
                    self.main_reserve_len.load(Ordering::Relaxed),
                );
            }
            let meta = self.main_map.load(Ordering::Relaxed);
            if meta != 0 {
                let len = os::page_align_up(core::mem::size_of::<Arena>()).unwrap_or(0);
                os::unmap(ptr::with_exposed_provenance_mut(meta), len);
            }
            let reg = self.registry.lock();
            let mut s = reg.slabs;
            drop(reg);
            while !s.is_null() {
                let next = s.cast::<*mut u8>().read();
                os::unmap(s, s.cast::<usize>().add(1).read());
                s = next;
            }
        }
    }
}

/// Which entry point is checking a pointer (for its abort message).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// `free`/`dealloc`.
    Free,
    /// `realloc`.
    Realloc,
    /// `malloc_usable_size`.
    UsableSize,
}

#[derive(Debug, Clone, Copy)]
enum Problem {
    Misaligned,
    NotOurs,
    Unmapped,
    Stack,
    BadHeader,
    /// A user heap's block given to the global allocator.
    UserHeap,
    /// A block of another user heap.
    OtherHeap,
    /// A user heap given a block of the global heap's.
    NotThisHeap,
    /// A pointer into memory a dropped user heap gave back.
    Dropped,
}

impl Op {
    fn msg(self, p: Problem) -> &'static str {
        match (self, p) {
            (Op::Free, Problem::Misaligned) => "free(): invalid pointer (misaligned: not returned by malloc)",
            (Op::Free, Problem::NotOurs) => "free(): invalid pointer (not a block allocated by arena-malloc)",
            (Op::Free, Problem::Unmapped) => "free(): invalid pointer (unmapped address: a wild pointer, or a double free of a huge block)",
            (Op::Free, Problem::Stack) => "free(): invalid pointer (points into the stack)",
            (Op::Free, Problem::BadHeader) => "free(): invalid pointer or corrupted chunk header (interior pointer or heap overflow?)",
            (Op::Realloc, Problem::Misaligned) => "realloc(): invalid pointer (misaligned: not returned by malloc)",
            (Op::Realloc, Problem::NotOurs) => "realloc(): invalid pointer (not a block allocated by arena-malloc)",
            (Op::Realloc, Problem::Unmapped) => "realloc(): invalid pointer (unmapped address: a wild pointer, or a huge block already freed)",
            (Op::Realloc, Problem::Stack) => "realloc(): invalid pointer (points into the stack)",
            (Op::Realloc, Problem::BadHeader) => "realloc(): invalid pointer or corrupted chunk header (interior pointer or heap overflow?)",
            (Op::UsableSize, Problem::Misaligned) => "malloc_usable_size(): invalid pointer (misaligned)",
            (Op::UsableSize, Problem::NotOurs | Problem::Unmapped | Problem::Stack) => "malloc_usable_size(): invalid pointer (not allocated by arena-malloc)",
            (Op::UsableSize, Problem::BadHeader) => "malloc_usable_size(): invalid pointer or corrupted chunk header",
            (Op::Free, Problem::UserHeap) => "free(): invalid pointer (a block of an arena_malloc::Heap: free it through that heap)",
            (Op::Realloc, Problem::UserHeap) => "realloc(): invalid pointer (a block of an arena_malloc::Heap: resize it through that heap)",
            (Op::UsableSize, Problem::UserHeap) => "malloc_usable_size(): invalid pointer (a block of an arena_malloc::Heap)",
            (Op::Free, Problem::OtherHeap) => "arena_malloc::Heap: deallocate of a block of another heap",
            (Op::Realloc, Problem::OtherHeap) => "arena_malloc::Heap: grow/shrink of a block of another heap",
            (Op::UsableSize, Problem::OtherHeap) => "arena_malloc::Heap: block of another heap",
            (Op::Free, Problem::NotThisHeap) => "arena_malloc::Heap: deallocate of a block that is not this heap's (the global allocator's?)",
            (Op::Realloc, Problem::NotThisHeap) => "arena_malloc::Heap: grow/shrink of a block that is not this heap's (the global allocator's?)",
            (Op::UsableSize, Problem::NotThisHeap) => "arena_malloc::Heap: a block that is not this heap's",
            (Op::Free, Problem::Dropped) => "free(): invalid pointer (a block of an arena_malloc::Heap that was dropped)",
            (Op::Realloc, Problem::Dropped) => "realloc(): invalid pointer (a block of an arena_malloc::Heap that was dropped)",
            (Op::UsableSize, Problem::Dropped) => "malloc_usable_size(): invalid pointer (a block of an arena_malloc::Heap that was dropped)",
        }
    }
}

/// A heap of its own, for tests, fuzzing and model checking; unmapped on drop.
#[derive(Debug)]
pub struct PrivateHeap {
    heap: *mut Heap,
}

impl PrivateHeap {
    /// Builds a private heap with these tunables (`use_brk` is ignored: only the global heap may
    /// own the break). The heap struct itself lives in its own mapping.
    pub fn new(t: &Tunables) -> Option<PrivateHeap> {
        let len = os::page_align_up(core::mem::size_of::<Heap>())?;
        let m = os::map(len)?;
        let heap: *mut Heap = m.cast();
        let mut t = *t;
        t.use_brk = false;
        // SAFETY: fresh, writable, aligned mapping large enough for a Heap.
        unsafe {
            heap.write(Heap::new());
            if !(*heap).init(&t) {
                (*heap).destroy();
                os::unmap(m, len);
                return None;
            }
        }
        Some(PrivateHeap { heap })
    }
}

impl core::ops::Deref for PrivateHeap {
    type Target = Heap;
    fn deref(&self) -> &Heap {
        // SAFETY: valid until drop.
        unsafe { &*self.heap }
    }
}

impl Drop for PrivateHeap {
    fn drop(&mut self) {
        // SAFETY: we own the heap; dropping means no one uses it any more.
        unsafe {
            (*self.heap).destroy();
            core::ptr::drop_in_place(self.heap);
            let len = os::page_align_up(core::mem::size_of::<Heap>()).unwrap_or(0);
            os::unmap(self.heap.cast(), len);
        }
    }
}

// SAFETY: a Heap is Sync and Send; the wrapper only owns it.
unsafe impl Send for PrivateHeap {}
// SAFETY: as above.
unsafe impl Sync for PrivateHeap {}

#[cfg(test)]
mod tests;
