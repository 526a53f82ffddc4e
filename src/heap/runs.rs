//! The thread caches' classes served from runs (`run`; `Tunables::runs`, `ARENA_MALLOC_RUNS=1`).
//!
//! A cache owns, per class, a circular list of runs; the first is the one it allocates from.
//! A refill pops blocks from it (collecting its remote frees when it has none left), then,
//! when it was told that another of its runs may have free blocks (a remote free onto one, a
//! local free onto one that is not the first), turns the list to the next run with free blocks
//! (at most [`HINT_SCAN`] looked at per refill, so that a thread with many full runs pays a
//! bounded price and every run is looked at in turn), then adopts an orphan of its arena, then
//! takes other caches' remote frees, then carves a new run. Blocks freed through the
//! cache go back to their run when a stack is flushed: onto the run's own list when this cache
//! owns it, else onto its atomic remote list, one compare-exchange per chain of that run's
//! blocks. No lock and no bin on either path. Runs whose blocks are all back go to their
//! arena as one chunk when the cache collects its idle classes; a dropped cache's runs go back
//! or become orphans of their arena (`arena/runs.rs`).
//!
//! Fork: a cache's run lists change only under an arena lock (the adoption, the carving, the
//! sweeps), so a forked child, whose fork held every arena lock, never finds one half changed
//! when it drops the caches of threads it does not have. A thread stopped by the fork in the
//! middle of a pop or a push leaves at worst a run whose count is one off: its blocks stay out
//! (a leak in the child).

use core::ptr;

use super::Heap;
use crate::arena::{Arena, ArenaGuard};
use crate::chunk::{Chunk, HEADER, IN_RUN};
use crate::link;
use crate::os::prefetch;
use crate::run::{self, Bits, Run, BIT_WORDS};
use crate::size_class::{CLASS_CHUNK_SIZE, NCLASSES};
use crate::sync::process::AtomicUsize as PAtomicUsize;
use crate::sync::Ordering;
use crate::tcache::ThreadCache;

/// Most runs of other caches a refill looks at for remote frees to take before it carves.
const STEAL_SCAN: usize = 8;

/// Most runs a collection's sweep looks at, in turn over the classes and over each class's
/// runs: a thread that a batch left with thousands of runs pays a bounded price per collection
/// (a collection comes with whatever allocation is first after its interval, and a walk of every
/// run there made that allocation's speed depend on the clock: issue 29).
pub const COLLECT_SWEEP: usize = 64;

/// Sweeps in a row an empty run must be found idle at before the next gives it back.
pub const IDLE_SWEEPS: usize = 1;

/// Most runs a refill looks at, when it was told some may have free blocks
/// (`ThreadCache::run_hint`, `ThreadCache::run_local`), before it adopts or carves one.
pub const HINT_SCAN: usize = 16;

/// How many blocks ahead a release asks for a block's header.
const PREFETCH_AHEAD: usize = 6;

/// How many blocks ahead a release asks for the header of a block's run (read from the block's
/// header, asked for [`PREFETCH_AHEAD`] blocks ahead).
const PREFETCH_RUN_AHEAD: usize = 3;

/// Runs a release frees to remotely at once (their sets of blocks built side by side).
const SETS: usize = 8;

const _: () = assert!(NCLASSES <= 128, "run hints are two words of bits");

/// Blocks taken from another cache's run (`Run::steal`): the run, the set, its size.
type Stolen = (*mut Run, Bits, usize);

/// Tells the owner of a run that its remote list has blocks again (`ThreadCache::run_hint`).
/// `owner` and `cls` were read from the run before the push: once the chain is on the list
/// the owner may collect it and give the run back at any time.
///
/// # Safety
/// `owner` is 0 or the address of a cache of this heap (live or recycled: caches are never
/// unmapped while the heap lives, and a spurious hint only costs its owner a look).
unsafe fn tell_owner(owner: usize, cls: usize) {
    if owner != 0 {
        // SAFETY: caller.
        let t = unsafe { &*(owner as *const ThreadCache) };
        // Release: the owner that sees the bit (Acquire) sees the chain pushed before it.
        t.run_hint[cls / 64].fetch_or(1 << (cls % 64), Ordering::Release);
    }
}

