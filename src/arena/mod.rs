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
//! # Invariants
//! - A1: `top` is the last chunk of the current segment and ends at `seg_end`; its size is at
//!   least [`TOP_MIN`]; its `PREV_INUSE` bit is set (a free chunk below would have merged).
//! - A2: `committed == overhead + Σ sizes of chunks in every segment + top size`.
//! - A3: memory of the current segment at or above `top_fresh` has never been written since
//!   it was committed (reads as zero).
//! - A4: chunks pushed on `remote` are in use from the arena's view (their frees are pending).
//! - A5: `quick_count[c]` is the number of chunks on quick list `c`, `quick_low[c] ≤
//!   quick_count[c]`, and `quick_bytes` is the sum of their sizes.

pub mod region;

use core::ptr;

use crossbeam_utils::CachePadded;

use crate::bins::{bin_index, BinIdx, Bins, FIRST_LARGE, SMALL_LIMIT, UNSORTED};
use crate::chunk::{
    Chunk, ALIGN, FENCE, FREE, HEADER, IN_REGION, IS_MMAPPED, MIN_CHUNK, PREV_INUSE, PURGED,
};
use crate::config::{
    BATCH_BLOCK_MAX, COMMIT_STEP, PURGE_DEBT, PURGE_MIN_CHUNK, REGION_SIZE, TRIM_ADAPT_MAX,
    TRIM_EPOCH,
};
use crate::os::{self, fatal};
use crate::shared::Shared;
use crate::size_class::{chunk_class, NSMALL_CLASSES, SMALL_MAX_REQUEST};
use crate::sync::{self, AtomicPtr, AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::tcache::link;

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
    /// Segments (start of first chunk, end), for the checker; the last is the current one.
    pub segs: [(usize, usize); MAX_SEGS],
    /// Number of valid entries in `segs` (saturates at `MAX_SEGS`).
    pub nsegs: usize,
    /// Regions this arena mapped (newest first, linked through their headers).
    pub regions: *mut RegionHeader,
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

/// Payload words of a bundle head before its member slots: link (2 words, as in cache lists)
/// and count.
const QUICK_HEAD_WORDS: usize = 3;

/// Most members a remote-list bundle holds (see [`remote_cap`]).
const REMOTE_CAP_MAX: usize = 64;

/// Members the head of a remote-list bundle of chunk size `size` holds: as for a quick bundle,
/// its payload words less the head words, at most `REMOTE_CAP_MAX`. A thread cache's flush
/// that finds the arena's lock busy pushes its chunks as bundles (`Heap::release_slice`): the
/// drainer then reads one head per bundle and never touches the members — on the remote path
/// each chunk it reads is a line written by another core.
pub fn remote_cap(size: usize) -> usize {
    ((size - HEADER) / 8)
        .saturating_sub(QUICK_HEAD_WORDS)
        .min(REMOTE_CAP_MAX)
}

/// Writes the member count of remote bundle head `h` (its cap is not 0).
///
/// # Safety
/// `h` is the payload of an in-use chunk the caller owns, with `remote_cap(size) > 0`.
pub unsafe fn remote_set_count(h: *mut u8, n: usize) {
    // SAFETY: forwarded.
    unsafe { quick_set_count(h, n) }
}

/// Stores member `p` in slot `i < remote_cap(size)` of remote bundle head `h`.
///
/// # Safety
/// As for [`remote_set_count`].
pub unsafe fn remote_slot_set(h: *mut u8, i: usize, p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { quick_slot_set(h, i, p) }
}

/// Members a bundle head of each class holds: its payload words less the head words (0 for
/// class 0, whose 16-byte payload has room for the link only: a plain list).
pub const QUICK_CAP: [usize; NSMALL_CLASSES] = {
    let mut t = [0usize; NSMALL_CLASSES];
    let mut i = 0;
    while i < NSMALL_CLASSES {
        let words = (i + 1) * 16 / 8;
        t[i] = words.saturating_sub(QUICK_HEAD_WORDS);
        i += 1;
    }
    t
};

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
            regions: ptr::null_mut(),
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

    /// Pushes a chain of chunks (payloads linked head → … → tail through `tcache::link`) whose
    /// frees are pending; the next lock holder frees them.
    ///
    /// # Safety
    /// Every chunk in the chain belongs to this arena, is in use, and is owned by the caller.
    pub unsafe fn push_remote(&self, head: *mut u8, tail: *mut u8, bytes: usize) {
        // Counted before the chain is published, so that the drainer's `fetch_sub` (after its
        // Acquire swap) can never run first and wrap the figure below zero (loom_stats).
        let late = sync::mutation::on("remote_bytes_late");
        if !late {
            self.remote_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        let mut old = self.remote.load(Ordering::Relaxed);
        // Mutation (loom check): a plain store in place of the CAS, so that two pushers can
        // lose one another's chain.
        if sync::mutation::on("remote_push_lost") {
            // SAFETY: the caller owns `tail`.
            unsafe { link::set(tail, old) };
            self.remote.store(head, Ordering::Release);
            return;
        }
        loop {
            // SAFETY: the caller owns `tail`.
            unsafe { link::set(tail, old) };
            // Release: pairs with the Acquire swap in `drain_remote`, publishing the links and
            // the chunks' contents.
            // Mutation (loom check): the push forgets to publish.
            let ord = if sync::mutation::on("remote_push_relaxed") {
                Ordering::Relaxed
            } else {
                Ordering::Release
            };
            match self
                .remote
                .compare_exchange_weak(old, head, ord, Ordering::Relaxed)
            {
                Ok(_) => {
                    // Mutation (loom check, see docs/loom.md): counted after publishing.
                    if late {
                        self.remote_bytes.fetch_add(bytes, Ordering::Relaxed);
                    }
                    return;
                }
                Err(cur) => old = cur,
            }
        }
    }

    /// Whether frees are pending on the remote list (a snapshot).
    pub fn has_remote(&self) -> bool {
        !self.remote.load(Ordering::Relaxed).is_null()
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
    /// Frees every chunk pending on the remote list.
    #[inline]
    pub fn drain_remote(&mut self) {
        if self.arena.remote.load(Ordering::Relaxed).is_null() {
            return;
        }
        // Acquire: pairs with the Release CAS in `push_remote`.
        // Mutation (loom check, see docs/loom.md): the drain forgets to acquire.
        let ord = if sync::mutation::on("remote_drain_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Acquire
        };
        // Mutation (loom check): a load and a store in place of the swap, so that a chain
        // pushed between the two is lost.
        let mut p = if sync::mutation::on("remote_drain_not_swapped") {
            let p = self.arena.remote.load(Ordering::Acquire);
            self.arena.remote.store(ptr::null_mut(), Ordering::Relaxed);
            p
        } else {
            self.arena.remote.swap(ptr::null_mut(), ord)
        };
        let sh = self.arena.shared();
        let mut bytes = 0;
        while !p.is_null() {
            // SAFETY: chunks on the remote list are in use, belong to this arena, and are ours
            // now (A4); the link, count and slots were written by the pusher before its
            // Release. Each entry is a bundle head: its members have its size and carry the
            // freed mark (they come from a thread cache), so they are released unread.
            unsafe {
                let next = link::get(p);
                let c = Chunk::from_payload(p);
                let size = c.size();
                let n = if remote_cap(size) > 0 {
                    quick_count_of(p)
                } else {
                    0
                };
                if n > remote_cap(size) {
                    fatal("malloc(): corrupted remote-free bundle (write after free?)");
                }
                for i in 0..n {
                    let m = Chunk::from_payload(quick_slot_get(p, i));
                    self.g.release_sized(sh, m, size, true);
                }
                bytes += size * (n + 1);
                self.g.release(sh, c);
                p = next;
            }
        }
        self.arena.remote_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The arena this guard locks.
    pub fn arena(&self) -> &Arena {
        self.arena
    }
}

// --- impl ArenaState: segments and growth ---

impl ArenaState {
    /// The growth kind in force.
    pub fn growth(&self) -> Growth {
        self.growth
    }

    /// End of the current segment's committed memory.
    pub fn seg_end(&self) -> usize {
        self.seg_end
    }

    fn push_seg(&mut self, start: usize, end: usize) {
        if self.nsegs < MAX_SEGS {
            self.segs[self.nsegs] = (start, end);
            self.nsegs += 1;
        }
    }

    fn set_seg_end(&mut self, sh: &Shared, end: usize) {
        self.seg_end = end;
        if self.nsegs > 0 && self.nsegs < MAX_SEGS {
            self.segs[self.nsegs - 1].1 = end;
        }
        if !self.region.is_null() && self.region_flag != 0 {
            // SAFETY: the current region's header stays mapped while the arena lives.
            unsafe { (*self.region).set_committed(end - self.region as usize) };
        } else if self.arena_is_main(sh) {
            sh.main_segs.set_last_end(end);
        }
    }

    fn arena_is_main(&self, sh: &Shared) -> bool {
        self.arena as usize == sh.main_arena()
    }

    /// Starts a new segment `[start, end)` (`start` 16-aligned, `end - start ≥ TOP_MIN`) inside
    /// the memory `base` points into, and retires the old top, if any, into the bins behind two
    /// fence posts.
    ///
    /// # Safety
    /// `[start, end)` is committed memory owned by this arena, reachable from `base`.
    unsafe fn start_segment(
        &mut self,
        sh: &Shared,
        base: *mut u8,
        start: usize,
        end: usize,
        region_flag: usize,
        had_top: bool,
    ) {
        let old_top = self.top;
        let old_flag = self.region_flag;
        // SAFETY: `start` is inside the memory `base` points into (non-null).
        let top = unsafe { Chunk::at(base.with_addr(start)) };
        // SAFETY: caller: committed and owned.
        unsafe { top.set_head(end - start, PREV_INUSE | region_flag | FREE) };
        self.top = top;
        self.top_fresh = start + HEADER;
        self.region_flag = region_flag;
        self.seg_end = end;
        self.push_seg(start, end);
        if self.arena_is_main(sh) && region_flag == 0 {
            sh.main_segs.push(start, end);
        }
        if had_top {
            // SAFETY: the old top is a valid chunk of at least TOP_MIN bytes (A1).
            unsafe { self.retire(sh, old_top, old_flag) };
        }
    }

    /// Closes a segment whose top was `t`: a free chunk and two fence posts.
    unsafe fn retire(&mut self, sh: &Shared, t: Chunk, flag: usize) {
        // SAFETY: A1: t has at least TOP_MIN bytes, all ours.
        unsafe {
            let s = t.size();
            let body = s - 2 * FENCE;
            t.set_head(body, (t.flags() & PREV_INUSE) | flag);
            let f1 = t.plus(body);
            f1.set_head(FENCE, PREV_INUSE | flag);
            let f2 = f1.plus(FENCE);
            f2.set_head(FENCE, PREV_INUSE | flag);
            self.overhead += 2 * FENCE;
            self.free_chunk(sh, t);
        }
    }

    /// Makes the top at least `nb + TOP_MIN` bytes. False when the OS has no more memory.
    /// Callers have applied the quick lists' rule (`quick_before_growth`) first.
    unsafe fn grow(&mut self, sh: &Shared, nb: usize) -> bool {
        let before = self.committed;
        // SAFETY: forwarded.
        let grown = unsafe { self.grow_os(sh, nb) };
        if self.quick_bytes > 0 {
            self.quick_grown += self.committed.saturating_sub(before);
        }
        grown
    }

    unsafe fn grow_os(&mut self, sh: &Shared, nb: usize) -> bool {
        // SAFETY: top is valid (A1).
        let top_size = unsafe { self.top.size() };
        let need = nb + TOP_MIN - top_size.min(nb + TOP_MIN);
        let pad = sh.top_pad;
        // SAFETY: each growth path only touches memory it maps or commits.
        unsafe {
            match self.growth {
                Growth::Brk => {
                    if self.grow_brk(sh, nb, need + pad) || self.grow_brk(sh, nb, need) {
                        return true;
                    }
                }
                Growth::Reserve | Growth::Regions => {
                    if self.grow_commit(sh, need + pad) || self.grow_commit(sh, need) {
                        return true;
                    }
                }
            }
            self.new_region(sh, nb)
        }
    }

    unsafe fn grow_commit(&mut self, sh: &Shared, need: usize) -> bool {
        if self.reserve_end == 0 {
            return false;
        }
        let step = match os::page_align_up(need.max(COMMIT_STEP)) {
            Some(s) => s,
            None => return false,
        };
        let step = if self.seg_end + step > self.reserve_end {
            os::page_align_up(need).unwrap_or(usize::MAX)
        } else {
            step
        };
        if step > self.reserve_end - self.seg_end {
            return false;
        }
        let at = self.top.ptr().with_addr(self.seg_end);
        // SAFETY: [seg_end, seg_end+step) is reserved by this arena and page aligned.
        if !unsafe { os::commit(at, step) } {
            return false;
        }
        // SAFETY: top is valid; it now extends over the committed pages.
        unsafe {
            let t = self.top;
            t.set_head(t.size() + step, t.flags());
        }
        self.committed += step;
        self.set_seg_end(sh, self.seg_end + step);
        self.note_growth(sh);
        true
    }

    unsafe fn grow_brk(&mut self, sh: &Shared, nb: usize, need: usize) -> bool {
        let ps = os::page_size();
        let incr = match need.checked_add(2 * ps) {
            Some(v) if v < isize::MAX as usize / 2 => (v) & !(ps - 1),
            _ => return false,
        };
        // SAFETY: we hold the main arena lock, and the crate owns the break (use_brk).
        let Some(base) = (unsafe { os::sbrk(incr as isize) }) else {
            return false;
        };
        self.committed += incr;
        if base as usize == self.seg_end && self.seg_end != 0 {
            // SAFETY: contiguous: the top now extends to the new break.
            unsafe {
                let t = self.top;
                t.set_head(t.size() + incr, t.flags());
            }
            self.set_seg_end(sh, self.seg_end + incr);
            self.note_growth(sh);
            return true;
        }
        // Someone else moved the break (or this is the first segment): start a new segment.
        let start = (base as usize + ALIGN - 1) & !(ALIGN - 1);
        let end = base as usize + incr;
        self.overhead += start - base as usize;
        if end - start < nb + TOP_MIN {
            // Too small to be useful: keep it as a closed segment of its own.
        }
        let had_top = self.seg_end != 0;
        // SAFETY: [start, end) is ours, fresh from sbrk.
        unsafe { self.start_segment(sh, base, start, end, 0, had_top) };
        // SAFETY: top valid.
        unsafe { self.top.size() >= nb + TOP_MIN }
    }

    /// Maps a new region for this arena and moves the top there.
    unsafe fn new_region(&mut self, sh: &Shared, nb: usize) -> bool {
        let hdr = region::FIRST_CHUNK_OFFSET;
        let Some(want) = os::page_align_up(hdr + nb + TOP_MIN + sh.top_pad) else {
            return false;
        };
        let want = want.clamp(COMMIT_STEP, REGION_SIZE);
        if hdr + nb + TOP_MIN > want {
            return false;
        }
        let Some(r) = RegionHeader::map(self.arena, self.regions, want, sh.region_kind()) else {
            return false;
        };
        self.regions = r;
        self.region = r;
        let base = r as usize;
        self.reserve_end = base + REGION_SIZE;
        self.growth = Growth::Regions;
        self.committed += want;
        self.overhead += hdr;
        let had_top = self.seg_end != 0;
        // SAFETY: the region's committed part is ours.
        unsafe { self.start_segment(sh, r.cast(), base + hdr, base + want, IN_REGION, had_top) };
        true
    }

    /// Sets up the first segment of a thread arena that lives at the start of region `r`
    /// (`first` is the address of its first chunk, `committed` the committed bytes).
    ///
    /// # Safety
    /// `r` is a freshly mapped region whose first `committed` bytes are committed.
    pub unsafe fn first_region(
        &mut self,
        sh: &Shared,
        r: *mut RegionHeader,
        first: usize,
        committed: usize,
    ) {
        self.regions = r;
        self.region = r;
        let base = r as usize;
        self.reserve_end = base + REGION_SIZE;
        self.growth = Growth::Regions;
        self.committed = committed;
        self.overhead = first - base;
        // SAFETY: forwarded.
        unsafe { self.start_segment(sh, r.cast(), first, base + committed, IN_REGION, false) };
    }

    /// Sets up the first segment of the main arena: inside a reservation `[base, base+len)` of
    /// which `committed` bytes are committed, or (when `len == 0`) from the break.
    ///
    /// # Safety
    /// The reservation is owned by this arena.
    pub unsafe fn first_reserve(
        &mut self,
        sh: &Shared,
        base: *mut u8,
        len: usize,
        committed: usize,
    ) {
        self.reserve_end = base as usize + len;
        self.committed = committed;
        self.overhead = 0;
        // SAFETY: forwarded.
        unsafe { self.start_segment(sh, base, base as usize, base as usize + committed, 0, false) };
    }

    /// Sets up the main arena on the program break; false if `sbrk` fails.
    ///
    /// # Safety
    /// The crate owns the break.
    pub unsafe fn first_brk(&mut self, sh: &Shared) -> bool {
        // SAFETY: forwarded.
        unsafe { self.grow_brk(sh, 0, COMMIT_STEP) }
    }

    /// Falls back to regions from the start (when the main arena's reservation failed).
    ///
    /// # Safety
    /// The arena has no segment yet.
    pub unsafe fn first_fallback(&mut self, sh: &Shared) -> bool {
        // SAFETY: forwarded.
        unsafe { self.new_region(sh, 0) }
    }
}

// --- impl ArenaState: allocation ---

impl ArenaState {
    #[inline]
    unsafe fn take_whole(&mut self, c: Chunk, size: usize) {
        // SAFETY: c is free, unlinked, valid; its next header is ours.
        unsafe {
            let f = c.flags() & (PREV_INUSE | IN_REGION);
            c.set_head(size, f);
            c.plus(size).set_prev_inuse(true);
        }
    }

    /// Splits an unlinked free chunk `c` of `size` bytes into an in-use chunk of `nb` bytes and a
    /// free remainder (into the unsorted bin) when the remainder can be a chunk.
    #[inline]
    unsafe fn split(&mut self, c: Chunk, size: usize, nb: usize) {
        // Planted bug (`--cfg fuzz_mutation`, never in real builds): an off-by-16 in splitting
        // hands out a chunk 16 bytes short, which the `ops` fuzz target must find (docs/fuzzing.md).
        #[cfg(fuzz_mutation)]
        let nb = if nb > MIN_CHUNK && size - nb >= MIN_CHUNK {
            nb - 16
        } else {
            nb
        };
        // SAFETY: c is valid and ours; the remainder lies inside it.
        unsafe {
            let r = size - nb;
            if r >= MIN_CHUNK {
                let f = c.flags() & (PREV_INUSE | IN_REGION);
                c.set_head(nb, f);
                let rem = c.plus(nb);
                rem.set_head(r, PREV_INUSE | (f & IN_REGION) | FREE);
                rem.set_foot(r);
                self.bins.push_unsorted(rem, r);
            } else {
                self.take_whole(c, size);
            }
        }
    }

    /// Takes a free chunk out of its bin and splits it for a request of `nb` bytes.
    #[inline]
    unsafe fn take_split(&mut self, c: Chunk, nb: usize) -> Got {
        // SAFETY: caller: `c` is a free chunk in this arena's bins, at least `nb` bytes.
        unsafe {
            let size = c.size();
            self.bins.unlink(c, size);
            self.split(c, size, nb);
        }
        Got {
            chunk: c,
            zeroed: false,
        }
    }

    /// Allocates a chunk of exactly `nb` bytes (a multiple of 16, ≥ `MIN_CHUNK`) or a little more.
    ///
    /// # Safety
    /// Lock held (guaranteed by `&mut`); `nb` is a normalised chunk size.
    pub unsafe fn malloc_chunk(&mut self, sh: &Shared, nb: usize) -> Option<Got> {
        // SAFETY: every chunk reached below is in this arena's quick lists, bins or top.
        unsafe {
            if let Some(c) = self.pop_quick(nb) {
                return Some(Got {
                    chunk: c,
                    zeroed: false,
                });
            }
            self.quick_tick(sh, nb, 1);
            loop {
                if let Some(g) = self.malloc_binned(nb) {
                    return Some(g);
                }
                // Top must grow for this request: the quick lists' rule decides first, and
                // when it merged chunks the bins are searched again.
                let ts = self.top.size();
                if self.quick_bytes == 0
                    || ts >= nb + TOP_MIN
                    || self.quick_before_growth(sh, nb + TOP_MIN - ts)
                {
                    break;
                }
            }
            match self.take_top(sh, nb) {
                None if self.quick_bytes > 0 => {
                    // The OS has no more memory: whatever the quick lists hold may serve it.
                    self.consolidate(sh);
                    self.malloc_binned(nb).or_else(|| self.take_top(sh, nb))
                }
                got => got,
            }
        }
    }

    /// The bins' part of [`ArenaState::malloc_chunk`]: exact small bin, unsorted bin, best fit,
    /// the next non-empty bin; `None` when only top (or growth) can serve `nb` bytes.
    ///
    /// # Safety
    /// As for [`ArenaState::malloc_chunk`].
    unsafe fn malloc_binned(&mut self, nb: usize) -> Option<Got> {
        // SAFETY: every chunk reached below is in this arena's bins.
        unsafe {
            if nb < SMALL_LIMIT {
                if let Some(c) = self.bins.last(bin_index(nb)) {
                    self.bins.unlink(c, nb);
                    self.take_whole(c, nb);
                    return Some(Got {
                        chunk: c,
                        zeroed: false,
                    });
                }
            }
            let mut iters = 0;
            while let Some(c) = self.bins.last(UNSORTED) {
                let size = c.size();
                if size < MIN_CHUNK || !c.tag_ok() {
                    fatal("malloc(): corrupted chunk in the unsorted bin (heap overflow?)");
                }
                self.bins.unlink(c, size);
                if size == nb {
                    self.take_whole(c, size);
                    return Some(Got {
                        chunk: c,
                        zeroed: false,
                    });
                }
                if nb < SMALL_LIMIT && size >= nb + MIN_CHUNK && self.bins.is_empty(UNSORTED) {
                    // The last recently freed chunk: carve small requests from it for locality.
                    self.split(c, size, nb);
                    return Some(Got {
                        chunk: c,
                        zeroed: false,
                    });
                }
                self.bins.push_sorted(c, size);
                iters += 1;
                if iters >= 4096 {
                    break;
                }
            }
            let idx = bin_index(nb);
            if idx.0 >= FIRST_LARGE {
                if let Some(c) = self.bins.best_fit(idx, nb) {
                    return Some(self.take_split(c, nb));
                }
            }
            if let Some(b) = self.bins.first_nonempty_from(idx.0 + 1) {
                let c = match self.bins.first(b) {
                    Some(c) => c,
                    None => fatal("bin bitmap out of sync with its bins"),
                };
                return Some(self.take_split(c, nb));
            }
            None
        }
    }

    /// Takes a chunk of exactly `nb` bytes from its quick list, if any.
    #[inline]
    unsafe fn pop_quick(&mut self, nb: usize) -> Option<Chunk> {
        if nb > SMALL_MAX_REQUEST + HEADER || self.quick_bytes == 0 {
            return None;
        }
        let cls = chunk_class(nb)?.0;
        // SAFETY: forwarded.
        let p = unsafe { self.pop_class(cls) };
        if p.is_null() {
            None
        } else {
            // SAFETY: quick-list members are in-use chunks of this arena.
            Some(unsafe { Chunk::from_payload(p) })
        }
    }

    /// Pops one payload of class `cls` (null when the list is empty): the newest member of
    /// the head bundle, or the head itself once it holds none.
    #[inline]
    unsafe fn pop_class(&mut self, cls: usize) -> *mut u8 {
        let h = self.quick[cls];
        if h.is_null() {
            return ptr::null_mut();
        }
        let cap = QUICK_CAP[cls];
        // SAFETY: `h` is a bundle head written by `push_class`: its payload holds the link,
        // and (when `cap > 0`) the count and `cap` slots.
        let p = unsafe {
            let n = if cap > 0 { quick_count_of(h) } else { 0 };
            if n > cap {
                fatal("malloc(): corrupted quick list (write after free?)");
            }
            if n > 0 {
                let m = quick_slot_get(h, n - 1);
                quick_set_count(h, n - 1);
                m
            } else {
                self.quick[cls] = link::get(h);
                h
            }
        };
        let c = self.quick_count[cls] - 1;
        self.quick_count[cls] = c;
        self.quick_low[cls] = self.quick_low[cls].min(c);
        self.quick_bytes -= crate::size_class::CLASS_CHUNK_SIZE[cls];
        p
    }

    /// Pushes payload `p` (an in-use chunk of class `cls`, ours) on its quick list: into the
    /// head bundle while it has room, else as the head of a new bundle.
    #[inline]
    unsafe fn push_class(&mut self, cls: usize, p: *mut u8, marked: bool) {
        let h = self.quick[cls];
        let cap = QUICK_CAP[cls];
        // SAFETY: caller: `p` is ours; `h` is null or a bundle head of this class.
        unsafe {
            let n = if cap > 0 && !h.is_null() {
                quick_count_of(h)
            } else {
                cap
            };
            if n < cap {
                quick_slot_set(h, n, p);
                quick_set_count(h, n + 1);
                // The member is marked freed like any cached chunk (a second free aborts); a
                // chunk from a thread cache carries the mark already, and writing it again
                // would be a store to a line that is often no longer in the CPU cache.
                if !marked {
                    link::set(p, ptr::null_mut());
                }
            } else {
                link::set(p, h);
                if cap > 0 {
                    quick_set_count(p, 0);
                }
                self.quick[cls] = p;
            }
        }
        self.quick_count[cls] += 1;
        self.quick_bytes += crate::size_class::CLASS_CHUNK_SIZE[cls];
    }

    /// Takes back an in-use chunk from a thread cache (or a remote list): small chunks go to
    /// their quick list whole, others are freed into the bins.
    ///
    /// # Safety
    /// As for [`ArenaState::free_chunk`].
    #[inline]
    pub unsafe fn release(&mut self, sh: &Shared, c: Chunk) {
        // SAFETY: caller: in-use chunk of ours.
        unsafe {
            // The chunk's own FREE bit is set in every state where it is not in use (in a bin,
            // merged into a neighbour or top: `free_chunk` leaves FREE in the stale header). The
            // next chunk's PREV_INUSE bit is not read here: it lies on another cache line, a miss
            // per chunk; `free_chunk` checks it when the chunk is consolidated.
            if c.is_free() {
                fatal("free(): double free (chunk is already free)");
            }
            self.release_sized(sh, c, c.size(), false);
        }
    }

    /// [`ArenaState::release`] of a chunk whose size the caller knows (a thread cache's stack
    /// holds chunks of exactly its class, checked when they were freed): a small chunk goes
    /// to its quick list without its header being read — for a cache flush, whose chunks are
    /// often no longer in the CPU cache, that read was a miss per chunk.
    ///
    /// # Safety
    /// As for [`ArenaState::release`]; `size` is the chunk's size; `marked`: its payload carries
    /// the freed mark already (a thread cache's chunk: see `tcache::link`).
    #[inline]
    pub unsafe fn release_sized(&mut self, sh: &Shared, c: Chunk, size: usize, marked: bool) {
        // SAFETY: caller: in-use chunk of ours of `size` bytes.
        unsafe {
            if size <= SMALL_MAX_REQUEST + HEADER {
                if let Some(cls) = chunk_class(size) {
                    self.push_class(cls.0, c.payload(), marked);
                    if self.quick_bytes > sh.quick_max {
                        self.consolidate(sh);
                    }
                    return;
                }
            }
            self.free_chunk(sh, c);
            self.quick_tick(sh, size, 1);
        }
    }

    /// Advances the aging clocks by `n` chunks of `size` bytes of traffic outside the quick
    /// lists: reviews the quick lists once per epoch, and ends a trim epoch (`trim_epoch_end`)
    /// every `max(TRIM_EPOCH, 4 × trim_floor)` bytes.
    #[inline]
    fn quick_tick(&mut self, sh: &Shared, size: usize, n: usize) {
        self.quick_clock += size * n;
        self.quick_ops += n;
        self.trim_clock += size * n;
        if self.trim_clock >= TRIM_EPOCH.max(self.trim_floor.saturating_mul(4)) {
            self.trim_epoch_end(sh);
        }
        if self.quick_clock >= QUICK_EPOCH.max(self.quick_bytes.saturating_mul(2))
            && self.quick_ops >= self.quick_ops_due
        {
            self.quick_epoch_end(sh);
        }
    }

    /// The clock reached its byte mark: the epoch ends (`quick_review`) once it also has a
    /// quarter as many operations as the quick lists hold chunks. A review may merge every
    /// chunk, each a `free_chunk` on cold memory (~70 ns), so this keeps its cost within about
    /// four merges per operation of the epoch (one per operation kept `c-mixed`'s chunks
    /// unmerged long enough to raise its peak RSS from 45 to 50 MiB). Bytes alone let a few hundred reallocs of a 256 KiB block
    /// (~100 MB of clock) end two epochs and merge the 100 000 chunks a batch of small blocks
    /// had left (~7 ms) inside `micro`'s realloc pattern, where the next batch wanted them back.
    #[cold]
    #[inline(never)]
    fn quick_epoch_end(&mut self, sh: &Shared) {
        let chunks = self.quick_count.iter().map(|&c| c as usize).sum::<usize>() / 4;
        if self.quick_ops < chunks {
            self.quick_ops_due = chunks;
            return;
        }
        self.quick_review(sh);
    }

    /// The aging rule: every chunk count that stayed in a quick list through a whole epoch
    /// (its class's low-water mark) was not needed in that time; that many chunks of the class
    /// are merged into the bins, where they coalesce and become trimmable and purgeable. Lists
    /// that were drained at some point of the epoch are kept whole.
    #[cold]
    fn quick_review(&mut self, sh: &Shared) {
        self.quick_clock = 0;
        self.quick_ops = 0;
        self.quick_ops_due = 0;
        self.quick_grown = 0;
        self.merge_idle(sh);
        self.quick_low = self.quick_count;
    }

    /// The time-based side of the aging rules, for an arena whose traffic is too light (or
    /// absent: its threads are gone or blocked) for the traffic clocks to move: every
    /// [`QUICK_REVIEW_MS`] the quick lists are reviewed (the chunks untouched for a whole
    /// interval are merged into the bins, where they coalesce and become trimmable), and once
    /// a purge delay has passed with large free chunks freed or aged since the last pass, a
    /// purge pass runs. Called under the lock by other threads' cache collections
    /// (`Heap::decay_arenas`), with the time.
    pub fn decay(&mut self, sh: &Shared, now: u64) {
        if self.quick_bytes > 0 && now.wrapping_sub(self.quick_review_ms) >= QUICK_REVIEW_MS {
            self.quick_review_ms = now;
            self.quick_review(sh);
        }
        if (self.purge_debt > 0 || self.purge_aged)
            && now.wrapping_sub(self.last_purge_ms) >= sh.purge_delay_ms as u64
        {
            self.last_purge_ms = now;
            self.purge();
        }
    }

    /// Merges, per class, the chunks that stayed untouched since the last review (its low-water
    /// mark) into the bins. The marks are left stale; the caller sets them.
    fn merge_idle(&mut self, sh: &Shared) {
        for cls in 0..NSMALL_CLASSES {
            for _ in 0..self.quick_low[cls] {
                // SAFETY: the list holds at least `quick_low[cls]` chunks (the low-water mark
                // never exceeds the count); members are in-use chunks of this arena.
                unsafe {
                    let p = self.pop_class(cls);
                    if p.is_null() {
                        break;
                    }
                    self.free_chunk(sh, Chunk::from_payload(p));
                }
            }
        }
    }

    /// The quick lists' rule before the arena grows its top by `need` bytes while they hold
    /// chunks. Returns true when the growth may go ahead; false when it merged chunks instead,
    /// after which the caller searches the bins again.
    ///
    /// First the idle chunks are merged (what the next review would merge: untouched since the
    /// last one). When there were none, every chunk left was used this epoch and the program is
    /// likely to want it back — right after a big batch of small blocks, merging them would cost
    /// ~70 ns each (cold headers and neighbours) only for the next batch to carve them out of
    /// the bins again — so the arena grows instead, by at most `1 / QUICK_GROW_SHARE` of the
    /// bytes they hold per epoch (`quick_grown`, counted by `grow`). Beyond that, everything is
    /// merged (what every growth did before).
    #[cold]
    #[inline(never)]
    fn quick_before_growth(&mut self, sh: &Shared, need: usize) -> bool {
        if self.quick_low.iter().any(|&l| l > 0) {
            self.merge_idle(sh);
            // The chunks left were all pushed after their list's low point: none is idle.
            self.quick_low = [0; NSMALL_CLASSES];
            return false;
        }
        if self.quick_grown.saturating_add(need) <= self.quick_bytes / QUICK_GROW_SHARE {
            return true;
        }
        self.consolidate(sh);
        false
    }

    /// Frees every quick-list chunk into the bins (coalescing).
    pub fn consolidate(&mut self, sh: &Shared) {
        if self.quick_bytes == 0 {
            return;
        }
        self.quick_grown = 0;
        for cls in 0..NSMALL_CLASSES {
            loop {
                // SAFETY: quick-list members are in-use chunks of this arena.
                unsafe {
                    let p = self.pop_class(cls);
                    if p.is_null() {
                        break;
                    }
                    self.free_chunk(sh, Chunk::from_payload(p));
                }
            }
            self.quick_low[cls] = 0;
        }
    }

    /// Calls `f` on every quick-list payload (checkers).
    pub fn for_each_quick(&self, mut f: impl FnMut(usize, *mut u8)) {
        for (cls, &cap) in QUICK_CAP.iter().enumerate() {
            let mut h = self.quick[cls];
            while !h.is_null() {
                f(cls, h);
                // SAFETY: bundle heads and their slots were written by `push_class`.
                unsafe {
                    let n = if cap > 0 {
                        quick_count_of(h).min(cap)
                    } else {
                        0
                    };
                    for i in 0..n {
                        f(cls, quick_slot_get(h, i));
                    }
                    h = link::get(h);
                }
            }
        }
    }

    /// Chunks in quick list `cls` (checkers).
    pub fn quick_count(&self, cls: usize) -> usize {
        self.quick_count[cls] as usize
    }

    unsafe fn take_top(&mut self, sh: &Shared, nb: usize) -> Option<Got> {
        // SAFETY: top valid (A1); growth keeps it valid.
        unsafe {
            if self.top.size() < nb + TOP_MIN && !self.grow(sh, nb) {
                return None;
            }
            let t = self.top;
            let ts = t.size();
            let f = t.flags() & (PREV_INUSE | IN_REGION);
            let zeroed = t.addr() + HEADER >= self.top_fresh;
            t.set_head(nb, f);
            let nt = t.plus(nb);
            nt.set_head(ts - nb, PREV_INUSE | (f & IN_REGION) | FREE);
            self.top = nt;
            self.top_fresh = self.top_fresh.max(nt.addr() + HEADER);
            self.top_low = self.top_low.min(ts - nb);
            Some(Got { chunk: t, zeroed })
        }
    }

    /// Allocates up to `n` chunks of exactly `nb` bytes under one lock hold, handing each to
    /// `sink` with whether its payload carries the freed mark already (a quick-list chunk);
    /// returns how many it gave: the quick list and the exact small bin first, then blocks cut
    /// into pieces — one for all the rest, or for chunks above the small classes blocks of at
    /// most `BATCH_BLOCK_MAX` bytes each (two chunks at least).
    ///
    /// # Safety
    /// As for [`ArenaState::malloc_chunk`].
    pub unsafe fn malloc_batch(
        &mut self,
        sh: &Shared,
        nb: usize,
        n: usize,
        mut sink: impl FnMut(Chunk, bool),
    ) -> usize {
        let mut k = 0;
        // SAFETY: as in `malloc_chunk`.
        unsafe {
            if self.quick_bytes > 0 && nb <= SMALL_MAX_REQUEST + HEADER {
                if let Some(cls) = chunk_class(nb) {
                    while k < n {
                        let p = self.pop_class(cls.0);
                        if p.is_null() {
                            break;
                        }
                        sink(Chunk::from_payload(p), true);
                        k += 1;
                    }
                }
            }
            if k == n {
                return k;
            }
            self.quick_tick(sh, nb, n - k);
            if nb < SMALL_LIMIT {
                let i = bin_index(nb);
                while k < n {
                    let Some(c) = self.bins.last(i) else { break };
                    self.bins.unlink(c, nb);
                    self.take_whole(c, nb);
                    sink(c, false);
                    k += 1;
                }
            }
            if k == n {
                return k;
            }
            // Blocks for the rest, each cut into pieces; above the small classes each block is
            // of at most `BATCH_BLOCK_MAX` bytes (two chunks at least), so that the holes of a
            // fragmented heap can serve it (one block of the whole rest, up to 32 KiB, came
            // from top or a large free chunk, often purged: `c-mixed`'s peak RSS +10 %). Every
            // block takes at least one chunk, so the loop ends.
            let per_block = if nb > SMALL_MAX_REQUEST + HEADER {
                (BATCH_BLOCK_MAX / nb).max(2)
            } else {
                n
            };
            while k < n {
                let rest = (n - k).min(per_block);
                let got = if rest > 1 {
                    self.malloc_chunk(sh, nb * rest)
                } else {
                    None
                };
                let Some(g) = got else {
                    // One at a time (memory is short, or one chunk is left); a chunk that
                    // absorbed a remainder goes back, and the tries are bounded.
                    let n = k + rest;
                    let mut tries = 2 * rest;
                    while k < n && tries > 0 {
                        tries -= 1;
                        let Some(g) = self.malloc_chunk(sh, nb) else {
                            break;
                        };
                        let sz = g.chunk.size();
                        if sz == nb {
                            sink(g.chunk, false);
                            k += 1;
                        } else {
                            self.release_sized(sh, g.chunk, sz, false);
                        }
                    }
                    break;
                };
                let c = g.chunk;
                let total = c.size();
                let f = c.flags() & (PREV_INUSE | IN_REGION);
                let rf = f & IN_REGION;
                let mut off = 0;
                for i in 0..rest {
                    let piece = c.plus(off);
                    let sz = if i + 1 == rest { total - off } else { nb };
                    piece.set_head(sz, if i == 0 { f } else { PREV_INUSE | rf });
                    if sz == nb {
                        sink(piece, false);
                        k += 1;
                    } else {
                        // The last piece absorbed a remainder too small to split off.
                        self.release_sized(sh, piece, sz, false);
                    }
                    off += sz;
                }
            }
        }
        k
    }

    /// Allocates a chunk whose payload is aligned to `align` (a power of two > 16).
    ///
    /// # Safety
    /// As for [`ArenaState::malloc_chunk`].
    pub unsafe fn memalign_chunk(&mut self, sh: &Shared, align: usize, nb: usize) -> Option<Got> {
        let want = nb.checked_add(align)?.checked_add(MIN_CHUNK)?;
        // SAFETY: the chunk is ours; the split points lie inside it.
        unsafe {
            let g = self.malloc_chunk(sh, want)?;
            let mut c = g.chunk;
            let p = c.payload() as usize;
            if p & (align - 1) != 0 {
                let mut q = (p + align - 1) & !(align - 1);
                if q - p < MIN_CHUNK {
                    q += align;
                }
                let lead = q - p;
                let size = c.size();
                let f = c.flags() & (PREV_INUSE | IN_REGION);
                let nc = c.plus(lead);
                nc.set_head(size - lead, PREV_INUSE | (f & IN_REGION));
                c.set_head(lead, f);
                self.free_chunk(sh, c);
                c = nc;
            }
            self.shrink_chunk(sh, c, nb);
            Some(Got {
                chunk: c,
                zeroed: false,
            })
        }
    }
}

// --- impl ArenaState: free, resize, trim ---

impl ArenaState {
    /// Returns an in-use chunk to the arena, coalescing with free neighbours and top.
    ///
    /// # Safety
    /// `c` is an in-use chunk of this arena whose header tag was checked; lock held.
    pub unsafe fn free_chunk(&mut self, sh: &Shared, c: Chunk) {
        // SAFETY: c and its neighbours are chunks of this arena; every size read is checked
        // against the tags and boundary tags before it is used to move.
        unsafe {
            let mut c = c;
            let mut size = c.size();
            let flags = c.flags();
            if size < MIN_CHUNK || flags & IS_MMAPPED != 0 {
                fatal("free(): invalid chunk size");
            }
            if flags & FREE != 0 {
                fatal("free(): double free (chunk is already free)");
            }
            let rf = flags & IN_REGION;
            let next = c.plus(size);
            if !next.tag_ok() {
                fatal("free(): corrupted header of the next chunk (heap overflow?)");
            }
            if !next.prev_inuse() {
                fatal("free(): double free (chunk is already free)");
            }
            if !c.prev_inuse() {
                let ps = c.prev_size();
                let p = c.minus(ps);
                if ps < MIN_CHUNK || ps & (ALIGN - 1) != 0 || !p.tag_ok() || p.size() != ps {
                    fatal("free(): corrupted size vs. prev_size while coalescing");
                }
                // Leave FREE in the header that becomes stale, so a later free of it is
                // recognised as a double free.
                c.set_head(size, flags | FREE);
                self.bins.unlink(p, ps);
                c = p;
                size += ps;
            }
            if next == self.top {
                size += next.size();
                c.set_head(size, PREV_INUSE | rf | FREE);
                self.top = c;
                self.maybe_trim(sh);
                return;
            }
            let nsize = next.size();
            if nsize >= MIN_CHUNK && !next.inuse() {
                self.bins.unlink(next, nsize);
                size += nsize;
            } else {
                next.set_prev_inuse(false);
            }
            c.set_head(size, PREV_INUSE | rf | FREE);
            c.set_foot(size);
            if size >= PURGE_MIN_CHUNK {
                // Large free chunks go straight to their (short) sorted bins, where the purge
                // pass finds them without walking the unsorted bin.
                self.bins.push_sorted(c, size);
                self.purge_debt += size;
                if self.purge_debt >= PURGE_DEBT {
                    // A pass at most once per delay (the clock is read only once the debt
                    // is due; a coarse clock read costs a few nanoseconds).
                    let now = sh.now_ms();
                    if now.wrapping_sub(self.last_purge_ms) >= sh.purge_delay_ms as u64 {
                        self.last_purge_ms = now;
                        self.purge();
                    }
                }
            } else {
                self.bins.push_unsorted(c, size);
            }
        }
    }

    /// Shrinks an in-use chunk to `nb` bytes, freeing the tail when it can be a chunk.
    ///
    /// # Safety
    /// `c` is in use in this arena, `nb ≤ c.size()`, `nb` normalised.
    pub unsafe fn shrink_chunk(&mut self, sh: &Shared, c: Chunk, nb: usize) {
        // SAFETY: the tail lies inside c.
        unsafe {
            let size = c.size();
            if size - nb >= MIN_CHUNK {
                let f = c.flags() & (PREV_INUSE | IN_REGION);
                c.set_head(nb, f);
                let rem = c.plus(nb);
                rem.set_head(size - nb, PREV_INUSE | (f & IN_REGION));
                self.free_chunk(sh, rem);
            }
        }
    }

    /// Grows an in-use chunk in place from top or a free neighbour: to `want` bytes when there
    /// is room for them (top grows for them if it must), else to at least `nb`.
    ///
    /// # Safety
    /// `c` is in use in this arena; `c.size() < nb ≤ want`, both normalised.
    pub unsafe fn grow_chunk(&mut self, sh: &Shared, c: Chunk, nb: usize, want: usize) -> bool {
        // SAFETY: neighbours of c are chunks of this arena.
        unsafe {
            let size = c.size();
            let f = c.flags() & (PREV_INUSE | IN_REGION);
            let next = c.plus(size);
            if next == self.top {
                let mut target = want;
                let ts = next.size();
                if ts < want - size + TOP_MIN {
                    // The quick lists' rule (merge their chunks rather than grow) does not
                    // apply here: none of their chunks could merge into top (its lower
                    // neighbour is this block), so merging them would only move the block —
                    // as many bytes taken from the bins, a copy, and a place where it cannot
                    // grow again — and leave the lists' chunks merged for nothing. Whether the
                    // lists held chunks at this moment depended on when the cache collections
                    // and reviews last ran, and so did the speed of a growth loop (issue 29).
                    // Top grows by at most the block's own growth.
                    if !self.grow(sh, want - size) {
                        target = nb;
                        if self.top.size() < nb - size + TOP_MIN && !self.grow(sh, nb - size) {
                            return false;
                        }
                    }
                }
                if self.top != next {
                    return false; // growth moved top to a new segment
                }
                let extra = target - size;
                let ts = next.size();
                c.set_head(target, f);
                let nt = c.plus(target);
                nt.set_head(ts - extra, PREV_INUSE | (f & IN_REGION) | FREE);
                self.top = nt;
                self.top_fresh = self.top_fresh.max(nt.addr() + HEADER);
                return true;
            }
            let nsize = next.size();
            if nsize >= MIN_CHUNK && !next.inuse() && size + nsize >= nb {
                self.bins.unlink(next, nsize);
                let total = size + nsize;
                c.set_head(total, f);
                c.plus(total).set_prev_inuse(true);
                self.shrink_chunk(sh, c, want.min(total));
                return true;
            }
            false
        }
    }

    /// Carves `nb` bytes from the start of top, growing top when it lacks them: the new home
    /// of a large block that `realloc` must move, where its later growth is in place. Growing
    /// top for it (at most `nb` bytes) rather than taking a best fit from the bins is what
    /// makes a block that keeps growing stop moving: a best fit is hemmed in by its
    /// neighbours, and whether top happened to hold `nb` bytes depended on which time-based
    /// passes (cache collections, quick-list reviews) had run. The old block, freed by the
    /// caller, goes back to the bins.
    ///
    /// # Safety
    /// Lock held (guaranteed by `&mut`); `nb` is a normalised chunk size.
    pub unsafe fn take_top_for_move(&mut self, sh: &Shared, nb: usize) -> Option<Got> {
        // SAFETY: top valid (A1); `take_top` grows it when needed.
        unsafe { self.take_top(sh, nb) }
    }

    /// The automatic trim: when the free top exceeds the trim threshold or this arena's floor,
    /// whichever is more, all of it but `top_pad` goes back to the OS.
    fn maybe_trim(&mut self, sh: &Shared) {
        // SAFETY: top valid.
        let ts = unsafe { self.top.size() };
        if ts
            > sh.trim_threshold
                .load(Ordering::Relaxed)
                .max(self.trim_floor)
        {
            // SAFETY: lock held.
            if unsafe { self.trim(sh, sh.top_pad) } > 0 {
                self.just_trimmed = true;
            }
        }
    }

    /// Called after each growth: growing right after an automatic trim means the trim was
    /// wasted work (the pages fault in again), so this arena keeps more free top from now on
    /// (its floor doubles, from at least the trim threshold, up to `TRIM_ADAPT_MAX`).
    fn note_growth(&mut self, sh: &Shared) {
        if self.just_trimmed {
            self.just_trimmed = false;
            self.trim_thrash = true;
            let base = sh.trim_threshold.load(Ordering::Relaxed);
            self.trim_floor = (self.trim_floor.max(base) * 2).min(TRIM_ADAPT_MAX);
        }
    }

    /// The end of a trim epoch (`max(TRIM_EPOCH, 4 × trim_floor)` bytes of traffic outside
    /// the quick lists). The floor halves (to 0 once below the trim threshold) when nothing
    /// justified it during the epoch: no thrash, and the top never went below half the floor
    /// (the upper half of the memory it lets the arena keep stayed unused all along). The next
    /// free into top trims against the new floor: so a program that stops needing the memory
    /// gets it back after a few epochs of other work (a floor `F` is gone after about `8 × F`
    /// bytes of traffic), while one that uses it every epoch keeps it. The epoch's end itself
    /// trims nothing: trimming at an arbitrary point of a program's cycle (`compare`'s
    /// `realloc`) made it thrash again (55 000 page faults instead of 48 000, peak RSS +8 MiB).
    #[cold]
    #[inline(never)]
    fn trim_epoch_end(&mut self, sh: &Shared) {
        self.trim_clock = 0;
        // SAFETY: top valid (A1).
        let ts = unsafe { self.top.size() };
        let idle = self.top_low.min(ts) > self.trim_floor / 2;
        if !self.trim_thrash && idle && self.trim_floor > 0 {
            self.trim_floor /= 2;
            if self.trim_floor < sh.trim_threshold.load(Ordering::Relaxed) {
                self.trim_floor = 0;
            }
        }
        self.trim_thrash = false;
        // SAFETY: as above.
        self.top_low = unsafe { self.top.size() };
    }

    /// Free top that automatic trims keep (tests).
    #[cfg(test)]
    pub fn trim_floor(&self) -> usize {
        self.trim_floor
    }

    /// Gives back top memory above `pad` bytes to the OS. Returns the bytes released.
    ///
    /// # Safety
    /// Lock held.
    pub unsafe fn trim(&mut self, sh: &Shared, pad: usize) -> usize {
        let ps = os::page_size();
        // SAFETY: top valid.
        let ts = unsafe { self.top.size() };
        let keep = pad.saturating_add(TOP_MIN);
        if ts <= keep + ps {
            return 0;
        }
        let release = (ts - keep) & !(ps - 1);
        if release == 0 {
            return 0;
        }
        let new_end = self.seg_end - release;
        match (self.growth, self.region_flag) {
            (Growth::Brk, 0) => {
                // SAFETY: we own the break; shrink only while nobody moved it past us.
                unsafe {
                    match os::sbrk(0) {
                        Some(cur) if cur as usize == self.seg_end => {}
                        _ => return 0,
                    }
                    if os::sbrk(-(release as isize)).is_none() {
                        return 0;
                    }
                }
            }
            _ => {
                if new_end & (ps - 1) != 0 {
                    return 0;
                }
                // SAFETY: the released range is the top's tail, above its header, page aligned.
                unsafe { os::decommit(self.top.ptr().with_addr(new_end), release) };
            }
        }
        // SAFETY: the top keeps at least `keep` bytes.
        unsafe {
            let t = self.top;
            t.set_head(ts - release, t.flags());
        }
        self.committed -= release;
        self.set_seg_end(sh, new_end);
        self.top_fresh = self.top_fresh.min(new_end);
        release
    }

    /// Returns the OS pages inside large free chunks to the OS (`MADV_DONTNEED`). Large free
    /// chunks never wait in the unsorted bin (see `free_chunk`), so only the large bins are
    /// walked.
    pub fn purge(&mut self) -> usize {
        self.purge_pass()
    }

    /// Purges every large free chunk now, aged or not (`malloc_trim`).
    pub fn purge_all(&mut self) -> usize {
        self.purge_pass();
        self.purge_pass()
    }

    fn purge_pass(&mut self) -> usize {
        self.purge_debt = 0;
        let ps = os::page_size();
        let mut released = 0;
        let mut aged = false;
        let first = bin_index(PURGE_MIN_CHUNK).0;
        let mut visit = |c: Chunk| {
            // SAFETY: c is a free chunk in our bins; we keep its header and links intact and
            // release only whole OS pages strictly inside it.
            unsafe {
                let h = c.head();
                let size = c.size();
                if h & PURGED != 0 || size < PURGE_MIN_CHUNK {
                    return;
                }
                if h & crate::chunk::AGED == 0 {
                    // Free for less than one interval: purge it next time if it is still free
                    // (a chunk reused soon would only fault its pages in again).
                    c.set_head(size, c.flags() | crate::chunk::AGED);
                    aged = true;
                    return;
                }
                let lo = (c.addr() + 32 + ps - 1) & !(ps - 1);
                let hi = (c.addr() + size) & !(ps - 1);
                if hi > lo {
                    os::purge(c.ptr().with_addr(lo), hi - lo);
                    released += hi - lo;
                }
                c.set_head(size, c.flags() | PURGED);
            }
        };
        // SAFETY: lock held (by &mut self).
        unsafe {
            for i in first..crate::bins::NBINS {
                if self.bins.marked(BinIdx(i)) {
                    self.bins.for_each(BinIdx(i), &mut visit);
                }
            }
        }
        self.purge_aged = aged;
        released
    }
}

// --- quick-list bundles ---
//
// A bundle head's payload: words 0–1 the link to the next bundle (`tcache::link`, which also
// marks the head as freed), word 2 the member count, words 3.. the members' payload addresses,
// each stored XORed with its slot address (>> 12) and the process's link key, like links.

/// The member count of bundle head `h`.
///
/// # Safety
/// `h` is a bundle head of a class with `QUICK_CAP > 0`.
#[inline(always)]
unsafe fn quick_count_of(h: *mut u8) -> usize {
    // SAFETY: caller: word 2 lies in the payload.
    unsafe { h.cast::<usize>().add(2).read() }
}

/// Sets the member count of bundle head `h`.
///
/// # Safety
/// As for [`quick_count_of`]; `h` is ours.
#[inline(always)]
unsafe fn quick_set_count(h: *mut u8, n: usize) {
    // A freed payload is poisoned past its first 16 bytes (feature `asan`): the count's word
    // becomes addressable.
    crate::asan::unpoison(h.wrapping_add(16), 8);
    // SAFETY: caller: word 2 lies in the payload.
    unsafe { h.cast::<usize>().add(2).write(n) }
}

#[inline(always)]
fn quick_mangle(slot: *mut usize, v: usize) -> usize {
    v ^ (slot as usize >> 12) ^ crate::keys::KEYS.link.load(Ordering::Relaxed)
}

/// Stores member `p` in slot `i` of bundle head `h`.
///
/// # Safety
/// `i < QUICK_CAP` of `h`'s class; `h` is ours.
#[inline(always)]
unsafe fn quick_slot_set(h: *mut u8, i: usize, p: *mut u8) {
    // SAFETY: caller: the slot lies in the payload.
    unsafe {
        let slot = h.cast::<usize>().add(QUICK_HEAD_WORDS + i);
        // As in `quick_set_count` (feature `asan`).
        crate::asan::unpoison(slot.cast(), 8);
        slot.write(quick_mangle(slot, p.expose_provenance()));
    }
}

/// Member in slot `i` of bundle head `h`; aborts when the slot was overwritten.
///
/// # Safety
/// Slot `i` of `h` was written by [`quick_slot_set`].
#[inline(always)]
unsafe fn quick_slot_get(h: *mut u8, i: usize) -> *mut u8 {
    // SAFETY: caller: the slot lies in the payload.
    let v = unsafe {
        let slot = h.cast::<usize>().add(QUICK_HEAD_WORDS + i);
        quick_mangle(slot, slot.read())
    };
    if v & 15 != 0 || v == 0 {
        fatal("malloc(): corrupted quick list (write after free?)");
    }
    ptr::with_exposed_provenance_mut(v)
}

#[cfg(test)]
mod tests;
