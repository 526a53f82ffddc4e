//! Arenas: a lock, bins and a top chunk; the fallback behind the thread caches.
//!
//! An [`Arena`] lives either in a small metadata mapping (the main arena) or at the start of
//! its first region (thread arenas, see [`region`]). Its [`ArenaState`] is reached only through
//! the lock guard; frees from threads that find the lock busy are pushed onto the lock-free
//! `remote` list, which whoever takes the lock next drains.
//!
//! A request's path inside the arena (`ArenaState::malloc_chunk`): exact small bin → the
//! unsorted bin (each chunk gets one chance: exact fit or the last free chunk big enough for a
//! small request, else it goes to its bin) → best fit in the request's large bin → the smallest
//! chunk of the next non-empty bin (bitmap) → top → grow (brk, commit more of a reservation,
//! or a new region).
//!
//! Small chunks returned by thread caches wait whole on per-class *quick lists* (bundles of
//! chunk addresses, see `ArenaState::push_class`) and are handed back first by refills. Policy
//! (docs/design.md, "Quick lists"): they grow with demand; an aging clock counts the arena's
//! traffic outside the quick lists, and once per epoch (`max(QUICK_EPOCH, 2 × quick_bytes)`
//! of it, and at least a quarter as many operations as the lists hold chunks) each class gives up as
//! many chunks as stayed untouched through the epoch (its low-water mark) to `free_chunk`;
//! before the arena grows, the idle ones are merged, and the arena grows past a budget (an
//! eighth of the lists' bytes per epoch, `QUICK_GROW_SHARE`) only after merging them all;
//! everything is merged on trim, when growth fails, and above the `quick_max` tunable
//! (64 MiB). Bound: at most `quick_max` bytes per arena, chunks the program had in use, unused
//! ones merged after two epochs of other work, growth beside them within the budget.
//!
//! A free that merges into top trims it above the trim threshold or the arena's *trim floor*
//! (`maybe_trim`): the floor doubles when a trim is undone by the next growth (up to
//! `TRIM_ADAPT_MAX`) and halves after a trim epoch that did not use it (`trim_epoch_end`;
//! docs/design.md, "Trimming").
//!
//! This file holds the arena's data, its lock and its guard; the code is in one file per
//! concern, each an `impl` block of [`ArenaState`] (or of [`Arena`] for the lock-free side):
//!
//! | file | what it holds |
//! |---|---|
//! | `segments.rs` | where memory comes from: break, reservation, regions; growth |
//! | `alloc.rs` | allocation under the lock: bins, top, batches for refills, aligned chunks |
//! | `quick.rs` | the quick lists: small chunks from thread caches, kept whole, and their aging |
//! | `bundle.rs` | the node layout quick lists and remote lists share |
//! | `remote.rs` | the lock-free remote list: pushes from other threads, the drain |
//! | `free.rs` | freeing, coalescing, shrinking and growing a chunk in place |
//! | `trim.rs` | trimming top, purging free pages, the ageing of an idle arena |
//! | `region.rs` | the header of a thread arena's 64 MiB region |
//!
//! The arena calls down only (`bins`, `chunk`, `os`, the region map); it never calls the heap
//! or a thread cache.
//!
//! # Invariants
//! - A1: `top` is the last chunk of the current segment and ends at `seg_end`; its size is at
//!   least [`TOP_MIN`]; its `PREV_INUSE` bit is set (a free chunk below would have merged).
//! - A2: `committed == overhead + Σ sizes of chunks in every segment + top size`.
//! - A3: memory of the current segment at or above `top_fresh` has never been written since
//!   it was committed (reads as zero).
//! - A4: chunks pushed on `remote` are in use from the arena's view (their frees are pending).
//! - A5: `quick_count[c]` is the number of chunks on quick list `c`, `quick_low[c] ≤
//!   quick_count[c]`, and `quick_bytes` is the sum of their sizes.

mod alloc;
mod bundle;
mod free;
mod quick;
pub mod region;
mod remote;
mod runs;
mod segments;
mod trim;

#[cfg(any(test, feature = "internals"))]
pub use bundle::QUICK_CAP;
pub use bundle::{remote_cap, remote_set_count, remote_slot_set};

use core::ptr;

