//! Regions: size-aligned mappings that hold thread arenas.
//!
//! ```text
//! base (aligned to REGION_SIZE = 64 MiB)
//! 0      +----------------------------+
//!        | RegionHeader               |  arena pointer, previous region, committed bytes
//! 64     +----------------------------+
//!        | Arena (first region only)  |  lock, bins, top ... (about 4 KiB)
//!        +----------------------------+  <- first chunk (16-aligned)
//!        | chunks ...                 |
//!        | top                        |
//!        +----------------------------+  <- base + committed
//!        | reserved (PROT_NONE)       |
//! 64 MiB +----------------------------+
//! ```
//!
//! Any chunk flagged `IN_REGION` finds its header by masking its address with
//! `!(REGION_SIZE - 1)`, and its arena through the header. A process-wide bitmap (one bit per
//! 64 MiB of address space) records which aligned addresses are region bases, so that `free`
//! can tell a region pointer from a wild one without touching memory that may not be mapped.
//!
//! # Invariants
//! - R1: a region's bitmap bit is set from just after it is mapped until just before it is
//!   unmapped.
//! - R2: `committed` only changes under the owning arena's lock; readers without the lock use it
//!   only to bound a read of memory a caller claims to own.

use crate::arena::Arena;
use crate::config::{REGION_SHIFT, REGION_SIZE};
use crate::os;
use crate::sync::process::{AtomicU64, AtomicUsize, Ordering};

/// Header at the base of every region.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct RegionHeader {
    /// The arena this region belongs to.
    pub arena: *const Arena,
    /// The arena's previous region (older), or null.
    pub prev: *mut RegionHeader,
    committed: AtomicUsize,
}

/// Offset of the first chunk in a region that holds no arena struct.
pub const FIRST_CHUNK_OFFSET: usize = core::mem::size_of::<RegionHeader>();
const _: () = assert!(FIRST_CHUNK_OFFSET % 16 == 0);

const MAP_WORDS: usize = 1 << (47 - REGION_SHIFT - 6);
static REGION_MAP: [AtomicU64; MAP_WORDS] = [const { AtomicU64::new(0) }; MAP_WORDS];

#[inline(always)]
fn slot(addr: usize) -> Option<(usize, u64)> {
    let i = addr >> REGION_SHIFT;
    if i >= MAP_WORDS * 64 {
        None
    } else {
        Some((i >> 6, 1u64 << (i & 63)))
    }
}

/// Whether `addr` lies in the committed part of a live region.
#[inline(always)]
pub fn contains(addr: usize) -> bool {
    let Some((w, bit)) = slot(addr) else {
        return false;
    };
    if REGION_MAP[w].load(Ordering::Acquire) & bit == 0 {
        return false;
    }
    let base = addr & !(REGION_SIZE - 1);
    // SAFETY: R1: the bit is set, so the header at `base` is mapped and initialised.
    let committed = unsafe {
        (*(base as *const RegionHeader))
            .committed
            .load(Ordering::Relaxed)
    };
    addr - base < committed
}

/// The header of the region holding `addr`.
///
/// # Safety
/// `addr` lies in a live region.
#[inline(always)]
pub unsafe fn header_of(p: *mut u8) -> *mut RegionHeader {
    p.map_addr(|a| a & !(REGION_SIZE - 1)).cast()
}

impl RegionHeader {
    /// Maps a new region for `arena` (whose previous region is `prev`), committing its first
    /// `commit` bytes, and registers it.
    pub fn map(
        arena: *const Arena,
        prev: *mut RegionHeader,
        commit: usize,
    ) -> Option<*mut RegionHeader> {
        let base = os::map_aligned(REGION_SIZE, REGION_SIZE, false)?;
        // SAFETY: the first `commit` bytes of our fresh reservation.
        if !unsafe { os::commit(base, commit) } {
            // SAFETY: our own mapping.
            unsafe { os::unmap(base, REGION_SIZE) };
            return None;
        }
        let r: *mut RegionHeader = base.cast();
        // SAFETY: committed, aligned, ours.
        unsafe {
            r.write(RegionHeader {
                arena,
                prev,
                committed: AtomicUsize::new(commit),
            })
        };
        let (w, bit) = slot(base as usize)?;
        // Release: pairs with the Acquire in `contains`, publishing the header.
        REGION_MAP[w].fetch_or(bit, Ordering::Release);
        Some(r)
    }

    /// Sets the arena pointer (for the first region, whose arena lives inside it).
    ///
    /// # Safety
    /// The region is not yet used by anyone else.
    pub unsafe fn set_arena(r: *mut RegionHeader, a: *const Arena) {
        // SAFETY: caller: sole user.
        unsafe { (*r).arena = a };
    }

    /// Records the committed length (bytes from the base).
    pub fn set_committed(&self, v: usize) {
        self.committed.store(v, Ordering::Relaxed);
    }

    /// Committed length.
    pub fn committed(&self) -> usize {
        self.committed.load(Ordering::Relaxed)
    }

    /// Unregisters and unmaps a region.
    ///
    /// # Safety
    /// Nothing refers to the region's memory any more.
    pub unsafe fn unmap(r: *mut RegionHeader) {
        if let Some((w, bit)) = slot(r as usize) {
            REGION_MAP[w].fetch_and(!bit, Ordering::Release);
        }
        // SAFETY: caller: no users.
        unsafe { os::unmap(r.cast(), REGION_SIZE) };
    }
}

/// The arena owning a region chunk.
///
/// # Safety
/// `p` points into a live region.
#[inline(always)]
pub unsafe fn arena_of(p: *mut u8) -> *const Arena {
    // SAFETY: caller: live region, header initialised.
    unsafe { (*header_of(p)).arena }
}
