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
//!        | reserved (read-only zeros) |
//! 64 MiB +----------------------------+
//! ```
//!
//! Any chunk flagged `IN_REGION` finds its header by masking its address with
//! `!(REGION_SIZE - 1)`, and its arena through the header. The byte map that tells a heap
//! address from a wild one is `region_map`; a region is marked there once mapped, readable
//! and its header written.
//!
//! # Invariants
//! - R2: `committed` only changes under the owning arena's lock.

use crate::arena::Arena;
use crate::config::REGION_SIZE;
use crate::os;
use crate::region_map::register;
use crate::sync::process::{AtomicUsize, Ordering};

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
    /// `kind` is `region_map::REGION` or `region_map::USER_REGION`.
    pub fn map(
        arena: *const Arena,
        prev: *mut RegionHeader,
        commit: usize,
        kind: u8,
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
        // SAFETY: R1: the region is mapped, readable (committed or reserved read-only) and ours;
        // the Release inside publishes the header.
        unsafe { register(base as usize, REGION_SIZE, kind) };
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

    /// Unregisters and unmaps a region, leaving `left` (`region_map::NOT_OURS` or
    /// `region_map::DROPPED`) in the map.
    ///
    /// # Safety
    /// Nothing refers to the region's memory any more.
    pub unsafe fn unmap(r: *mut RegionHeader, left: u8) {
        // SAFETY: unmarked before the unmapping (R1); caller: no users.
        unsafe { register(r as usize, REGION_SIZE, left) };
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
