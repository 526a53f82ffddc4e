//! Quick lists: small chunks given back by thread caches wait whole on per-class lists of
//! bundles, are handed out first by refills, and are merged into the bins by the aging rules
//! (the module doc of `arena` has the policy).

use core::ptr;

use super::bundle::{quick_count_of, quick_set_count, quick_slot_get, quick_slot_set, QUICK_CAP};
use super::{ArenaState, QUICK_EPOCH, QUICK_GROW_SHARE};
use crate::chunk::{Chunk, HEADER};
use crate::config::TRIM_EPOCH;
use crate::link;
use crate::os::fatal;
use crate::shared::Shared;
use crate::size_class::{chunk_class, NSMALL_CLASSES, SMALL_MAX_REQUEST};

impl ArenaState {
    /// Takes a chunk of exactly `nb` bytes from its quick list, if any.
    #[inline]
    pub(super) unsafe fn pop_quick(&mut self, nb: usize) -> Option<Chunk> {
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
    pub(super) unsafe fn pop_class(&mut self, cls: usize) -> *mut u8 {
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
    /// the freed mark already (a thread cache's chunk: see `link`).
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
    pub(super) fn quick_tick(&mut self, sh: &Shared, size: usize, n: usize) {
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
    pub(super) fn quick_review(&mut self, sh: &Shared) {
        self.quick_clock = 0;
        self.quick_ops = 0;
        self.quick_ops_due = 0;
        self.quick_grown = 0;
        self.merge_idle(sh);
        self.quick_low = self.quick_count;
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
    pub(super) fn quick_before_growth(&mut self, sh: &Shared, need: usize) -> bool {
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
    #[cfg(any(test, feature = "internals"))]
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
    #[cfg(any(test, feature = "internals"))]
    pub fn quick_count(&self, cls: usize) -> usize {
        self.quick_count[cls] as usize
    }
}