/// Cache `t` (the calling thread's) freed a block onto its run `r`: when `r` is not the
/// first of its class, its refills must look at the runs again before they go to the arena
/// (`ThreadCache::run_local`).
///
/// # Safety
/// `t` is the calling thread's cache and owns `r` (U3).
unsafe fn note_local_free(t: &ThreadCache, r: *mut Run) {
    // SAFETY: caller: the calling thread's own run.
    unsafe {
        let cls = (*r).class();
        if t.runs[cls] != r {
            set_bit(&t.run_local, cls);
        }
    }
}

/// Sets bit `cls` of an owner-only word pair (no read-modify-write).
#[inline]
fn set_bit(w: &[PAtomicUsize; 2], cls: usize) {
    let (a, bit) = (&w[cls / 64], 1usize << (cls % 64));
    let v = a.load(Ordering::Relaxed);
    if v & bit == 0 {
        a.store(v | bit, Ordering::Relaxed);
    }
}

/// Adds `d` (wrapping) to a counter only its owner writes (no read-modify-write).
#[inline]
fn bump(a: &PAtomicUsize, d: usize) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(d), Ordering::Relaxed);
}

/// Takes `d` (wrapping) from a counter only its owner writes.
#[inline]
fn drop_by(a: &PAtomicUsize, d: usize) {
    a.store(a.load(Ordering::Relaxed).wrapping_sub(d), Ordering::Relaxed);
}

/// Collects run `r`'s remote frees for its owner, cache `t`, and moves their bytes from
/// pending to free in the cache's figures (`ThreadCache::run_free`: [`Run::free_bytes`] of its
/// runs). Returns how many came back.
///
/// # Safety
/// `t` owns `r` (U3).
unsafe fn collect(t: &ThreadCache, r: *mut Run) -> usize {
    // SAFETY: caller: ours.
    let n = unsafe { (*r).collect() };
    if n > 0 {
        // SAFETY: as above.
        let b = n * unsafe { (*r).block_size() };
        bump(&t.run_free, b);
        drop_by(&t.run_remote, b);
    }
    n
}

impl Heap {
    /// Whether the thread caches' classes come from runs (`Tunables::runs`).
    #[inline]
    pub fn runs_on(&self) -> bool {
        self.runs.load(Ordering::Relaxed)
    }

    /// Refills class `cls` of cache `t` from its runs with up to `want` blocks and returns one
    /// (null when out of memory); the others go on the stack.
    ///
    /// # Safety
    /// Owning thread; `cls` is cached, its stack is empty and has room for `want - 1`
    /// (`ThreadCache::begin_refill`); this heap owns the cache.
    pub(super) unsafe fn refill_from_runs(
        &self,
        t: &mut ThreadCache,
        cls: usize,
        want: usize,
    ) -> *mut u8 {
        let start = t.refill_slots(cls);
        let mut end = start;
        let mut first: *mut u8 = ptr::null_mut();
        let mut left = want;
        // SAFETY: the cache's runs are ours (U3); each block popped is handed out once; at most
        // `want - 1` go on the stack.
        unsafe {
            while left > 0 {
                let mut r = t.runs[cls];
                if r.is_null()
                    || !(*r).has_free() && {
                        collect(t, r);
                        !(*r).has_free()
                    }
                {
                    let mut stolen: Stolen = (ptr::null_mut(), [0; BIT_WORDS], 0);
                    r = self.next_run(t, cls, &mut stolen);
                    if r.is_null() {
                        let (sr, bits, n) = stolen;
                        if n == 0 {
                            break;
                        }
                        // The stack may take more than the batch: the whole set, up to its
                        // bound, so that the next shortage comes later.
                        let room = t
                            .limit(cls)
                            .saturating_sub(t.count(cls) + end.offset_from(start) as usize);
                        self.hand_out_stolen(t, sr, bits, n, room, &mut left, &mut first, &mut end);
                        continue;
                    }
                }
                // Blocks are taken from it: not idle (see `sweep_some_runs`).
                (*r).idle_sweeps = 0;
                while left > 0 {
                    // Marked: a free block is not read or written here (it kept its mark).
                    let p = (*r).pop_marked();
                    if p.is_null() {
                        break;
                    }
                    left -= 1;
                    if first.is_null() {
                        // It leaves for the program: its mark (and canary, with feature
                        // `expensive-checks`) is checked as a stack's pop checks it, so a write
                        // after its free is caught here too.
                        link::take_cached_keyed(p, link::cache_key());
                        first = p;
                    } else {
                        end.write(p);
                        end = end.add(1);
                    }
                }
            }
            t.end_refill(cls, start, end);
        }
        drop_by(&t.run_free, (want - left) * CLASS_CHUNK_SIZE[cls]);
        first
    }

