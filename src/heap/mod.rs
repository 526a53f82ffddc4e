//! A heap: the main arena, the thread arenas, the registry of thread caches, and the entry
//! points (`malloc`, `free`, `realloc`, …) that take an explicit thread cache.
//!
//! The global allocator is one static `Heap`; tests, fuzz targets and loom models make private
//! ones ([`PrivateHeap`]) and drive several caches from one OS thread.
//!
//! A request's path: thread cache (lock-free) → arena under its lock (bins → top → growth) →
//! the OS. Requests at or above the mmap threshold skip the arenas (see `huge`).
//!
//! This file holds the heap's data and its setup (`init`); the heap's code is
//! in one file per concern, each an `impl Heap` block:
//!
//! | file | what it holds |
//! |---|---|
//! | `registry.rs` | arenas and the registry of thread caches; the arena of a chunk |
//! | `cache.rs` | what the heap does for a thread cache: refill, overflow, collection, flush |
//! | `release.rs` | chunks given back to their arenas in bulk (remote lists when busy) |
//! | `alloc.rs` | `malloc`, `calloc`, `memalign`, huge blocks |
//! | `validate.rs` | the checks of a pointer before `free`/`realloc`, and their messages |
//! | `free.rs` | `free`: cache fast path, pipelined ring, overflow, arena, OS |
//! | `realloc.rs` | `realloc` (in place or moved) and `usable_size` |
//! | `admin.rs` | trim, statistics, `mallopt` options, teardown |
//! | `tracked.rs` | a user heap's list of huge blocks |
//! | `private.rs` | [`PrivateHeap`], a heap in a mapping of its own (tests and fuzzing) |
//!
//! The files call down (`tcache`, `arena`, `huge`, `chunk`, `os`) and into each other only
//! through `Heap`'s methods; nothing below the heap calls back up.
//!
//! # Lock order
//! The registry lock, then arena locks in index order (main arena = index 0). No code holds two
//! arena locks at once except the `fork` handlers, which take them all in that order.

use core::ptr;

use crate::arena::{Arena, Growth};
use crate::chunk::{ALIGN, HEADER};
use crate::config::{Tunables, COMMIT_STEP, MAX_ARENAS};
use crate::os;
use crate::region_map;
use crate::shared::Shared;
use crate::size_class::{request_class, CLASS_CHUNK_SIZE, MAX_CLASS_REQUEST};
use crate::sync::process::{AtomicBool as PAtomicBool, AtomicUsize as PAtomicUsize};
use crate::sync::{self, const_fn_unless_loom, AtomicPtr, AtomicUsize, Mutex, Ordering};
use crate::tcache::ThreadCache;

mod admin;
mod alloc;
mod cache;
mod free;
#[cfg(any(test, feature = "internals"))]
mod private;
mod realloc;
mod registry;
mod release;
mod runs;
mod tracked;
mod validate;

#[cfg(any(test, feature = "internals"))]
pub use private::PrivateHeap;
pub use validate::Op;

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
    /// Tunables::runs: the thread caches' classes come from runs (`heap/runs.rs`).
    runs: PAtomicBool,
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
                runs: PAtomicBool::new(false),
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
        self.runs.store(t.runs, Ordering::Relaxed);
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

/// Whether `tc` names a usable cache (null and the `DEAD` marker 1 do not).
#[inline(always)]
fn has_cache(tc: *mut ThreadCache) -> bool {
    tc as usize > 1
}

#[cfg(test)]
mod tests;