use crossbeam_utils::CachePadded;

use crate::bins::Bins;
use crate::chunk::{Chunk, FENCE, MIN_CHUNK};
use crate::config::PURGE_DEBT;
use crate::shared::Shared;
use crate::size_class::NSMALL_CLASSES;
use crate::sync::{self, AtomicPtr, AtomicUsize, Mutex, MutexGuard};

use region::RegionHeader;

/// Smallest top chunk: room for one free chunk plus the two fence posts that close a segment.
pub const TOP_MIN: usize = MIN_CHUNK + 2 * FENCE;

/// Most segments an arena records for its checker (later ones are still used, not walked).
pub const MAX_SEGS: usize = 64;

/// How an arena gets more memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// The program break (main arena, when the crate owns C `malloc`).
    Brk,
    /// Committing more of one large reservation (main arena otherwise).
    Reserve,
    /// Size-aligned regions (thread arenas, and any arena whose own growth failed).
    Regions,
}

/// One arena.
#[derive(Debug)]
#[repr(C)]
pub struct Arena {
    state: CachePadded<Mutex<ArenaState>>,
    /// Lock-free list of chunks freed by threads that found the lock busy (payload pointers,
    /// linked through their first word like thread-cache lists).
    remote: CachePadded<AtomicPtr<u8>>,
    /// Bytes waiting on `remote`.
    pub remote_bytes: AtomicUsize,
    /// Threads attached (their caches use this arena).
    pub attached: AtomicUsize,
    /// Index in the heap's arena table.
    pub index: usize,
    shared: *const Shared,
}

// SAFETY: all mutable state is behind the lock or atomic; `shared` points at the heap, which
// outlives its arenas.
unsafe impl Sync for Arena {}
// SAFETY: as above.
unsafe impl Send for Arena {}