    /// A refill's blocks taken from another cache's run ([`Run::steal`]: the `n` blocks of set
    /// `bits` of run `sr`): they go out as a run's popped blocks do (`first`, then the stack's
    /// slots from `end`, `room` of them free), counted against the refill's `left` (at most
    /// `left` of them: the refill's batch; the others are extra cached blocks), the rest back
    /// onto the run's remote set. They were pending remote frees, counted in `run_remote`; they
    /// are the program's or cached now.
    ///
    /// # Safety
    /// Owning thread of `t`; the blocks are ours to hand out (taken by the exchange), so `sr`
    /// stays live while any of them is out; `end` has room for `left` slots, less one while
    /// `first` is null.
    #[allow(clippy::too_many_arguments)]
    unsafe fn hand_out_stolen(
        &self,
        t: &ThreadCache,
        sr: *mut Run,
        mut bits: Bits,
        n: usize,
        mut room: usize,
        left: &mut usize,
        first: &mut *mut u8,
        end: &mut *mut *mut u8,
    ) {
        // SAFETY: caller: `sr` is live while a block of the set is out; each block goes out
        // once; the slots have room.
        unsafe {
            let block = (*sr).block_size();
            let (mut taken, mut counted) = (0, 0);
            for (w, word) in bits.iter_mut().enumerate() {
                while *word != 0 && (first.is_null() || room > 0) {
                    let i = w * usize::BITS as usize + word.trailing_zeros() as usize;
                    *word &= *word - 1;
                    let p = (*sr).payload(i);
                    // Loom: ordered after the freer's last writes by the exchange; nothing
                    // outside loom.
                    crate::sync::shadow::read(p.addr());
                    if *left > 0 {
                        *left -= 1;
                        counted += 1;
                    }
                    taken += 1;
                    if first.is_null() {
                        // Checked as a popped block is (its freed mark, put by its free).
                        link::take_cached_keyed(p, link::cache_key());
                        *first = p;
                    } else {
                        end.write(p);
                        *end = end.add(1);
                        room -= 1;
                    }
                }
            }
            // The refill takes its batch out of `run_free` at its end: these were pending.
            bump(&t.run_free, counted * block);
            drop_by(&t.run_remote, taken * block);
            if n > taken {
                // Back where they were (the blocks handed out keep the run live meanwhile).
                self.push_set(sr, &bits, n - taken);
            }
        }
    }

    /// Looks in the arena locked by `g` for blocks of class `cls` before a run is carved: its
    /// orphans of the class (adopted by cache `t`: the first with free blocks is returned),
    /// then free blocks that other caches' runs got back and their owners have not collected
    /// (`stolen` filled, null returned: a thread blocked, or whose refills have not come round
    /// to them; at the end of `larson` 35 MiB of runs were such frees, 15-20 MiB in
    /// `prodcons`, while threads short of blocks carved new runs). `None` when it has neither.
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache and the arena.
    unsafe fn take_from_arena(
        &self,
        t: &mut ThreadCache,
        cls: usize,
        g: &mut ArenaGuard<'_>,
        stolen: &mut Stolen,
    ) -> Option<*mut Run> {
        let me = t.run_owner_id();
        // SAFETY: lock held; an adopted orphan is ours from here on (U3).
        unsafe {
            let o = g.adopt_orphan(cls, me);
            if !o.is_null() {
                run::list_push_front(&mut t.runs[cls], o);
                bump(&t.run_free, (*o).free_bytes());
                // Remote frees pushed between the arena's collection and the adoption.
                collect(t, o);
                return Some(o);
            }
            let s = g.steal_remote(cls, me, STEAL_SCAN);
            if s.2 > 0 {
                *stolen = s;
                return Some(ptr::null_mut());
            }
        }
        None
    }

