//! Thread caches: one thread's stacks of free chunks, one per class, held out of band.
//!
//! ```text
//! ThreadCache (in a metadata slab, never on the heap)
//! +------------------------------------+
//! | bins[84]: top, empty, full, fill, max |  top points one past the newest cached chunk
//! | bases[84]: first slot of each stack   |
//! | arena, registry links, capacity       |
//! +------------------------------------+
//! | slots: the stacks, one after another  |  payload pointers (8 bytes each)
//! +------------------------------------+
//! cached chunk: payload+0 = canary (p ^ LINK_KEY), payload+8 = freed mark (p ^ CACHE_KEY)
//! ```
//!
//! The stacks are arrays of pointers in the cache itself (like jemalloc's cache bins), not
//! lists threaded through the chunks: a push or pop touches the chunk only for its two marker
//! words, the cache's own memory holds the order, and a write after free into a cached chunk
//! cannot steer the allocator anywhere (the canary catches it when the chunk is handed out
//! again, see `link`). The hit path is: the thread's slot, the bin's `top`, a compare of its low
//! 16 bits with the bin's `empty` (pop) or `full` (push) position, one slot load or store, the
//! two marker words. No lock, no atomic read-modify-write (`top` is an atomic only so that
//! statistics may read it: the owner writes it with a plain store).
//!
//! A miss refills a few chunks from the arena under one lock hold; a full stack sends its
//! older half back to the arenas, one lock hold per arena, or — when the arena's lock is busy —
//! onto the arena's lock-free remote list, which the arena's next lock holder drains.
//!
//! When a stack overflows, the thread's `free` runs pipelined for a while ([`ThreadCache::ring_swap`]): each call puts its pointer in a 4-slot
//! ring, prefetches its header, and completes the free made 4 calls earlier.
//!
//! This file holds the cache's data, its setup and the stacks' push and pop; `policy.rs` the
//! bounds, refills, collections and flushes; `ring.rs` the pipelined `free`. The words a held
//! chunk carries are `crate::link`. The cache calls nothing above it: what reaches the arenas
//! is `heap/cache.rs`, which hands the cache a `release` closure.
//!
//! # Invariants
//! - T1: `bases[c] <= top(c) <= bases[c] + max(c)`; the stack holds `top - base` chunks.
//! - T2: every chunk in stack `c` has chunk size exactly `CLASS_CHUNK_SIZE[c]`, is in use from its
//!   arena's view, and carries the canary and the freed mark.
//! - T3: only the owning thread touches the stacks and writes `top` (a thread's exit, or a
//!   `fork` child for the threads it lost, hands the cache over first).
//! - T4: a stack spans less than 64 KiB, so the low 16 bits of `top` tell its position.
//! - T5: a chunk whose free is pending in the ring is not handed out (a pop that meets one
//!   aborts), and its memory is written only when that free is done.

mod policy;
mod ring;

use ring::FreeRing;
pub use ring::RingOut;
#[cfg(any(test, feature = "internals"))]
pub use {policy::GC_INTERVAL_MS, ring::RING};

use core::ptr;

use crate::arena::Arena;
use crate::chunk::{HEADER, MIN_CHUNK};
use crate::link;
use crate::os::prefetch;
use crate::run::Run;
use crate::size_class::{
    request_class, CLASS_CHUNK_SIZE, MAX_CLASS_REQUEST, NCLASSES, SMALL_MAX_REQUEST,
};
use crate::sync::process::AtomicUsize as PAtomicUsize;
use crate::sync::{fence, Ordering};

/// A stack's top: the owner writes it with a plain store, any thread may read it (statistics),
/// so it is an atomic.
#[cfg(not(all(test, loom)))]
type Top = crate::sync::AtomicPtr<*mut u8>;
/// Under loom the top is a plain, non-atomic pointer when the mutation `tcache_count_torn`
/// (docs/loom.md) is planted.
#[cfg(all(test, loom))]
type Top = crate::sync::MaybePlainPtr<*mut u8>;

/// Most chunks a stack holds while its thread frees that class without allocating it (see
/// [`ThreadCache::overflow`]).
pub const FREER_STACK: u16 = 16;

/// Most chunks a stack may grow to while its class overflows and refills in turn (see
/// [`ThreadCache::overflow`]); it also grows to at most [`GROW_CLASS_BYTES`].
pub const GROW_STACK: usize = 512;
/// A stack grows to at most about this many bytes of chunks (at least its initial bound).
pub const GROW_CLASS_BYTES: usize = 2 << 20;

