//! Freeing and resizing chunks inside an arena, under its lock: coalescing with free
//! neighbours and top, shrinking and growing a chunk in place, and top taken for a moved block.

use super::{ArenaState, Got, TOP_MIN};
use crate::chunk::{
    Chunk, ALIGN, FREE, HEADER, IN_REGION, IN_RUN, IS_MMAPPED, MIN_CHUNK, PREV_INUSE, RUN_CHUNK,
};
use crate::config::{PURGE_DEBT, PURGE_MIN_CHUNK};
use crate::os::fatal;
use crate::shared::Shared;

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
            if flags & (IN_RUN | RUN_CHUNK) != 0 {
                fatal("free(): a run or a run's block reached an arena's bins");
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
}