    /// The first run of class `cls` of cache `t` has no free block: makes another one first
    /// and returns it (null when out of memory, or when `stolen` was filled) — the next of the
    /// cache's runs with free blocks, else an orphan of the arena, else the remote frees of
    /// another cache's run of the arena (`stolen`: the run, the set, its size), else a new run.
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache.
    unsafe fn next_run(&self, t: &mut ThreadCache, cls: usize, stolen: &mut Stolen) -> *mut Run {
        let me = t.run_owner_id();
        // SAFETY: the cache's runs are ours (U3); the list is circular.
        unsafe {
            let head = t.runs[cls];
            let (w, bit) = (cls / 64, 1usize << (cls % 64));
            let told = t.run_hint[w].load(Ordering::Relaxed) & bit != 0;
            let local = t.run_local[w].load(Ordering::Relaxed);
            if !head.is_null() && (told || local & bit != 0) {
                // Other threads freed onto runs of this class, or this one did onto a run that
                // is not the first, or the last look stopped short: look at them in turn, at
                // most HINT_SCAN per refill. Both bits are cleared first (a remote free after a
                // run was looked at sets the hint again); a look that stops before it saw every
                // run sets the local bit again, and the next refill goes on from there. The
                // first run with free blocks leads. Without either bit every run but the first
                // had no free block when it was last looked at, and none came since: the list
                // is not walked (a thread whose runs are all full, as each of `churn`'s threads
                // soon is, went through eight of them at each refill, collecting each).
                if told {
                    t.run_hint[w].fetch_and(!bit, Ordering::Acquire);
                }
                t.run_local[w].store(local & !bit, Ordering::Relaxed);
                let mut r = (*head).next;
                let mut k = 0;
                while r != head {
                    if (*r).has_remote() {
                        collect(t, r);
                    }
                    if (*r).has_free() {
                        t.runs[cls] = r;
                        if (*r).next != head {
                            // Runs after it were not looked at.
                            set_bit(&t.run_local, cls);
                        }
                        return r;
                    }
                    k += 1;
                    if k == HINT_SCAN {
                        t.runs[cls] = r;
                        set_bit(&t.run_local, cls);
                        break;
                    }
                    r = (*r).next;
                }
            }
            // SAFETY: the arena pointer is valid for the heap's life.
            let mut g = self.lock_some_arena(&*t.arena);
            if let Some(r) = self.take_from_arena(t, cls, &mut g, stolen) {
                return r;
            }
            // Not the other arenas: blocks taken from the remote frees of a run in another
            // arena (an idle thread's, in `c-respawn` the main thread's, which built the tables
            // the workers replace) stay that run's, so each came back as a remote free and went
            // out again as a stolen one, over and over, never the taker's own: `c-respawn` ran
            // 1.5x as long as with runs off (mimalloc-bench's larson 1.3x). See
            // docs/decisions.md (2026-12-07, session 4).
            let r = g.carve_run(self.shared(), CLASS_CHUNK_SIZE[cls], cls, me);
            if !r.is_null() {
                run::list_push_front(&mut t.runs[cls], r);
                bump(&t.run_free, (*r).free_bytes());
            }
            r
        }
    }

