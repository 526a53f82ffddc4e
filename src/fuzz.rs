//! Fuzz entry points: the logic behind the cargo-fuzz targets in `fuzz/` (each target is a
//! three-line shim calling one `run_*` function here), and the seeded replays that let a plain
//! `cargo test` run the same logic so it cannot rot.
//!
//! Inputs are byte strings decoded with `arbitrary` into [`Action`] sequences. A shadow model
//! ([`Shadow`]) records every live block (address, request, alignment, pattern seed) and checks,
//! after every action:
//! - alignment, and `usable_size ≥ request`;
//! - no two live blocks overlap;
//! - contents survive until free and across realloc (a pattern derived from a per-block seed,
//!   written and verified on sampled offsets: every byte of small blocks, the ends and every
//!   509th byte of large ones, because touching every byte makes the target page-fault bound);
//! - calloc memory reads as zero.
//!
//! The invariant checker (`check`) runs every [`CHECK_EVERY`] actions and at the end. Failures
//! panic (libFuzzer turns a panic into a crash with the input saved).
//!
//! Compiled under `cfg(test)` and with the `fuzz-api` feature (which brings in `arbitrary`);
//! not under the bare `fuzzing` cfg, so that a downstream crate fuzzed with cargo-fuzz still
//! builds this crate without `arbitrary`.

#![allow(missing_docs, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::vec::Vec;

use arbitrary::{Arbitrary, Unstructured};

use crate::check;
use crate::config::Tunables;
use crate::heap::{Heap, PrivateHeap};
use crate::tcache::ThreadCache;

/// Actions between two invariant checks.
pub const CHECK_EVERY: usize = 16;
/// Most actions decoded from one input.
pub const MAX_ACTIONS: usize = 2048;
/// Live bytes the model allows before it skips further allocations (keeps inputs from
/// exhausting the private heap's reservation, which would be a legitimate null).
pub const MAX_LIVE_BYTES: usize = 48 << 20;
/// Most live blocks (indexes wrap modulo the live count).
pub const MAX_LIVE: usize = 512;

/// A request size, decoded so that most are small (the cached classes), some cross the small
/// bin limit and a few go past the mmap threshold.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Size(pub u32);

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> usize {
        let v = self.0 as usize;
        match v >> 29 {
            0..=3 => v & 0x1ff,         // 0..512: tcache classes
            4 | 5 => v & 0x1fff,        // ..8 KiB: small and large bins
            6 => v & 0x3_ffff,          // ..256 KiB: large bins, some huge
            _ => (v & 0xf_ffff) + 1024, // ..1 MiB: huge blocks, mremap
        }
    }
}

/// One step of a heap op sequence.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Action {
    /// `malloc(size)`, or `memalign(1 << align_log2, size)` when `align_log2 > 4`.
    Alloc { size: Size, align_log2: u8 },
    /// `calloc(size)`.
    Calloc { size: Size },
    /// Free live block `idx` (modulo the live count).
    Free { idx: u16 },
    /// Resize live block `idx`.
    Realloc { idx: u16, size: Size },
    /// Return free memory to the OS, keeping `pad` KiB of top.
    Trim { pad: u8 },
    /// Flush the current thread cache to the arenas.
    FlushCache,
    /// Make cache `cache` current (modulo the cache count; the last one is "no cache": the
    /// locked arena path).
    Switch { cache: u8 },
    /// Retire the current cache (a thread exit) and make a fresh one in its place.
    Respawn,
    /// Run the invariant checker now.
    Check,
}

/// A live block in the shadow model.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    pub ptr: usize,
    pub req: usize,
    pub align: usize,
    pub seed: u64,
}

/// Shadow model of live blocks.
#[derive(Debug, Default)]
pub struct Shadow {
    pub blocks: Vec<Live>,
    /// start → end (usable end) of every live block, for overlap checks.
    pub ranges: BTreeMap<usize, usize>,
    pub live_bytes: usize,
    next_seed: u64,
}

