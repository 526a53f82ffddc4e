//! What every layer of one heap reads: its settings (thresholds, pads, the quick lists' and
//! purge's limits), the main arena's segments (for validating pointers without its lock), the
//! huge-block counters, and the heap's clock.
//!
//! Process atomics only (never part of a modelled protocol). Arenas hold a pointer to their
//! heap's `Shared`; the heap owns it. A leaf above `os`, `config` and the region map.

use crate::os;
use crate::region_map;
use crate::sync::process::{AtomicBool as PAtomicBool, AtomicUsize as PAtomicUsize, Ordering};

/// Most main-arena segments recorded for pointer validation.
pub const MAX_MAIN_SEGS: usize = 32;

/// Address ranges of the main arena's own segments (break or reservation), readable without
/// its lock so that `free` can validate pointers.
#[derive(Debug)]
pub struct MainSegs {
    lo: [PAtomicUsize; MAX_MAIN_SEGS],
    hi: [PAtomicUsize; MAX_MAIN_SEGS],
    n: PAtomicUsize,
}

impl MainSegs {
    const fn new() -> Self {
        MainSegs {
            lo: [const { PAtomicUsize::new(0) }; MAX_MAIN_SEGS],
            hi: [const { PAtomicUsize::new(0) }; MAX_MAIN_SEGS],
            n: PAtomicUsize::new(0),
        }
    }
    /// Records a new segment (main arena lock held).
    pub fn push(&self, lo: usize, hi: usize) {
        let n = self.n.load(Ordering::Relaxed);
        if n < MAX_MAIN_SEGS {
            self.lo[n].store(lo, Ordering::Relaxed);
            self.hi[n].store(hi, Ordering::Relaxed);
            // Release: pairs with the Acquire in `contains`.
            self.n.store(n + 1, Ordering::Release);
        }
    }
    /// Moves the end of the newest segment (main arena lock held).
    pub fn set_last_end(&self, hi: usize) {
        let n = self.n.load(Ordering::Relaxed);
        if n > 0 && n <= MAX_MAIN_SEGS {
            self.hi[n - 1].store(hi, Ordering::Relaxed);
        }
    }
    /// Whether `addr` lies in the first recorded segment (in `override` builds, where the
    /// main arena grows the program break, usually its only one).
    #[inline(always)]
    pub fn first_contains(&self, addr: usize) -> bool {
        let lo = self.lo[0].load(Ordering::Relaxed);
        addr.wrapping_sub(lo) < self.hi[0].load(Ordering::Relaxed).wrapping_sub(lo)
    }

    /// Whether `addr` lies in a recorded segment (the first one is checked without a loop: it
    /// is usually the only one).
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        let lo = self.lo[0].load(Ordering::Relaxed);
        if addr.wrapping_sub(lo) < self.hi[0].load(Ordering::Relaxed).wrapping_sub(lo) {
            return true;
        }
        self.contains_slow(addr)
    }

    #[cold]
    fn contains_slow(&self, addr: usize) -> bool {
        let n = self.n.load(Ordering::Acquire);
        for i in 1..n.min(MAX_MAIN_SEGS) {
            if addr >= self.lo[i].load(Ordering::Relaxed)
                && addr < self.hi[i].load(Ordering::Relaxed)
            {
                return true;
            }
        }
        false
    }
}

/// Heap-wide settings and counters that arenas read (process atomics: not part of any modelled
/// protocol).
#[derive(Debug)]
pub struct Shared {
    /// Requests at or above get their own mapping.
    pub mmap_threshold: PAtomicUsize,
    /// Whether the threshold adapts.
    pub mmap_dynamic: PAtomicBool,
    /// Top above this is trimmed.
    pub trim_threshold: PAtomicUsize,
    /// Top kept on trim, added on growth.
    pub top_pad: usize,
    /// Most bytes one arena keeps in its quick lists.
    pub quick_max: usize,
    /// Least time between two purge passes of an arena (milliseconds).
    pub purge_delay_ms: usize,
    /// Main arena segments.
    pub main_segs: MainSegs,
    /// Whether this is a user heap (`arena_malloc::Heap`): its reservations carry the map
    /// values with [`region_map::USER`], its huge blocks are tracked, and it gives its granules
    /// back as [`region_map::DROPPED`].
    pub user: bool,
    /// In the crate's unit tests: a clock the test sets by hand (milliseconds; 0: the OS's
    /// clock), so that what a test checks of the time-based passes does not depend on how fast
    /// the machine runs.
    #[cfg(test)]
    pub test_clock: PAtomicUsize,
    /// Live huge blocks.
    pub huge_count: PAtomicUsize,
    /// Bytes mapped for huge blocks.
    pub huge_bytes: PAtomicUsize,
    /// Run remote-free bytes not counted by a live cache (`ThreadCache::run_remote`): pushed
    /// without a cache, or left by dropped caches (wrapping; what the arenas collected from
    /// their orphans is counted by each, `ArenaState::orphan_collected`).
    pub run_remote_other: PAtomicUsize,
    main: PAtomicUsize,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl Shared {
    /// The settings' defaults (the heap's `init` applies the tunables).
    pub const fn new() -> Shared {
        Shared {
            mmap_threshold: PAtomicUsize::new(crate::config::MMAP_THRESHOLD_DEFAULT),
            mmap_dynamic: PAtomicBool::new(true),
            trim_threshold: PAtomicUsize::new(crate::config::TRIM_THRESHOLD_DEFAULT),
            top_pad: crate::config::TOP_PAD_DEFAULT,
            quick_max: crate::config::QUICK_MAX_DEFAULT,
            purge_delay_ms: crate::config::PURGE_DELAY_MS_DEFAULT,
            user: false,
            main_segs: MainSegs::new(),
            #[cfg(test)]
            test_clock: PAtomicUsize::new(0),
            huge_count: PAtomicUsize::new(0),
            huge_bytes: PAtomicUsize::new(0),
            run_remote_other: PAtomicUsize::new(0),
            main: PAtomicUsize::new(0),
        }
    }

    /// The heap's clock in milliseconds: [`os::now_ms`], or a test's hand-set clock.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        #[cfg(test)]
        {
            let t = self.test_clock.load(Ordering::Relaxed);
            if t != 0 {
                return t as u64;
            }
        }
        os::now_ms()
    }

    /// The main arena's address (0 before the heap's `init`).
    #[inline]
    pub fn main_arena(&self) -> usize {
        self.main.load(Ordering::Relaxed)
    }

    /// Records the main arena's address (the heap's `init`, before the heap is shared).
    pub fn set_main_arena(&self, a: usize) {
        self.main.store(a, Ordering::Relaxed);
    }

    /// The region map value of this heap's regions.
    #[inline]
    pub fn region_kind(&self) -> u8 {
        if self.user {
            region_map::USER_REGION
        } else {
            region_map::REGION
        }
    }

    /// The region map value of this heap's main reservation.
    pub fn main_kind(&self) -> u8 {
        if self.user {
            region_map::USER_MAIN_RESERVE
        } else {
            region_map::MAIN_RESERVE
        }
    }

    /// The region map value left behind by this heap's unmapped reservations.
    pub fn left_kind(&self) -> u8 {
        if self.user {
            region_map::DROPPED
        } else {
            region_map::NOT_OURS
        }
    }
}
