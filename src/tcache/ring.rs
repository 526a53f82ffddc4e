//! The pipelined `free`: while a thread's frees overflow its cache, each `free` parks its
//! pointer in a small ring and checks and caches the one parked [`RING`] frees earlier, whose
//! lines have had time to arrive (a prefetch is issued on entry). Owner thread only.

use core::ptr;

use super::ThreadCache;
use crate::chunk::HEADER;
use crate::os::prefetch;
use crate::region_map;
use crate::sync::process::AtomicPtr as PAtomicPtr;
use crate::sync::Ordering;

/// Pending frees of the pipelined `free` (see [`ThreadCache::ring_swap`]). Four: far enough
/// ahead for a free's header line to arrive in `c-larson` and `larson` (4 was as fast as 8 there,
/// 2 slower), and a shorter delay for a program that reads each block just before it frees it,
/// where a deeper ring only costs: `c-respawn` took 1.07x the time with 8 (runs on; 1.03x off).
pub const RING: usize = 4;
/// Frees the pipeline stays on for after the last overflow flush.
pub const RING_BUDGET: u32 = 8192;

/// What a pipelined `free` does next ([`ThreadCache::ring_swap`]).
#[derive(Debug, Clone, Copy)]
pub enum RingOut {
    /// Nothing: the ring was not full yet.
    Pending,
    /// Free this pointer (checked as `free` does).
    Free(*mut u8),
    /// Free this pointer (it may be null), then the ones still in the ring: the pipeline just
    /// turned itself off.
    Last(*mut u8),
    /// The pointer was the one freed just before: a double free.
    Twice,
    /// Free the pointer given now: it lies outside the heap's reservations (a huge block, the
    /// break, or not ours), and is not pipelined.
    Now,
}

/// The ring of a pipelined `free`: the last [`RING`] pointers freed, not yet checked or
/// cached (null slots are empty). Only the owning thread writes it (plain loads and stores:
/// the slots are atomics only so that statistics may count them).
#[repr(C)]
#[derive(Debug)]
pub struct FreeRing {
    next: core::cell::Cell<usize>,
    /// Slots in use (owner only): the checks of a pop, a `realloc` and an allocation from the
    /// arena skip an empty ring without reading its slots.
    len: core::cell::Cell<usize>,
    slots: [PAtomicPtr<u8>; RING],
}

impl FreeRing {
    pub(super) const fn new() -> FreeRing {
        FreeRing {
            next: core::cell::Cell::new(0),
            len: core::cell::Cell::new(0),
            slots: [const { PAtomicPtr::new(ptr::null_mut()) }; RING],
        }
    }
}

impl ThreadCache {
    /// Whether `free` runs pipelined for this thread now (false for a placeholder).
    #[inline(always)]
    pub fn ring_on(&self) -> bool {
        self.ring_on.get()
    }