#[inline]
fn pattern(seed: u64, i: usize) -> u8 {
    let x = seed
        .wrapping_add(i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// The sampled offsets of a block of `n` bytes, ascending.
fn samples(n: usize, mut f: impl FnMut(usize)) {
    const EDGE: usize = 64;
    if n <= 4 * EDGE + 512 {
        (0..n).for_each(f);
        return;
    }
    (0..EDGE).for_each(&mut f);
    let mut i = EDGE;
    while i < n - EDGE {
        f(i);
        i += 509;
    }
    (n - EDGE..n).for_each(f);
}

/// Writes block pattern `seed` on the sampled offsets of `[p, p+n)`.
///
/// # Safety
/// `p` is writable for `n` bytes.
pub unsafe fn fill(p: *mut u8, n: usize, seed: u64) {
    // SAFETY: caller: in bounds.
    samples(n, |i| unsafe { p.add(i).write(pattern(seed, i)) });
}

/// Verifies the pattern written by `fill(p, n, seed)` on its samples below `upto`.
///
/// # Safety
/// `p` is readable for `upto` bytes.
pub unsafe fn verify(p: *const u8, n: usize, upto: usize, seed: u64) -> Option<usize> {
    let mut bad = None;
    samples(n, |i| {
        // SAFETY: caller: in bounds.
        if i < upto && bad.is_none() && unsafe { p.add(i).read() } != pattern(seed, i) {
            bad = Some(i);
        }
    });
    bad
}

/// Verifies that the sampled offsets of `[p, p+n)` are zero.
///
/// # Safety
/// `p` is readable for `n` bytes.
pub unsafe fn verify_zero(p: *const u8, n: usize) -> Option<usize> {
    let mut bad = None;
    samples(n, |i| {
        // SAFETY: caller: in bounds.
        if bad.is_none() && unsafe { p.add(i).read() } != 0 {
            bad = Some(i);
        }
    });
    bad
}

impl Shadow {
    /// Whether one more block of `n` bytes fits the model's limits.
    pub fn has_room(&self, n: usize) -> bool {
        self.blocks.len() < MAX_LIVE && self.live_bytes.saturating_add(n) <= MAX_LIVE_BYTES
    }

    /// Index of live block `idx` modulo the count, or None when nothing is live.
    pub fn pick(&self, idx: u16) -> Option<usize> {
        if self.blocks.is_empty() {
            None
        } else {
            Some(idx as usize % self.blocks.len())
        }
    }

    /// Records a fresh block after checking alignment, usable size and overlap, and writes
    /// its pattern (after checking it is zero when `zeroed`).
    ///
    /// # Safety
    /// `p` is a live block of at least `usable ≥ req` bytes, returned by the allocator.
    pub unsafe fn add(
        &mut self,
        p: *mut u8,
        req: usize,
        align: usize,
        usable: usize,
        zeroed: bool,
    ) {
        let a = p as usize;
        assert!(!p.is_null(), "allocation of {req} bytes failed");
        assert_eq!(a % align.max(16), 0, "block {a:#x} not aligned to {align}");
        assert!(
            usable >= req,
            "usable size {usable} < request {req} at {a:#x}"
        );
        let end = a + usable;
        if let Some((&s, &e)) = self.ranges.range(..end).next_back() {
            assert!(
                e <= a,
                "block [{a:#x}, {end:#x}) overlaps live block [{s:#x}, {e:#x})"
            );
        }
        if zeroed {
            // SAFETY: caller: readable.
            if let Some(i) = unsafe { verify_zero(p, req) } {
                panic!("calloc({req}) block {a:#x} not zero at offset {i}");
            }
        }
        self.next_seed = self.next_seed.wrapping_add(0x6A09_E667_F3BC_C909);
        let seed = self.next_seed;
        // SAFETY: caller: writable.
        unsafe { fill(p, req, seed) };
        if trace() {
            eprintln!("  + {a:#x} req {req} usable {usable} align {align}");
        }
        self.ranges.insert(a, end);
        self.live_bytes += req;
        self.blocks.push(Live {
            ptr: a,
            req,
            align,
            seed,
        });
    }

    /// Verifies block `i`'s contents and removes it from the model.
    ///
    /// # Safety
    /// Block `i` is live.
    pub unsafe fn take(&mut self, i: usize) -> Live {
        let b = self.blocks.swap_remove(i);
        if trace() {
            eprintln!("  - {:#x} req {}", b.ptr, b.req);
        }
        // SAFETY: caller: live.
        if let Some(off) = unsafe { verify(b.ptr as *const u8, b.req, b.req, b.seed) } {
            panic!(
                "live block {:#x} ({} bytes) corrupted at offset {off}",
                b.ptr, b.req
            );
        }
        self.ranges.remove(&b.ptr);
        self.live_bytes -= b.req;
        b
    }

    /// After `realloc(old) → p`: checks the kept prefix, then records `p` as a fresh block.
    ///
    /// # Safety
    /// `p` is live with `usable` bytes; `old` was the block before (now taken from the model).
    pub unsafe fn add_realloc(&mut self, old: Live, p: *mut u8, req: usize, usable: usize) {
        // SAFETY: caller: p readable for req bytes.
        if let Some(off) = unsafe { verify(p, old.req, req.min(old.req), old.seed) } {
            panic!(
                "realloc({:#x}, {req}) → {:#x} lost contents at offset {off} (old request {})",
                old.ptr, p as usize, old.req
            );
        }
        // SAFETY: forwarded.
        unsafe { self.add(p, req, 16, usable, false) };
    }
}

/// The settings of the fuzzed private heaps: a small reservation, a low trim threshold (so
/// trimming happens), thread caches on with small, growing bounds.
pub fn fuzz_tunables(arena_max: usize) -> Tunables {
    let mut t = Tunables::defaults(2);
    t.arena_max = arena_max;
    t.runs = crate::config::runs_from_env();
    t.main_reserve = 256 << 20;
    t.trim_threshold = 256 << 10;
    t.top_pad = 64 << 10;
    t.tcache_count = 7;
    // A small growth budget: bounds grow, run out of budget, and shrink back (collections).
    t.tcache_grow_bytes = 16 << 10;
    t
}

/// Whether `ARENA_MALLOC_FUZZ_TRACE` is set: the entry points print each action (debugging a
/// crash input).
fn trace() -> bool {
    use std::sync::OnceLock;
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("ARENA_MALLOC_FUZZ_TRACE").is_some())
}

/// Runs the invariant checker over the whole heap; panics with the broken invariant.
fn check_all(heap: &Heap, when: usize) {
    // SAFETY: one OS thread drives every cache of this private heap, so all are quiescent.
    if let Err(e) = unsafe { check::check_heap(heap) } {
        panic!("invariant broken after action {when}: {e}");
    }
}

/// Decodes at most `MAX_ACTIONS` actions.
pub fn decode(data: &[u8]) -> Vec<Action> {
    let mut u = Unstructured::new(data);
    let mut v = Vec::new();
    while !u.is_empty() && v.len() < MAX_ACTIONS {
        match Action::arbitrary(&mut u) {
            Ok(a) => v.push(a),
            Err(_) => break,
        }
    }
    v
}

/// Drives `heap` with `actions` over `ncaches` thread caches (plus "no cache") from this one
/// OS thread, checking the shadow model after each action.
fn drive(heap: &Heap, actions: &[Action], ncaches: usize) {
    let mut caches: Vec<*mut ThreadCache> = (0..ncaches).map(|_| heap.new_cache()).collect();
    assert!(caches.iter().all(|c| !c.is_null()));
    caches.push(core::ptr::null_mut());
    let mut cur = 0usize;
    let mut sh = Shadow::default();
    for (step, &a) in actions.iter().enumerate() {
        let tc = caches[cur];
        if trace() {
            eprintln!("{step}: cache {cur}: {a:?} live={}", sh.blocks.len());
        }
        // SAFETY: `tc` is one of this heap's caches (or null) and only this thread drives it;
        // every pointer handed back comes from the shadow model's live set.
        unsafe {
            match a {
                Action::Alloc { size, align_log2 } => {
                    let n = size.bytes();
                    let align_log2 = u32::from(align_log2 % 20);
                    let align = if align_log2 > 4 && align_log2 <= 16 {
                        1usize << align_log2
                    } else {
                        16
                    };
                    if sh.has_room(n + align) {
                        let p = if align > 16 {
                            heap.memalign(tc, align, n)
                        } else {
                            heap.malloc(tc, n)
                        };
                        let u = if p.is_null() { 0 } else { heap.usable_size(p) };
                        sh.add(p, n, align, u, false);
                    }
                }
                Action::Calloc { size } => {
                    let n = size.bytes();
                    if sh.has_room(n) {
                        let p = heap.calloc(tc, n);
                        let u = if p.is_null() { 0 } else { heap.usable_size(p) };
                        sh.add(p, n, 16, u, true);
                    }
                }
                Action::Free { idx } => {
                    if let Some(i) = sh.pick(idx) {
                        let b = sh.take(i);
                        heap.free(tc, b.ptr as *mut u8);
                    }
                }
                Action::Realloc { idx, size } => {
                    if let Some(i) = sh.pick(idx) {
                        let n = size.bytes().max(1);
                        if sh.has_room(n) {
                            let b = sh.take(i);
                            let p = heap.realloc(tc, b.ptr as *mut u8, n);
                            assert!(!p.is_null(), "realloc to {n} failed");
                            sh.add_realloc(b, p, n, heap.usable_size(p));
                        }
                    }
                }
                Action::Trim { pad } => {
                    heap.trim(usize::from(pad) << 10);
                }
                Action::FlushCache => {
                    if !tc.is_null() {
                        heap.flush_cache(tc);
                    }
                }
                Action::Switch { cache } => cur = usize::from(cache) % caches.len(),
                Action::Respawn => {
                    if !tc.is_null() {
                        heap.drop_cache(tc);
                        let n = heap.new_cache();
                        assert!(!n.is_null());
                        caches[cur] = n;
                    }
                }
                Action::Check => check_all(heap, step),
            }
        }
        if (step + 1) % CHECK_EVERY == 0 {
            check_all(heap, step);
        }
    }
    check_all(heap, actions.len());
    // Free everything from the caches in turn, then retire the caches, and check again.
    let mut k = 0;
    while let Some(b) = sh.blocks.last().copied() {
        let _ = b;
        let i = sh.blocks.len() - 1;
        let b = {
            // SAFETY: live.
            unsafe { sh.take(i) }
        };
        // SAFETY: live block of this heap; cache owned by this thread.
        unsafe { heap.free(caches[k % caches.len()], b.ptr as *mut u8) };
        k += 1;
    }
    for &tc in &caches[..ncaches] {
        // SAFETY: ours; no longer used.
        unsafe { heap.drop_cache(tc) };
    }
    check_all(heap, actions.len() + 1);
    heap.trim(0);
    check_all(heap, actions.len() + 2);
}

/// `ops` target: one private heap, one thread cache plus the uncached arena path.
pub fn run_ops(data: &[u8]) {
    let actions = decode(data);
    let heap = PrivateHeap::new(&fuzz_tunables(2)).expect("private heap");
    drive(&heap, &actions, 1);
}

/// `threads` target: four thread caches over three arenas, driven from one OS thread, so
/// cross-cache frees, remote frees and cache retirement replay deterministically.
pub fn run_threads(data: &[u8]) {
    let actions = decode(data);
    let heap = PrivateHeap::new(&fuzz_tunables(3)).expect("private heap");
    drive(&heap, &actions, 4);
}

// --- C ABI ---

/// One step of the C-ABI target.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum CAction {
    Malloc {
        size: Size,
    },
    /// `calloc(n, size)`; `wide` picks factors that overflow.
    Calloc {
        n: u16,
        size: u16,
        wide: bool,
    },
    Free {
        idx: u16,
    },
    FreeNull,
    Realloc {
        idx: u16,
        size: Size,
    },
    ReallocNull {
        size: Size,
    },
    ReallocZero {
        idx: u16,
    },
    /// `reallocarray(p, n, size)`; `wide` picks factors that overflow.
    ReallocArray {
        idx: u16,
        n: u16,
        size: u16,
        wide: bool,
    },
    /// `posix_memalign`, with `align` sometimes invalid (not a power of two, or below a
    /// pointer's size).
    PosixMemalign {
        align: u16,
        size: Size,
    },
    AlignedAlloc {
        align_log2: u8,
        size: Size,
    },
    Memalign {
        align: u16,
        size: Size,
    },
    UsableSize {
        idx: u16,
    },
    UsableSizeNull,
    Trim {
        pad: u8,
    },
}