    /// Takes the run blocks out of `ps` back to their runs and returns how many pointers are
    /// left (moved to the front of `ps`) for the arenas. A block of a run cache `from` owns
    /// goes on the run's own list; the others go onto their runs' remote lists, in chains.
    ///
    /// # Safety
    /// As for [`Heap::release_slice`]; `from` is the calling thread's cache, or `None` when it
    /// has none; with `marked`, every block carries the freed mark already (a stack's blocks:
    /// `release_slice`'s `size` is not 0).
    pub(super) unsafe fn release_run_blocks(
        &self,
        ps: &mut [*mut u8],
        from: Option<&ThreadCache>,
        marked: bool,
    ) -> usize {
        let owner = from.map_or(0, ThreadCache::run_owner_id);
        // Per run being freed to remotely: the run, its blocks' bits and their number.
        let mut sets: [(*mut Run, Bits, usize); SETS] =
            [(ptr::null_mut(), [0; BIT_WORDS], 0); SETS];
        let mut next_out = 0;
        let mut rest = 0;
        let (mut local, mut remote) = (0usize, 0usize);
        // SAFETY: caller: checked, in-use chunks of ours given up; a run block's run is found
        // and checked by `Run::of`.
        unsafe {
            // The run found last and its blocks' payloads, `[lo, lo + len)`: a block in there
            // is one of its blocks (a run's span holds only its blocks), found without reading
            // its header. Sound while the loop runs: a run with a block in `ps` has that block
            // out, so it is not given back before the block's turn, and its layout is fixed.
            let (mut last, mut lo, mut len) = (ptr::null_mut::<Run>(), 0usize, 0usize);
            // The last own run told of a local free (`note_local_free`), once per run in a row.
            let mut noted = ptr::null_mut::<Run>();
            for i in 0..ps.len() {
                // The headers of a flushed stack are often out of the CPU cache (blocks freed
                // a while ago, or on another core): ask for one a few blocks ahead, so that the
                // misses overlap instead of following one another (not for a block of the last
                // run: its header will not be read).
                if let Some(&ahead) = ps.get(i + PREFETCH_AHEAD) {
                    if (ahead as usize).wrapping_sub(lo) >= len {
                        prefetch(ahead.wrapping_sub(HEADER));
                    }
                }
                // Then, nearer, for its run's header (from the block header asked for above).
                if let Some(&ahead) = ps.get(i + PREFETCH_RUN_AHEAD) {
                    if (ahead as usize).wrapping_sub(lo) >= len {
                        Run::prefetch_of(Chunk::from_payload(ahead));
                    }
                }
                let p = ps[i];
                let found = if (p as usize).wrapping_sub(lo) < len {
                    (*last).slot_of(p)
                } else {
                    None
                };
                let (r, slot) = match found {
                    Some(slot) => (last, slot),
                    None => {
                        let c = Chunk::from_payload(p);
                        if c.head() & IN_RUN == 0 {
                            ps[rest] = p;
                            rest += 1;
                            continue;
                        }
                        let (r, slot) = Run::of(c);
                        (last, (lo, len)) = (r, (*r).payloads());
                        (r, slot)
                    }
                };
                // A free block carries the freed mark (a stack's blocks have it already).
                if !marked {
                    link::put_cached(p);
                }
                if let Some(t) = from.filter(|_| (*r).owner() == owner) {
                    (*r).push_local(slot);
                    local += (*r).block_size();
                    if r != noted {
                        noted = r;
                        note_local_free(t, r);
                    }
                    continue;
                }
                remote += (*r).block_size();
                let k = match sets.iter().position(|e| e.0 == r) {
                    Some(k) => k,
                    None => {
                        // A new set, in a free place or in place of the oldest one (freed).
                        let k = sets.iter().position(|e| e.0.is_null()).unwrap_or_else(|| {
                            let k = next_out;
                            next_out = (next_out + 1) % SETS;
                            let (r0, b0, n0) = sets[k];
                            self.push_set(r0, &b0, n0);
                            k
                        });
                        sets[k] = (r, [0; BIT_WORDS], 0);
                        k
                    }
                };
                let e = &mut sets[k];
                run::add_block(&mut e.1, slot);
                e.2 += 1;
            }
            for (r, bits, n) in sets {
                if !r.is_null() {
                    self.push_set(r, &bits, n);
                }
            }
            self.count_run_frees(from, local, remote);
        }
        rest
    }

    /// Frees a set of `n` blocks of run `r` remotely and tells its owner when the run had no
    /// remote frees before. The owner and class are read first: once the bits are set the
    /// owner may collect them and give the run back at any time.
    ///
    /// An orphan (its owner exited) belongs to its arena's lock holder: when that lock is free,
    /// the set is pushed under it and the orphan collected at once, and it goes back to the
    /// arena if those were its last blocks out (`ArenaState::settle_orphan`). Blocks freed after
    /// their producer exited then no longer wait on the orphan until a sweep comes by (at the
    /// end of `prodcons`, 11 MiB of such frees and 11 MiB of free blocks sat in orphans with no
    /// block in use).
    ///
    /// # Safety
    /// As for [`Run::push_remote`].
    unsafe fn push_set(&self, r: *mut Run, bits: &Bits, n: usize) {
        // SAFETY: caller: a live run until the bits are set; an orphan stays live while its
        // arena's lock is held (only a lock holder gives orphans back).
        unsafe {
            let (o, c) = ((*r).owner(), (*r).class());
            if o == 0 {
                if let Some(mut g) = self.arena_of_payload(r.cast()).try_lock() {
                    let o = (*r).owner();
                    let told = Run::push_remote(r, bits, n);
                    if o == 0 {
                        g.settle_orphan(self.shared(), r);
                    } else if told {
                        // Adopted between the two reads: its new owner is told as usual.
                        tell_owner(o, c);
                    }
                    return;
                }
            }
            if Run::push_remote(r, bits, n) {
                tell_owner(o, c);
            }
        }
    }