    /// The pipelined `free`: puts `p` in the ring and returns what the caller must do with the
    /// pointer freed [`RING`] calls earlier ([`RingOut`]), which it checks and caches now. Each
    /// call starts loading its block's header, so that by the time the block's turn comes its
    /// header is in the CPU cache: when a program frees many blocks it has not touched for a
    /// while, the frees' cache misses overlap instead of stalling one after the other. Nothing
    /// is written to a block before it is checked; a block is reused only after it is; a block
    /// freed twice while its first free is pending is caught at once, any other misuse at most [`RING`] frees later
    /// (or when the ring is drained: thread exit, `flush_thread_cache`, `trim`, the pipeline
    /// turning off). The pipeline turns itself off [`RING_BUDGET`] frees after the last
    /// overflow flush that armed it (of a class the thread also allocates, `Heap::free_flush`);
    /// the caller then drains it ([`RingOut::Last`]).
    ///
    /// It calls nothing, so that the `free` it sits in stays a leaf.
    ///
    /// # Safety
    /// Owning thread; [`ThreadCache::ring_on`] holds.
    #[inline(always)]
    pub unsafe fn ring_swap(&self, p: *mut u8) -> RingOut {
        let r = &self.ring;
        let i = r.next.get();
        // SAFETY: the index is masked to RING (a power of two).
        let slot = unsafe { r.slots.get_unchecked(i & (RING - 1)) };
        // The same test as `Heap::free_fast`'s first (null wraps high).
        const ODD: usize = !(region_map::MAP_LIMIT - 1) | 15;
        let a = (p as usize).wrapping_sub(HEADER);
        // SAFETY: a < MAP_LIMIT when the first test passes.
        if a & ODD != 0 || !unsafe { region_map::contains_below_limit(a) } {
            return RingOut::Now;
        }
        // A block freed again while its first free is still pending: caught here, at once.
        // (One freed again after its first free was done is caught when that free's check
        // finds it cached, or when a pop would hand it out while the second is pending.)
        if self.ring_holds(p) {
            return RingOut::Twice;
        }
        prefetch(p.wrapping_sub(8));
        // A load and a store, not a swap: only this thread writes the slot.
        let q = slot.load(Ordering::Relaxed);
        slot.store(p, Ordering::Relaxed);
        r.next.set((i + 1) & (RING - 1));
        let left = self.ring_left.get().wrapping_sub(1);
        self.ring_left.set(left);
        if left == 0 {
            self.ring_on.set(false);
            if q.is_null() {
                r.len.set(r.len.get() + 1);
            }
            return RingOut::Last(q);
        }
        if q.is_null() {
            r.len.set(r.len.get() + 1);
            RingOut::Pending
        } else {
            RingOut::Free(q)
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn pending_twice() -> ! {
        crate::os::fatal("free(): double free detected (a cached block was freed again)")
    }

    /// Turns the pipelined `free` on (or keeps it on) for [`RING_BUDGET`] more frees: the
    /// thread's frees overflowed a stack.
    ///
    /// # Safety
    /// Owning thread; a real cache (not a placeholder).
    #[inline]
    pub unsafe fn ring_arm(&self) {
        // Feature `asan` poisons a block when it is freed, and `expensive-checks` wants every
        // misuse caught at the call that makes it: neither pipelines.
        if cfg!(any(feature = "asan", feature = "expensive-checks")) {
            return;
        }
        self.ring_left.set(RING_BUDGET);
        self.ring_on.set(true);
    }

    /// Takes the next pending pointer out of the ring (null when it is empty), for a drain.
    ///
    /// # Safety
    /// Owning thread, or the cache's owner no longer exists.
    pub unsafe fn ring_take(&self) -> *mut u8 {
        // Every slot is read, whatever `len` says: a `fork` child drains the rings of threads
        // it does not have, which may have stopped between a slot's store and `len`'s update.
        for s in &self.ring.slots {
            let q = s.load(Ordering::Relaxed);
            if !q.is_null() {
                s.store(ptr::null_mut(), Ordering::Relaxed);
                self.ring.len.set(self.ring.len.get().saturating_sub(1));
                return q;
            }
        }
        self.ring.len.set(0);
        ptr::null_mut()
    }

    /// Whether frees are pending in the ring (owner's view).
    #[inline(always)]
    pub fn ring_busy(&self) -> bool {
        self.ring.len.get() != 0
    }

    /// Whether `p` is pending in the ring (a `realloc` of it is a use after free, handing it
    /// out a double free).
    #[inline(always)]
    pub fn ring_holds(&self, p: *mut u8) -> bool {
        self.ring.len.get() != 0
            && self
                .ring
                .slots
                .iter()
                .any(|s| s.load(Ordering::Relaxed) == p)
    }

    /// Frees pending in the ring (any thread: a snapshot).
    pub fn ring_pending(&self) -> usize {
        self.ring
            .slots
            .iter()
            .filter(|s| !s.load(Ordering::Relaxed).is_null())
            .count()
    }
}