/// `capi` target: the C entry points' glibc semantics on the global heap, against the shadow
/// model.
pub fn run_capi(data: &[u8]) {
    use crate::capi;
    use core::ffi::c_void;
    let mut u = Unstructured::new(data);
    let mut sh = Shadow::default();
    let mut steps = 0;
    while !u.is_empty() && steps < MAX_ACTIONS {
        let Ok(a) = CAction::arbitrary(&mut u) else {
            break;
        };
        steps += 1;
        if trace() {
            eprintln!("capi {steps}: {a:?} live={}", sh.blocks.len());
        }
        // SAFETY: every pointer passed back comes from the shadow model's live set.
        unsafe {
            match a {
                CAction::Malloc { size } => {
                    let n = size.bytes();
                    if sh.has_room(n) {
                        let p = capi::malloc(n).cast::<u8>();
                        let us = capi::malloc_usable_size(p.cast());
                        sh.add(p, n, 16, us, false);
                    }
                }
                CAction::Calloc { n, size, wide } => {
                    let (n, s) = if wide {
                        (usize::MAX / 2 + usize::from(n), usize::from(size) | 2)
                    } else {
                        (usize::from(n % 64), usize::from(size % 512))
                    };
                    match n.checked_mul(s) {
                        None => assert!(capi::calloc(n, s).is_null(), "calloc overflow"),
                        Some(t) if sh.has_room(t) => {
                            let p = capi::calloc(n, s).cast::<u8>();
                            let us = capi::malloc_usable_size(p.cast());
                            sh.add(p, t, 16, us, true);
                        }
                        Some(_) => {}
                    }
                }
                CAction::Free { idx } => {
                    if let Some(i) = sh.pick(idx) {
                        let b = sh.take(i);
                        capi::free(b.ptr as *mut c_void);
                    }
                }
                CAction::FreeNull => capi::free(core::ptr::null_mut()),
                CAction::Realloc { idx, size } => {
                    let n = size.bytes().max(1);
                    if let Some(i) = sh.pick(idx) {
                        if sh.has_room(n) {
                            let b = sh.take(i);
                            let p = capi::realloc(b.ptr as *mut c_void, n).cast::<u8>();
                            assert!(!p.is_null(), "realloc to {n} failed");
                            let us = capi::malloc_usable_size(p.cast());
                            sh.add_realloc(b, p, n, us);
                        }
                    }
                }
                CAction::ReallocNull { size } => {
                    let n = size.bytes();
                    if sh.has_room(n) {
                        let p = capi::realloc(core::ptr::null_mut(), n).cast::<u8>();
                        let us = capi::malloc_usable_size(p.cast());
                        sh.add(p, n, 16, us, false);
                    }
                }
                CAction::ReallocZero { idx } => {
                    if let Some(i) = sh.pick(idx) {
                        let b = sh.take(i);
                        // glibc: realloc(p, 0) frees p and returns null.
                        let p = capi::realloc(b.ptr as *mut c_void, 0);
                        assert!(p.is_null(), "realloc(p, 0) returned a block");
                    }
                }
                CAction::ReallocArray { idx, n, size, wide } => {
                    let (n, s) = if wide {
                        (usize::MAX / 4 + usize::from(n), usize::from(size) | 4)
                    } else {
                        (usize::from(n % 64) + 1, usize::from(size % 256) + 1)
                    };
                    if let Some(i) = sh.pick(idx) {
                        match n.checked_mul(s) {
                            None => {
                                // Overflow: null, and the old block is untouched.
                                let p = sh.blocks[i].ptr as *mut c_void;
                                assert!(capi::reallocarray(p, n, s).is_null());
                            }
                            Some(t) if sh.has_room(t) => {
                                let b = sh.take(i);
                                let p = capi::reallocarray(b.ptr as *mut c_void, n, s).cast::<u8>();
                                assert!(!p.is_null(), "reallocarray to {t} failed");
                                let us = capi::malloc_usable_size(p.cast());
                                sh.add_realloc(b, p, t, us);
                            }
                            Some(_) => {}
                        }
                    }
                }
                CAction::PosixMemalign { align, size } => {
                    let align = usize::from(align) % 8192;
                    let n = size.bytes();
                    let mut out: *mut c_void = 8 as *mut c_void;
                    let valid = align.is_power_of_two() && align % 8 == 0;
                    if !valid {
                        assert_eq!(capi::posix_memalign(&mut out, align, n), libc::EINVAL);
                        assert_eq!(out as usize, 8, "posix_memalign wrote *out on error");
                    } else if sh.has_room(n + align) {
                        assert_eq!(capi::posix_memalign(&mut out, align, n), 0);
                        let p = out.cast::<u8>();
                        let us = capi::malloc_usable_size(out);
                        sh.add(p, n, align, us, false);
                    }
                }
                CAction::AlignedAlloc { align_log2, size } => {
                    let align = 1usize << (align_log2 % 14);
                    let n = size.bytes();
                    if align_log2 % 29 == 28 {
                        assert!(capi::aligned_alloc(24, n).is_null(), "aligned_alloc(24)");
                    } else if sh.has_room(n + align) {
                        let p = capi::aligned_alloc(align, n).cast::<u8>();
                        let us = capi::malloc_usable_size(p.cast());
                        sh.add(p, n, align, us, false);
                    }
                }
                CAction::Memalign { align, size } => {
                    // memalign rounds a non-power-of-two alignment up.
                    let align = usize::from(align) % 5000;
                    let eff = align.max(1).next_power_of_two();
                    let n = size.bytes();
                    if sh.has_room(n + eff) {
                        let p = capi::memalign(align, n).cast::<u8>();
                        let us = capi::malloc_usable_size(p.cast());
                        sh.add(p, n, eff, us, false);
                    }
                }
                CAction::UsableSize { idx } => {
                    if let Some(i) = sh.pick(idx) {
                        let b = sh.blocks[i];
                        assert!(capi::malloc_usable_size(b.ptr as *mut c_void) >= b.req);
                    }
                }
                CAction::UsableSizeNull => {
                    assert_eq!(capi::malloc_usable_size(core::ptr::null_mut()), 0);
                }
                CAction::Trim { pad } => {
                    capi::malloc_trim(usize::from(pad) << 10);
                }
            }
        }
        if steps % CHECK_EVERY == 0 {
            check_global_arenas(steps);
        }
    }
    while let Some(i) = sh.blocks.len().checked_sub(1) {
        // SAFETY: live.
        let b = unsafe { sh.take(i) };
        // SAFETY: a live block of the global heap.
        unsafe { capi::free(b.ptr as *mut c_void) };
    }
    check_global_arenas(steps);
}