    /// Frees one run block outside the thread caches: to its run's owner's set when cache
    /// `from` (the calling thread's, if any) owns the run, else to the run's remote set.
    ///
    /// # Safety
    /// `c` is a checked, in-use run block of this heap, given up by the caller; `from` is the
    /// calling thread's cache of this heap.
    pub(super) unsafe fn free_run_block(&self, c: Chunk, from: Option<&ThreadCache>) {
        // SAFETY: caller: a checked run block; `Run::of` checks its back-offset.
        unsafe {
            let (r, slot) = Run::of(c);
            link::put_cached(c.payload());
            let b = (*r).block_size();
            if from.is_some_and(|t| (*r).owner() == t.run_owner_id()) {
                (*r).push_local(slot);
                self.count_run_frees(from, b, 0);
            } else {
                let mut bits = [0; BIT_WORDS];
                run::add_block(&mut bits, slot);
                self.push_set(r, &bits, 1);
                self.count_run_frees(from, 0, b);
            }
        }
    }

    /// Counts run frees in the figures `stats` reads: `local` bytes back in cache `from`'s
    /// own runs, `remote` bytes pushed onto runs' remote lists (by that cache, or by no cache
    /// when `from` is `None`). `from` is the calling thread's cache, borrowed from its owner's
    /// reference (a flush hands it down, `ThreadCache::flush`), never made again from the
    /// cache's address while that reference is live.
    ///
    /// # Safety
    /// `from` is the calling thread's cache of this heap (its figures have one writer).
    unsafe fn count_run_frees(&self, from: Option<&ThreadCache>, local: usize, remote: usize) {
        if let Some(t) = from {
            bump(&t.run_free, local);
            bump(&t.run_remote, remote);
        } else if remote > 0 {
            self.shared()
                .run_remote_other
                .fetch_add(remote, Ordering::Relaxed);
        }
    }

    /// A collection's sweep: looks at the next [`COLLECT_SWEEP`] runs of cache `t` (after each
    /// class's first, which serves the next refill), in turn over the classes, and gives back
    /// those whose blocks are all back and that were found so at the previous look too, with
    /// no block taken from them since (idle, not just empty for a moment), collecting their
    /// remote frees first. A run that stays
    /// goes to the end of its class's list, so the next sweep goes on with the runs not yet
    /// looked at. Returns how many went back.
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache.
    pub(super) unsafe fn sweep_some_runs(&self, t: &mut ThreadCache) -> usize {
        // The lists change under an arena lock (a fork, which holds every arena lock, never
        // sees one half changed). Runs of the locked arena go back at once, the others after
        // the lock is dropped (one lock at a time; a fork between leaves them unlinked in the
        // child: a leak there, nothing worse).
        let mut later = [ptr::null_mut::<Run>(); COLLECT_SWEEP];
        let (mut n_later, mut n, mut left) = (0, 0, COLLECT_SWEEP);
        // SAFETY: the arena pointer is valid for the heap's life.
        let mut g = self.lock_some_arena(unsafe { &*t.arena });
        let held: *const Arena = g.arena();
        let start = t.sweep_class % NCLASSES;
        for i in 0..NCLASSES {
            let cls = (start + i) % NCLASSES;
            let head = t.runs[cls];
            if head.is_null() {
                continue;
            }
            let mut first_kept: *mut Run = ptr::null_mut();
            // SAFETY: the cache's runs are ours (U3); the list is circular; `head` stays first.
            unsafe {
                loop {
                    let r = (*head).next;
                    if r == head || r == first_kept || left == 0 {
                        break;
                    }
                    left -= 1;
                    collect(t, r);
                    // An empty run goes back once a whole sweep interval passed with no block
                    // taken from it: a run that empties and fills again between two
                    // collections (a producer whose blocks come back from its consumer) stays,
                    // instead of being given back and carved again at every collection.
                    let idle = (*r).is_unused() && {
                        (*r).idle_sweeps += 1;
                        (*r).idle_sweeps > IDLE_SWEEPS
                    };
                    if !idle {
                        run::list_move_to_back(&mut t.runs[cls], r);
                        if first_kept.is_null() {
                            first_kept = r;
                        }
                        continue;
                    }
                    run::list_unlink(&mut t.runs[cls], r);
                    drop_by(&t.run_free, (*r).free_bytes());
                    n += 1;
                    if ptr::eq(self.arena_of_payload(r.cast()), held) {
                        g.free_run(self.shared(), r);
                    } else {
                        later[n_later] = r;
                        n_later += 1;
                    }
                }
            }
            if left == 0 {
                // The next sweep starts with this class's runs not yet looked at.
                t.sweep_class = cls;
                break;
            }
        }
        drop(g);
        for &r in &later[..n_later] {
            // SAFETY: unlinked above, ours, with every block back.
            unsafe {
                self.arena_of_payload(r.cast())
                    .lock()
                    .free_run(self.shared(), r)
            };
        }
        n
    }