/// Chunks an aligned allocation looks at in its class's stack ([`ThreadCache::pop_aligned`]).
pub const ALIGNED_SCAN: usize = 8;

/// Chunks the first refill of a class takes.
const FIRST_FILL: u16 = 4;
/// Most chunks one stack may hold (T4: 8 bytes each, less than 64 KiB).
pub const MAX_STACK: usize = 8190;

/// One class's stack.
#[repr(C)]
#[derive(Debug)]
struct Bin {
    top: Top,
    /// Low 16 bits of `top` when the stack is empty.
    empty: u16,
    /// Low 16 bits of `top` when the stack is full (equal to `empty` for a class not cached).
    full: u16,
    /// Chunks the next refill takes: starts small and doubles with each refill, up to half the
    /// bound, so a class used once (a growing buffer passing through) costs a few chunks.
    fill: u16,
    max: u16,
}

/// One thread's cache; its stacks follow it in memory.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct ThreadCache {
    /// Copies of the process-wide keys of header tags and freed marks (`chunk::tag_key`,
    /// `link::cache_key`), on the cache's first line so that the fast paths read them without
    /// going through the global's address; 0 in the placeholders (whose stacks are never used).
    pub tag_key: usize,
    /// See `tag_key`.
    pub mark_key: usize,
    /// Whether `free` runs pipelined ([`FreeRing`]): only while the thread's frees overflow
    /// its cache; never in a placeholder.
    ring_on: core::cell::Cell<bool>,
    /// Frees left before the pipeline turns itself off (each overflow flush re-arms it).
    ring_left: core::cell::Cell<u32>,
    /// The pipeline's ring of pending frees.
    ring: FreeRing,
    /// `bins[c + 1]` is class `c`'s stack; `bins[0]` is always empty, so that a small request
    /// `n` (0 included) finds its stack at index `(n + 15) / 16` with no other arithmetic.
    bins: [Bin; NCLASSES + 1],
    bases: [*mut *mut u8; NCLASSES],
    /// The arena this thread allocates from.
    pub arena: *const Arena,
    /// Per class: the runs this cache owns (`heap/runs.rs`, with `Tunables::runs`), the one it
    /// allocates from first; null when none.
    pub runs: [*mut Run; NCLASSES],
    /// Bytes free in this cache's runs, as the owner sees them (remote frees not collected
    /// aside): written by the owner only, read by `stats`.
    pub run_free: PAtomicUsize,
    /// Bytes this cache pushed onto runs' remote lists less the bytes it collected from its own
    /// runs' (wrapping: it may go below 0): written by the owner only, read by `stats`.
    pub run_remote: PAtomicUsize,
    /// Per class (bit `c % 64` of word `c / 64`): a thread freed blocks onto one of this
    /// cache's runs of the class whose remote list was empty (set by that thread, cleared by
    /// the owner when it looks at all its runs of the class: `heap/runs.rs`).
    pub run_hint: [PAtomicUsize; 2],
    /// Per class, as `run_hint`: this thread freed blocks onto one of its runs of the class
    /// other than the first (which had none free when it stopped being first), or a refill's
    /// look at the runs stopped before it saw them all. Owner only (plain loads and stores):
    /// with neither bit set, a refill short of blocks goes to the arena without walking runs
    /// it knows to be full (`Heap::next_run`).
    pub run_local: [PAtomicUsize; 2],
    /// The class a collection's sweep of the runs starts with (`Heap::sweep_some_runs`): the
    /// one where the last sweep stopped. Owner only.
    pub sweep_class: usize,
    /// Registry links (registry lock).
    pub(crate) next_live: *mut ThreadCache,
    pub(crate) prev_live: *mut ThreadCache,
    /// Slots in the stacks area that follows the cache.
    capacity: usize,
    /// Per class: refilled since its stack last overflowed (see [`ThreadCache::overflow`]).
    refilled: [bool; NCLASSES],
    /// Per class: refilled since the last collection ([`ThreadCache::collect`]).
    used: [bool; NCLASSES],
    /// Per class: slots reserved for the stack (its bound grows up to this).
    caps: [u16; NCLASSES],
    /// Per class: the bound the stack starts with, and shrinks back to when idle.
    base_max: [u16; NCLASSES],
    /// Bytes of chunks the grown bounds add over the initial ones (`Σ (max - base_max) × size`).
    grown_bytes: usize,
    /// Most `grown_bytes` this cache may have.
    grow_budget: usize,
    /// When the last collection ran (`os::now_ms`).
    gc_ms: u64,
    /// Slow-path events since the clock was last read for a collection.
    gc_tick: u32,
}

