//! Where an arena's memory comes from: its segments (the program break, a reservation
//! committed step by step, or 64 MiB regions), growing the current one or starting the next,
//! and the first segment of a new arena.

use core::ptr;

use super::{ArenaState, Growth, MAX_SEGS, TOP_MIN};
use crate::chunk::{Chunk, ALIGN, FENCE, FREE, HEADER, IN_REGION, PREV_INUSE};
use crate::config::{COMMIT_STEP, REGION_SIZE};
use crate::os;
use crate::shared::Shared;

use super::region::{self, RegionHeader};

impl ArenaState {
    /// The growth kind in force.
    #[cfg(any(test, feature = "internals"))]
    pub fn growth(&self) -> Growth {
        self.growth
    }

    /// End of the current segment's committed memory.
    #[cfg(any(test, feature = "internals"))]
    pub fn seg_end(&self) -> usize {
        self.seg_end
    }

    /// Number of segments recorded (see [`ArenaState::segment`]).
    #[cfg(any(test, feature = "internals"))]
    pub fn segment_count(&self) -> usize {
        self.nsegs
    }

    /// Segment `i` (< [`ArenaState::segment_count`]): start of its first chunk, and its end.
    #[cfg(any(test, feature = "internals"))]
    pub fn segment(&self, i: usize) -> (usize, usize) {
        debug_assert!(i < self.nsegs);
        if i < MAX_SEGS {
            self.segs[i]
        } else {
            // SAFETY: entries below `nsegs` were written (`push_seg`); the table is ours.
            unsafe { self.seg_more.add(i - MAX_SEGS).read() }
        }
    }

    /// Whether every segment is recorded (false only after the table could not grow).
    #[cfg(any(test, feature = "internals"))]
    pub fn segments_complete(&self) -> bool {
        !self.segs_lost
    }

    fn segment_slot(&mut self, i: usize) -> *mut (usize, usize) {
        if i < MAX_SEGS {
            &raw mut self.segs[i]
        } else {
            // SAFETY: callers pass i < nsegs, whose entries are in the table.
            unsafe { self.seg_more.add(i - MAX_SEGS) }
        }
    }

    fn push_seg(&mut self, start: usize, end: usize) {
        let i = self.nsegs;
        if self.segs_lost {
            return;
        }
        if i >= MAX_SEGS && i - MAX_SEGS == self.seg_more_cap && !self.grow_segment_table() {
            self.segs_lost = true;
            return;
        }
        self.nsegs = i + 1;
        // SAFETY: slot `i` is in the inline array or the (grown) table.
        unsafe { self.segment_slot(i).write((start, end)) };
    }

    /// Doubles the table of segments past the first `MAX_SEGS` (one OS page at first).
    fn grow_segment_table(&mut self) -> bool {
        let entry = core::mem::size_of::<(usize, usize)>();
        let old_len = self.seg_more_cap * entry;
        let Some(len) = os::page_align_up((old_len * 2).max(1)) else {
            return false;
        };
        let Some(t) = os::map(len) else {
            return false;
        };
        let t = t.cast::<(usize, usize)>();
        if !self.seg_more.is_null() {
            // SAFETY: both tables are ours and distinct; the old one holds `seg_more_cap`
            // entries, and the new one has room for them; the old mapping is ours to drop.
            unsafe {
                ptr::copy_nonoverlapping(self.seg_more, t, self.seg_more_cap);
                os::unmap(self.seg_more.cast(), old_len);
            }
        }
        self.seg_more = t;
        self.seg_more_cap = len / entry;
        true
    }

    /// Unmaps the table of segments past the first `MAX_SEGS` (the heap's teardown).
    ///
    /// # Safety
    /// The arena is not used again.
    pub unsafe fn drop_segment_table(&mut self) {
        if !self.seg_more.is_null() {
            let len = self.seg_more_cap * core::mem::size_of::<(usize, usize)>();
            // SAFETY: caller: nothing reads the table again; it is our own mapping.
            unsafe { os::unmap(self.seg_more.cast(), len) };
            self.seg_more = ptr::null_mut();
            self.seg_more_cap = 0;
        }
    }

    pub(super) fn set_seg_end(&mut self, sh: &Shared, end: usize) {
        self.seg_end = end;
        if self.nsegs > 0 && !self.segs_lost {
            // SAFETY: the newest entry is recorded (and is the current segment).
            unsafe { (*self.segment_slot(self.nsegs - 1)).1 = end };
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
    pub(super) unsafe fn grow(&mut self, sh: &Shared, nb: usize) -> bool {
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
        // A segment too small for the request still becomes the top (the next contiguous
        // growth extends it); the result tells the caller the request does not fit yet.
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