/// The part of an arena that needs its lock.
#[derive(Debug)]
pub struct ArenaState {
    /// Free lists.
    pub bins: Bins,
    /// The top chunk.
    pub top: Chunk,
    growth: Growth,
    seg_end: usize,
    reserve_end: usize,
    region: *mut RegionHeader,
    top_fresh: usize,
    /// Committed bytes this arena holds (all segments).
    pub committed: usize,
    /// Committed bytes that are not in any chunk (region headers, the arena itself, padding).
    pub overhead: usize,
    purge_debt: usize,
    /// When the last purge pass ran (`os::now_ms`).
    last_purge_ms: u64,
    /// When the quick lists were last reviewed by time ([`ArenaState::decay`]).
    quick_review_ms: u64,
    /// The last purge pass left chunks aged (flag `AGED`) for the next one to purge.
    purge_aged: bool,
    /// Free top this arena keeps before an automatic trim (its learned need, a floor under the
    /// trim threshold): doubled each time the arena has to grow right after an automatic trim
    /// (trim/grow thrash), up to `TRIM_ADAPT_MAX`; halved after each trim epoch that did not
    /// need it (`trim_epoch_end`).
    trim_floor: usize,
    /// An automatic trim happened and the arena has not grown since.
    just_trimmed: bool,
    /// The arena grew right after an automatic trim during the current trim epoch.
    trim_thrash: bool,
    /// The trim epoch's clock: bytes of traffic outside the quick lists (as `quick_clock`)
    /// since the epoch began.
    trim_clock: usize,
    /// Low-water mark of the top's size during the trim epoch (allocations from top lower it;
    /// trims do not count: they do not use the memory).
    top_low: usize,
    region_flag: usize,
    arena: *const Arena,
    /// Segments (start of first chunk, end), for the checker; the last is the current one. The
    /// first [`MAX_SEGS`] are here, the others in `seg_more` (see [`ArenaState::segment`]).
    segs: [(usize, usize); MAX_SEGS],
    /// Number of segments recorded.
    nsegs: usize,
    /// Segments past the first `MAX_SEGS`: a mapping of `seg_more_cap` entries, or null. An
    /// arena of regions has one segment per region, so a heap past 4 GiB gets here.
    seg_more: *mut (usize, usize),
    seg_more_cap: usize,
    /// A segment could not be recorded (no memory for the table): the checker cannot walk
    /// the arena whole.
    segs_lost: bool,
    /// Regions this arena mapped (newest first, linked through their headers).
    pub regions: *mut RegionHeader,
    /// Runs (`run`) of this arena whose cache was dropped, with blocks still out, by class:
    /// the lock's holder owns them (`arena/runs.rs`).
    orphans: [*mut crate::run::Run; crate::size_class::NCLASSES],
    /// Runs on `orphans`.
    orphan_count: usize,
    /// Bytes free in this arena's orphans, as the lock's holder sees them (`stats` adds them
    /// to `run_free`). A figure of the arena's, not of the heap's: the orphan paths run under
    /// this lock, and a heap-wide atomic there was a cache line every thread's exit and
    /// adoption took in turn.
    pub orphan_free: usize,
    /// Remote-free bytes this arena collected from its orphans (wrapping): they left
    /// `Shared::run_remote_other`, which `stats` reads less the sum of these.
    pub orphan_collected: usize,
    /// The class the next orphan sweep starts with.
    orphan_cursor: usize,
    /// Runs carved from this arena and not given back (owned or orphans).
    pub runs: usize,
    /// Runs ever carved from this arena (wrapping): picks each new run's color.
    pub runs_carved: usize,
    /// Those runs, by class (`anext`/`aprev`).
    pub registry: [*mut crate::run::Run; crate::size_class::NCLASSES],
    /// Bytes of those runs' chunks.
    pub run_bytes: usize,
    /// Quick lists: small chunks given back by thread caches, kept whole and in use (no
    /// coalescing), each carrying the cache key; handed out first by refills. Each class is a
    /// stack of *bundles* (see [`QUICK_CAP`]): the head chunk of a bundle holds the link to the
    /// next bundle, a count and the addresses of up to `QUICK_CAP[cls]` other chunks of the
    /// class, so that a refill reads a few adjacent words instead of following one link per
    /// chunk through cold memory. Merged into the bins (`consolidate`) before the arena grows,
    /// on trim, above the `quick_max` tunable, and by the aging rule (`quick_review`).
    quick: [*mut u8; NSMALL_CLASSES],
    /// Chunks in each quick list.
    quick_count: [u32; NSMALL_CLASSES],
    /// Low-water mark of `quick_count` since the last review: chunks that nobody took in that
    /// time.
    quick_low: [u32; NSMALL_CLASSES],
    /// Bytes in the quick lists.
    pub quick_bytes: usize,
    /// The aging clock: bytes the arena served or took back *outside* the quick lists since
    /// the last review (bins, top, chunks too large for a quick list).
    quick_clock: usize,
    /// Chunks counted by the aging clock since the last review (its operations).
    quick_ops: usize,
    /// Operations the current epoch must reach before its review: the quick lists' chunk count
    /// when the clock last reached its byte mark (0 before that).
    quick_ops_due: usize,
    /// Bytes the arena committed while its quick lists held chunks, since the last review or
    /// consolidation (the growth budget of `quick_before_growth`).
    quick_grown: usize,
}

/// The quick lists are reviewed (`quick_review`) when the aging clock reaches this or twice
/// the bytes they hold, whichever is more (bytes), and the epoch has a quarter as many operations as
/// they hold chunks (`ArenaState::quick_epoch_end`).
pub const QUICK_EPOCH: usize = PURGE_DEBT;
/// The quick lists are also reviewed at least this often, whatever the traffic
/// (milliseconds, [`ArenaState::decay`]).
pub const QUICK_REVIEW_MS: u64 = 500;

/// An arena whose quick lists hold chunks used this epoch grows by at most `quick_bytes /
/// QUICK_GROW_SHARE` per epoch before it merges them all (`ArenaState::quick_before_growth`):
/// keeping the lists for their next use costs at most an eighth of their bytes in extra
/// committed memory, against merging them at once.
pub const QUICK_GROW_SHARE: usize = 8;

// SAFETY: only reached through the arena lock.
unsafe impl Send for ArenaState {}

/// Result of a chunk allocation inside an arena.
#[derive(Debug, Clone, Copy)]
pub struct Got {
    /// The chunk, in use.
    pub chunk: Chunk,
    /// Its payload reads as zero (fresh memory from the OS).
    pub zeroed: bool,
}