/// Checks the global heap's arenas and this thread's cache (other threads' caches may be in use,
/// so they are not walked).
pub fn check_global_arenas(when: usize) {
    let heap = &crate::global::HEAP;
    crate::global::ensure_init();
    for i in 0..heap.arena_count() {
        let g = heap.arena(i).lock();
        // SAFETY: lock held.
        if let Err(e) = unsafe { check::check_arena(&g) } {
            panic!("global heap arena {i} broken after step {when}: {e}");
        }
    }
    let tc = crate::global::current_cache();
    if tc as usize > 1 {
        // SAFETY: this thread's own cache.
        if let Err(e) = unsafe { check::check_tcache(&*tc) } {
            panic!("this thread's cache broken after step {when}: {e}");
        }
    }
}

// --- GlobalAlloc ---

/// One step of the global-allocator target.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum GAction {
    Alloc {
        size: Size,
        align_log2: u8,
        zeroed: bool,
    },
    Dealloc {
        idx: u16,
    },
    Realloc {
        idx: u16,
        size: Size,
    },
    /// Churn through std collections (which use the binary's global allocator).
    Churn {
        n: u8,
    },
}

/// `global` target: [`crate::ArenaMalloc`]'s `GlobalAlloc` methods against the shadow model,
/// plus std collections, which go through arena-malloc when the binary installs it as its
/// global allocator (as the fuzz target does, under AddressSanitizer).
pub fn run_global(data: &[u8]) {
    use core::alloc::{GlobalAlloc, Layout};
    let a = crate::ArenaMalloc;
    let mut u = Unstructured::new(data);
    let mut sh = Shadow::default();
    let mut steps = 0;
    while !u.is_empty() && steps < MAX_ACTIONS {
        let Ok(g) = GAction::arbitrary(&mut u) else {
            break;
        };
        steps += 1;
        // SAFETY: layouts are non-zero sized; every block handed back is live in the model,
        // with the layout it was allocated with.
        unsafe {
            match g {
                GAction::Alloc {
                    size,
                    align_log2,
                    zeroed,
                } => {
                    let n = size.bytes().max(1);
                    let align = 1usize << (align_log2 % 16);
                    if sh.has_room(n + align) {
                        let l = Layout::from_size_align(n, align).unwrap();
                        let p = if zeroed {
                            a.alloc_zeroed(l)
                        } else {
                            a.alloc(l)
                        };
                        assert!(!p.is_null(), "alloc({l:?}) failed");
                        let us = crate::global::usable_size(p);
                        sh.add(p, n, align, us, zeroed);
                    }
                }
                GAction::Dealloc { idx } => {
                    if let Some(i) = sh.pick(idx) {
                        let b = sh.take(i);
                        let l = Layout::from_size_align(b.req, b.align).unwrap();
                        a.dealloc(b.ptr as *mut u8, l);
                    }
                }
                GAction::Realloc { idx, size } => {
                    let n = size.bytes().max(1);
                    if let Some(i) = sh.pick(idx) {
                        if sh.has_room(n + sh.blocks[i].align) {
                            let b = sh.take(i);
                            let l = Layout::from_size_align(b.req, b.align).unwrap();
                            let p = a.realloc(b.ptr as *mut u8, l, n);
                            assert!(!p.is_null(), "realloc to {n} failed");
                            assert_eq!(p as usize % b.align, 0, "realloc lost alignment");
                            let us = crate::global::usable_size(p);
                            sh.add_realloc(b, p, n, us);
                            // Keep the alignment for the later dealloc's layout.
                            sh.blocks.last_mut().unwrap().align = b.align;
                        }
                    }
                }
                GAction::Churn { n } => {
                    let mut v: Vec<Vec<u8>> = Vec::new();
                    for i in 0..usize::from(n % 64) {
                        v.push(vec![i as u8; i * 7 + 1]);
                        if i % 3 == 0 {
                            v.swap_remove(i / 2);
                        }
                    }
                    for (i, x) in v.iter().enumerate() {
                        assert!(x.iter().all(|&b| b == x[0]), "std vec {i} corrupted");
                    }
                }
            }
        }
        if steps % CHECK_EVERY == 0 {
            check_global_arenas(steps);
        }
    }
    while let Some(i) = sh.blocks.len().checked_sub(1) {
        // SAFETY: live.
        let b = unsafe { sh.take(i) };
        let l = Layout::from_size_align(b.req, b.align).unwrap();
        // SAFETY: live block with this layout.
        unsafe { a.dealloc(b.ptr as *mut u8, l) };
    }
    check_global_arenas(steps);
}

#[cfg(test)]
mod tests;
