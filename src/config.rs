//! Compile-time constants and run-time tunables.
//!
//! Tunables are read once, at the first initialisation of the global heap, from environment
//! variables parsed without allocating (see [`crate::os::env_usize`]); `docs/tuning.md` lists
//! them with their defaults. Private heaps take a [`Tunables`] value directly.

use crate::chunk::{ALIGN, MIN_CHUNK};

/// Size and alignment of a region that holds a thread arena (bytes). Large enough for the
/// largest block the arenas serve (`MMAP_THRESHOLD_MAX`) with room to spare; every region is
/// aligned to this so that `addr & !(REGION_SIZE - 1)` finds its header.
pub const REGION_SIZE: usize = 64 << 20;
/// log2 of [`REGION_SIZE`].
pub const REGION_SHIFT: u32 = 26;
const _: () = assert!(1 << REGION_SHIFT == REGION_SIZE);

/// How much the region and main-reserve arenas commit at a time beyond what a request needs
/// (bytes): fewer `mprotect` calls against a little more committed memory.
pub const COMMIT_STEP: usize = 256 << 10;

/// Most bytes a thread cache's refill carves as one block for a class above the small ones
/// (chunks over 1 KiB + 16 B; at least two chunks; a refill takes as many blocks as it needs):
/// one block for a refill of half a list (8 chunks of 4 KiB, 16 of 2 KiB) asked for a
/// contiguous 32 KiB that the holes of a fragmented heap rarely hold, so it came from top or a
/// large free chunk (`c-mixed`'s peak RSS 45.7 -> 42 MiB with 8 KiB blocks).
pub const BATCH_BLOCK_MAX: usize = 8 << 10;

/// Address space the main arena reserves for its contiguous growth when it does not own the
/// program break (bytes). Only reserved (`PROT_NONE`, no commit charge) until used.
pub const MAIN_RESERVE: usize = 64 << 30;

/// Default threshold at or above which a request gets its own mapping (bytes).
pub const MMAP_THRESHOLD_DEFAULT: usize = 128 << 10;
/// The mmap threshold adapts upward (to the size of freed huge blocks) up to this (bytes).
pub const MMAP_THRESHOLD_MAX: usize = 32 << 20;
const _: () = assert!(MMAP_THRESHOLD_MAX + (1 << 20) < REGION_SIZE);

/// Default size of free top above which an arena gives memory back (bytes).
pub const TRIM_THRESHOLD_DEFAULT: usize = 128 << 10;
/// An arena that keeps growing right after trimming raises its own trim floor (the free top
/// its automatic trims keep), doubling it up to this (bytes): enough for a program that
/// repeatedly frees and rebuilds tens of MiB (`compare`'s `realloc`: ~60 MiB per round). The
/// floor decays (halves per trim epoch without regrowth), so the memory still comes back.
pub const TRIM_ADAPT_MAX: usize = 256 << 20;
/// A trim epoch lasts at least this many bytes of arena traffic outside the quick lists, and
/// at least four times the arena's trim floor (bytes): a floor is kept for several times its
/// size of traffic before it halves.
pub const TRIM_EPOCH: usize = 16 << 20;
/// How much free top an arena keeps when it trims, and adds when it grows (bytes).
pub const TOP_PAD_DEFAULT: usize = 64 << 10;

/// Free bytes put back into an arena's bins since its last purge pass after which the pass
/// returns the OS pages inside large free chunks (bytes).
pub const PURGE_DEBT: usize = 16 << 20;
/// Free chunks smaller than this are never purged (bytes).
pub const PURGE_MIN_CHUNK: usize = 64 << 10;
/// Default least time between two purge passes of one arena (milliseconds). A pass purges the
/// large free chunks that were already free at the previous one, so a chunk's pages go back
/// to the OS after it has stayed free between one and two delays: memory that a program frees
/// and takes again within the delay (`c-large`: 5-25 MiB blocks replaced every few
/// milliseconds) keeps its pages instead of faulting them all in again.
pub const PURGE_DELAY_MS_DEFAULT: usize = 1000;

/// Default most bytes one arena keeps in its quick lists (small chunks given back by thread
/// caches, kept whole for reuse) before it merges them all into its bins. The aging rule
/// (`arena::ArenaState::quick_review`) normally merges unused ones long before.
pub const QUICK_MAX_DEFAULT: usize = 64 << 20;

/// Most arenas a heap ever makes (the fixed size of its arena table).
pub const MAX_ARENAS: usize = 256;
/// Default arena cap, per CPU the process may run on.
pub const ARENAS_PER_CPU: usize = 2;

/// Default most chunks a thread cache keeps per class to start with (classes that overflow and
/// refill in turn grow their bound, see `TCACHE_GROW_BYTES_DEFAULT`).
pub const TCACHE_COUNT_DEFAULT: usize = 32;
/// Default for `Tunables::tcache_count` with runs on (`ARENA_MALLOC_RUNS=1`): measured on
/// `compare`'s rows (wl-arena, scale 1), 16 instead of 32 took peak RSS from 28 to 24 MiB in
/// `pipeline16` and from 19 to 16 MiB in `service`, at the same speed.
pub const TCACHE_COUNT_RUNS: usize = 16;
/// A thread cache keeps at most about this many bytes per class (bytes).
pub const TCACHE_CLASS_BYTES: usize = 64 << 10;
/// Default most bytes of chunks by which one thread cache's per-class bounds may grow (a class
/// that overflows and refills in turn doubles its bound, see `tcache::ThreadCache::overflow`;
/// idle classes shrink back, `ThreadCache::collect`).
pub const TCACHE_GROW_BYTES_DEFAULT: usize = 4 << 20;
/// All thread caches of a heap together may grow by about this (bytes): a cache made while
/// `n` others live gets at most `TCACHE_GROW_TOTAL / (n + 1)`.
pub const TCACHE_GROW_TOTAL: usize = 32 << 20;
/// Default largest request the thread cache serves (bytes); the classes reach 32 KiB.
pub const TCACHE_MAX_SIZE_DEFAULT: usize = 32 << 10;