#[inline(always)]
fn low16(t: *mut *mut u8) -> u16 {
    t as usize as u16
}

impl ThreadCache {
    /// Per-class initial bounds and capacities (slots reserved, the most a bound may grow to)
    /// for `count` (most chunks per class to start with), `max_size` (largest request cached)
    /// and `grow` (whether bounds may grow, see [`ThreadCache::overflow`]).
    fn bounds(count: usize, max_size: usize, grow: bool) -> ([u16; NCLASSES], [u16; NCLASSES]) {
        let mut maxes = [0u16; NCLASSES];
        let mut caps = [0u16; NCLASSES];
        for c in 0..NCLASSES {
            let size = CLASS_CHUNK_SIZE[c];
            if size - crate::chunk::HEADER <= max_size && count > 0 {
                let by_bytes = crate::config::TCACHE_CLASS_BYTES / size;
                let m = count.min(by_bytes.max(4)).min(MAX_STACK);
                maxes[c] = m as u16;
                caps[c] = if grow {
                    GROW_STACK
                        .min(GROW_CLASS_BYTES / size)
                        .max(m)
                        .min(MAX_STACK) as u16
                } else {
                    m as u16
                };
            }
        }
        (maxes, caps)
    }

    /// Bytes a cache needs (itself and its stacks) for these settings.
    pub fn footprint(count: usize, max_size: usize, grow: bool) -> usize {
        let slots: usize = Self::bounds(count, max_size, grow)
            .1
            .iter()
            .map(|&m| m as usize)
            .sum();
        core::mem::size_of::<ThreadCache>() + slots * core::mem::size_of::<*mut u8>()
    }

    /// Initialises a cache in place with per-class bounds from `count` and `max_size`, which
    /// may grow by `grow_budget` bytes of chunks in all; the cache and its stacks take `bytes`
    /// bytes at `at` (bounds are cut to fit when `bytes` is less than
    /// [`ThreadCache::footprint`], as for a recycled cache made under other settings);
    /// `now_ms`, the heap's clock, starts its first collection interval.
    ///
    /// # Safety
    /// `at` is writable for `bytes` bytes, 64-aligned and not in use; `bytes` is at least
    /// `size_of::<ThreadCache>()`.
    pub unsafe fn init_at(
        at: *mut ThreadCache,
        bytes: usize,
        arena: *const Arena,
        count: usize,
        max_size: usize,
        grow_budget: usize,
        now_ms: u64,
    ) {
        let capacity = (bytes - core::mem::size_of::<ThreadCache>()) / 8;
        let (mut maxes, mut caps) = Self::bounds(count, max_size, grow_budget > 0);
        let slots = at.wrapping_add(1).cast::<*mut u8>();
        let mut bases = [ptr::null_mut(); NCLASSES];
        let mut used = 0usize;
        for c in 0..NCLASSES {
            caps[c] = caps[c].min((capacity - used).min(MAX_STACK) as u16);
            maxes[c] = maxes[c].min(caps[c]);
            bases[c] = slots.wrapping_add(used);
            used += caps[c] as usize;
        }
        // SAFETY: caller: writable and unused.
        unsafe {
            at.write(ThreadCache {
                tag_key: crate::chunk::tag_key(),
                mark_key: link::cache_key(),
                ring_on: core::cell::Cell::new(false),
                ring_left: core::cell::Cell::new(0),
                ring: FreeRing::new(),
                bins: core::array::from_fn(|i| match i.checked_sub(1) {
                    // The always-empty stack: its top's low bits equal `empty`, and it is full.
                    None => Bin {
                        top: Top::new(ptr::null_mut()),
                        empty: 0,
                        full: 0,
                        fill: 0,
                        max: 0,
                    },
                    Some(c) => Bin {
                        top: Top::new(bases[c]),
                        empty: low16(bases[c]),
                        full: low16(bases[c].wrapping_add(maxes[c] as usize)),
                        fill: (maxes[c] / 2).clamp(1, FIRST_FILL),
                        max: maxes[c],
                    },
                }),
                bases,
                arena,
                runs: [ptr::null_mut(); NCLASSES],
                run_free: PAtomicUsize::new(0),
                run_remote: PAtomicUsize::new(0),
                run_hint: [PAtomicUsize::new(0), PAtomicUsize::new(0)],
                run_local: [PAtomicUsize::new(0), PAtomicUsize::new(0)],
                sweep_class: 0,
                next_live: ptr::null_mut(),
                prev_live: ptr::null_mut(),
                capacity,
                refilled: [false; NCLASSES],
                used: [false; NCLASSES],
                caps,
                base_max: maxes,
                grown_bytes: 0,
                grow_budget,
                gc_ms: now_ms,
                gc_tick: 0,
            })
        };
    }

