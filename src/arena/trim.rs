//! Memory back to the OS: trimming top (the adaptive trim floor), purging the interior OS
//! pages of large free chunks, and the time-based ageing of an idle arena.

use super::{ArenaState, Growth, QUICK_REVIEW_MS, TOP_MIN};
use crate::bins::{bin_index, BinIdx};
use crate::chunk::{Chunk, PURGED};
use crate::config::{PURGE_MIN_CHUNK, TRIM_ADAPT_MAX};
use crate::os::{self};
use crate::shared::Shared;
use crate::sync::Ordering;

/// Most orphan runs one `decay` call looks at (the next call goes on from there).
const DECAY_SWEEP: usize = 64;

impl ArenaState {
    /// The time-based side of the aging rules, for an arena whose traffic is too light (or
    /// absent: its threads are gone or blocked) for the traffic clocks to move: every
    /// [`QUICK_REVIEW_MS`] the quick lists are reviewed (the chunks untouched for a whole
    /// interval are merged into the bins, where they coalesce and become trimmable), and once
    /// a purge delay has passed with large free chunks freed or aged since the last pass, a
    /// purge pass runs. Called under the lock by other threads' cache collections
    /// (`Heap::decay_arenas`), with the time.
    pub fn decay(&mut self, sh: &Shared, now: u64) {
        if self.orphan_count() > 0 {
            // SAFETY: lock held (`&mut`).
            unsafe { self.sweep_orphans(sh, DECAY_SWEEP) };
        }
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

    /// The automatic trim: when the free top exceeds the trim threshold or this arena's floor,
    /// whichever is more, all of it but `top_pad` goes back to the OS.
    pub(super) fn maybe_trim(&mut self, sh: &Shared) {
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
    pub(super) fn note_growth(&mut self, sh: &Shared) {
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
    pub(super) fn trim_epoch_end(&mut self, sh: &Shared) {
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

    /// Purges every large free chunk now, aged or not (`malloc_trim`): the first pass ages
    /// them, the second purges.
    pub fn purge_all(&mut self) -> usize {
        self.purge();
        self.purge()
    }

    /// One purge pass: returns the OS pages inside large free chunks to the OS
    /// (`MADV_DONTNEED`) — those already aged by an earlier pass; the others are marked aged.
    /// Large free chunks never wait in the unsorted bin (see `free_chunk`), so only the large
    /// bins are walked. Returns the bytes released.
    pub fn purge(&mut self) -> usize {
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
