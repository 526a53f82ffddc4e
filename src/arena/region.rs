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

#[cfg(test)]
std::thread_local! {
    /// In the crate's unit tests: called with each region this thread publishes, right after
    /// it becomes visible in the region map.
    pub static ON_PUBLISH: core::cell::Cell<Option<fn(*mut RegionHeader)>> =
        const { core::cell::Cell::new(None) };
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
    /// `commit` bytes, and publishes it in the region map once its header is whole (R1).
    /// `kind` is `region_map::REGION` or `region_map::USER_REGION`.
    pub fn map(
        arena: *const Arena,
        prev: *mut RegionHeader,
        commit: usize,
        kind: u8,
    ) -> Option<*mut RegionHeader> {
        let r = Self::map_unpublished(prev, commit)?;
        // SAFETY: the region is ours alone until published; its header is whole once the arena
        // pointer is stored.
        unsafe {
            (*r).arena = arena;
            Self::publish(r, kind);
        }
        Some(r)
    }

    /// Maps a new region whose header names no arena yet (the first region of an arena, which
    /// holds the arena itself), committing its first `commit` bytes. Not in the region map:
    /// nothing outside the caller can reach it until [`RegionHeader::publish`].
    pub fn map_unpublished(prev: *mut RegionHeader, commit: usize) -> Option<*mut RegionHeader> {
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
                arena: core::ptr::null(),
                prev,
                committed: AtomicUsize::new(commit),
            })
        };
        Some(r)
    }

    /// Sets the arena pointer of a region not yet published.
    ///
    /// # Safety
    /// `r` is from [`RegionHeader::map_unpublished`] and not yet published.
    pub unsafe fn set_arena(r: *mut RegionHeader, a: *const Arena) {
        // SAFETY: caller: sole user.
        unsafe { (*r).arena = a };
    }

    /// Marks the region in the region map (`kind`, as for [`RegionHeader::map`]): from here on a
    /// `free` of any address in it reads its header, which the map's Release store publishes.
    ///
    /// # Safety
    /// `r` is from [`RegionHeader::map_unpublished`], its arena set, not yet published.
    pub unsafe fn publish(r: *mut RegionHeader, kind: u8) {
        // SAFETY: R1: the region is mapped, readable (committed or reserved read-only) and ours,
        // and its header is whole; the Release inside publishes it.
        unsafe { register(r as usize, REGION_SIZE, kind) };
        #[cfg(test)]
        // SAFETY: the header is whole (the hook only reads it).
        ON_PUBLISH.with(|h| {
            if let Some(f) = h.get() {
                f(r)
            }
        });
    }

    /// Records the committed length (bytes from the base).
    pub fn set_committed(&self, v: usize) {
        self.committed.store(v, Ordering::Relaxed);
    }

    /// Committed length.
    #[cfg(any(test, feature = "internals"))]
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