    /// A placeholder cache with no stacks: every pop misses and every push finds its stack
    /// full, without writing anything, so one static instance can stand for "no cache" in
    /// every thread's slot and the fast paths need no test of their own (`global`).
    #[cfg(not(all(test, loom)))]
    pub const fn placeholder() -> ThreadCache {
        ThreadCache {
            tag_key: 0,
            mark_key: 0,
            ring_on: core::cell::Cell::new(false),
            ring_left: core::cell::Cell::new(0),
            ring: FreeRing::new(),
            bins: [const {
                Bin {
                    top: Top::new(ptr::null_mut()),
                    empty: 0,
                    full: 0,
                    fill: 0,
                    max: 0,
                }
            }; NCLASSES + 1],
            bases: [ptr::null_mut(); NCLASSES],
            arena: ptr::null(),
            runs: [ptr::null_mut(); NCLASSES],
            run_free: PAtomicUsize::new(0),
            run_remote: PAtomicUsize::new(0),
            run_hint: [PAtomicUsize::new(0), PAtomicUsize::new(0)],
            run_local: [PAtomicUsize::new(0), PAtomicUsize::new(0)],
            sweep_class: 0,
            next_live: ptr::null_mut(),
            prev_live: ptr::null_mut(),
            capacity: 0,
            refilled: [false; NCLASSES],
            used: [false; NCLASSES],
            caps: [0; NCLASSES],
            base_max: [0; NCLASSES],
            grown_bytes: 0,
            grow_budget: 0,
            gc_ms: 0,
            gc_tick: 0,
        }
    }

    /// Slots this cache's stacks area holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes a cached chunk for a request of `n` bytes (payload pointer), or null (also when
    /// `n` has no cached class).
    ///
    /// # Safety
    /// Called by the owning thread.
    #[inline(always)]
    pub unsafe fn pop_request(&self, n: usize) -> *mut u8 {
        if n <= SMALL_MAX_REQUEST && core::mem::size_of::<Bin>() == 16 {
            // Stack (n + 15) / 16, at byte offset (n + 15) & !15: one instruction fewer.
            // SAFETY: the offset is at most 16 * (SMALL_MAX_REQUEST + 15) / 16, inside `bins`.
            let b = unsafe { &*self.bins.as_ptr().byte_add((n + 15) & !15) };
            // SAFETY: forwarded.
            return unsafe { self.pop_from(b) };
        }
        let i = if n <= SMALL_MAX_REQUEST {
            (n + 15) >> 4
        } else if n <= MAX_CLASS_REQUEST {
            request_class(n).0 + 1
        } else {
            return ptr::null_mut();
        };
        // SAFETY: forwarded; `i` is at most NCLASSES.
        unsafe { self.pop_bin(i) }
    }

