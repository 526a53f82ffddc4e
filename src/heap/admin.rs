//! The heap as a whole: trimming, statistics, run-time options (`mallopt`) and teardown.

use core::ptr;

use super::Heap;
use crate::arena::region::RegionHeader;
use crate::arena::Arena;
use crate::chunk::MIN_CHUNK;
use crate::config::{MAX_ARENAS, MMAP_THRESHOLD_MAX};
use crate::os::{self};
use crate::region_map;
use crate::stats::Stats;
use crate::sync::Ordering;

impl Heap {
    /// Returns free memory to the OS: every arena's top above `pad`, and the interior OS pages
    /// of large free chunks. Returns the bytes released.
    pub fn trim(&self, pad: usize) -> usize {
        let mut released = 0;
        for i in 0..self.arena_count() {
            let mut g = self.arena(i).lock();
            // SAFETY: lock held.
            unsafe { g.sweep_orphans(&self.shared, usize::MAX) };
            g.consolidate(&self.shared);
            // SAFETY: lock held.
            released += unsafe { g.trim(&self.shared, pad) };
            released += g.purge_all();
        }
        released
    }

    /// A snapshot of the heap's figures. Takes each arena's lock in turn and walks its large
    /// bins for the purged bytes (a slow path: a few microseconds per thousand large free
    /// chunks).
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            arenas: self.arena_count(),
            ..Stats::default()
        };
        // Remote frees the arenas collected from their orphans (out of `run_remote_other`).
        let mut collected = 0usize;
        for i in 0..s.arenas {
            let a = self.arena(i);
            let g = a.lock();
            // SAFETY: lock held; top valid.
            let top = unsafe { g.top.size() };
            s.arena_committed += g.committed;
            s.free_in_bins += g.bins.free_bytes;
            s.free_chunks += g.bins.free_chunks;
            s.quick_bytes += g.quick_bytes;
            // SAFETY: lock held.
            s.purged += unsafe { g.bins.purged_bytes() };
            s.top += top;
            s.overhead += g.overhead;
            s.runs += g.runs;
            s.run_bytes += g.run_bytes;
            s.run_free += g.orphan_free;
            collected = collected.wrapping_add(g.orphan_collected);
            s.in_use += g.committed - g.overhead - g.bins.free_bytes - g.quick_bytes - top;
            drop(g);
            s.remote_pending += a.remote_bytes.load(Ordering::Relaxed);
        }
        let mut run_remote = self
            .shared
            .run_remote_other
            .load(Ordering::Relaxed)
            .wrapping_sub(collected);
        self.for_each_cache(|tc| {
            // SAFETY: live cache, registry lock held by for_each_cache.
            s.tcache_bytes += unsafe { (*tc).held_bytes() };
            // SAFETY: as above.
            s.frees_pending += unsafe { (*tc).ring_pending() };
            // SAFETY: as above; the figures are atomics the owner writes.
            unsafe {
                s.run_free += (*tc).run_free.load(Ordering::Relaxed);
                run_remote = run_remote.wrapping_add((*tc).run_remote.load(Ordering::Relaxed));
            }
            s.threads += 1;
        });
        // Its parts are read at different times: a transient sum below 0 reads as 0.
        s.run_remote = run_remote.min(isize::MAX as usize);
        s.in_use = s
            .in_use
            .saturating_sub(s.tcache_bytes + s.remote_pending + s.run_free + s.run_remote);
        s.huge_blocks = self.shared.huge_count.load(Ordering::Relaxed);
        s.huge_bytes = self.shared.huge_bytes.load(Ordering::Relaxed);
        s.in_use += s.huge_bytes;
        s.mapped = s.arena_committed + s.huge_bytes;
        s.resident = s.mapped - s.purged;
        s.mmap_threshold = self.shared.mmap_threshold.load(Ordering::Relaxed);
        s
    }

    /// Applies a `mallopt` setting; false when the parameter is unknown or the value invalid.
    pub fn set_option(&self, param: i32, value: i32) -> bool {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_MMAP_MAX: i32 = -4;
        const M_ARENA_TEST: i32 = -7;
        const M_ARENA_MAX: i32 = -8;
        const M_PERTURB: i32 = -6;
        const M_CHECK_ACTION: i32 = -5;
        if value < 0 && param != M_PERTURB {
            return false;
        }
        let v = value as usize;
        let sh = &self.shared;
        match param {
            M_TRIM_THRESHOLD => {
                sh.trim_threshold.store(v, Ordering::Relaxed);
                sh.mmap_dynamic.store(false, Ordering::Relaxed);
            }
            M_MMAP_THRESHOLD => {
                if v > MMAP_THRESHOLD_MAX {
                    return false;
                }
                sh.mmap_threshold.store(v.max(MIN_CHUNK), Ordering::Relaxed);
                sh.mmap_dynamic.store(false, Ordering::Relaxed);
            }
            M_ARENA_MAX => {
                if v == 0 {
                    return false;
                }
                self.arena_max.store(v.min(MAX_ARENAS), Ordering::Relaxed);
            }
            // Accepted and ignored: top pad is fixed at start; huge blocks are not counted
            // against a maximum; arena test, perturb and check action have no equivalent.
            M_TOP_PAD | M_MMAP_MAX | M_ARENA_TEST | M_PERTURB | M_CHECK_ACTION => {}
            _ => return false,
        }
        true
    }

    /// Unmaps everything the heap mapped, except live huge blocks.
    ///
    /// # Safety
    /// Nothing uses the heap or its memory any more.
    pub unsafe fn destroy(&self) {
        // SAFETY: caller: nothing uses the heap's huge blocks any more.
        unsafe { self.tracked.lock().free_all(&self.shared) };
        let left = self.shared.left_kind();
        let n = self.arena_count();
        // SAFETY: caller: no users. Thread arenas live in their first region, so unmap that last.
        unsafe {
            for i in (0..n).rev() {
                let a = self.arena(i);
                let mut g = a.lock();
                g.drop_segment_table();
                let mut r = g.regions;
                drop(g);
                let mut first = ptr::null_mut();
                while !r.is_null() {
                    let prev = (*r).prev;
                    if i != 0 && prev.is_null() {
                        first = r;
                    } else {
                        RegionHeader::unmap(r, left);
                    }
                    r = prev;
                }
                if !first.is_null() {
                    RegionHeader::unmap(first, left);
                }
            }
            let base = self.main_reserve.load(Ordering::Relaxed);
            if base != 0 {
                region_map::register(base, self.main_reserve_len.load(Ordering::Relaxed), left);
                os::unmap(
                    ptr::with_exposed_provenance_mut(base),
                    self.main_reserve_len.load(Ordering::Relaxed),
                );
            }
            let meta = self.main_map.load(Ordering::Relaxed);
            if meta != 0 {
                let len = os::page_align_up(core::mem::size_of::<Arena>()).unwrap_or(0);
                os::unmap(ptr::with_exposed_provenance_mut(meta), len);
            }
            let reg = self.registry.lock();
            let mut s = reg.slabs;
            drop(reg);
            while !s.is_null() {
                let next = s.cast::<*mut u8>().read();
                os::unmap(s, s.cast::<usize>().add(1).read());
                s = next;
            }
        }
    }
}