    /// Gives back every run of cache `t` whose blocks are all back, collecting their remote
    /// frees first (`malloc_trim`, a user heap's lane, a teardown). Returns how many went back.
    ///
    /// # Safety
    /// Owning thread; this heap owns the cache.
    pub(super) unsafe fn sweep_runs(&self, t: &mut ThreadCache) -> usize {
        let mut n = 0;
        for cls in 0..NCLASSES {
            let head = t.runs[cls];
            if head.is_null() {
                continue;
            }
            // SAFETY: the cache's runs are ours; the list is circular. Each run is looked at
            // once (the count is taken first; the list shrinks as runs leave it).
            unsafe {
                let mut r = head;
                let mut k = run::list_len(head);
                while k > 0 {
                    k -= 1;
                    let next = (*r).next;
                    collect(t, r);
                    if (*r).is_unused() {
                        // The list changes under an arena lock: a fork (which holds every
                        // arena lock) never sees it half changed.
                        let mut g = self.arena_of_payload(r.cast()).lock();
                        run::list_unlink(&mut t.runs[cls], r);
                        drop_by(&t.run_free, (*r).free_bytes());
                        g.free_run(self.shared(), r);
                        n += 1;
                    }
                    r = next;
                }
            }
        }
        n
    }

    /// A cache is dropped: each of its runs goes back to its arena when its blocks are all
    /// back, else waits there as an orphan. The cache's stacks were flushed first.
    ///
    /// # Safety
    /// Cache `t` is this heap's and no thread uses it any more.
    pub(super) unsafe fn drop_runs(&self, t: &mut ThreadCache) {
        // One lock hold for the runs of one arena in a row (most are the cache's own arena's).
        let mut held: Option<(*const Arena, ArenaGuard<'_>)> = None;
        for cls in 0..NCLASSES {
            // SAFETY: the cache's runs are ours until given up here.
            unsafe {
                while !t.runs[cls].is_null() {
                    let r = t.runs[cls];
                    collect(t, r);
                    let a: *const Arena = self.arena_of_payload(r.cast());
                    if held.as_ref().is_none_or(|(h, _)| *h != a) {
                        // The previous arena's lock goes first: one lock at a time.
                        drop(held.take());
                        held = Some((a, (*a).lock()));
                    }
                    let g = &mut held.as_mut().expect("held").1;
                    run::list_unlink(&mut t.runs[cls], r);
                    drop_by(&t.run_free, (*r).free_bytes());
                    if (*r).is_unused() {
                        g.free_run(self.shared(), r);
                    } else {
                        g.add_orphan(r);
                    }
                }
            }
        }
        drop(held);
        // What this cache pushed and did not collect is counted heap-wide from here on.
        let pending = t.run_remote.load(Ordering::Relaxed);
        t.run_remote.store(0, Ordering::Relaxed);
        self.shared()
            .run_remote_other
            .fetch_add(pending, Ordering::Relaxed);
        // `run_free` is 0 now, but in a forked child's copy of a cache whose thread stopped
        // mid-refill (blocks popped, not yet counted), which is reset with it.
        t.run_free.store(0, Ordering::Relaxed);
        // No sweep of the arenas' orphans here: a remote free that brings back an orphan's
        // last block gives it back at once when its arena's lock is free (`push_set`), and the
        // others wait for the arenas' decay (a bounded sweep per pass), `malloc_trim`, or an
        // adoption. A sweep of 8 orphans per arena at every exit (cold run headers: 2.4 % of
        // `churn`'s cycles) gave back nothing those do not: `churn` 0.98x the time without it,
        // peak RSS 0.98x.
    }
}