impl Arena {
    /// Builds an arena at `at` (writable, suitably aligned, stable for the arena's life) whose
    /// first memory is already set up by `first`: it returns the state's growth kind and first
    /// segment.
    ///
    /// # Safety
    /// `at` is valid for writes of `size_of::<Arena>()` bytes and aligned; `shared` outlives it.
    pub unsafe fn init_at(
        at: *mut Arena,
        shared: *const Shared,
        index: usize,
        growth: Growth,
    ) -> *mut Arena {
        let state = ArenaState {
            bins: Bins::new(),
            // SAFETY: placeholder, replaced by `start_segment` before any use.
            top: unsafe { Chunk::at(ptr::NonNull::<u8>::dangling().as_ptr()) },
            growth,
            seg_end: 0,
            reserve_end: 0,
            region: ptr::null_mut(),
            top_fresh: 0,
            committed: 0,
            overhead: 0,
            purge_debt: 0,
            last_purge_ms: 0,
            quick_review_ms: 0,
            purge_aged: false,
            trim_floor: 0,
            just_trimmed: false,
            trim_thrash: false,
            trim_clock: 0,
            top_low: 0,
            region_flag: 0,
            arena: at,
            segs: [(0, 0); MAX_SEGS],
            nsegs: 0,
            seg_more: ptr::null_mut(),
            seg_more_cap: 0,
            segs_lost: false,
            regions: ptr::null_mut(),
            orphans: [ptr::null_mut(); crate::size_class::NCLASSES],
            orphan_count: 0,
            orphan_free: 0,
            orphan_collected: 0,
            orphan_cursor: 0,
            runs: 0,
            runs_carved: 0,
            registry: [ptr::null_mut(); crate::size_class::NCLASSES],
            run_bytes: 0,
            quick: [ptr::null_mut(); NSMALL_CLASSES],
            quick_count: [0; NSMALL_CLASSES],
            quick_low: [0; NSMALL_CLASSES],
            quick_bytes: 0,
            quick_clock: 0,
            quick_ops: 0,
            quick_ops_due: 0,
            quick_grown: 0,
        };
        // SAFETY: caller: `at` is writable and aligned.
        unsafe {
            at.write(Arena {
                state: CachePadded::new(sync::new_mutex(state)),
                remote: CachePadded::new(AtomicPtr::new(ptr::null_mut())),
                remote_bytes: AtomicUsize::new(0),
                attached: AtomicUsize::new(0),
                index,
                shared,
            });
            let a = &*at;
            let mut g = a.state.lock();
            g.bins.init();
        }
        at
    }

    /// The heap-wide settings.
    #[inline]
    pub fn shared(&self) -> &Shared {
        // SAFETY: the heap outlives its arenas.
        unsafe { &*self.shared }
    }

    /// Takes the lock and drains pending remote frees.
    #[inline]
    pub fn lock(&self) -> ArenaGuard<'_> {
        let mut g = ArenaGuard {
            arena: self,
            g: self.state.lock(),
        };
        g.drain_remote();
        g
    }

    /// Takes the lock if it is free (and drains pending remote frees).
    #[inline]
    pub fn try_lock(&self) -> Option<ArenaGuard<'_>> {
        let g = self.state.try_lock()?;
        let mut g = ArenaGuard { arena: self, g };
        g.drain_remote();
        Some(g)
    }

    /// The raw lock, for the fork handlers.
    pub fn raw_lock(&self) -> &sync::RawLock {
        sync::raw_of(&self.state)
    }
}

/// The arena lock held: hands out `&mut ArenaState`.
#[derive(Debug)]
pub struct ArenaGuard<'a> {
    arena: &'a Arena,
    g: MutexGuard<'a, ArenaState>,
}

impl core::ops::Deref for ArenaGuard<'_> {
    type Target = ArenaState;
    fn deref(&self) -> &ArenaState {
        &self.g
    }
}
impl core::ops::DerefMut for ArenaGuard<'_> {
    fn deref_mut(&mut self) -> &mut ArenaState {
        &mut self.g
    }
}

impl ArenaGuard<'_> {
    /// The arena this guard locks.
    pub fn arena(&self) -> &Arena {
        self.arena
    }
}