    /// Takes a cached chunk of class `cls` (payload pointer), or null.
    ///
    /// # Safety
    /// Called by the owning thread; `cls < NCLASSES`.
    #[inline(always)]
    pub unsafe fn pop(&self, cls: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.pop_bin(cls + 1) }
    }

    /// Takes a cached chunk of class `cls` whose payload is aligned to `align` (a power of
    /// two), looking at the newest [`ALIGNED_SCAN`] chunks only; null when none is. A chunk
    /// found below the top trades places with the top one (the stack holds one class, so
    /// its order is free, T2), then is popped as usual.
    ///
    /// # Safety
    /// Owning thread; `cls < NCLASSES`.
    pub unsafe fn pop_aligned(&self, cls: usize, align: usize) -> *mut u8 {
        let b = &self.bins[cls + 1];
        let t = b.top.load(Ordering::Relaxed);
        let n = self.count(cls).min(ALIGNED_SCAN);
        for j in 1..=n {
            // SAFETY: T1: the newest `count` slots below `t` are filled; j <= count.
            unsafe {
                let s = t.sub(j);
                let p = s.read();
                if p as usize & (align - 1) == 0 {
                    if j > 1 {
                        // The two chunks trade slots with the top chunk out of the stack and
                        // then `p` out of it, never with one chunk in two slots: a `fork`
                        // copying the stack mid-swap would leave the child a cache holding a
                        // chunk twice (see `flush`). The fences keep the stores in order.
                        let top = t.sub(1);
                        let x = top.read();
                        b.top.store(top, Ordering::Relaxed);
                        fence(Ordering::Release);
                        s.write(x);
                        top.write(p);
                        fence(Ordering::Release);
                        b.top.store(t, Ordering::Relaxed);
                    }
                    return self.pop_from(b);
                }
            }
        }
        ptr::null_mut()
    }

    /// Takes a chunk from stack `i` (class `i - 1`), or null.
    ///
    /// # Safety
    /// Owning thread; `i <= NCLASSES`.
    #[inline(always)]
    unsafe fn pop_bin(&self, i: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.pop_from(&self.bins[i]) }
    }

    /// Takes a chunk from stack `b`, or null.
    ///
    /// # Safety
    /// Owning thread; `b` is one of its stacks.
    #[inline(always)]
    unsafe fn pop_from(&self, b: &Bin) -> *mut u8 {
        let t = b.top.load(Ordering::Relaxed);
        if low16(t) == b.empty {
            return ptr::null_mut();
        }
        // SAFETY: T1/T4: the stack is not empty, so `t - 1` is a filled slot; T2. The slot
        // below it is readable memory of this cache (another slot, or the cache's last field).
        unsafe {
            let t = t.sub(1);
            let p = t.read();
            b.top.store(t, Ordering::Relaxed);
            // The next pop of this class will most likely take the chunk below: start loading
            // its line now (its mark and, three times in four, its header), so that a cold chunk
            // costs less than a full miss then. A prefetch of a stale slot is harmless.
            prefetch(t.sub(1).read().wrapping_add(8));
            link::take_cached_keyed(p, self.mark_key);
            // A cached block whose free is pending again in the ring was freed twice (the
            // second time after the first was done): it must not be handed out.
            if self.ring_holds(p) {
                Self::pending_twice();
            }
            p
        }
    }

    /// Caches payload `p` of class `cls`; false when the stack is full.
    ///
    /// # Safety
    /// Owning thread; `p` is an in-use chunk's payload of exactly class `cls`, owned by the caller.
    #[inline(always)]
    pub unsafe fn push(&self, cls: usize, p: *mut u8) -> bool {
        // SAFETY: forwarded.
        unsafe { self.push_to(&self.bins[cls + 1], p) }
    }

    /// Caches payload `p` of a chunk of `size` bytes when its class is one of the small ones
    /// (16-byte steps up to `SMALL_MAX_REQUEST`) and its stack has room; false otherwise.
    ///
    /// # Safety
    /// Owning thread; `p` is an in-use chunk's payload of `size` bytes, owned by the caller.
    #[inline(always)]
    pub unsafe fn push_small(&self, size: usize, p: *mut u8) -> bool {
        // SAFETY: forwarded; the mark is `p`'s under this cache's key.
        unsafe { self.push_small_marked(size, p, link::mark_of(p, self.mark_key)) }
    }

    /// [`ThreadCache::push_small`] storing `mark` (`link::mark_of(p, self.mark_key)`, which the
    /// caller computed for its double-free check) as the freed mark.
    ///
    /// # Safety
    /// As for [`ThreadCache::push_small`]; `mark` is `p`'s mark under this cache's key.
    #[inline(always)]
    pub unsafe fn push_small_marked(&self, size: usize, p: *mut u8, mark: usize) -> bool {
        if size.wrapping_sub(MIN_CHUNK) > SMALL_MAX_REQUEST + HEADER - MIN_CHUNK {
            return false;
        }
        let b = if core::mem::size_of::<Bin>() == 16 {
            // Class (size - 32) / 16 is stack (size - 16) / 16, at byte offset size - 16.
            // SAFETY: size - 16 <= SMALL_MAX_REQUEST, inside `bins`.
            unsafe { &*self.bins.as_ptr().byte_add(size - 16) }
        } else {
            &self.bins[(size - 16) >> 4]
        };
        // SAFETY: forwarded.
        unsafe { self.push_to_marked(b, p, mark) }
    }

    /// Pushes `p` on stack `b`; false when it is full.
    ///
    /// # Safety
    /// As for [`ThreadCache::push`], `b` being the stack of `p`'s class.
    #[inline(always)]
    unsafe fn push_to(&self, b: &Bin, p: *mut u8) -> bool {
        // SAFETY: forwarded; the mark is `p`'s under this cache's key.
        unsafe { self.push_to_marked(b, p, link::mark_of(p, self.mark_key)) }
    }

    /// [`ThreadCache::push_to`] storing `mark` as the freed mark.
    ///
    /// # Safety
    /// As for [`ThreadCache::push_to`]; `mark` is `link::mark_of(p, self.mark_key)`.
    #[inline(always)]
    unsafe fn push_to_marked(&self, b: &Bin, p: *mut u8, mark: usize) -> bool {
        let t = b.top.load(Ordering::Relaxed);
        if low16(t) == b.full {
            return false;
        }
        // SAFETY: T1/T4: the stack is not full, so `t` is a free slot; caller: p is ours.
        unsafe {
            t.write(p);
            b.top.store(t.add(1), Ordering::Relaxed);
            link::put_cached_mark(p, mark);
        }
        true
    }

    /// Whether class `cls` is cached at all.
    #[inline]
    pub fn caches(&self, cls: usize) -> bool {
        self.bins[cls + 1].max > 0
    }

    /// What a run this cache owns holds in its `owner` word (`run::Run::owner`): the
    /// cache's address, never 0.
    #[inline]
    pub fn run_owner_id(&self) -> usize {
        ptr::from_ref(self).addr()
    }

    /// Cached chunks in class `cls` (any thread: a snapshot).
    pub fn count(&self, cls: usize) -> usize {
        let t = self.bins[cls + 1].top.load(Ordering::Relaxed);
        (t as usize).wrapping_sub(self.bases[cls] as usize) / 8
    }

    /// The cached payloads of class `cls`, oldest first (owner or checkers).
    ///
    /// # Safety
    /// The stack does not change while the slice is used.
    pub unsafe fn cached(&self, cls: usize) -> &[*mut u8] {
        // SAFETY: T1: the first `count` slots are filled.
        unsafe { core::slice::from_raw_parts(self.bases[cls], self.count(cls)) }
    }

    /// Writes the freed mark of every cached chunk again. For the child's copy of a cache whose
    /// thread vanished in a `fork`: that thread may have stopped between storing a stack's new
    /// top and writing the pushed chunk's mark (`push_to_marked`), leaving a chunk in the stack
    /// without it, which a later refill from the arena would take for an overwritten chunk.
    /// Every chunk in the stacks is free in the child, so marking them all is exact.
    ///
    /// # Safety
    /// No thread uses the cache (its thread is gone); its stacks hold chunks of this heap.
    pub unsafe fn remark_all(&self) {
        for cls in 0..NCLASSES {
            if !self.caches(cls) {
                continue;
            }
            // SAFETY: caller: nobody else uses the cache; T1: the slots hold cached payloads.
            for &p in unsafe { self.cached(cls) } {
                // SAFETY: a cached chunk's payload holds at least 16 writable bytes.
                unsafe { link::put_cached_mark(p, link::mark_of(p, self.mark_key)) };
            }
        }
    }

    /// Bound of class `cls`.
    #[cfg(any(test, feature = "internals"))]
    pub fn max(&self, cls: usize) -> usize {
        self.bins[cls + 1].max as usize
    }

    /// Bytes of chunks held (read by any thread; a snapshot).
    pub fn held_bytes(&self) -> usize {
        // Classes that are not cached are skipped: they hold nothing (and under loom every
        // atomic load is a scheduling point).
        (0..NCLASSES)
            .filter(|&c| self.caches(c))
            .map(|c| self.count(c) * CLASS_CHUNK_SIZE[c])
            .sum()
    }

    /// Whether `p` is in stack `cls` (double-free diagnosis).
    ///
    /// # Safety
    /// Owning thread.
    pub unsafe fn contains(&self, cls: usize, p: *mut u8) -> bool {
        // SAFETY: forwarded.
        unsafe { self.cached(cls).contains(&p) }
    }
}