const _: () = assert!(ALIGN == 16 && MIN_CHUNK == 32);

/// Run-time settings of one heap.
#[derive(Debug, Clone, Copy)]
pub struct Tunables {
    /// Most arenas (main arena included).
    pub arena_max: usize,
    /// Requests at or above this get their own mapping (bytes).
    pub mmap_threshold: usize,
    /// Whether the mmap threshold adapts upward when huge blocks are freed.
    pub mmap_threshold_dynamic: bool,
    /// Free top above this is returned to the OS (bytes).
    pub trim_threshold: usize,
    /// Free top kept on trim and added on growth (bytes).
    pub top_pad: usize,
    /// Most chunks per thread-cache class; 0 turns thread caches off.
    pub tcache_count: usize,
    /// Largest request served by thread caches (bytes).
    pub tcache_max_size: usize,
    /// Most bytes by which one thread cache's bounds may grow; 0: fixed bounds.
    pub tcache_grow_bytes: usize,
    /// Whether the main arena grows the program break.
    pub use_brk: bool,
    /// Address space the main arena reserves when it does not use the break (bytes).
    pub main_reserve: usize,
    /// Most bytes one arena keeps in its quick lists (bytes).
    pub quick_max: usize,
    /// Least time between two purge passes of an arena (milliseconds; 0: a pass at every
    /// [`PURGE_DEBT`] of freed bytes).
    pub purge_delay_ms: usize,
    /// Whether a thread's frees run pipelined while they overflow its cache (`tcache`,
    /// `ThreadCache::ring_swap`).
    pub free_pipeline: bool,
    /// Whether the thread caches' classes are served from size-class runs (`run`, issue 30
    /// stage 1; `ARENA_MALLOC_RUNS=1`, off by default while the layer matures).
    pub runs: bool,
}

/// `ARENA_MALLOC_RUNS` (1: on): read by [`Tunables::from_env`], and by the tests' own tunables
/// so that `cargo test` runs both ways.
pub fn runs_from_env() -> bool {
    crate::os::env_usize(c"ARENA_MALLOC_RUNS").is_some_and(|v| v != 0)
}

impl Tunables {
    /// Defaults for a heap on a machine with `cpus` CPUs.
    pub const fn defaults(cpus: usize) -> Self {
        let cap = cpus * ARENAS_PER_CPU;
        Tunables {
            arena_max: if cap > MAX_ARENAS {
                MAX_ARENAS
            } else if cap < 2 {
                2
            } else {
                cap
            },
            mmap_threshold: MMAP_THRESHOLD_DEFAULT,
            mmap_threshold_dynamic: true,
            trim_threshold: TRIM_THRESHOLD_DEFAULT,
            top_pad: TOP_PAD_DEFAULT,
            tcache_count: TCACHE_COUNT_DEFAULT,
            tcache_max_size: TCACHE_MAX_SIZE_DEFAULT,
            tcache_grow_bytes: TCACHE_GROW_BYTES_DEFAULT,
            use_brk: false,
            main_reserve: MAIN_RESERVE,
            quick_max: QUICK_MAX_DEFAULT,
            purge_delay_ms: PURGE_DELAY_MS_DEFAULT,
            free_pipeline: true,
            runs: false,
        }
    }

    /// Defaults, overridden by the `ARENA_MALLOC_*` environment variables.
    pub fn from_env(cpus: usize) -> Self {
        use crate::os::env_usize;
        let mut t = Tunables::defaults(cpus);
        if let Some(v) = env_usize(c"ARENA_MALLOC_ARENA_MAX") {
            t.arena_max = v.clamp(1, MAX_ARENAS);
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_MMAP_THRESHOLD") {
            t.mmap_threshold = v.clamp(MIN_CHUNK, MMAP_THRESHOLD_MAX);
            t.mmap_threshold_dynamic = false;
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_TRIM_THRESHOLD") {
            t.trim_threshold = v;
            // As `mallopt(M_TRIM_THRESHOLD)` (and glibc's variable): a chosen threshold stays,
            // so the thresholds no longer adapt to freed huge blocks (which would set it to
            // twice their size).
            t.mmap_threshold_dynamic = false;
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_TOP_PAD") {
            t.top_pad = v.min(64 << 20);
        }
        t.runs = runs_from_env();
        if t.runs {
            // Runs behind them make a refill cheap (no lock): smaller stacks hold less.
            t.tcache_count = TCACHE_COUNT_RUNS;
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_TCACHE_COUNT") {
            t.tcache_count = v.min(u16::MAX as usize / 2);
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_QUICK_MAX") {
            t.quick_max = v;
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_TCACHE_MAX_SIZE") {
            t.tcache_max_size = v.min(crate::size_class::MAX_CLASS_REQUEST);
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_TCACHE_GROW_BYTES") {
            t.tcache_grow_bytes = v;
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_PURGE_DELAY_MS") {
            t.purge_delay_ms = v;
        }
        if let Some(v) = env_usize(c"ARENA_MALLOC_FREE_PIPELINE") {
            t.free_pipeline = v != 0;
        }
        t
    }
}
